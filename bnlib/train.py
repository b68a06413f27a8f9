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
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bnlib.data import eval_batches, train_batches

Callback = Callable[[int, nn.Module], Mapping[str, float]]
Data = tuple[torch.Tensor, torch.Tensor]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_optimizer(
    name: str, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """``"sgd"`` (with optional momentum) or ``"adam"``.

    Example:
        >>> make_optimizer("sgd", torch.nn.Linear(2, 2).parameters(), lr=0.1).defaults["lr"]
        0.1
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: sgd, adam")


def default_scale(x: torch.Tensor) -> float:
    """Pixel scale used when none is given: 1/255 for uint8 images, 1 for float data.

    Example:
        >>> default_scale(torch.zeros(1, dtype=torch.uint8))
        0.00392156862745098
    """
    return 1 / 255 if x.dtype == torch.uint8 else 1.0


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
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` in eval mode.

    The model's train/eval mode is restored afterwards.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> _ = torch.nn.init.zeros_(net[1].weight), torch.nn.init.zeros_(net[1].bias)
        >>> loss, acc = evaluate(net, (torch.zeros(6, 1, 2, 2), torch.zeros(6, dtype=torch.long)), device="cpu")
        >>> round(loss, 4), acc
        (0.6931, 1.0)
    """
    x, y = data
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    scale = default_scale(x) if scale is None else scale
    for xb, yb in eval_batches(x, y, batch_size, mean=mean, std=std, scale=scale, device=dev):
        logits = model(xb)
        total_loss += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    n = len(y)
    return total_loss.item() / n, correct.item() / n


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
    diverge_above: float = 1e4,
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

    Divergence: if a step's loss is NaN/inf or above ``diverge_above``, the run
    stops at the next evaluation point, and its last row has ``diverged=True``
    and ``step`` equal to the first bad step.

    The data order comes from ``seed`` (a ``torch.Generator``); ``torch.manual_seed(seed)``
    is also set for randomness inside the model (dropout). Build the model under
    your own ``torch.manual_seed`` to fix its initial weights.

    Inputs: ``train_data``/``test_data`` are ``(x, y)`` with x of shape (N, C, H, W)
    (uint8 images or floats); a batch is ``(x * scale - mean) / std`` per channel,
    with ``scale`` defaulting to 1/255 for uint8 and 1 for floats.

    Example:
        >>> from bnlib.models import mlp
        >>> x = torch.randint(0, 256, (120, 1, 28, 28), dtype=torch.uint8)
        >>> y = torch.randint(0, 10, (120,))
        >>> df = fit(mlp(), (x, y), steps=4, batch_size=60, lr=0.1, eval_every=2, progress=False)
        >>> df[["step", "diverged"]].values.tolist()
        [[0, False], [2, False], [4, False]]
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    eval_every = eval_every or max(1, steps // 20)
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model.to(dev).train()
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    x, y = train_data
    scale = default_scale(x) if scale is None else scale
    batches = train_batches(x, y, batch_size, seed=seed, mean=mean, std=std, scale=scale, augment=augment, device=dev)
    window_loss = torch.zeros(eval_every, device=dev)
    window_correct = torch.zeros(eval_every, device=dev)
    rows: list[dict] = []
    start = time.perf_counter()

    def record(step: int, n_window: int, diverged: bool = False) -> None:
        row: dict = {"step": step, "seed": seed, "lr": lr}
        if n_window:
            row["train_loss"] = window_loss[:n_window].mean().item()
            row["train_acc"] = window_correct[:n_window].mean().item() / batch_size
        else:
            row["train_loss"] = row["train_acc"] = math.nan
        if test_data is not None:
            if diverged:
                row["test_loss"] = row["test_acc"] = math.nan
            else:
                row["test_loss"], row["test_acc"] = evaluate(model, test_data, mean=mean, std=std, scale=scale, device=dev)
        if not diverged:
            for cb in callbacks:
                row.update(cb(step, model))
        row["elapsed_s"] = time.perf_counter() - start
        row["diverged"] = diverged
        rows.append(row)

    record(0, 0)
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False, mininterval=1.0)
    n = 0
    for step in range(1, steps + 1):
        xb, yb = next(batches)
        logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window_loss[n] = loss.detach()
        window_correct[n] = (logits.detach().argmax(1) == yb).sum()
        n += 1
        if n == eval_every or step == steps:
            window = window_loss[:n]
            bad = ~torch.isfinite(window) | (window > diverge_above)
            if bad.any():
                first_bad = step - n + 1 + int(bad.nonzero()[0, 0])
                record(first_bad, int(bad.nonzero()[0, 0]), diverged=True)
                break
            record(step, n)
            bar.update(n)
            n = 0
    bar.close()
    return pd.DataFrame(rows)
