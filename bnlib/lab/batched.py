"""Seeds together: S small networks trained as one batched model, each with the numbers it gets alone (to rounding).

Notebook 02's sweeps train many copies of the paper's MLP that differ only in seed, learning rate and initial
scale. Here they train as one model: :class:`BatchedMLP` stacks S ``mlp`` models (weights (S, out, in), one
:class:`BatchedBatchNorm` with per-model statistics per BN layer), :func:`fit_batched` trains them with
model ``s`` seeing the batches of ``bnlib.data.seed_batches`` (those ``fit(seed=seeds[s])`` would draw) and its
own learning rate, and :func:`evaluate_batched` evaluates all of them at once. ``tests/test_batched.py`` checks that
model ``s`` computes what a separate :func:`bnlib.train.fit` run computes, to float32 rounding (the matrix products
are batched, so their kernels and summation order differ); ``benchmarks/mnist_fig1.py`` times it.

Example:
    >>> net = BatchedMLP.from_seeds([0, 1, 2], hidden=(16,), norm="bn")
    >>> net(torch.zeros(5, 1, 28, 28)).shape
    torch.Size([3, 5, 10])
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnlib.data import seed_batches
from bnlib.lab.progress import progress_bar
from bnlib.models import ACTIVATIONS, mlp
from bnlib.norms import _check_layer_args, is_batch_norm
from bnlib.train import Callback, Data, MetricsWindow, check_count, default_scale, eval_logits, resolve_device

# ---------------------------------------------------------------- batched layers: BN, linear, per-model modules
#   x of shape (S, N, C): mu_B, sigma_B^2, gamma, beta and the running buffers of shape (S, C)

class _BatchedBatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm of (S, N, C) over N, with the Sec. 3 gradient in compact form.

    Returns ``(y, mean, var)`` (biased variance, shape (S, C), no gradient). With
    x_hat = (x - mean) * r, r = (var + eps)^(-1/2), the backward is
    dbeta = sum dy, dgamma = sum dy * x_hat and
    dx = gamma * r * (dy - dbeta / m - x_hat * dgamma / m): the paper's formulas
    collected into a few whole-tensor operations (fewer kernels than autograd's).
    """

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor, eps: float):  # type: ignore[override]
        mean = x.mean(1, keepdim=True)
        x_mu = x - mean
        var = x_mu.square().mean(1, keepdim=True)  # torch.var_mean over dim 1 is far slower on CPU
        r = torch.rsqrt(var + eps)
        x_hat = x_mu * r
        g = gamma.unsqueeze(1)
        ctx.save_for_backward(x, gamma, x_hat, g * r)
        ctx.eps = eps
        mean, var = mean.squeeze(1), var.squeeze(1)
        ctx.mark_non_differentiable(mean, var)
        return torch.addcmul(beta.unsqueeze(1), x_hat, g), mean, var

    @staticmethod
    def backward(ctx, dy: Tensor, _dmean: Tensor, _dvar: Tensor):  # type: ignore[override]
        x, gamma, x_hat, g_r = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: recompute x_hat and gamma / sigma differentiably from x
            x_mu = x - x.mean(1, keepdim=True)
            r = torch.rsqrt(x_mu.square().mean(1, keepdim=True) + ctx.eps)
            x_hat, g_r = x_mu * r, gamma.unsqueeze(1) * r
        m = dy.shape[1]
        dbeta = dy.sum(1, keepdim=True)
        dgamma = (dy * x_hat).sum(1, keepdim=True)
        dx = g_r * (dy - dbeta / m - x_hat * (dgamma / m))
        return dx, dgamma.squeeze(1), dbeta.squeeze(1), None


