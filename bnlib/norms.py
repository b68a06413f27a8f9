"""Batch Normalization written out by hand, plus a small registry of norm layers.

Reference: S. Ioffe and C. Szegedy, "Batch Normalization: Accelerating Deep
Network Training by Reducing Internal Covariate Shift", ICML 2015
(arXiv:1502.03167).

* ``batch_norm_forward``  -- Algorithm 1 (the Batch Normalizing Transform).
* ``batch_norm_backward`` -- the chain-rule formulas of Sec. 3.
* ``BatchNormFunction``   -- glues the two into a ``torch.autograd.Function``.
* ``BatchNorm``           -- a drop-in ``nn.BatchNorm1d/2d`` replacement that
  trains through ``BatchNormFunction`` and infers with running statistics
  (Algorithm 2).
* ``RigidBatchNorm``      -- batch norm whose mean (and optionally variance)
  ignores outliers, |z| >= ``bound``, with a penalty on values beyond it.
* ``KLBatchNorm``         -- batch norm (or just an affine map) plus a KL
  penalty pulling each channel's batch moments towards N(0, 1).
* ``NoisyBatchNorm``      -- batch norm followed, in training, by random
  per-step noise of non-zero mean and non-unit scale (Santurkar et al. 2018,
  Sec. 2).
* ``LpBatchNorm``         -- batch norm that divides by the average l_p
  distance to the mean, p = 1, 2 or inf (Santurkar et al. 2018, Sec. 3.3).
* ``GhostBatchNorm``      -- batch norm over chunks ("ghost batches") of each
  batch (Hoffer et al. 2017).
* ``BatchRenorm``         -- batch renormalization: batch statistics corrected
  towards the running ones by clipped r and d (Ioffe 2017).
* ``model_penalty``       -- the sum of those layers' penalties, to add to the loss.
* ``group_norm``, ``layer_norm``, ``instance_norm`` -- normalizations that do
  not use the batch (``nn.GroupNorm`` with 32, 1 or C groups).
* ``NORM_KINDS`` / ``norm_layer`` -- build a norm layer from a name.

>>> layer = norm_layer("bn", 3)
>>> layer(torch.randn(4, 3)).shape
torch.Size([4, 3])

Inputs are (N, C) or (N, C, H, W). Statistics are per channel, over the
m = N (resp. m = N*H*W) values that share a channel.

This file depends only on ``torch`` and can be copied into a project alone.
"""

import math
import numbers
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "BatchNormCache",
    "batch_norm_forward",
    "batch_norm_backward",
    "BatchNormFunction",
    "BatchNorm",
    "TorchBatchNorm",
    "is_batch_norm",
    "RigidBatchNorm",
    "KLBatchNorm",
    "NoisyBatchNorm",
    "LpBatchNorm",
    "GhostBatchNorm",
    "BatchRenorm",
    "model_penalty",
    "group_norm",
    "layer_norm",
    "instance_norm",
    "NORM_KINDS",
    "NORM_VERSIONS",
    "norm_layer",
    "wu_he_groups",
]


# ------------------------------------------------------------------------
# Shapes, argument checks and the affine step shared by every layer


def _reduction_dims(x: Tensor) -> tuple[int, ...]:
    """Dims to average over: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    if x.dim() == 2:
        return (0,)
    if x.dim() == 4:
        return (0, 2, 3)
    raise ValueError(
        "expected a 2-D (N, C) or 4-D (N, C, H, W) input, "
        f"got a {x.dim()}-D input of shape {tuple(x.shape)}"
    )


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel (C,) vector against ``x``."""
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _affine(x_hat: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """``y = gamma * x_hat + beta`` per channel: Algorithm 1's scale and shift (``gamma`` and ``beta`` of shape (C,)).

    >>> _affine(torch.zeros(2, 3, 1, 1), torch.ones(3), torch.arange(3.0)).flatten().tolist()
    [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
    """
    shape = _channel_shape(x_hat)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape)


def _check_layer_args(
    layer: str, eps: float, momentum: float | None = None, **counts: int
) -> None:
    """Raise ValueError, prefixed with ``layer``, for a bad constructor argument of a norm layer.

    Every ``counts`` value (``num_features``, ``num_models``, ``num_groups``)
    must be an integer >= 1, ``eps`` a finite number > 0, and ``momentum`` a
    number in [0, 1] or None (the cumulative average; layers without a
    momentum leave the default).

    >>> _check_layer_args("BatchNorm", 1e-5, 0.1, num_features=4)
    >>> _check_layer_args("BatchNorm", 1e-5, 0.1, num_features=0)
    Traceback (most recent call last):
    ...
    ValueError: BatchNorm: num_features must be an integer >= 1, got 0
    """
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{layer}: {name} must be an integer >= 1, got {value!r}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps > 0):
        raise ValueError(
            f"{layer}: eps must be a finite number > 0, got {eps!r}: it keeps the division by the "
            "batch spread finite (no inf/nan on a constant channel); use e.g. eps=1e-5"
        )
    if momentum is not None and (
        isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1
    ):
        raise ValueError(
            f"{layer}: momentum must be a number in [0, 1] or None (cumulative average), got {momentum!r}: "
            "the weight of the new batch in running = (1 - momentum) * running + momentum * batch "
            "(Keras' momentum=0.99 is momentum=0.01 here)"
        )


def _float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is float16/bfloat16 (BN statistics in low precision lose accuracy), else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


# ------------------------------------------------------------------------
# 1. Algorithm 1 (the Batch Normalizing Transform) and its backward (Sec. 3)
#   mu_B = 1/m sum_i x_i        sigma_B^2 = 1/m sum_i (x_i - mu_B)^2
#   x_hat_i = (x_i - mu_B) / sqrt(sigma_B^2 + eps)        y_i = gamma x_hat_i + beta


class BatchNormCache(NamedTuple):
    """What ``batch_norm_forward`` hands to ``batch_norm_backward``.

    Tensor fields come first (so ``cache[:6]`` can go through
    ``ctx.save_for_backward``); per-channel tensors are kept with
    broadcastable shape (1, C) or (1, C, 1, 1).

    >>> _, cache = batch_norm_forward(torch.randn(8, 3), torch.ones(3), torch.zeros(3))
    >>> cache.m, cache.dims, tuple(cache.mean.shape)
    (8, (0,), (1, 3))
    """

    x_hat: Tensor  #: normalized input (x - mu_B) / sqrt(var_B + eps)
    x_mu: Tensor  #: centred input x - mu_B
    mean: Tensor  #: batch mean mu_B
    var: Tensor  #: biased batch variance sigma_B^2 (divide by m)
    inv_std: Tensor  #: 1 / sqrt(sigma_B^2 + eps)
    gamma: Tensor  #: scale, shape (C,)
    dims: tuple[int, ...]  #: reduced dims
    m: int  #: number of values per channel


