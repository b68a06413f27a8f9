"""One training loop by steps: :func:`fit`.

The dataset stays on the training device as uint8 and batches are drawn by
index (:func:`bnlib.data.train_batches`); the loss of every step is kept on the
device and read only at evaluation time, so there is no per-step host sync.
A run whose loss turns NaN/inf or exceeds ``diverge_above`` is recorded as
diverged at the first bad step and stops.

Example:
    >>> import torch
    >>> from bnlib.models import mlp
    >>> from bnlib.train import fit
    >>> x = torch.randint(0, 256, (600, 1, 28, 28), dtype=torch.uint8)  # toy data
    >>> y = torch.randint(0, 10, (600,))
    >>> _ = torch.manual_seed(0)
    >>> df = fit(mlp(), (x, y), (x, y), steps=20, batch_size=60, lr=0.1, eval_every=10, progress=False)
    >>> list(df["step"])
    [0, 10, 20]
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bnlib.data import eval_batches, train_batches
from bnlib.norms import is_batch_norm, model_penalty

Callback = Callable[[int, nn.Module], Mapping[str, float]]
Data = tuple[torch.Tensor, torch.Tensor]
TEXT_PROGRESS = "BNLIB_PROGRESS"  # "text" (set by ``python -m bnlib.run`` in its kernels): fit draws no bar


# ---------------------------------------------------------------- argument checks

def check_count(name: str, value, *, optional: bool = False) -> None:
    """Raise ValueError unless ``value`` is an integer >= 1 (or None where ``optional``).

    Example:
        >>> check_count("steps", 10)
        >>> check_count("steps", 2.5)
        Traceback (most recent call last):
        ...
        ValueError: steps must be an integer >= 1, got 2.5
    """
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1{' or None' if optional else ''}, got {value}")


def check_positive(name: str, value) -> None:
    """Raise ValueError unless ``value`` is a finite number > 0.

    Example:
        >>> check_positive("lr", float("inf"))
        Traceback (most recent call last):
        ...
        ValueError: lr must be a finite number > 0, got inf
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


# ---------------------------------------------------------------- devices, optimizers and schedules

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``. No side effects.

    A CUDA device when torch sees none raises ValueError with the fix.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> from unittest import mock
        >>> with mock.patch("torch.cuda.is_available", return_value=False):
        ...     resolve_device("cuda")
        Traceback (most recent call last):
        ...
        ValueError: device='cuda' but torch ... sees no CUDA device (torch.cuda.is_available() is False); ...
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(resolved)!r} but torch {torch.__version__} sees no CUDA device "
                         "(torch.cuda.is_available() is False); use -p device cpu or -p device auto")
    return resolved