class BatchedBatchNorm(nn.Module):
    """Batch norm for ``num_models`` independent models trained together.

    Input (S, N, C): S models, a batch of N per model, C features. Each model
    has its own statistics (over its N values), its own ``weight``/``bias``
    (shape (S, C)) and its own running buffers (S, C), with the conventions of
    :class:`BatchNorm` (biased variance to normalize, unbiased in
    ``running_var``, ``momentum`` weighting the new statistic; ``momentum=None``
    is the cumulative average). Slice ``s`` computes exactly what a
    ``BatchNorm(C)`` holding slice ``s`` of the parameters and buffers would.

    >>> bn = BatchedBatchNorm(3, 4)
    >>> bn(torch.randn(3, 8, 4)).shape, tuple(bn.running_mean.shape)
    (torch.Size([3, 8, 4]), (3, 4))
    """

    batch_statistics = True  # a batch norm layer for bnlib.norms.is_batch_norm

    def __init__(self, num_models: int, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        _check_layer_args(type(self).__name__, eps, momentum, num_models=num_models, num_features=num_features)
        super().__init__()
        self.num_models, self.num_features = num_models, num_features
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_models, num_features))
        self.bias = nn.Parameter(torch.zeros(num_models, num_features))
        self.register_buffer("running_mean", torch.zeros(num_models, num_features))
        self.register_buffer("running_var", torch.ones(num_models, num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        """Normalize each model's slice with its batch statistics (train) or running ones (eval)."""
        if x.dim() != 3 or x.shape[0] != self.num_models or x.shape[2] != self.num_features:
            raise ValueError(
                f"expected input of shape (S={self.num_models}, N, C={self.num_features}), got {tuple(x.shape)}"
            )
        if not self.training:
            scale = self.weight.unsqueeze(1) * torch.rsqrt(self.running_var.unsqueeze(1) + self.eps)
            return (x - self.running_mean.unsqueeze(1)) * scale + self.bias.unsqueeze(1)
        if x.shape[1] < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.size()}")
        y, mean, var = _BatchedBatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            m = x.shape[1]
            self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
            self.running_var.mul_(1 - factor).add_(var * (m / (m - 1)), alpha=factor)
        return y

    def extra_repr(self) -> str:
        """``num_models, num_features, eps, momentum``.

        >>> BatchedBatchNorm(2, 4)
        BatchedBatchNorm(2, 4, eps=1e-05, momentum=0.1)
        """
        return f"{self.num_models}, {self.num_features}, eps={self.eps}, momentum={self.momentum}"


class _BatchedLinearFunction(torch.autograd.Function):
    """y = x W^T + b per model, with a backward that writes dW = dy^T x directly (contiguous, one bmm)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # x (S, B, in), weight (S, out, in), bias (S, out) or None
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        dx = torch.bmm(dy, weight) if need_x else None
        dw = torch.bmm(dy.transpose(1, 2), x) if need_w else None
        db = dy.sum(1) if ctx.has_bias and need_b else None
        return dx, dw, db


class BatchedLinear(nn.Module):
    """``num_models`` linear layers applied at once: weight (S, out, in), bias (S, out) or None.

    Input (S, B, in) gives (S, B, out); an input (B, in) shared by all models gives
    (S, B, out). Training goes through a small autograd function whose weight
    gradient is one contiguous ``bmm`` (autograd's own would need a transposed copy).

    Example:
        >>> layer = BatchedLinear(torch.zeros(3, 2, 5), torch.ones(3, 2))
        >>> layer(torch.randn(4, 5)).shape
        torch.Size([3, 4, 2])
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # one batch shared by every model (evaluation): one large matmul for all of them, whose
            # last bits can depend on the number of models on some CPUs (AVX-512): the same to rounding, not bit for bit
            s, n_out, n_in = self.weight.shape
            out = (x @ self.weight.reshape(s * n_out, n_in).T).view(len(x), s, n_out).transpose(0, 1).contiguous()
            return out if self.bias is None else out + self.bias.unsqueeze(1)
        return _BatchedLinearFunction.apply(x, self.weight, self.bias)


class PerModel(nn.Module):
    """Apply an elementwise ``module`` to each model's slice (S, ...) of a batched tensor on its own.

    PyTorch's vectorized kernels compute the elements of a tensor's tail with other code than the rest, and for
    transcendental functions (sigmoid, tanh) the two differ in the last bit; applied to the whole (S, B, C) tensor,
    a model's values would then depend on how many models share it. Slice by slice, model ``s`` gets exactly what
    it would get alone.

    Example:
        >>> x = torch.randn(3, 60, 100)
        >>> torch.equal(PerModel(nn.Sigmoid())(x)[1], torch.sigmoid(x[1:2])[0])
        True
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.module(part) for part in x.unbind(0)])


# ---------------------------------------------------------------- the batched MLP

class BatchedMLP(nn.Module):
    """S independent copies of :func:`mlp`, trained together with batched matrix products.

    Built from S ``mlp(...)`` models with the same architecture (:meth:`from_seeds`
    builds model ``s`` under ``torch.manual_seed(seeds[s])``, so its initial weights are
    those of a separate run with that seed). Children keep the names of :func:`mlp`
    (``fc1, norm1, act1, ..., out``); the BN layers become :class:`BatchedBatchNorm`
    with per-model statistics and running buffers. Input (S, B, C, H, W) (one batch per
    model) or (B, C, H, W) (the same batch for every model); output (S, B, classes).
    :meth:`model_at` gives model ``s`` back as a plain ``mlp``.

    Example:
        >>> net = BatchedMLP.from_seeds([0, 1, 2], norm="bn", activation="sigmoid")
        >>> net(torch.zeros(5, 1, 28, 28)).shape
        torch.Size([3, 5, 10])
        >>> torch.equal(net.model_at(1).fc1.weight, (torch.manual_seed(1), mlp(norm="bn"))[1].fc1.weight)
        True
    """

    def __init__(self, models: Sequence[nn.Sequential]) -> None:
        super().__init__()
        if not models:
            raise ValueError("BatchedMLP needs at least one model, got none")
        names = [[name for name, _ in m.named_children()] for m in models]
        if any(n != names[0] for n in names):
            raise ValueError("all models must have the same architecture (the same named layers)")
        self.num_models = len(models)
        self._template = [copy.deepcopy(models[0]).cpu()]  # a list, so it is not a submodule
        for name, first in models[0].named_children():
            layers = [dict(m.named_children())[name] for m in models]
            self.add_module(name, self._batched(first, layers))

    def _batched(self, first: nn.Module, layers: list[nn.Module]) -> nn.Module:
        if isinstance(first, nn.Flatten):
            return nn.Flatten(start_dim=-3)
        if isinstance(first, nn.Linear):
            bias = None if first.bias is None else torch.stack([m.bias for m in layers])
            return BatchedLinear(torch.stack([m.weight for m in layers]), bias)
        if is_batch_norm(first, plain=True):
            bn = BatchedBatchNorm(self.num_models, first.num_features, first.eps, first.momentum)
            with torch.no_grad():
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, name).copy_(torch.stack([getattr(m, name) for m in layers]))
            return bn
        if isinstance(first, nn.Identity):
            return nn.Identity()
        if isinstance(first, tuple(ACTIVATIONS.values())):
            return PerModel(copy.deepcopy(first))
        raise ValueError(f"BatchedMLP cannot batch a {type(first).__name__} layer")

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], **mlp_kwargs) -> BatchedMLP:
        """One ``mlp(**mlp_kwargs)`` per seed, each built under ``torch.manual_seed(seed)``, batched."""
        models = []
        for seed in seeds:
            torch.manual_seed(seed)
            models.append(mlp(**mlp_kwargs))
        return cls(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x

    def model_at(self, index: int) -> nn.Sequential:
        """Model ``index`` as a plain ``mlp`` (a copy, on the CPU)."""
        model = copy.deepcopy(self._template[0])
        with torch.no_grad():
            for name, module in model.named_children():
                batched = getattr(self, name)
                for key, value in module.state_dict().items():
                    source = batched.state_dict()[key]
                    value.copy_(source if key == "num_batches_tracked" else source[index])
        return model


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_batched(
    model: nn.Module,
    data: Data,
    *,
    batch_size: int = 2000,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
    device: str | torch.device = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model mean cross-entropy and accuracy (two tensors of shape (S,)) of a batched model.

    Every model sees the whole of ``data``; the model's output is (S, B, classes). ``batch_size`` must be an
    integer >= 1.

    Example:
        >>> net = BatchedMLP.from_seeds([0, 1], hidden=(8,))
        >>> x, y = torch.zeros(6, 1, 28, 28), torch.zeros(6, dtype=torch.long)
        >>> [t.shape for t in evaluate_batched(net, (x, y), device="cpu")]
        [torch.Size([2]), torch.Size([2])]
    """
    total_loss, correct = None, None
    for logits, yb in eval_logits(model, data, batch_size=batch_size, mean=mean, std=std, scale=scale, device=device):
        logits = logits.float()  # (S, B, classes)
        s, b, k = logits.shape
        loss = F.cross_entropy(logits.reshape(s * b, k), yb.repeat(s), reduction="none").view(s, b).sum(1).double()
        hits = (logits.argmax(2) == yb).sum(1)
        total_loss = loss if total_loss is None else total_loss + loss
        correct = hits if correct is None else correct + hits
    n = len(data[1])
    return (total_loss / n).cpu(), (correct.double() / n).cpu()


# ---------------------------------------------------------------- training

def fit_batched(
    model: nn.Module,
    train_data: Data,
    test_data: Data | None = None,
    *,
    seeds: Sequence[int],
    steps: int,
    batch_size: int,
    lr: float | Sequence[float],
    momentum: float = 0.0,
    device: str | torch.device = "auto",
    eval_every: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
    diverge_above: float = 1e4,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    desc: str | None = None,
) -> pd.DataFrame:
    """Train S models at once (e.g. :class:`bnlib.lab.batched.BatchedMLP`), model ``s`` with seed ``seeds[s]``.

    The same computation as S separate :func:`fit` runs with plain SGD: model ``s``
    gets the batches ``fit(..., seed=seeds[s])`` would draw
    (:func:`bnlib.data.seed_batches`), and the loss is the sum over models of each
    model's mean cross-entropy, so each model's gradient is its own. ``lr`` may
    be one value or one per model (a list): then SGD runs with learning rate 1 on
    the sum of ``lr[s]`` times model ``s``'s loss, which is SGD with ``lr[s]`` for
    model ``s`` (momentum included). Returns the rows of :func:`fit` for every
    model, with column ``model`` (the model's index) beside ``seed``. A model that
    diverges gets its ``diverged`` row at its first bad step and no more rows; the
    others go on. Callbacks are called as ``cb(step, model)``; a value of the dict
    they return is either a scalar, added to every model's row, or a list with one
    value per model. ``steps``, ``batch_size`` and ``eval_every`` must be integers >= 1, as in :func:`fit`.

    Example:
        >>> x = torch.randint(0, 256, (120, 1, 28, 28), dtype=torch.uint8)
        >>> y = torch.randint(0, 10, (120,))
        >>> net = BatchedMLP.from_seeds([0, 1], hidden=(16,))
        >>> df = fit_batched(net, (x, y), (x, y), seeds=[0, 1], steps=4, batch_size=60, lr=0.1, eval_every=2, progress=False)
        >>> df[["seed", "step"]].values.tolist()
        [[0, 0], [1, 0], [0, 2], [1, 2], [0, 4], [1, 4]]
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        check_count(name, value)
    check_count("eval_every", eval_every, optional=True)
    seeds = list(seeds)
    per_model_lr = isinstance(lr, Sequence)
    lrs = [float(v) for v in lr] if per_model_lr else [float(lr)] * len(seeds)
    if len(lrs) != len(seeds) or not all(math.isfinite(v) and v > 0 for v in lrs):
        raise ValueError(f"lr must be > 0, one value or one per seed ({len(seeds)}), each a finite number, got {lr}")
    if getattr(model, "num_models", len(seeds)) != len(seeds):
        raise ValueError(f"the model holds {model.num_models} models but {len(seeds)} seeds were given")
    eval_every = eval_every or max(1, steps // 20)
    dev = resolve_device(device)
    model.to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=1.0 if per_model_lr else lrs[0], momentum=momentum, foreach=True)
    loss_weights = torch.tensor(lrs, device=dev) if per_model_lr else None
    x, y = train_data
    scale = default_scale(x) if scale is None else scale
    batches = seed_batches(x, y, batch_size, seeds, mean=mean, std=std, scale=scale, device=dev)
    S = len(seeds)
    window = MetricsWindow(S, eval_every, dev)
    alive = [True] * S
    rows: list[dict] = []
    start = time.perf_counter()

    def record(step: int, n_window: int, models: list[int], diverged_at: dict[int, int]) -> None:
        test = None
        if test_data is not None and len(diverged_at) < len(models):
            test = evaluate_batched(model, test_data, mean=mean, std=std, scale=scale, device=dev)
        extra: dict = {}
        if len(diverged_at) < len(models):
            for cb in callbacks:
                extra.update(cb(step, model))
        losses = window.mean("loss", n_window).tolist() if n_window else [math.nan] * S
        accs = (window.mean("correct", n_window) / batch_size).tolist() if n_window else [math.nan] * S
        for s in models:
            diverged = s in diverged_at
            row: dict = {"step": diverged_at.get(s, step), "model": s, "seed": seeds[s], "lr": lrs[s]}
            row["train_loss"], row["train_acc"] = losses[s], accs[s]
            if test_data is not None:
                row["test_loss"], row["test_acc"] = (math.nan, math.nan) if diverged else (test[0][s].item(), test[1][s].item())
            if not diverged:
                row.update({k: v[s] if isinstance(v, (list, tuple)) else v for k, v in extra.items()})
            row["elapsed_s"] = time.perf_counter() - start
            row["diverged"] = diverged
            rows.append(row)

    record(0, 0, list(range(S)), {})
    bar = progress_bar(total=steps, desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for step in range(1, steps + 1):
        xb, yb = next(batches)
        logits = model(xb).float()
        b, k = logits.shape[1:]
        per_model = F.cross_entropy(logits.reshape(S * b, k), yb.reshape(-1), reduction="none").view(S, b).mean(1)
        opt.zero_grad(set_to_none=True)
        (per_model.sum() if loss_weights is None else (per_model * loss_weights).sum()).backward()
        opt.step()
        window.add(per_model.detach(), (logits.detach().argmax(2) == yb).sum(1))
        if window.n == eval_every or step == steps:
            first_bad = window.first_bad(diverge_above)
            diverged_at = {s: step - window.n + 1 + i for s, i in enumerate(first_bad) if i >= 0 and alive[s]}
            record(step, window.n, [s for s in range(S) if alive[s]], diverged_at)
            for s in diverged_at:
                alive[s] = False
            bar.update(window.n)
            window.n = 0
            if not any(alive):
                break
    bar.close()
    return pd.DataFrame(rows).sort_values(["step", "model"], kind="stable").reset_index(drop=True)
