"""Measurements taken during training.

:class:`QuantileProbe` records percentiles of chosen layers' outputs on a
fixed batch (Ioffe & Szegedy 2015, Fig. 1(b, c) track the 15th, 50th and 85th
percentiles of a sigmoid's input over training).

Example:
    >>> import torch
    >>> from bnlib.models import mlp
    >>> net = mlp(hidden=(8, 8))
    >>> probe = QuantileProbe({"norm2": net.norm2}, torch.randn(32, 1, 28, 28))
    >>> probe(0, net)
    {}
    >>> probe.frame().shape  # 1 step x 1 layer x 1 model x 8 units x 3 quantiles
    (24, 6)

To copy it into another project, copy ``norms.py`` beside it, both in a folder named ``bnlib`` (with an empty ``__init__.py``):
the pair needs no other module (``tests/test_copy_alone.py``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from torch import nn

# ---------------------------------------------------------------- layer outputs and their quantiles

def as_models_values_units(out: torch.Tensor) -> torch.Tensor:
    """A layer output as (models, values, units): (N, C) -> (1, N, C); (S, N, C) from a batched model stays;
    conv (N, C, H, W) -> (1, N*H*W, C), one unit per channel.

    Example:
        >>> as_models_values_units(torch.zeros(2, 3, 4, 5)).shape
        torch.Size([1, 40, 3])
    """
    if out.dim() == 2:
        return out.unsqueeze(0)
    if out.dim() == 3:
        return out
    if out.dim() == 4:
        return out.transpose(0, 1).flatten(1).T.unsqueeze(0)
    raise ValueError(f"expected a 2-D, 3-D or 4-D layer output, got shape {tuple(out.shape)}")


@torch.no_grad()
def layer_outputs(model: nn.Module, modules: Mapping[str, nn.Module], x: torch.Tensor, train: bool = False
                  ) -> dict[str, torch.Tensor]:
    """Outputs of ``modules`` on input ``x``, in eval mode (``train=True``: train mode, BN with the batch's statistics, the
    function being trained), each as (models, values, units).

    The model's mode and buffers (BN's running statistics) are restored afterwards. See :func:`as_models_values_units`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
        >>> layer_outputs(net, {"fc": net[0]}, torch.zeros(5, 3))["fc"].shape
        torch.Size([1, 5, 2])
    """
    captured: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach()))
        for name, m in modules.items()
    ]
    was_training = model.training
    saved = [b.detach().clone() for b in model.buffers()] if train else []
    model.train(train)
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
        for b, before in zip(model.buffers(), saved):
            b.copy_(before)
        model.train(was_training)
    return {name: as_models_values_units(out) for name, out in captured.items()}


def unit_quantiles(model: nn.Module, modules: Mapping[str, nn.Module], x: torch.Tensor,
                   qs: Sequence[float], train: bool = False) -> dict[str, torch.Tensor]:
    """Quantiles ``qs`` of every unit of ``modules``' outputs on ``x`` (eval mode, or train mode with ``train``: see
    :func:`layer_outputs`), on the CPU, each of shape (quantiles, models, units).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
        >>> unit_quantiles(net, {"fc": net[0]}, torch.randn(100, 3), (0.15, 0.5, 0.85))["fc"].shape
        torch.Size([3, 1, 2])
    """
    outs = layer_outputs(model, modules, x, train)
    return {name: torch.quantile(out.float(), torch.tensor(tuple(qs), device=out.device), dim=1).cpu()
            for name, out in outs.items()}


class QuantileProbe:
    """Callback for :func:`bnlib.train.fit` that records per-unit quantiles of layer outputs.

    At each call it runs the model (eval mode, no grad) on the fixed input ``x``
    and stores, for every module and every unit (feature or channel), the
    quantiles ``qs`` of that unit's values over the batch (and positions, for
    conv layers). :meth:`frame` returns them as a tidy DataFrame with columns
    ``step, layer, model, unit, q, value``; ``model`` is 0 for a plain model and
    the index of the model in a batched one (e.g. :class:`bnlib.lab.batched.BatchedMLP`).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
        >>> p = QuantileProbe({"fc": net[0]}, torch.randn(100, 3), qs=(0.5,))
        >>> _ = p(7, net)
        >>> p.frame()["step"].unique().tolist()
        [7]
    """

    def __init__(self, modules: Mapping[str, nn.Module], x: torch.Tensor, qs: Sequence[float] = (0.15, 0.5, 0.85)) -> None:
        self.modules = dict(modules)
        self.x = x
        self.qs = tuple(qs)
        self._records: list[tuple[int, str, torch.Tensor]] = []

    def __call__(self, step: int, model: nn.Module) -> dict:
        x = self.x.to(next(model.parameters()).device)
        for name, values in unit_quantiles(model, self.modules, x, self.qs).items():
            self._records.append((step, name, values))  # (q, models, units)
        return {}

    def frame(self) -> pd.DataFrame:
        """All recorded quantiles: one row per (step, layer, model, unit, q)."""
        parts = []
        for step, name, qv in self._records:
            n_q, n_models, n_units = qv.shape
            parts.append(
                pd.DataFrame(
                    {
                        "step": step,
                        "layer": name,
                        "model": np.tile(np.repeat(np.arange(n_models), n_units), n_q),
                        "unit": np.tile(np.arange(n_units), n_q * n_models),
                        "q": np.repeat(np.asarray(self.qs, dtype=float), n_models * n_units),
                        "value": qv.flatten().numpy(),
                    }
                )
            )
        columns = ["step", "layer", "model", "unit", "q", "value"]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# ---------------------------------------------------------------- layer statistics

def unit_stats(values: torch.Tensor, bound: float = 3.0, ks_values: int = 4096) -> dict[str, float]:
    """Distribution statistics of each unit (column) of ``values`` (values, units), averaged over units.

    Units with (near) zero variance, such as dead ReLU channels, are left out of the averages
    (``dead_units`` counts them). Returns:

    * ``beyond``: fraction of values with |z| >= ``bound`` (z-scored per unit with the unit's
      mean and std). Chebyshev bounds it by 1 / bound^2; a normal gives 2 (1 - Phi(bound)).
    * ``mean_shift``: |mean of the inliers (|z| < bound) - mean| / std, the move rigid BN makes.
    * ``skew``, ``excess_kurtosis``: third and fourth standardized moments (0 for a normal).
    * ``ks``: Kolmogorov-Smirnov distance between the unit's values and the normal with the
      same mean and std (0 = exactly normal; about 0.3 for a half-rectified normal after ReLU), on an
      evenly strided subsample of at most about 2 x ``ks_values`` values per unit.
    * ``kl``: KL(N(mean, var) || N(0, 1)) of the unit's moments, the KL regularizer's quantity.
    * ``max``, ``min``: extreme values over all units; ``dead_units``: units left out.

    Example:
        >>> s = unit_stats(torch.randn(20000, 4, generator=torch.Generator().manual_seed(0)))
        >>> round(s["beyond"], 3), abs(s["skew"]) < 0.05, s["ks"] < 0.02, s["kl"] < 0.01
        (0.003, True, True, True)
        >>> round(unit_stats(torch.randn(20000, 4).relu())["ks"], 1)
        0.3
    """
    v = values.detach().float()
    n = v.shape[0]
    mean, var = v.mean(0), v.var(0, unbiased=False)
    alive = var > 1e-12
    std = var.clamp_min(1e-12).sqrt()
    z = (v - mean) / std
    out = (z.abs() >= bound)
    inlier = ~out
    mean_in = (v * inlier).sum(0) / inlier.sum(0).clamp_min(1)
    sub = z[:: max(1, n // ks_values)]  # the KS distance sorts: an evenly strided subsample keeps it cheap
    k = sub.shape[0]
    phi = 0.5 * (1 + torch.erf(torch.sort(sub, dim=0).values / 2**0.5))
    ranks = torch.arange(1, k + 1, dtype=v.dtype, device=v.device).unsqueeze(1)
    ks = torch.maximum((ranks / k - phi).max(0).values, (phi - (ranks - 1) / k).max(0).values)
    per_unit = {
        "beyond": out.double().mean(0),
        "mean_shift": (mean_in - mean).abs() / std,
        "skew": (z**3).mean(0),
        "excess_kurtosis": (z**4).mean(0) - 3,
        "ks": ks,
        "kl": 0.5 * (var + mean**2 - 1 - torch.log(var.clamp_min(1e-12))),
    }
    stats = {k: (u[alive].mean().item() if alive.any() else float("nan")) for k, u in per_unit.items()}
    stats.update(max=v.max().item(), min=v.min().item(), dead_units=int((~alive).sum()))
    return stats


class LayerStatsProbe:
    """Callback for :func:`bnlib.train.fit`: per-layer activation and gradient statistics during training.

    At each call it runs the model on the fixed batch ``x`` **in train mode** (the function being
    trained: BN uses batch statistics, rigid BN its inlier mean) without gradients, and restores
    every buffer afterwards, so running statistics are not touched. For every module in
    ``modules`` it records :func:`unit_stats` of the module's input (``"in"``) and output
    (``"out"``); for every ``nn.Linear``/``nn.Conv2d`` weight of the model, the norm and the
    largest absolute value of its gradient from the last training step (``"grad"``). The values
    come back as flat ``"layer|where|stat"`` keys, so that ``fit`` stores them as columns of its
    rows; :func:`tidy_layer_stats` turns those columns into long form.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU())
        >>> probe = LayerStatsProbe({"bn": net[1], "relu": net[2]}, torch.randn(64, 3))
        >>> row = probe(0, net)
        >>> row["bn|in|ks"] >= 0, int(net[1].num_batches_tracked), "0|grad|norm" in row
        (True, 0, False)
    """

    def __init__(self, modules: Mapping[str, nn.Module], x: torch.Tensor, bound: float = 3.0) -> None:
        self.modules = dict(modules)
        self.x = x
        self.bound = bound

    @torch.no_grad()
    def __call__(self, step: int, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        handles = [m.register_forward_hook(lambda _m, inp, out, name=name: captured.__setitem__(name, (inp[0], out)))
                   for name, m in self.modules.items()]
        saved = [b.clone() for b in model.buffers()]
        was_training = model.training
        model.train()
        try:
            model(self.x.to(device))
        finally:
            for h in handles:
                h.remove()
            for b, s in zip(model.buffers(), saved):
                b.copy_(s)
            model.train(was_training)
        row: dict[str, float] = {}
        for name, (inp, out) in captured.items():
            for where, t in (("in", inp), ("out", out)):
                for stat, value in unit_stats(as_models_values_units(t)[0], self.bound).items():
                    row[f"{name}|{where}|{stat}"] = value
        for name, m in model.named_modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.weight.grad is not None:
                g = m.weight.grad
                row[f"{name}|grad|norm"] = g.norm().item()
                row[f"{name}|grad|max_abs"] = g.abs().max().item()
        return row


def tidy_layer_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Long form of the ``"layer|where|stat"`` columns of a :class:`LayerStatsProbe` run.

    Every other column (step, seed, configuration) is kept as an identifier; the result has
    columns ``layer``, ``where``, ``stat`` and ``value``, one row per recorded number.

    Example:
        >>> wide = pd.DataFrame({"step": [0, 10], "a|in|ks": [0.1, 0.2], "a|grad|norm": [1.0, 2.0]})
        >>> tidy_layer_stats(wide)[["step", "layer", "where", "stat", "value"]].values.tolist()
        [[0, 'a', 'in', 'ks', 0.1], [10, 'a', 'in', 'ks', 0.2], [0, 'a', 'grad', 'norm', 1.0], [10, 'a', 'grad', 'norm', 2.0]]
    """
    stat_cols = [c for c in df.columns if c.count("|") == 2]
    ids = [c for c in df.columns if c not in stat_cols]
    long = df.melt(id_vars=ids, value_vars=stat_cols, var_name="key", value_name="value")
    long[["layer", "where", "stat"]] = long["key"].str.split("|", expand=True)
    return long.drop(columns="key").dropna(subset=["value"])