def batch_norm_forward(
    x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5
) -> tuple[Tensor, BatchNormCache]:
    """Batch Normalizing Transform, Ioffe & Szegedy 2015, Algorithm 1.

    Works on (N, C) inputs (m = N) and on (N, C, H, W) inputs with one mean and
    variance per channel over m = N*H*W values (the paper's Sec. 3.2 for
    convolutions). The variance is the biased one (divide by m), as in the
    paper. ``gamma`` and ``beta`` have shape (C,).

    Returns ``y = gamma * x_hat + beta`` and a ``BatchNormCache`` for
    ``batch_norm_backward``.

    >>> x = torch.randn(16, 3, 4, 4) * 5 + 2
    >>> y, cache = batch_norm_forward(x, torch.ones(3), torch.zeros(3))
    >>> y.shape, cache.m
    (torch.Size([16, 3, 4, 4]), 256)
    >>> bool(y.mean((0, 2, 3)).abs().max() < 1e-5)
    True
    """
    dims = _reduction_dims(x)
    m = x.numel() // x.shape[1]
    mean = x.sum(dims, keepdim=True) / m  # mu_B = 1/m sum_i x_i
    x_mu = x - mean
    var = (x_mu**2).sum(dims, keepdim=True) / m  # sigma_B^2 = 1/m sum_i (x_i - mu_B)^2
    inv_std = 1.0 / torch.sqrt(var + eps)
    x_hat = x_mu * inv_std  # x_hat_i = (x_i - mu_B) / sqrt(sigma_B^2 + eps)
    y = _affine(x_hat, gamma, beta)  # y_i = gamma x_hat_i + beta
    return y, BatchNormCache(x_hat, x_mu, mean, var, inv_std, gamma, dims, m)


def batch_norm_backward(
    dy: Tensor, cache: BatchNormCache
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of Algorithm 1, as the chain-rule formulas of Ioffe & Szegedy 2015, Sec. 3.

    ``dy`` is dL/dy (same shape as the input); returns ``(dx, dgamma, dbeta)``.
    Each line below is one formula of the paper, in the paper's order.

    Test it with a *random* ``dy``: for ``dy = ones`` (the gradient of
    ``y.sum()``) the true ``dx`` and ``dgamma`` are ~0, which many wrong
    backward passes also return.

    >>> x, dy = torch.randn(8, 3), torch.randn(8, 3)
    >>> y, cache = batch_norm_forward(x, torch.ones(3), torch.zeros(3))
    >>> dx, dgamma, dbeta = batch_norm_backward(dy, cache)
    >>> dx.shape, dgamma.shape, torch.allclose(dbeta, dy.sum(0))
    (torch.Size([8, 3]), torch.Size([3]), True)
    """
    dims, m = cache.dims, cache.m
    gamma = cache.gamma.reshape(_channel_shape(dy))
    x_mu, inv_std = cache.x_mu, cache.inv_std  # (x_i - mu_B), (sigma_B^2 + eps)^(-1/2)
    # dL/dx_hat_i = dL/dy_i * gamma
    dx_hat = dy * gamma
    # dL/dsigma^2 = sum_i dL/dx_hat_i * (x_i - mu_B) * (-1/2) * (sigma_B^2 + eps)^(-3/2)
    #   with (sigma_B^2 + eps)^(-3/2) = inv_std^3
    dvar = (dx_hat * x_mu).sum(dims, keepdim=True) * -0.5 * inv_std**3
    # dL/dmu = (sum_i dL/dx_hat_i * -1/sqrt(sigma_B^2 + eps))
    #          + dL/dsigma^2 * (sum_i -2 (x_i - mu_B)) / m
    dmean = (dx_hat * -inv_std).sum(dims, keepdim=True)
    dmean = dmean + dvar * (-2.0 * x_mu).sum(dims, keepdim=True) / m
    # dL/dx_i = dL/dx_hat_i / sqrt(sigma_B^2 + eps) + dL/dsigma^2 * 2 (x_i - mu_B) / m
    #           + dL/dmu / m
    dx = dx_hat * inv_std + dvar * 2.0 * x_mu / m + dmean / m
    # dL/dgamma = sum_i dL/dy_i * x_hat_i
    dgamma = (dy * cache.x_hat).sum(dims)
    # dL/dbeta = sum_i dL/dy_i
    dbeta = dy.sum(dims)
    return dx, dgamma, dbeta


class BatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm whose backward is ``batch_norm_backward``.

    ``BatchNormFunction.apply(x, gamma, beta, eps)`` returns
    ``(y, batch_mean, batch_var)``: ``y`` from ``batch_norm_forward``, plus the
    per-channel batch mean and *biased* variance, shape (C,), which carry no
    gradient (``BatchNorm`` uses them for its running statistics).

    >>> x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    >>> g = torch.ones(3, dtype=torch.float64, requires_grad=True)
    >>> b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    >>> y, mean, var = BatchNormFunction.apply(x, g, b, 1e-5)
    >>> (y * torch.randn_like(y)).sum().backward()
    >>> x.grad.shape, mean.requires_grad
    (torch.Size([8, 3]), False)
    """

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor, eps: float):  # type: ignore[override]
        """Run Algorithm 1 and save its cache (and the input) for the backward pass."""
        y, cache = batch_norm_forward(x, gamma, beta, eps)
        ctx.save_for_backward(x, *cache[:6])  # the input, then the cache's tensor fields
        ctx.dims, ctx.m, ctx.eps = cache.dims, cache.m, eps
        mean, var = cache.mean.reshape(-1), cache.var.reshape(-1)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy: Tensor, _dmean: Tensor, _dvar: Tensor):  # type: ignore[override]
        """Apply the Sec. 3 formulas; no gradient for inputs that do not need one.

        Under ``create_graph=True`` (a Hessian-vector product, a gradient penalty) the cache is recomputed from the
        saved input with differentiable operations: the one saved in ``forward`` was computed without autograd, so
        double backward would treat x_hat, x - mu and 1/sigma as constants and return a wrong second derivative.
        """
        x, *saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: x_hat, mu and sigma must depend on x in the graph
            _, cache = batch_norm_forward(x, saved[5], torch.zeros_like(saved[5]), ctx.eps)
        else:
            cache = BatchNormCache(*saved, ctx.dims, ctx.m)
        dx, dgamma, dbeta = batch_norm_backward(dy, cache)
        need_x, need_gamma, need_beta, _ = ctx.needs_input_grad
        return (
            dx if need_x else None,
            dgamma if need_gamma else None,
            dbeta if need_beta else None,
            None,
        )


# ------------------------------------------------------------------------
# 2. The BatchNorm module: batch statistics in training, population statistics at inference
#   Algorithm 2: E[x] <- E_B[mu_B], Var[x] <- m/(m-1) E_B[sigma_B^2] (here: running averages with momentum)
#   y = gamma / sqrt(Var[x] + eps) * x + (beta - gamma E[x] / sqrt(Var[x] + eps))