def make_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict], lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """``"sgd"`` (with optional momentum), ``"adam"`` (L2 added to the gradient: coupled) or ``"adamw"`` (decoupled
    weight decay, Loshchilov & Hutter 2019). ``params`` may be parameter groups (dicts with their own ``lr``).

    Example:
        >>> make_optimizer("sgd", torch.nn.Linear(2, 2).parameters(), lr=0.1).defaults["lr"]
        0.1
        >>> type(make_optimizer("adamw", torch.nn.Linear(2, 2).parameters(), lr=0.1, weight_decay=0.05)).__name__
        'AdamW'
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: sgd, adam, adamw")


def conv_weight_groups(model: nn.Module, lr: float, other_lr: float) -> list[dict]:
    """Two parameter groups: the convolutions' weights at ``lr``, every other parameter (linear layers, norm layers'
    gamma and beta, biases) at ``other_lr``. Under BN a convolution's weights are scale-invariant (BN(aWu) = BN(Wu)),
    the others are not: Arora et al. (2019) raise the rate of the first only.

    Example:
        >>> from bnlib.models import small_cnn
        >>> [(len(g["params"]), g["lr"]) for g in conv_weight_groups(small_cnn(), 0.5, 0.1)]
        [(2, 0.5), (9, 0.1)]
    """
    conv = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) in conv], "lr": lr},
            {"params": [p for p in params if id(p) not in conv], "lr": other_lr}]


SCHEDULES = {"constant": frozenset(), "cosine": frozenset(), "step": frozenset({"milestones", "gamma"}),
             "exponential": frozenset({"gamma", "every"})}  # name -> the arguments it takes (besides MODIFIERS)
MODIFIERS = frozenset({"warmup", "decay"})  # arguments every schedule takes


def lr_schedule(name: str, steps: int, **args) -> Callable[[int], float] | None:
    """The learning-rate factor of step ``t`` for :func:`fit`'s ``lr_factor`` (None for ``"constant"`` alone).

    ``"cosine"``: (1 + cos(pi t / steps)) / 2, from 1 down to 0 at the last step. ``"step"``: ``gamma`` (default 0.1)
    to the number of ``milestones`` (steps) passed. ``"exponential"``: ``gamma`` to the power t // ``every`` (a
    staircase, as Inception's 0.94 every two epochs). Every schedule also takes ``warmup``, a linear warm-up: the
    factor times (t + 1) / ``warmup`` over the first ``warmup`` steps, and ``decay``, an extra exponential decay:
    the factor times ``decay`` ** (t / steps), so that the rate ends at ``decay`` times the schedule's.

    Example:
        >>> f = lr_schedule("step", 100, milestones=[50, 75], gamma=0.1)
        >>> [round(f(t), 6) for t in (0, 49, 50, 75)]
        [1.0, 1.0, 0.1, 0.01]
        >>> [round(lr_schedule("cosine", 100)(t), 3) for t in (0, 50, 100)]
        [1.0, 0.5, 0.0]
        >>> [round(lr_schedule("constant", 100, warmup=4, decay=0.5)(t), 3) for t in (0, 3, 100)]
        [0.25, 0.979, 0.5]
        >>> lr_schedule("linear", 10)
        Traceback (most recent call last):
        ...
        ValueError: unknown schedule 'linear'; valid schedules: constant, cosine, step, exponential
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")
    unknown = sorted(set(args) - SCHEDULES[name] - MODIFIERS)
    if unknown:
        raise ValueError(f"schedule {name!r} takes no {unknown}; it takes "
                         f"{', '.join(sorted(SCHEDULES[name] | MODIFIERS))}")
    warmup, decay = args.pop("warmup", 0), float(args.pop("decay", 1.0))
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"schedule {name!r}: warmup must be an integer >= 0 (steps), got {warmup!r}")
    if not 0 < decay <= 1:
        raise ValueError(f"schedule {name!r}: decay must be in (0, 1] (the extra factor at the last step), got {decay!r}")
    base = _base_schedule(name, steps, **args)
    if not warmup and decay == 1.0:
        return base
    return lambda t: ((base(t) if base is not None else 1.0) * min(1.0, (t + 1) / warmup if warmup else 1.0)
                      * decay ** (min(t, steps) / steps))