# ---------------------------------------------------------------- internal covariate shift and the loss landscape

# Santurkar et al. 2018: internal covariate shift (Def. 2.1) and the loss landscape along the gradient (Sec. 3).
#
# Every function below evaluates the model in the mode it is in: in train mode BN normalizes with the statistics of the
# probe batch, which is the function being trained (common Hessian tools switch to eval mode and so measure another
# function, the one with running statistics). Each leaves the model's weights, gradients, buffers (running statistics),
# the optimizer's state and the random-number generators exactly as it found them.

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def preserved(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Iterator[None]:
    """Restore ``model``'s parameters, gradients, buffers and mode, ``optimizer``'s state and the RNGs on exit.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> before = net.weight.detach().clone()
        >>> with preserved(net):
        ...     _ = net.weight.data.add_(1.0)
        >>> torch.equal(net.weight, before)
        True
    """
    params = [p.detach().clone() for p in model.parameters()]
    grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    buffers = [b.detach().clone() for b in model.buffers()]
    opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    was_training = model.training
    devices = sorted({p.device.index for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved, g in zip(model.parameters(), params, grads):
                    p.copy_(saved)
                    p.grad = g
                for b, saved in zip(model.buffers(), buffers):
                    b.copy_(saved)
            if optimizer is not None:
                optimizer.load_state_dict(opt_state)
            model.train(was_training)


def _loss_and_grads(model: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor], rng: torch.Tensor,
                    create_graph: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Loss on ``batch`` and its gradient for every parameter, with the CPU RNG reset to ``rng`` (same noise every call)."""
    torch.set_rng_state(rng)
    x, y = batch
    loss = loss_fn(model(x), y)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=create_graph)
    return loss, list(grads)


def ics(model: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor], lr: float | None = None, *,
        optimizer: torch.optim.Optimizer | None = None, layers: Mapping[str, nn.Module] | None = None) -> pd.DataFrame:
    """Internal covariate shift of each layer, Santurkar et al. 2018, Definition 2.1.

    ``G`` is the gradient of the loss on ``batch`` with respect to the layer's weight at the current parameters;
    ``G'`` the same gradient, on the same batch, after every parameter that comes *before* the layer (in
    ``model.parameters()`` order, i.e. the earlier layers) has taken its training step while the layer itself and the
    later ones keep their values. The step is plain SGD, ``-lr * grad``, or, with ``optimizer``, that optimizer's
    actual step (momentum and all) computed on a saved copy of its state. One row per layer: ``l2`` = ||G - G'||,
    ``cosine`` = cos(G, G'), ``grad_norm`` = ||G||, ``relative`` = l2 / ||G||. ``layers`` maps names to modules with a
    ``weight`` (default: every ``nn.Linear`` and ``nn.Conv2d``). The model is left as it was found (:func:`preserved`).

    Example (for the first layer nothing comes before it, so G' = G):
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
        >>> batch = (torch.randn(8, 3), torch.randn(8, 2))
        >>> df = ics(net, torch.nn.functional.mse_loss, batch, lr=0.1)
        >>> df["layer"].tolist(), float(df["l2"].iloc[0]), round(float(df["cosine"].iloc[0]), 6)
        (['0', '1'], 0.0, 1.0)
    """
    if (lr is None) == (optimizer is None):
        raise ValueError("give exactly one of lr (a plain SGD step) or optimizer (its actual step)")
    if layers is None:
        layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    params = [p for p in model.parameters() if p.requires_grad]
    index = {id(p): i for i, p in enumerate(params)}
    rows = []
    with preserved(model, optimizer):
        rng = torch.get_rng_state()
        _, grads = _loss_and_grads(model, loss_fn, batch, rng)
        old = [p.detach().clone() for p in params]
        with torch.no_grad():
            if optimizer is None:
                new = [p - lr * g for p, g in zip(old, grads)]
            else:
                for p, g in zip(params, grads):
                    p.grad = g.clone()
                optimizer.step()
                new = [p.detach().clone() for p in params]
        for name, module in layers.items():
            k = index[id(module.weight)]
            with torch.no_grad():
                for i, p in enumerate(params):
                    p.copy_(new[i] if i < k else old[i])
            _, moved = _loss_and_grads(model, loss_fn, batch, rng)
            g, g2 = grads[k].flatten(), moved[k].flatten()
            l2 = (g - g2).norm().item()
            rows.append({"layer": name, "l2": l2, "cosine": torch.nn.functional.cosine_similarity(g, g2, dim=0).item(),
                         "grad_norm": g.norm().item(), "relative": l2 / max(g.norm().item(), 1e-30)})
    return pd.DataFrame(rows)


def landscape_probe(model: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor],
                    etas: Sequence[float]) -> dict:
    """The loss landscape along the gradient direction, Santurkar et al. 2018, Sec. 3.1 (Fig. 4).

    With g = grad L(theta) on ``batch`` and every eta in ``etas``: the loss L(theta - eta g), the gradient change
    ||grad L(theta) - grad L(theta - eta g)||, and the "effective beta-smoothness" max over eta of
    ||grad L(theta) - grad L(theta - eta g)|| / ||eta g||. Returns a dict with ``loss0``, ``grad_norm``, ``etas``,
    ``losses``, ``grad_changes``, ``loss_range`` (max - min of the losses along the step, L(theta) included) and
    ``beta_smoothness``. For a quadratic with Hessian H, the gradient change is eta ||H g|| exactly.

    Example:
        >>> net = torch.nn.Linear(2, 1, bias=False)
        >>> _ = torch.nn.init.ones_(net.weight)
        >>> sq = lambda out, y: 0.5 * (out - y).pow(2).sum()
        >>> r = landscape_probe(net, sq, (torch.eye(2), torch.zeros(2, 1)), etas=[0.5, 1.0])  # L(w) = |w|^2 / 2, H = I
        >>> r["losses"], round(r["beta_smoothness"], 6)
        ([0.25, 0.0], 1.0)
    """
    out: dict = {"etas": [float(e) for e in etas], "losses": [], "grad_changes": []}
    params = [p for p in model.parameters() if p.requires_grad]
    with preserved(model):
        rng = torch.get_rng_state()
        loss0, g = _loss_and_grads(model, loss_fn, batch, rng)
        flat_g = torch.cat([t.flatten() for t in g])
        old = [p.detach().clone() for p in params]
        ratios = []
        for eta in etas:
            with torch.no_grad():
                for p, p0, gi in zip(params, old, g):
                    p.copy_(p0 - eta * gi)
            loss, g_eta = _loss_and_grads(model, loss_fn, batch, rng)
            change = (flat_g - torch.cat([t.flatten() for t in g_eta])).norm().item()
            out["losses"].append(loss.item())
            out["grad_changes"].append(change)
            ratios.append(change / max(eta * flat_g.norm().item(), 1e-30))
    out["loss0"], out["grad_norm"] = loss0.item(), flat_g.norm().item()
    out["loss_range"] = max(out["losses"] + [out["loss0"]]) - min(out["losses"] + [out["loss0"]])
    out["beta_smoothness"] = max(ratios) if ratios else math.nan
    return out


def hessian_top_eigenvalue(model: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor], *, iters: int = 20,
                           tol: float = 1e-4, seed: int = 0) -> float:
    """The Hessian eigenvalue of largest magnitude of the loss on ``batch``, by power iteration on Hessian-vector products.

    Each iteration is one double backward pass (Pearlmutter's trick: H v = grad(grad L . v)); it stops after ``iters``
    iterations or when the estimate changes by less than ``tol`` (relative). The model stays in its mode: in train mode
    BN's batch statistics are part of the function whose curvature is measured.

    Example (L(w) = 0.5 ||X w||^2 has Hessian X^T X):
        >>> net = torch.nn.Linear(2, 1, bias=False)
        >>> X = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> sq = lambda out, y: 0.5 * (out - y).pow(2).sum()
        >>> round(hessian_top_eigenvalue(net, sq, (X, torch.zeros(2, 1)), iters=100), 3)
        4.0
    """
    params = [p for p in model.parameters() if p.requires_grad]
    with preserved(model):
        rng = torch.get_rng_state()
        gen = torch.Generator().manual_seed(seed)
        v = [torch.randn(p.shape, generator=gen).to(p.device, p.dtype) for p in params]
        estimate = math.nan
        _, g = _loss_and_grads(model, loss_fn, batch, rng, create_graph=True)
        for _ in range(iters):
            norm = torch.sqrt(sum((t * t).sum() for t in v))
            v = [t / norm for t in v]
            hv = torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)
            new = sum((a * b).sum() for a, b in zip(v, hv)).item()
            v = [t.detach() for t in hv]
            if math.isfinite(estimate) and abs(new - estimate) <= tol * abs(new):
                estimate = new
                break
            estimate = new
    return estimate


def penalty_gradients(model: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor], reg_cf: float = 1.0
                      ) -> dict[str, float]:
    """Norms of the gradients of the loss and of ``reg_cf`` times the layers' penalty (:func:`bnlib.norms.model_penalty`)
    on ``batch`` in train mode, and their ratio (penalty / loss); the model is left as it was.

    How hard the penalty pulls against the loss: the note's guess that the rigid penalty is not stable (note 000).

    Example:
        >>> from bnlib.norms import RigidBatchNorm
        >>> net = nn.Sequential(nn.Linear(4, 8), RigidBatchNorm(8, bound=0.5), nn.Linear(8, 3))
        >>> g = penalty_gradients(net, nn.functional.cross_entropy, (torch.randn(16, 4), torch.randint(0, 3, (16,))), 0.1)
        >>> sorted(g), g["penalty"] > 0, g["ratio"] == g["penalty"] / g["loss"]
        (['loss', 'penalty', 'ratio'], True, True)
    """
    from bnlib.norms import model_penalty

    with preserved(model):
        model.train()
        x, y = batch
        loss = loss_fn(model(x), y)
        penalty = reg_cf * model_penalty(model)
        params = [p for p in model.parameters() if p.requires_grad]
        norms = {}
        for name, value in (("loss", loss), ("penalty", penalty)):
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True) if value.requires_grad else []
            norms[name] = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
    return {**norms, "ratio": norms["penalty"] / norms["loss"] if norms["loss"] > 0 else math.nan}


def gradient_spread(model: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor], minibatches: int = 8
                    ) -> dict[str, float]:
    """How much each weight's gradient varies across minibatches at fixed weights: the SD, over ``minibatches`` equal
    slices of ``batch`` (train mode), of the log gradient norm of every weight (conv and linear, any parameter with 2 or
    more dimensions), keyed by its module's name; the model is left as it was.

    A measure of how steady the gradient is that no trend over training can inflate (the weights do not move), for note
    000's guess that γ steadies BN's gradient.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> spread = gradient_spread(net, nn.functional.cross_entropy, (x, y), minibatches=4)
        >>> sorted(spread), all(v > 0 for v in spread.values())
        (['0', '3'], True)
        >>> same = gradient_spread(net, nn.functional.cross_entropy, (x[:8].repeat(4, 1), y[:8].repeat(4)), minibatches=4)
        >>> max(same.values()) < 1e-6  # four identical minibatches: no spread
        True
    """
    x, y = batch
    size = len(x) // minibatches
    if minibatches < 2 or size < 2:
        raise ValueError(f"gradient_spread needs at least 2 minibatches of at least 2 examples, got {minibatches} minibatches "
                         f"of a batch of {len(x)}: a larger probe batch (probe_size) or fewer minibatches")
    with preserved(model):
        model.train()
        weights = {name.rsplit(".", 1)[0]: p for name, p in model.named_parameters() if p.requires_grad and p.dim() > 1}
        logs: dict[str, list[float]] = {name: [] for name in weights}
        for k in range(minibatches):
            part = slice(k * size, (k + 1) * size)
            grads = torch.autograd.grad(loss_fn(model(x[part]), y[part]), list(weights.values()), allow_unused=True)
            for name, g in zip(weights, grads):
                norm = float(g.double().norm()) if g is not None else 0.0
                logs[name].append(math.log(norm) if norm > 0 else math.nan)
    return {name: float(np.std(values, ddof=1)) for name, values in logs.items()}


# ---------------------------------------------------------------- per-channel statistics, their drift, and the noise's cost
# (issue 39: Santurkar et al. Sec. 2.1 judge noisy BN by how much the layers' distributions move and how it trains)


@torch.no_grad()
def channel_stats(model: nn.Module, modules: Mapping[str, nn.Module], x: torch.Tensor
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per channel of each module's output on ``x``: its mean and standard deviation over the examples (and positions).

    The model runs in the mode it is in (train mode: BN with the batch's statistics and noisy BN with its noise, the
    function being trained); weights, buffers, mode and the random generators are left as found. Returns
    ``{name: (mean, std)}``, each a 1-D tensor with one value per channel (dim 1 of the output).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
        >>> mean, std = channel_stats(net, {"bn": net[1]}, torch.randn(8, 1, 5, 5))["bn"]
        >>> tuple(mean.shape), bool((mean.abs() < 1e-5).all()), bool(((std - 1).abs() < 1e-2).all())
        ((3,), True, True)
    """
    captured: dict[str, torch.Tensor] = {}
    with preserved(model):
        hooks = [m.register_forward_hook(lambda _m, _i, o, name=name: captured.__setitem__(name, o.detach()))
                 for name, m in modules.items()]
        try:
            model(x)
        finally:
            for h in hooks:
                h.remove()
    out = {}
    for name, v in captured.items():
        per_channel = v.float().transpose(0, 1).reshape(v.shape[1], -1)  # channels x (examples, positions)
        out[name] = (per_channel.mean(1), per_channel.std(1, unbiased=False))
    return out


def channel_drift(means: np.ndarray, stds: np.ndarray) -> float:
    """Scale-free drift of a layer's per-channel distributions between consecutive probes.

    ``means`` and ``stds`` are (probes, channels). Per channel and pair of consecutive probes: the change of the mean in
    units of the earlier standard deviation plus the change of log std, ``|mu_t - mu_{t-1}| / sigma_{t-1} +
    |log sigma_t - log sigma_{t-1}|``; averaged over channels and pairs (channels with a zero std left out). Multiplying
    a channel by a constant changes nothing, so networks whose layers have different scales compare; a per-channel
    shift that pooling over channels would average away counts in full. NaN with fewer than 2 probes.

    Example:
        >>> means, stds = np.array([[0.0, 1.0], [0.5, 1.0]]), np.array([[1.0, 2.0], [1.0, 2.0]])
        >>> channel_drift(means, stds)  # channel 0 moved half a std, channel 1 not at all
        0.25
        >>> channel_drift(10 * means, 10 * stds)
        0.25
    """
    means, stds = np.asarray(means, dtype=float), np.asarray(stds, dtype=float)
    if means.shape[0] < 2:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.abs(np.diff(means, axis=0)) / stds[:-1]
        scale = np.abs(np.diff(np.log(stds), axis=0))
    per = shift + scale
    per = per[np.isfinite(per)]
    return float(per.mean()) if per.size else math.nan


def noise_accuracy(model: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Accuracy and loss on ``batch`` with the noise of every noisy norm layer on and off (modules with a ``noise``
    switch, e.g. :class:`bnlib.norms.NoisyBatchNorm`), in the mode the model is in.

    In train mode this is the training accuracy of the function being trained with and without its noise (the same
    batch statistics); in a network without noisy layers the two are equal. Weights, buffers, mode, the switches and
    the random generators are left as found. Keys: ``on_acc``, ``off_acc``, ``on_loss``, ``off_loss``.

    Example:
        >>> from bnlib.norms import NoisyBatchNorm
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), NoisyBatchNorm(8, mean_range=3.0), torch.nn.Linear(8, 3))
        >>> r = noise_accuracy(net, torch.nn.functional.cross_entropy, (torch.randn(64, 4), torch.randint(0, 3, (64,))))
        >>> sorted(r), r["on_loss"] != r["off_loss"], net[1].noise
        (['off_acc', 'off_loss', 'on_acc', 'on_loss'], True, True)
    """
    switches = [m for m in model.modules() if isinstance(getattr(m, "noise", None), bool)]
    x, y = batch
    out = {}
    with torch.no_grad(), preserved(model):
        for state in ("on", "off"):
            for m in switches:
                m.noise = state == "on"
            try:
                logits = model(x)
            finally:
                for m in switches:
                    m.noise = True
            out[f"{state}_acc"] = float((logits.argmax(1) == y).float().mean())
            out[f"{state}_loss"] = float(loss_fn(logits, y))
    return out


# ---------------------------------------------------------------- named probes: what a Run lists in ``probes``

Probe = Callable[[int, nn.Module], dict]


def _layer_stats(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    names, skip = tuple(args.get("layer_names", ("norm", "norm2", "act"))), tuple(args.get("skip", ()))
    modules = {n: m for n, m in model.named_modules() if n.split(".")[-1] in names and not any(s in n for s in skip)}
    return LayerStatsProbe(modules, batch[0], bound=float(args.get("bound", 3.0)))


def _ics(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    def probe(step: int, m: nn.Module) -> dict:
        rows = ics(m, torch.nn.functional.cross_entropy, batch, lr=lr)
        return {f"{r.layer}|ics|{k}": getattr(r, k) for r in rows.itertuples() for k in ("l2", "cosine", "relative")}

    return probe


def _landscape(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    etas = [float(e) * lr for e in args.get("etas", (0.5, 1.0, 2.0, 4.0))]

    def probe(step: int, m: nn.Module) -> dict:
        land = landscape_probe(m, torch.nn.functional.cross_entropy, batch, etas)
        row = {f"all|landscape|{k}": land[k] for k in ("loss_range", "beta_smoothness", "grad_norm")}
        row["all|landscape|grad_change"] = max(land["grad_changes"])
        along = [land["loss0"], *land["losses"]]  # the loss at theta and at every step along the gradient: Fig. 4(a)'s band
        row["all|landscape|loss_min"], row["all|landscape|loss_max"] = min(along), max(along)
        return row

    return probe


def _hessian(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    iters = int(args.get("hessian_iters", 10))
    return lambda step, m: {"all|hessian|top": hessian_top_eigenvalue(m, torch.nn.functional.cross_entropy, batch, iters=iters)}


def _output_quantiles(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    layers = tuple(args.get("quantile_layers", ()))
    qs = tuple(float(q) for q in args.get("quantiles", (0.05, 0.25, 0.5, 0.75, 0.95)))

    @torch.no_grad()
    def probe(step: int, m: nn.Module) -> dict:
        captured: dict[str, torch.Tensor] = {}
        hooks = [m.get_submodule(name).register_forward_hook(lambda _m, i, o, name=name: captured.__setitem__(name, o.flatten()))
                 for name in layers]
        saved = [b.clone() for b in m.buffers()]
        try:
            m(batch[0])  # in the model's current mode (train, during fit), buffers put back below
        finally:
            for h in hooks:
                h.remove()
            for b, s in zip(m.buffers(), saved):
                b.copy_(s)
        row = {}
        for name, v in captured.items():
            values = torch.quantile(v[:: max(1, len(v) // 100_000)].float(), torch.tensor(qs, device=v.device)).tolist()
            row.update({f"{name}|dist|q{round(q * 100):02d}": value for q, value in zip(qs, values)})
        return row

    return probe


def _unit_quantiles(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    layers = tuple(args.get("quantile_layers", ()))
    qs = tuple(float(q) for q in args.get("quantiles", (0.15, 0.5, 0.85)))
    if not layers:
        raise ValueError("the unit_quantiles probe needs probe_args quantile_layers, e.g. {'quantile_layers': ['norm3']}")
    mode = args.get("mode", "eval")
    if mode not in ("eval", "train"):
        raise ValueError(f"the unit_quantiles probe's mode must be 'eval' or 'train', got {mode!r}")

    def probe(step: int, m: nn.Module) -> dict:
        row: dict = {}
        modules = {name: m.get_submodule(name) for name in layers}
        for name, values in unit_quantiles(m, modules, batch[0], qs, train=mode == "train").items():
            by_unit = values.permute(0, 2, 1).tolist()  # [q][unit][model]
            for q, units in zip(qs, by_unit):
                for unit, per_model in enumerate(units):
                    row[f"{name}|unit{unit}|q{round(q * 100):02d}"] = per_model if hasattr(m, "num_models") else per_model[0]
        return row

    return probe


def _weight_norms(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}

    @torch.no_grad()
    def probe(step: int, m: nn.Module) -> dict:
        return {f"{name}|weight|norm": float(layer.weight.norm()) for name, layer in layers.items()}

    return probe


def _gradient_spread(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    minibatches = int(args.get("minibatches", 8))
    return lambda step, m: {f"{name}|grad_spread|sd": v for name, v in
                            gradient_spread(m, torch.nn.functional.cross_entropy, batch, minibatches).items()}


def _penalty_grad(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    reg_cf = float(args.get("reg_cf", 1.0))
    return lambda step, m: {f"all|penalty_grad|{k}": v for k, v in
                            penalty_gradients(m, torch.nn.functional.cross_entropy, batch, reg_cf).items()}


def _channel_stats(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    layers = tuple(args.get("quantile_layers", ()))
    if not layers:
        raise ValueError("the channel_stats probe needs probe_args quantile_layers, e.g. {'quantile_layers': ['conv2.norm']}")

    def probe(step: int, m: nn.Module) -> dict:
        row = {}
        for name, (mean, std) in channel_stats(m, {n: m.get_submodule(n) for n in layers}, batch[0]).items():
            row.update({f"{name}|channel|mean{c:03d}": v for c, v in enumerate(mean.tolist())})
            row.update({f"{name}|channel|std{c:03d}": v for c, v in enumerate(std.tolist())})
        return row

    return probe


def _noise_acc(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping, lr: float) -> Probe:
    return lambda step, m: {f"all|noise|{k}": v for k, v in
                            noise_accuracy(m, torch.nn.functional.cross_entropy, batch).items()}


PROBES: dict[str, Callable[..., Probe]] = {
    "layer_stats": _layer_stats,  # LayerStatsProbe on modules named layer_names (default norm, norm2, act), minus skip
    "ics": _ics,  # Santurkar et al. Def. 2.1 per layer, at the run's learning rate
    "landscape": _landscape,  # loss range (and its ends), gradient change, beta-smoothness along the gradient, steps etas x lr
    "hessian": _hessian,  # top Hessian eigenvalue, hessian_iters power iterations
    "output_quantiles": _output_quantiles,  # quantiles of the outputs of quantile_layers, pooled over units
    "unit_quantiles": _unit_quantiles,  # quantiles of every unit of quantile_layers, eval or train mode (Fig. 1(b, c))
    "weight_norms": _weight_norms,  # Frobenius norm of every conv and linear weight (BN's scale invariance, Sec. 3.3)
    "penalty_grad": _penalty_grad,  # gradient norms of the loss and of reg_cf x the layers' penalty, and their ratio
    "gradient_spread": _gradient_spread,  # SD over `minibatches` slices of the probe batch of each weight's log gradient norm
    "channel_stats": _channel_stats,  # per-channel mean and std of the outputs of quantile_layers (drift: channel_drift)
    "noise_acc": _noise_acc,  # accuracy and loss on the probe batch with noisy layers' noise on and off
}
# bumped when a probe's numbers change for the same run; part of the cache key of every run that lists the probe
# (bnlib.lab.experiment.Run.key), so other runs keep their cached results. hessian 2: bnlib's BN twice differentiable;
# landscape 2: also the lowest and highest loss along the step.
PROBE_VERSIONS: dict[str, int] = {"hessian": 2, "landscape": 2}
PROBE_ARGS: dict[str, frozenset[str]] = {
    "layer_stats": frozenset({"layer_names", "skip", "bound"}), "ics": frozenset(), "landscape": frozenset({"etas"}),
    "hessian": frozenset({"hessian_iters"}), "output_quantiles": frozenset({"quantile_layers", "quantiles"}),
    "unit_quantiles": frozenset({"quantile_layers", "quantiles", "mode"}), "weight_norms": frozenset(),
    "penalty_grad": frozenset({"reg_cf"}), "gradient_spread": frozenset({"minibatches"}),
    "channel_stats": frozenset({"quantile_layers"}), "noise_acc": frozenset(),
}


def named_probes(names: Sequence[str], model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], args: Mapping,
                 lr: float) -> list[Probe]:
    """Callbacks for :func:`bnlib.train.fit` from probe names of :data:`PROBES`, run in the order given on the fixed
    ``batch`` (inputs as the network takes them, labels), plus a last one that adds ``probe_s`` (their time at this row).

    Their columns are ``"layer|kind|stat"`` keys (:func:`tidy_layer_stats` makes them long). Each probe leaves the
    model's weights, buffers and mode as it found them. On a batched model (:class:`bnlib.lab.batched.BatchedMLP`) the
    ``unit_quantiles`` probe gives one value per model (a list; :func:`bnlib.lab.batched.fit_batched` puts each in its
    model's row).

    Example:
        >>> from bnlib.models import mlp
        >>> net, batch = mlp(hidden=(8, 8), norm="bn"), (torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,)))
        >>> callbacks = named_probes(["landscape", "hessian"], net, batch, {"hessian_iters": 2}, lr=0.1)
        >>> row = {}
        >>> for cb in callbacks:
        ...     row.update(cb(0, net))
        >>> sorted(row)
        ['all|hessian|top', 'all|landscape|beta_smoothness', 'all|landscape|grad_change', ..., 'probe_s']
    """
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise ValueError(f"unknown probes {unknown}; valid probes: {', '.join(PROBES)}")
    start: list[float] = []

    def begin(step: int, m: nn.Module) -> dict:
        start[:] = [time.perf_counter()]
        return {}

    def end(step: int, m: nn.Module) -> dict:
        return {"probe_s": time.perf_counter() - start[0]}

    return [begin, *(PROBES[n](model, batch, args, lr) for n in names), end]