class _BatchStatsNorm(nn.Module):
    """What every bnlib batch norm layer shares (not meant to be used alone).

    The parameters and buffers of ``torch.nn.BatchNorm1d/2d`` (``weight``,
    ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``), the
    constructor-argument checks (:func:`_check_layer_args`), the input checks,
    and the running-statistics update.
    """

    batch_statistics = True  # normalizes with batch statistics in training (what is_batch_norm reads)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ) -> None:
        _check_layer_args(type(self).__name__, eps, momentum, num_features=num_features)
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _check_input(self, x: Tensor) -> None:
        """Raise ValueError for a wrong rank, channel count, or m == 1 in training."""
        _reduction_dims(x)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"expected {self.num_features} channels in dim 1, "
                f"got input of shape {tuple(x.shape)}"
            )
        if self.training and x.numel() // x.shape[1] == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, "
                f"got input size {x.size()}"
            )

    def _checked(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every forward's start: input checks, float32 for half-precision input, and (gamma, beta)."""
        self._check_input(x)
        x = _float32(x)
        return (x, *self._gamma_beta(x))

    def _gamma_beta(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The affine parameters, or constant ones/zeros when ``affine=False``."""
        if self.affine:
            return self.weight, self.bias
        ones = torch.ones(self.num_features, dtype=x.dtype, device=x.device)
        return ones, torch.zeros_like(ones)

    def _running_x_hat(self, x: Tensor) -> Tensor:
        """(x - E[x]) / sqrt(Var[x] + eps) with the running statistics (Algorithm 2, step 11)."""
        shape = _channel_shape(x)
        return (x - self.running_mean.reshape(shape)) / torch.sqrt(
            self.running_var.reshape(shape) + self.eps
        )

    def _eval_forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        """Algorithm 2, step 11: y = gamma / sqrt(Var[x] + eps) * (x - E[x]) + beta."""
        return _affine(self._running_x_hat(x), gamma, beta)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, m: int | Tensor | None) -> None:
        """Moving averages of the batch mean and the unbiased batch variance.

        ``m`` is the number of values behind ``var``, for the m / (m - 1)
        correction: an int, or a per-channel tensor of counts (each > 1);
        ``None`` averages ``var`` as given (already unbiased, or not a variance).
        """
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        if m is not None:
            var = var * (m / (m - 1))
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(var, alpha=factor)

    def __getstate__(self) -> dict:
        """Module state for copy/pickle, with graph-attached tensors (e.g. a ``penalty``) detached.

        ``copy.deepcopy`` refuses non-leaf tensors, so without this a layer
        could not be copied after a training forward pass.
        """
        state = super().__getstate__()
        return {
            k: v.detach() if isinstance(v, Tensor) and v.grad_fn is not None else v
            for k, v in state.items()
        }


class BatchNorm(_BatchStatsNorm):
    """Batch Normalization from scratch for (N, C) and (N, C, H, W) inputs.

    Follows ``torch.nn.BatchNorm1d/2d`` exactly: parameters ``weight`` (gamma,
    ones) and ``bias`` (beta, zeros) when ``affine``, buffers ``running_mean``,
    ``running_var`` and ``num_batches_tracked``, so ``state_dict``s load both
    ways.

    * Training: Algorithm 1 of Ioffe & Szegedy 2015 through
      ``BatchNormFunction`` (batch mean, biased batch variance, hand-written
      backward). Running statistics are updated with the *unbiased* batch
      variance (m / (m - 1)), as in Algorithm 2 step 10 and in torch:
      ``running = (1 - momentum) * running + momentum * batch``;
      ``momentum=None`` gives the cumulative average (factor
      ``1 / num_batches_tracked``).
    * Eval: the inference transform of Algorithm 2 with the running statistics.

    >>> bn = BatchNorm(3)
    >>> y = bn(torch.randn(8, 3, 5, 5))
    >>> y.shape, int(bn.num_batches_tracked)
    (torch.Size([8, 3, 5, 5]), 1)
    >>> sorted(bn.state_dict()) == sorted(torch.nn.BatchNorm2d(3).state_dict())
    True
    >>> BatchNorm(4, eps=-1)
    Traceback (most recent call last):
    ...
    ValueError: BatchNorm: eps must be a finite number > 0, got -1: ...
    """

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` with batch statistics (train) or running ones (eval); half-precision input is computed in float32."""
        x, gamma, beta = self._checked(x)
        if not self.training:
            return self._eval_forward(x, gamma, beta)
        y, mean, var = BatchNormFunction.apply(x, gamma, beta, self.eps)
        self._update_running_stats(mean, var, m=x.numel() // x.shape[1])
        return y

    def extra_repr(self) -> str:
        """Same fields as torch's batch norm repr.

        >>> BatchNorm(4)
        BatchNorm(4, eps=1e-05, momentum=0.1, affine=True)
        """
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}"
        )


class TorchBatchNorm(nn.modules.batchnorm._BatchNorm):
    """PyTorch's own batch norm, accepting (N, C) and (N, C, H, W) inputs.

    One class for MLPs and conv nets (``nn.BatchNorm1d`` also takes 3-D,
    ``nn.BatchNorm2d`` only 4-D); other ranks raise ValueError.

    The constructor takes the arguments of ``nn.BatchNorm2d`` and refuses
    the bad values :class:`BatchNorm` refuses.

    >>> bn = TorchBatchNorm(3)
    >>> bn(torch.randn(8, 3)).shape, bn(torch.randn(8, 3, 2, 2)).shape
    (torch.Size([8, 3]), torch.Size([8, 3, 2, 2]))
    >>> TorchBatchNorm(3, momentum=2)
    Traceback (most recent call last):
    ...
    ValueError: TorchBatchNorm: momentum must be a number in [0, 1] or None (cumulative average), got 2: ...
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        """Check ``num_features``, ``eps`` and ``momentum``; the arguments are ``nn.BatchNorm2d``'s."""
        _check_layer_args(type(self).__name__, eps, momentum, num_features=num_features)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def _check_input_dim(self, input: Tensor) -> None:
        """Accept 2-D or 4-D inputs only."""
        _reduction_dims(input)

    def forward(self, input: Tensor) -> Tensor:
        """torch's batch norm, in float32 also for half-precision input (e.g. under bfloat16 autocast).

        >>> TorchBatchNorm(2)(torch.randn(4, 2, dtype=torch.bfloat16)).dtype
        torch.float32
        """
        return super().forward(_float32(input))


_RIGID_RECOMPUTE = ("mean", "mean_var")
_KL_KINDS = ("correct", "original")


# ------------------------------------------------------------------------
# 3. Variants: notebook 04's rigid and KL batch norms, Santurkar et al.'s noisy and l_p ones
#   rigid: mu_B over the inliers |x_hat| < bound; KL: + KL(N(mu_B, sigma_B^2) || N(0, 1)) as a penalty
#   noisy: s * BN(x) + m with random m, s at every step; l_p: x_hat = (x - mu_B) / ((1/m sum |x - mu_B|^p)^(1/p) + eps)


class RigidBatchNorm(_BatchStatsNorm):
    """Batch norm whose statistics ignore outliers, with a penalty on values beyond ``bound``.

    Training, per channel over the m values of :class:`BatchNorm`:

    1. batch mean ``mu``, biased variance ``var``; ``z = (x - mu) / sqrt(var + eps)``;
    2. inliers are the values with ``|z| < bound`` (a mask without gradient);
       a channel with fewer than 2 inliers uses all its values;
    3. ``mu_in`` = mean of the inliers; ``var_use`` = the inliers' biased
       variance about ``mu_in`` (``recompute="mean_var"``) or the whole-batch
       ``var`` (``recompute="mean"``: the original code's "keep original
       variance");
    4. ``x_hat = (x - mu_in) / sqrt(var_use + eps)``;
       ``self.penalty = mean(relu(|x_hat| - bound) ** 2)`` over all elements
       (0-dim, with gradient; add it to the loss, e.g. via ``model_penalty``);
    5. if ``clip``: ``x_hat`` is clamped to [-bound, bound];
       ``y = gamma * x_hat + beta``.

    Running statistics: moving averages (as in :class:`BatchNorm`) of
    ``mu_in`` and of ``var_use`` made unbiased with n / (n - 1), n = the inlier
    count per channel for ``"mean_var"``, n = m for ``"mean"``. Eval:
    ``x_hat`` from the running statistics, clipped if ``clip``; the penalty is 0.

    Diagnostics of the last training batch (no gradient):
    ``last_outlier_fraction`` (fraction of values with ``|z| >= bound``) and
    ``last_mean_shift`` (mean over channels of ``|mu_in - mu| / sqrt(var + eps)``).

    >>> x = torch.linspace(-1, 1, 50).reshape(25, 2)
    >>> x[0, 0] = 100.0  # one planted outlier in channel 0
    >>> bn = RigidBatchNorm(2, bound=3.0, momentum=1.0)
    >>> y = bn(x)
    >>> bool(torch.isclose(bn.running_mean[0], x[1:, 0].mean()))  # the outlier is not in the mean
    True
    >>> round(float(bn.last_outlier_fraction), 6), bool(bn.penalty > 0)  # 1 value of 50
    (0.02, True)
    """

    def __init__(
        self,
        num_features: int,
        bound: float = 3.0,
        recompute: str = "mean",
        clip: bool = False,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ) -> None:
        if not bound > 0:
            raise ValueError(
                f"bound must be > 0, got {bound}: it is the |z| beyond which a value "
                "counts as an outlier (z = (x - batch mean) / batch std); use e.g. bound=3.0"
            )
        if recompute not in _RIGID_RECOMPUTE:
            raise ValueError(
                f"recompute must be one of {', '.join(map(repr, _RIGID_RECOMPUTE))}, got {recompute!r}: "
                "'mean' recomputes the mean from the inliers and keeps the whole-batch variance, "
                "'mean_var' recomputes both"
            )
        super().__init__(num_features, eps, momentum, affine)
        self.bound = float(bound)
        self.recompute = recompute
        self.clip = clip
        self.penalty: Tensor = torch.zeros(())
        self.last_outlier_fraction: Tensor = torch.zeros(())
        self.last_mean_shift: Tensor = torch.zeros(())

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` with inlier statistics (train) or running ones (eval); sets ``self.penalty``."""
        x, gamma, beta = self._checked(x)
        if self.training:
            x_hat = self._train_x_hat(x)
        else:
            x_hat = self._running_x_hat(x)
            self.penalty = torch.zeros((), dtype=x.dtype, device=x.device)
        if self.clip:
            x_hat = x_hat.clamp(-self.bound, self.bound)
        return _affine(x_hat, gamma, beta)

    def _train_x_hat(self, x: Tensor) -> Tensor:
        """Steps 1-4 of the class docstring (before the clip); updates the running statistics and diagnostics."""
        dims = _reduction_dims(x)
        m = x.numel() // x.shape[1]
        mu = x.mean(dims, keepdim=True)
        var = (x - mu).square().mean(dims, keepdim=True)
        with torch.no_grad():
            std = torch.sqrt(var + self.eps)
            outlier = ((x - mu) / std).abs() >= self.bound
            inlier = ~outlier
            too_few = inlier.sum(dims, keepdim=True) < 2  # fall back to all values
            mask = (inlier | too_few).to(x.dtype)
            n_in = mask.sum(dims, keepdim=True)
        mu_in = (x * mask).sum(dims, keepdim=True) / n_in
        if self.recompute == "mean_var":
            var_use = ((x - mu_in).square() * mask).sum(dims, keepdim=True) / n_in
            n_used: int | Tensor = n_in.reshape(-1)
        else:
            var_use, n_used = var, m
        x_hat = (x - mu_in) / torch.sqrt(var_use + self.eps)
        self.penalty = (x_hat.abs() - self.bound).clamp(min=0).square().mean()
        with torch.no_grad():
            self.last_outlier_fraction = outlier.to(x.dtype).mean()
            self.last_mean_shift = ((mu_in - mu).abs() / std).mean()
        self._update_running_stats(mu_in.detach().reshape(-1), var_use.detach().reshape(-1), n_used)
        return x_hat

    def extra_repr(self) -> str:
        """``num_features`` and every option.

        >>> RigidBatchNorm(4)
        RigidBatchNorm(4, bound=3.0, recompute='mean', clip=False, eps=1e-05, momentum=0.1, affine=True)
        """
        return (
            f"{self.num_features}, bound={self.bound}, recompute={self.recompute!r}, "
            f"clip={self.clip}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )


class KLBatchNorm(_BatchStatsNorm):
    """Batch norm (or a plain affine map) plus a KL penalty on each channel's batch moments.

    Training: per channel, the batch mean ``mu`` and biased variance ``var``
    of the *input* ``x`` give ``self.penalty`` (0-dim, with gradient; the mean
    over channels; add it to the loss, e.g. via ``model_penalty``):

    * ``kl="correct"``: KL(N(mu, v) || N(0, 1)) = 0.5 * (v + mu^2 - 1 - log v),
      v = var + eps: pulls the input towards zero mean and unit variance;
    * ``kl="original"``: the original TensorFlow code's expression, literally:
      ``0.5*log(var+eps) + 0.5*(1 + (1-mean)**2)/(var+eps)``. That is
      KL(N(1, 1) || N(mu, var)) up to a constant: the target mean is 1, not 0,
      and the direction is reversed.

    Output: with ``normalize=True``, batch norm as :class:`BatchNorm` (batch
    statistics in training, running ones in eval); with ``normalize=False``,
    ``gamma * x + beta`` in both modes (only the penalty pulls ``x`` towards
    N(0, 1)). Running statistics are updated in training either way (unused
    with ``normalize=False``: diagnostics only). Eval: the penalty is 0.

    >>> bn = KLBatchNorm(3)
    >>> x = (torch.randn(16, 3, 4, 4) * 3 + 2).requires_grad_()
    >>> y = bn(x)
    >>> bn.penalty.backward()  # the gradient pulls x's moments towards (0, 1)
    >>> y.shape, bool(bn.penalty > 0), x.grad.shape
    (torch.Size([16, 3, 4, 4]), True, torch.Size([16, 3, 4, 4]))
    >>> float(KLBatchNorm(2, normalize=False)(torch.tensor([[-1.0, 1.0], [1.0, -1.0]])).detach().abs().max())
    1.0
    """

    def __init__(
        self,
        num_features: int,
        normalize: bool = True,
        kl: str = "correct",
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ) -> None:
        if kl not in _KL_KINDS:
            raise ValueError(
                f"kl must be one of {', '.join(map(repr, _KL_KINDS))}, got {kl!r}: "
                "'correct' is KL(N(mu, var) || N(0, 1)), 'original' the original code's expression"
            )
        super().__init__(num_features, eps, momentum, affine)
        self.normalize = normalize
        self.kl = kl
        self.penalty: Tensor = torch.zeros(())

    def forward(self, x: Tensor) -> Tensor:
        """Batch norm of ``x`` (or ``gamma * x + beta``); in training also sets ``self.penalty``."""
        x, gamma, beta = self._checked(x)
        if not self.training:
            self.penalty = torch.zeros((), dtype=x.dtype, device=x.device)
            x_hat = self._running_x_hat(x) if self.normalize else x
            return _affine(x_hat, gamma, beta)
        dims = _reduction_dims(x)
        mean = x.mean(dims, keepdim=True)
        var = (x - mean).square().mean(dims, keepdim=True)
        self.penalty = self._kl(mean, var).mean()
        self._update_running_stats(
            mean.detach().reshape(-1), var.detach().reshape(-1), m=x.numel() // x.shape[1]
        )
        x_hat = (x - mean) / torch.sqrt(var + self.eps) if self.normalize else x
        return _affine(x_hat, gamma, beta)

    def _kl(self, mean: Tensor, var: Tensor) -> Tensor:
        """The per-channel KL term of ``self.kl`` from the batch moments."""
        v = var + self.eps
        if self.kl == "correct":
            return 0.5 * (v + mean**2 - 1 - torch.log(v))
        return 0.5 * torch.log(v) + 0.5 * (1 + (1 - mean) ** 2) / v

    def extra_repr(self) -> str:
        """``num_features`` and every option.

        >>> KLBatchNorm(4, kl="original")
        KLBatchNorm(4, normalize=True, kl='original', eps=1e-05, momentum=0.1, affine=True)
        """
        return (
            f"{self.num_features}, normalize={self.normalize}, kl={self.kl!r}, "
            f"eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )


_NOISE_PER = ("activation", "channel")


class NoisyBatchNorm(_BatchStatsNorm):
    """Batch norm followed, in training, by fresh random noise of non-zero mean and non-unit scale.

    The "noisy" BatchNorm of S. Santurkar, D. Tsipras, A. Ilyas and A. Madry,
    "How Does Batch Normalization Help Optimization?", NeurIPS 2018
    (arXiv:1805.11604), Sec. 2: noise injected after each BN layer makes the
    distribution of the next layer's input unstable from step to step (more
    "internal covariate shift" than without BN), yet such a network still
    trains about as well as one with plain BN.

    Training: exactly :class:`BatchNorm` (batch statistics through
    ``BatchNormFunction``, running statistics updated with the unbiased
    variance), giving ``y = gamma * x_hat + beta``; then, re-sampled at *every*
    forward call from the global torch RNG of the input's device (so
    ``torch.manual_seed`` makes it reproducible):

    * per channel i, the noise distribution's parameters, new at every step:
      ``mu_i ~ U(-mean_range, mean_range)``, ``sigma_i ~ U(std_range[0], std_range[1])``;
    * ``per="activation"`` (the default, their Sec. 2.1 and Appendix A: "i.i.d.
      noise" for "each activation for each sample in the batch"): for every
      example j, channel i and position p, ``m_ijp ~ U(mu_i - mean_spread, mu_i + mean_spread)``,
      ``s_ijp ~ N(sigma_i, std_spread)`` (standard deviation ``std_spread``);
    * ``per="channel"`` (this class's first version): one ``m_ij``, ``s_ij`` per
      example and channel, the same at every spatial position of a (N, C, H, W)
      input. For (N, C) inputs the two draw the same numbers.
    * output ``a = s * y + m``.

    The noise is a constant of the step: no gradient flows into it (the
    gradient w.r.t. ``y`` is ``s`` times the one w.r.t. ``a``). The last
    sample is kept, without gradient, as ``self.last_noise = (m, s)``, of the
    input's shape (``per="activation"``) or (N, C, 1, ...) (``per="channel"``)
    (``None`` before the first training call). ``s`` is not clipped: it can be
    <= 0 only if ``std_spread`` is comparable to ``std_range[0]``. Setting
    ``self.noise = False`` turns the noise off in training (plain BN), e.g. to
    measure a noisy network's accuracy without its noise.

    Eval: plain batch norm with the running statistics (Algorithm 2), no noise.

    >>> _ = torch.manual_seed(0)
    >>> bn = NoisyBatchNorm(3)
    >>> y = bn(torch.randn(8, 3, 4, 4))
    >>> y.shape, tuple(bn.last_noise[0].shape), int(bn.num_batches_tracked)
    (torch.Size([8, 3, 4, 4]), (8, 3, 4, 4), 1)
    >>> tuple(NoisyBatchNorm(3, per="channel")(torch.randn(8, 3, 4, 4)).shape)
    (8, 3, 4, 4)
    >>> plain = BatchNorm(3)
    >>> _ = plain.load_state_dict(bn.state_dict())
    >>> x = torch.randn(2, 3, 4, 4)
    >>> torch.equal(bn.eval()(x), plain.eval()(x))  # no noise in eval
    True
    """

    def __init__(
        self,
        num_features: int,
        mean_range: float = 0.5,
        std_range: tuple[float, float] = (1.0, 1.25),
        mean_spread: float = 0.1,
        std_spread: float = 0.1,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        per: str = "activation",
    ) -> None:
        if per not in _NOISE_PER:
            raise ValueError(
                f"per must be one of {_NOISE_PER}, got {per!r}: 'activation' draws the noise for every "
                "example, channel and position (Santurkar et al. Sec. 2.1), 'channel' once per example and channel"
            )
        if not mean_range >= 0:
            raise ValueError(
                f"mean_range must be >= 0, got {mean_range}: each channel's noise mean is drawn "
                "from U(-mean_range, mean_range); use e.g. mean_range=0.5 (0 for no shift)"
            )
        try:
            lo, hi = (float(v) for v in std_range)
        except (TypeError, ValueError):
            raise ValueError(
                f"std_range must be a pair (low, high) of numbers, got {std_range!r}; "
                "use e.g. std_range=(1.0, 1.25)"
            ) from None
        if not 0 < lo <= hi:
            raise ValueError(
                f"std_range must satisfy 0 < std_range[0] <= std_range[1], got {std_range!r}: "
                "each channel's noise scale is drawn from U(std_range[0], std_range[1]); "
                "use e.g. std_range=(1.0, 1.25) ((1.0, 1.0) for no scaling)"
            )
        for name, value in (("mean_spread", mean_spread), ("std_spread", std_spread)):
            if not value >= 0:
                raise ValueError(
                    f"{name} must be >= 0, got {value}: it is the per-example spread of the "
                    f"noise around the channel's value; use e.g. {name}=0.1 (0 for none)"
                )
        super().__init__(num_features, eps, momentum, affine)
        self.mean_range = float(mean_range)
        self.std_range = (lo, hi)
        self.mean_spread = float(mean_spread)
        self.std_spread = float(std_spread)
        self.per = per
        self.noise = True  # False: no noise in training either (plain BN), e.g. to measure accuracy without it
        self.last_noise: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Batch norm of ``x``; in training plus fresh noise ``s * y + m`` (sets ``self.last_noise``)."""
        x, gamma, beta = self._checked(x)
        if not self.training:
            return self._eval_forward(x, gamma, beta)
        y, mean, var = BatchNormFunction.apply(x, gamma, beta, self.eps)
        self._update_running_stats(mean, var, m=x.numel() // x.shape[1])
        if not self.noise:
            return y
        m, s = self._sample_noise(x)
        self.last_noise = (m, s)
        return s * y + m

    @torch.no_grad()
    def _sample_noise(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(m, s)`` of the class docstring, of ``x``'s shape or (N, C, 1, ...) (``per="channel"``), device and dtype."""
        n, c = x.shape[:2]
        new = partial(torch.empty, dtype=x.dtype, device=x.device)
        mu = new(c).uniform_(-self.mean_range, self.mean_range)
        sigma = new(c).uniform_(*self.std_range)
        tail = (1,) * (x.dim() - 2)
        if self.per == "channel":
            m = mu + new(n, c).uniform_(-self.mean_spread, self.mean_spread)
            s = sigma + self.std_spread * new(n, c).normal_()
            return m.reshape(n, c, *tail), s.reshape(n, c, *tail)
        m = mu.view(1, c, *tail) + new(x.shape).uniform_(-self.mean_spread, self.mean_spread)
        s = sigma.view(1, c, *tail) + self.std_spread * new(x.shape).normal_()
        return m, s

    def extra_repr(self) -> str:
        """``num_features`` and every option.

        >>> NoisyBatchNorm(4)
        NoisyBatchNorm(4, mean_range=0.5, std_range=(1.0, 1.25), mean_spread=0.1, std_spread=0.1, eps=1e-05, momentum=0.1, ...)
        """
        return (
            f"{self.num_features}, mean_range={self.mean_range}, std_range={self.std_range}, "
            f"mean_spread={self.mean_spread}, std_spread={self.std_spread}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}" + ("" if self.per == "activation" else f", per={self.per!r}")
        )


_LP_VALUES = (1.0, 2.0, float("inf"))


class LpBatchNorm(_BatchStatsNorm):
    """Batch norm that divides by the average l_p distance to the mean instead of the standard deviation.

    Santurkar et al., "How Does Batch Normalization Help Optimization?",
    NeurIPS 2018, Sec. 3.3: l_p normalizations, with no claim to control the
    first two moments, smooth the loss landscape and train like BN.

    Training, per channel over the m values of :class:`BatchNorm`: ``mu`` =
    batch mean, ``d = (mean |x - mu|^p)^(1/p)`` for p = 1, 2 and
    ``d = max |x - mu|`` for p = inf;
    ``x_hat = (x - mu) / (d + eps)``, ``y = gamma * x_hat + beta``.
    p = 2 differs from :class:`BatchNorm` only in where ``eps`` enters
    (``d + eps`` instead of ``sqrt(var + eps)``) and in the running statistic
    having no Bessel correction.

    Running statistics (``momentum`` as in :class:`BatchNorm`): moving
    averages of ``mu`` in ``running_mean`` and of ``d**2`` -- *not* a variance
    for p != 2, and never Bessel-corrected -- in ``running_var``, so the
    buffers are those of ``torch.nn.BatchNorm1d/2d`` (``state_dict``s load
    both ways). Eval: ``x_hat = (x - running_mean) / (sqrt(running_var) + eps)``.

    ``p`` is 1, 2 or inf (``float("inf")`` or the string ``"inf"``); stored
    as a float.

    >>> x = torch.tensor([[0.0], [1.0], [2.0], [5.0]])  # mean 2, |x - mu| = 2, 1, 0, 3
    >>> [round(LpBatchNorm(1, p=p, eps=1e-12)(x)[3].item(), 4) for p in (1, 2, "inf")]  # 3 / d
    [2.0, 1.6036, 1.0]
    >>> bn = LpBatchNorm(1, p=1, momentum=1.0)
    >>> _ = bn(x)
    >>> bn.running_mean.item(), bn.running_var.item()  # mu = 2, d**2 = (6 / 4)**2
    (2.0, 2.25)
    """

    def __init__(
        self,
        num_features: int,
        p: float | str = 2,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ) -> None:
        if p == "inf":
            p = float("inf")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or float(p) not in _LP_VALUES:
            raise ValueError(
                f"p must be one of 1, 2, float('inf') (or 'inf'), got {p!r}: "
                "the norm whose batch average replaces the standard deviation"
            )
        super().__init__(num_features, eps, momentum, affine)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` by the batch (train) or running (eval) mean and l_p distance ``d``."""
        x, gamma, beta = self._checked(x)
        shape = _channel_shape(x)
        if self.training:
            dims = _reduction_dims(x)
            m = x.numel() // x.shape[1]
            mu = x.mean(dims, keepdim=True)
            x_mu = x - mu
            # vector_norm's backward is 0 (not nan) where the norm is 0, e.g. a constant channel
            d = torch.linalg.vector_norm(x_mu, ord=self.p, dim=dims, keepdim=True)
            if self.p != float("inf"):
                d = d / m ** (1.0 / self.p)  # (1/m sum |x - mu|^p)^(1/p)
            self._update_running_stats(
                mu.detach().reshape(-1), d.detach().reshape(-1) ** 2, m=None
            )
        else:
            x_mu = x - self.running_mean.reshape(shape)
            d = torch.sqrt(self.running_var).reshape(shape)
        x_hat = x_mu / (d + self.eps)
        return _affine(x_hat, gamma, beta)

    def extra_repr(self) -> str:
        """``num_features`` and every option (p as 1, 2 or inf).

        >>> LpBatchNorm(4, p="inf")
        LpBatchNorm(4, p=inf, eps=1e-05, momentum=0.1, affine=True)
        """
        return (
            f"{self.num_features}, p={self.p:g}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}"
        )


def model_penalty(model: nn.Module) -> Tensor:
    """Sum of ``.penalty`` over the layers of ``model`` that have one (``RigidBatchNorm``, ``KLBatchNorm``).

    The penalties are those of the last forward pass (0 after an eval-mode
    pass); add the sum, times a weight, to the loss. A model without such
    layers gives a zero tensor on the device of its first parameter (CPU if
    it has none).

    >>> model = nn.Sequential(nn.Linear(4, 3), RigidBatchNorm(3, bound=0.5))
    >>> loss = model(torch.randn(8, 4)).square().mean() + 0.1 * model_penalty(model)
    >>> bool(model_penalty(model) > 0), model_penalty(model.eval()).shape
    (True, torch.Size([]))
    >>> float(model_penalty(nn.Linear(2, 2)))
    0.0
    """
    penalties = [
        m.penalty for m in model.modules() if isinstance(getattr(m, "penalty", None), Tensor)
    ]
    if penalties:
        return sum(penalties[1:], penalties[0])
    first = next(model.parameters(), None)
    return torch.zeros((), device=first.device if first is not None else "cpu")


# ------------------------------------------------------------------------
# 4. Small-batch remedies that keep BN: ghost batches (Hoffer et al. 2017) and batch renormalization (Ioffe 2017)


class GhostBatchNorm(_BatchStatsNorm):
    """Batch norm over "ghost" batches: each training batch is cut into chunks of about ``virtual_batch`` examples,
    and each chunk is normalized with its own statistics (Hoffer, Hubara & Soudry 2017, "Train longer, generalize
    better", Sec. 4).

    Training: k = max(1, N // ``virtual_batch``) chunks of nearly equal size (``torch.tensor_split``, so no chunk
    is smaller than ``virtual_batch``); every chunk goes through Algorithm 1 (``BatchNormFunction``). A batch of at
    most ``virtual_batch`` examples is one chunk: the layer is then :class:`BatchNorm`.

    Running statistics: **one** update per training batch, with the mean over chunks of the chunk means and of the
    chunk variances (each made unbiased with its own m / (m - 1)), at ``momentum``. Updating once per chunk instead
    would decay the old value by (1 - momentum)^k per step, k times faster than the same momentum in BN: mind this
    when porting a ghost BN that updates per chunk. Eval: Algorithm 2 with the running statistics, as BN.

    >>> gbn = GhostBatchNorm(3, virtual_batch=4)
    >>> x = torch.randn(16, 3)
    >>> y = gbn(x)  # four ghost batches of 4
    >>> bool(y[:4].mean(0).abs().max() < 1e-5), bool(y.mean(0).abs().max() < 1e-5)  # each chunk has mean 0
    (True, True)
    >>> bool(torch.allclose(GhostBatchNorm(3, virtual_batch=16)(x), BatchNorm(3)(x)))  # one chunk: BN
    True
    """

    def __init__(
        self,
        num_features: int,
        virtual_batch: int = 32,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ) -> None:
        if isinstance(virtual_batch, bool) or not isinstance(virtual_batch, numbers.Integral) or virtual_batch < 2:
            raise ValueError(
                f"GhostBatchNorm: virtual_batch must be an integer >= 2, got {virtual_batch!r}: it is the number of "
                "examples normalized together (a ghost batch of 1 has no variance); use e.g. virtual_batch=32"
            )
        super().__init__(num_features, eps, momentum, affine)
        self.virtual_batch = int(virtual_batch)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize each ghost batch with its own statistics (train) or ``x`` with the running ones (eval)."""
        x, gamma, beta = self._checked(x)
        if not self.training:
            return self._eval_forward(x, gamma, beta)
        chunks = torch.tensor_split(x, max(1, x.shape[0] // self.virtual_batch))
        outs, means, variances = [], [], []
        for chunk in chunks:
            y, mean, var = BatchNormFunction.apply(chunk, gamma, beta, self.eps)
            m = chunk.numel() // chunk.shape[1]
            outs.append(y)
            means.append(mean)
            variances.append(var * (m / (m - 1)))  # every chunk has >= 2 examples, or one chunk of m > 1 values
        self._update_running_stats(torch.stack(means).mean(0), torch.stack(variances).mean(0), m=None)
        return torch.cat(outs)

    def extra_repr(self) -> str:
        """``num_features``, ``virtual_batch`` and BN's fields.

        >>> GhostBatchNorm(4, virtual_batch=8)
        GhostBatchNorm(4, virtual_batch=8, eps=1e-05, momentum=0.1, affine=True)
        """
        return (
            f"{self.num_features}, virtual_batch={self.virtual_batch}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}"
        )


class BatchRenorm(_BatchStatsNorm):
    """Batch renormalization (Ioffe 2017, "Batch Renormalization", Algorithm 1): BN corrected towards the running
    statistics, so that training and inference compute the same function even when batches are small.

    Training, per channel, with the batch mean ``mu_B`` and ``sigma_B = sqrt(var_B + eps)`` (biased variance, as BN)
    and the running ones ``mu``, ``sigma = sqrt(running_var + eps)``::

        r = clip(sigma_B / sigma, 1 / r_max, r_max)        (no gradient)
        d = clip((mu_B - mu) / sigma, -d_max, d_max)       (no gradient)
        x_hat = (x - mu_B) / sigma_B * r + d,    y = gamma * x_hat + beta

    With r = 1 and d = 0 (``r_max=1, d_max=0``, or the first step of the warm-up) it is :class:`BatchNorm`
    exactly, forward and backward. The limits grow linearly from (1, 0) to (``r_max``, ``d_max``) over the first
    ``warmup_steps`` training batches (the paper keeps r_max = 1, d_max = 0 for 5,000 steps, then relaxes them to
    3 and 5; its running averages must be warm before r and d may correct towards them). Running statistics as
    BN's (moving averages of the batch mean and the unbiased batch variance; the paper averages sigma itself).
    Eval: Algorithm 2, as BN.

    >>> brn = BatchRenorm(3, r_max=1.0, d_max=0.0)
    >>> x = torch.randn(8, 3)
    >>> bool(torch.allclose(brn(x), BatchNorm(3)(x)))  # r = 1, d = 0: BN
    True
    >>> brn = BatchRenorm(3, r_max=3.0, d_max=5.0, warmup_steps=100)
    >>> _ = [brn(torch.randn(8, 3)) for _ in range(50)]
    >>> brn.limits()  # halfway through the warm-up
    (2.0, 2.5)
    """

    def __init__(
        self,
        num_features: int,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 0,
        eps: float = 1e-5,
        momentum: float | None = 0.01,
        affine: bool = True,
    ) -> None:
        if not (isinstance(r_max, numbers.Real) and math.isfinite(r_max) and r_max >= 1):
            raise ValueError(f"BatchRenorm: r_max must be a finite number >= 1, got {r_max!r}: r is clipped to "
                             "[1 / r_max, r_max]; r_max=1 is BN's scale (the paper relaxes it to 3)")
        if not (isinstance(d_max, numbers.Real) and math.isfinite(d_max) and d_max >= 0):
            raise ValueError(f"BatchRenorm: d_max must be a finite number >= 0, got {d_max!r}: d is clipped to "
                             "[-d_max, d_max]; d_max=0 is BN's shift (the paper relaxes it to 5)")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or warmup_steps < 0:
            raise ValueError(f"BatchRenorm: warmup_steps must be an integer >= 0, got {warmup_steps!r}: the training "
                             "batches over which the limits grow from (1, 0) to (r_max, d_max)")
        super().__init__(num_features, eps, momentum, affine)
        self.r_max, self.d_max, self.warmup_steps = float(r_max), float(d_max), int(warmup_steps)

    def limits(self) -> tuple[float, float]:
        """(r_max, d_max) for the next training batch: linear in the batches seen during the warm-up."""
        if self.warmup_steps == 0:
            return self.r_max, self.d_max
        t = min(1.0, int(self.num_batches_tracked) / self.warmup_steps)
        return 1.0 + t * (self.r_max - 1.0), t * self.d_max

    def forward(self, x: Tensor) -> Tensor:
        """Renormalize ``x`` with batch statistics corrected by r and d (train) or the running ones (eval)."""
        x, gamma, beta = self._checked(x)
        if not self.training:
            return self._eval_forward(x, gamma, beta)
        r_max, d_max = self.limits()
        with torch.no_grad():
            var_b, mu_b = torch.var_mean(x, _reduction_dims(x), correction=0)
            sigma = torch.sqrt(self.running_var + self.eps)
            r = (torch.sqrt(var_b + self.eps) / sigma).clamp(1 / r_max, r_max)
            d = ((mu_b - self.running_mean) / sigma).clamp(-d_max, d_max)
        # gamma * (x_hat * r + d) + beta is Algorithm 1 with scale gamma * r and shift gamma * d + beta
        y, mean, var = BatchNormFunction.apply(x, gamma * r, gamma * d + beta, self.eps)
        self._update_running_stats(mean, var, m=x.numel() // x.shape[1])
        return y

    def extra_repr(self) -> str:
        """``num_features``, the limits, the warm-up and BN's fields.

        >>> BatchRenorm(4)
        BatchRenorm(4, r_max=3.0, d_max=5.0, warmup_steps=0, eps=1e-05, momentum=0.01, affine=True)
        """
        return (
            f"{self.num_features}, r_max={self.r_max}, d_max={self.d_max}, warmup_steps={self.warmup_steps}, "
            f"eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )


# ------------------------------------------------------------------------
# 5. Norms that do not use the batch (Wu & He 2018)
#   statistics per example over (C/G, H, W): G = 1 layer norm, G = C instance norm


def group_norm(num_features: int, num_groups: int | None = None, eps: float = 1e-5, affine: bool = True, *,
               channels_per_group: int | None = None) -> nn.GroupNorm:
    """Group normalization (Wu & He 2018): statistics per example over each group of channels (and all positions).

    It does not use the batch, so it behaves the same for any batch size, in training and in eval.
    ``num_groups`` defaults to gcd(num_features, 32) (Wu & He's 32 groups when the width allows).
    ``channels_per_group=k`` instead asks for at least k channels per group where the layer allows it
    (:func:`wu_he_groups`: the largest divisor of C up to min(32, C // k) groups); give one of the two, not both.
    ``num_groups=1`` is layer normalization, ``num_groups=num_features`` instance normalization.
    Counts below 1, groups that do not divide the channels and ``eps <= 0`` raise ValueError.

    >>> gn = group_norm(64)
    >>> gn.num_groups, group_norm(8).num_groups, group_norm(8, channels_per_group=4).num_groups
    (32, 8, 2)
    """
    given = {} if num_groups is None else {"num_groups": num_groups}
    if channels_per_group is not None:
        if num_groups is not None:
            raise ValueError(f"group_norm: give num_groups or channels_per_group, not both (got {num_groups} and "
                             f"{channels_per_group})")
        given = {"channels_per_group": channels_per_group}
    _check_layer_args("group_norm", eps, num_features=num_features, **given)
    if channels_per_group is not None:
        groups = wu_he_groups(num_features, channels_per_group)
    else:
        groups = math.gcd(num_features, 32) if num_groups is None else num_groups
    if num_features % groups:
        raise ValueError(f"group_norm: num_groups must divide num_features={num_features}, got {groups}")
    return nn.GroupNorm(groups, num_features, eps=eps, affine=affine)


def layer_norm(num_features: int, eps: float = 1e-5, affine: bool = True) -> nn.GroupNorm:
    """Layer normalization (Ba et al. 2016) for (N, C) and (N, C, H, W): per example over all channels and positions.

    >>> y = layer_norm(4)(torch.randn(3, 4, 5, 5) * 7 + 2)
    >>> bool(y[0].mean().abs() < 1e-5), bool((y[0].var(unbiased=False) - 1).abs() < 1e-3)
    (True, True)
    """
    return group_norm(num_features, 1, eps, affine)


def instance_norm(num_features: int, eps: float = 1e-5, affine: bool = True) -> nn.GroupNorm:
    """Instance normalization (Ulyanov et al. 2016) for (N, C, H, W): per example and channel over positions.

    On (N, C) input every "instance" is a single value, which normalizes to 0: use it for conv layers only.

    >>> y = instance_norm(2)(torch.randn(3, 2, 4, 4) * 5)
    >>> bool(y[1, 0].mean().abs() < 1e-5)
    True
    """
    return group_norm(num_features, num_features, eps, affine)


# ------------------------------------------------------------------------
# 6. Which layers are batch norms, and the registry of norm kinds


def is_batch_norm(module: nn.Module, plain: bool = False) -> bool:
    """True for a layer that normalizes with batch statistics in training: torch's BN classes (and their subclasses:
    ``TorchBatchNorm``, ``SyncBatchNorm``, ``bnlib.distributed.CrossProcessBatchNorm``), every bnlib BN layer
    (``BatchNorm`` and its variants) and any layer whose class sets ``batch_statistics = True`` (as
    ``bnlib.lab.batched.BatchedBatchNorm`` does). Such a layer cannot train on batches of one example.

    ``plain=True``: only those whose eval mode is BN's affine map with running statistics (Algorithm 2), which can be
    folded into a convolution or have their statistics recomputed: torch's BN with ``track_running_stats`` and bnlib's
    ``BatchNorm`` (not its variants, whose training transform differs).

    >>> is_batch_norm(nn.BatchNorm2d(3)), is_batch_norm(LpBatchNorm(3, p=1)), is_batch_norm(nn.GroupNorm(1, 3))
    (True, True, False)
    >>> is_batch_norm(LpBatchNorm(3, p=1), plain=True), is_batch_norm(BatchNorm(3), plain=True)
    (False, True)
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return not plain or module.track_running_stats
    if plain:
        return type(module) is BatchNorm
    return getattr(type(module), "batch_statistics", False)


NormSpec = str | Callable[..., nn.Module]  # a kind of NORM_KINDS, or a factory (num_features, **kwargs) -> nn.Module

# Norm kind name -> factory ``(num_features, **kwargs) -> nn.Module``.
# To add a kind, add an entry: ``NORM_KINDS["my_bn"] = MyBatchNorm``.
NORM_KINDS: dict[str, Callable[..., nn.Module]] = {
    "none": nn.Identity,  # nn.Identity accepts and ignores any arguments
    "bn": BatchNorm,
    "torch_bn": TorchBatchNorm,
    "rigid": RigidBatchNorm,  # recompute="mean", clip=False
    "rigid_clip": partial(RigidBatchNorm, clip=True),
    "kl_bn": KLBatchNorm,  # normalize=True
    "kl_only": partial(KLBatchNorm, normalize=False),
    "noisy_bn": NoisyBatchNorm,  # per="activation", mean_range=0.5, std_range=(1.0, 1.25), spreads 0.1
    "l1": partial(LpBatchNorm, p=1),
    "l2": partial(LpBatchNorm, p=2),
    "linf": partial(LpBatchNorm, p=float("inf")),
    "ghost_bn": GhostBatchNorm,  # virtual_batch=32
    "batch_renorm": BatchRenorm,  # r_max=3, d_max=5, no warm-up, momentum 0.01
    "ln": layer_norm,
    "in": instance_norm,
    "gn": group_norm,
}


def norm_layer(kind: str | Callable[..., nn.Module], num_features: int, **kwargs) -> nn.Module:
    """Build the norm layer ``kind`` for ``num_features`` channels: a key of ``NORM_KINDS``, or a factory
    ``(num_features, **kwargs) -> nn.Module`` such as ``functools.partial(RigidBatchNorm, bound=3.0)``.

    Keyword arguments go to the factory (e.g. ``eps``, ``momentum``); kind
    ``"none"`` ignores them.

    >>> norm_layer("bn", 4, momentum=None)
    BatchNorm(4, eps=1e-05, momentum=None, affine=True)
    >>> norm_layer("none", 4)
    Identity()
    >>> norm_layer("kl_only", 4, kl="original")
    KLBatchNorm(4, normalize=False, kl='original', eps=1e-05, momentum=0.1, affine=True)
    >>> norm_layer("linf", 4, momentum=None)
    LpBatchNorm(4, p=inf, eps=1e-05, momentum=None, affine=True)
    >>> norm_layer(partial(RigidBatchNorm, bound=3.0), 4).bound
    3.0
    """
    if callable(kind):
        return kind(num_features, **kwargs)
    if kind not in NORM_KINDS:
        raise ValueError(
            f"unknown norm kind {kind!r}; valid kinds: {', '.join(NORM_KINDS)}"
        )
    return NORM_KINDS[kind](num_features, **kwargs)


# ------------------------------------------------------------------------
# 7. Group norm's groups as Wu & He define them (several channels per group)


def wu_he_groups(num_features: int, channels_per_group: int = 4, max_groups: int = 32) -> int:
    """Groups for GroupNorm with at least ``channels_per_group`` channels each where the layer allows it: the largest
    divisor of ``num_features`` up to min(``max_groups``, num_features // channels_per_group) (at least 1 group).

    Wu & He (2018) use 32 groups (or 16 channels per group); with gcd(C, 32) groups a narrow layer gets one channel
    per group, which is InstanceNorm. Here a layer narrower than ``channels_per_group`` gets one group (LayerNorm).

    >>> [wu_he_groups(c) for c in (4, 8, 16, 32, 64, 512)]
    [1, 2, 4, 8, 16, 32]
    >>> wu_he_groups(24, 4), wu_he_groups(2, 4)
    (6, 1)
    """
    if not isinstance(channels_per_group, int) or channels_per_group < 1:
        raise ValueError(f"wu_he_groups: channels_per_group must be an integer >= 1, got {channels_per_group!r}")
    cap = max(1, min(max_groups, num_features // channels_per_group))
    return max(g for g in range(1, cap + 1) if num_features % g == 0)


# bumped when a norm kind's numbers change for the same config; part of the cache key of every run with that norm
# (bnlib.lab.experiment.Run.key), so the runs of other norms keep their cached results. noisy_bn 2: noise per activation
# (per="activation", Santurkar et al. Sec. 2.1) by default instead of per example and channel.
NORM_VERSIONS: dict[str, int] = {"noisy_bn": 2}