def _base_schedule(name: str, steps: int, **args) -> Callable[[int], float] | None:
    if name == "constant":
        return None
    if name == "cosine":
        return lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))
    gamma = float(args.get("gamma", 0.1))
    if name == "step":
        milestones = sorted(int(m) for m in args.get("milestones", ()))
        return lambda t: gamma ** sum(t >= m for m in milestones)
    every = int(args.get("every", 1))
    if every < 1:
        raise ValueError(f"schedule 'exponential': every must be >= 1, got {every}")
    return lambda t: gamma ** (t // every)


# ---------------------------------------------------------------- pixel scale and batch size checks

def default_scale(x: torch.Tensor) -> float:
    """Pixel scale used when none is given: 1/255 for uint8 images, 1 for float data.

    Example:
        >>> default_scale(torch.zeros(1, dtype=torch.uint8))
        0.00392156862745098
    """
    return 1 / 255 if x.dtype == torch.uint8 else 1.0


def batch_norm_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model`` that normalize with batch statistics in training (:func:`bnlib.norms.is_batch_norm`).

    Example:
        >>> from bnlib.models import mlp
        >>> len(batch_norm_layers(mlp(norm="bn"))), len(batch_norm_layers(mlp(norm="none")))
        (3, 0)
    """
    return [m for m in model.modules() if is_batch_norm(m)]


def check_batch_size(model: nn.Module, batch_size: int) -> None:
    """Raise ValueError for a ``batch_size`` that is not an integer >= 1, and for 1 when ``model`` has batch norm layers.

    With one example per batch, BN's batch mean is the example itself: every fully connected
    unit outputs beta whatever the input (and a conv layer normalizes one image by its own
    spatial statistics). Training "works" but learns nothing useful, so it is refused here.

    Example:
        >>> from bnlib.models import mlp
        >>> check_batch_size(mlp(norm="none"), 1)
        >>> check_batch_size(mlp(norm="bn"), 1)
        Traceback (most recent call last):
        ...
        ValueError: batch_size=1 with batch normalization (3 BN layers in the model): each batch mean is the example itself, ...
    """
    check_count("batch_size", batch_size)
    n_bn = len(batch_norm_layers(model))
    if batch_size == 1 and n_bn:
        raise ValueError(
            f"batch_size=1 with batch normalization ({n_bn} BN layers in the model): each batch mean is the example "
            "itself, so BN has nothing to normalize with. Use batch_size >= 2 (BN's statistics are noisy below about 16), "
            'or a norm that does not use the batch (norm="none").'
        )


# ---------------------------------------------------------------- losses between evaluations

class MetricsWindow:
    """What S models did since their last evaluation: each step's loss, correct count and penalty, one row per model.

    Shared by :func:`fit` (S = 1) and :func:`bnlib.lab.batched.fit_batched`: the means a row reports and the divergence
    check. A model's row is contiguous, so its mean does not depend on S.

    Example:
        >>> w = MetricsWindow(models=2, size=3, device="cpu")
        >>> w.add(torch.tensor([1.0, 2.0]), torch.tensor([5, 6]))
        >>> w.add(torch.tensor([3.0, float("nan")]), torch.tensor([7, 8]))
        >>> w.first_bad(above=1e4), w.mean("loss", upto=1).tolist()
        ([-1, 1], [1.0, 2.0])
    """

    def __init__(self, models: int, size: int, device: str | torch.device) -> None:
        self.loss = torch.zeros(models, size, device=device)
        self.correct = torch.zeros(models, size, device=device)
        self.penalty = torch.zeros(models, size, device=device)
        self.n = 0  # steps recorded since the last evaluation

    def add(self, loss: torch.Tensor, correct: torch.Tensor, penalty: torch.Tensor | None = None) -> None:
        """Record one step: per-model loss and correct count (shape (S,), or scalars for S = 1), optional penalty."""
        self.loss[:, self.n] = loss
        self.correct[:, self.n] = correct
        if penalty is not None:
            self.penalty[:, self.n] = penalty
        self.n += 1

    def first_bad(self, above: float, reg_cf: float = 0.0) -> list[int]:
        """Per model, the window index of its first step whose minimized loss (loss + reg_cf * penalty) is NaN, inf or
        above ``above``; -1 where there is none."""
        minimized = self.loss[:, : self.n] + reg_cf * self.penalty[:, : self.n]
        bad = ~torch.isfinite(minimized) | (minimized > above)
        return torch.where(bad.any(1), bad.float().argmax(1), -1).tolist()

    def mean(self, name: str, upto: int) -> torch.Tensor:
        """Per-model mean of ``name`` ("loss", "correct" or "penalty") over the window's first ``upto`` steps."""
        return getattr(self, name)[:, :upto].mean(1)


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Data,
    *,
    batch_size: int = 2000,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
    device: str | torch.device = "auto",
    autocast: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` in eval mode.

    The model's train/eval mode is restored afterwards. ``autocast``: as in :func:`fit`.
    ``batch_size`` (examples per forward pass) must be an integer >= 1.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> _ = torch.nn.init.zeros_(net[1].weight), torch.nn.init.zeros_(net[1].bias)
        >>> loss, acc = evaluate(net, (torch.zeros(6, 1, 2, 2), torch.zeros(6, dtype=torch.long)), device="cpu")
        >>> round(loss, 4), acc
        (0.6931, 1.0)
    """
    total_loss = torch.zeros((), device=resolve_device(device), dtype=torch.float64)
    correct = torch.zeros((), device=total_loss.device, dtype=torch.long)
    for logits, yb in eval_logits(model, data, batch_size=batch_size, mean=mean, std=std, scale=scale, device=device,
                                  autocast=autocast):
        total_loss += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    n = len(data[1])
    return total_loss.item() / n, correct.item() / n


def eval_logits(
    model: nn.Module,
    data: Data,
    *,
    batch_size: int = 2000,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
    device: str | torch.device = "auto",
    autocast: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(logits, labels)`` for every batch of ``data`` in order, ``model`` in eval mode and without gradients; the
    model's mode is restored when the loop ends. What :func:`evaluate` and :func:`bnlib.lab.batched.evaluate_batched`
    reduce, each its own way. ``batch_size`` must be an integer >= 1.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> [tuple(t.shape) for t in next(eval_logits(net, (torch.zeros(6, 1, 2, 2), torch.zeros(6).long()), device="cpu"))]
        [(6, 2), (6,)]
    """
    check_count("batch_size", batch_size)
    x, y = data
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    scale = default_scale(x) if scale is None else scale
    try:
        for xb, yb in eval_batches(x, y, batch_size, mean=mean, std=std, scale=scale, device=dev):
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(xb)
            yield logits, yb
    finally:
        model.train(was_training)


# ---------------------------------------------------------------- training

def train_step(model: nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor, *, reg_cf: float = 0.0,
               autocast: bool = False, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One SGD step on a batch; returns the cross-entropy, the logits (both detached) and the penalty sum the norm
    layers stored (None where none does). ``reg_cf`` times the penalty is added to the loss that is minimized; a
    ``reg_cf > 0`` for a model without penalties raises ValueError.

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> ce, logits, penalty = train_step(net, opt, torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
        >>> tuple(logits.shape), penalty is None
        ((4, 2), True)
    """
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb)
    ce = F.cross_entropy(logits.float(), yb)
    stores = any(isinstance(getattr(m, "penalty", None), torch.Tensor) for m in model.modules())
    if reg_cf > 0 and not stores:
        raise ValueError(f"reg_cf={reg_cf} but no layer of the model stores a penalty; use a norm with one "
                         '(e.g. norm="rigid" or "kl_bn") or reg_cf=0')
    penalty = model_penalty(model) if stores else None
    opt.zero_grad(set_to_none=True)
    (ce + reg_cf * penalty if penalty is not None and reg_cf > 0 else ce).backward()
    opt.step()
    return ce.detach(), logits.detach(), None if penalty is None else penalty.detach()


def window_row(window: MetricsWindow, upto: int, batch_size: int, penalized: bool) -> dict:
    """The training columns of a row: mean loss, accuracy (and penalty) over the window's first ``upto`` steps
    (NaN when ``upto`` is 0: the row before training)."""
    def mean(name: str, divide: int = 1) -> float:
        return window.mean(name, upto)[0].item() / divide if upto else math.nan

    row = {"train_loss": mean("loss"), "train_acc": mean("correct", batch_size)}
    return {**row, "penalty": mean("penalty")} if penalized else row


def progress_shown(progress: bool) -> bool:
    """Whether to draw a bar: asked for, and not in a kernel of ``python -m bnlib.run`` (a saved notebook would keep a
    frozen widget)."""
    return progress and os.environ.get(TEXT_PROGRESS) != "text"


def fit(
    model: nn.Module,
    train_data: Data,
    test_data: Data | None = None,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    eval_every: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
    augment: bool = False,
    channels_last: bool = False,
    autocast: bool = False,
    reg_cf: float = 0.0,
    diverge_above: float = 1e4,
    lr_factor: Callable[[int], float] | None = None,
    other_lr: float | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    desc: str | None = None,
) -> pd.DataFrame:
    """Train ``model`` for ``steps`` mini-batch steps; return one row per evaluation.

    Rows are written at step 0 (before training), every ``eval_every`` steps and
    at the last step. Columns: ``step``, ``seed``, ``lr``, ``train_loss`` and
    ``train_acc`` (means over the steps since the previous row, in train mode),
    ``test_loss`` and ``test_acc`` (whole ``test_data`` in eval mode; absent if
    ``test_data`` is None), ``elapsed_s``, ``diverged``, plus whatever the
    ``callbacks`` return. A callback is called as ``cb(step, model)`` at every
    row, with the model in train mode; it may switch modes but must restore them.

    ``steps``, ``batch_size`` and ``eval_every`` (default ``max(1, steps // 20)``) must be integers >= 1 and
    ``lr`` a finite number > 0; other values raise ValueError naming the argument.

    Divergence: if a step's loss is NaN/inf or above ``diverge_above``, the run
    stops at the next evaluation point, and its last row has ``diverged=True``
    and ``step`` equal to the first bad step.

    The data order comes from ``seed`` (a ``torch.Generator``); ``torch.manual_seed(seed)``
    is also set for randomness inside the model (dropout). Build the model under
    your own ``torch.manual_seed`` to fix its initial weights.

    Inputs: ``train_data``/``test_data`` are ``(x, y)`` with x of shape (N, C, H, W)
    (uint8 images or floats); a batch is ``(x * scale - mean) / std`` per channel,
    with ``scale`` defaulting to 1/255 for uint8 and 1 for floats. ``augment``: random crop
    (padding 4) and horizontal flip of every training batch (:func:`bnlib.data.augment_batch`).
    ``channels_last``: model and training batches in ``torch.channels_last`` memory format
    (faster convolutions on most CPUs and GPUs; the same computation up to rounding, which
    training amplifies over many steps as it does any change of kernel). ``autocast``: forward
    passes under ``torch.autocast(device, bfloat16)`` (convolutions and matmuls in bfloat16;
    bnlib's BN layers and the loss compute in float32); meant for GPUs, slow on most CPUs.
    ``batch_size=1`` with BN layers in the model raises ValueError (:func:`check_batch_size`).

    Schedule: step ``t`` (0-based) uses ``lr * lr_factor(t)`` (:func:`lr_schedule` builds common ones); rows record
    the base ``lr``. ``other_lr``: every parameter but the convolutions' weights trains at ``other_lr`` (times the same
    factor) instead (:func:`conv_weight_groups`).

    Penalties: layers that store a ``penalty`` tensor in their forward pass (rigid and KL batch
    norms of :mod:`bnlib.norms`) add ``reg_cf`` times their sum (:func:`bnlib.norms.model_penalty`)
    to the loss that is minimized. ``train_loss`` stays the cross-entropy alone, and a column
    ``penalty`` holds the mean unweighted penalty sum since the previous row; divergence is
    judged on the minimized loss.

    Example:
        >>> from bnlib.models import mlp
        >>> x = torch.randint(0, 256, (120, 1, 28, 28), dtype=torch.uint8)
        >>> y = torch.randint(0, 10, (120,))
        >>> df = fit(mlp(), (x, y), steps=4, batch_size=60, lr=0.1, eval_every=2, progress=False)
        >>> df[["step", "diverged"]].values.tolist()
        [[0, False], [2, False], [4, False]]
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        check_count(name, value)
    check_count("eval_every", eval_every, optional=True)
    check_positive("lr", lr)
    if not reg_cf >= 0:
        raise ValueError(f"reg_cf must be >= 0, got {reg_cf}")
    check_batch_size(model, batch_size)
    eval_every = eval_every or max(1, steps // 20)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model.to(dev).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if other_lr is not None:
        check_positive("other_lr", other_lr)
    params = model.parameters() if other_lr is None else conv_weight_groups(model, lr, other_lr)
    opt = make_optimizer(optimizer, params, lr, momentum, weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor) if lr_factor is not None else None
    x, y = train_data
    scale = default_scale(x) if scale is None else scale
    batches = train_batches(x, y, batch_size, seed=seed, mean=mean, std=std, scale=scale, augment=augment, device=dev)
    window, rows, penalized, start = MetricsWindow(1, eval_every, dev), [], False, time.perf_counter()

    def record(step: int, upto: int, diverged: bool = False) -> None:
        row = {"step": step, "seed": seed, "lr": lr, **window_row(window, upto, batch_size, penalized)}
        if test_data is not None:
            row["test_loss"], row["test_acc"] = (math.nan, math.nan) if diverged else evaluate(
                model, test_data, mean=mean, std=std, scale=scale, device=dev, autocast=autocast)
        for cb in () if diverged else callbacks:
            row.update(cb(step, model))
        rows.append({**row, "elapsed_s": time.perf_counter() - start, "diverged": diverged})

    record(0, 0)
    bar = tqdm(total=steps, desc=desc, disable=not progress_shown(progress), leave=False, mininterval=1.0)
    for step in range(1, steps + 1):
        xb, yb = next(batches)
        ce, logits, penalty = train_step(model, opt, xb, yb, reg_cf=reg_cf, autocast=autocast, channels_last=channels_last)
        penalized = penalty is not None
        if scheduler is not None:
            scheduler.step()
        window.add(ce, (logits.argmax(1) == yb).sum(), penalty)
        if window.n == eval_every or step == steps:
            bad = window.first_bad(diverge_above, reg_cf)[0]
            if bad >= 0:  # the row of a diverged run: its first bad step, means over the good steps before it
                record(step - window.n + 1 + bad, bad, diverged=True)
                break
            record(step, window.n)
            bar.update(window.n)
            window.n = 0
    bar.close()
    return pd.DataFrame(rows)
