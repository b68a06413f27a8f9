"""Checks for the notebooks' parameter-validation cells, by keyword.

Each check takes the parameters as keywords (``P.positive_int(seeds=seeds,
steps=steps)``) and raises ``ValueError`` with a message that names the
parameter, what it must be and what it got, e.g. ``lr must be a finite number > 0, got -1``.
Numbers must be finite: ``inf`` and ``nan`` are refused by every numeric check.

Example:
    >>> positive(lr=0.1, eps=1e-5)
    >>> positive(lr=-1)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number > 0, got -1
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable


def _number(value) -> bool:
    """True for a finite int or float (not a bool, inf or nan)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def positive(*, none_ok: bool = False, **named: float | None) -> None:
    """Every value must be a finite number > 0 (or None when ``none_ok``).

    Example:
        >>> positive(none_ok=True, base_lr=None)
        >>> positive(lr=float("inf"))
        Traceback (most recent call last):
        ...
        ValueError: lr must be a finite number > 0, got inf
    """
    for name, value in named.items():
        if none_ok and value is None:
            continue
        if not _number(value) or not value > 0:
            raise ValueError(f"{name} must be a finite number > 0{' or None' if none_ok else ''}, got {value!r}")


def positive_int(*, minimum: int = 1, none_ok: bool = False, **named: int | None) -> None:
    """Every value must be an integer >= ``minimum`` (or None when ``none_ok``).

    Example:
        >>> positive_int(steps=10, seeds=3)
        >>> positive_int(minimum=2, test_size=1)
        Traceback (most recent call last):
        ...
        ValueError: test_size must be an integer >= 2, got 1
    """
    for name, value in named.items():
        if none_ok and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if none_ok else ''}, got {value!r}")


def nonnegative_int(**named: int) -> None:
    """Every value must be an integer >= 0 (``first_seed``).

    Example:
        >>> nonnegative_int(first_seed=0)
    """
    positive_int(minimum=0, **named)


def all_positive(**named: Iterable[float]) -> None:
    """Every value must be a non-empty list of finite numbers > 0.

    Example:
        >>> all_positive(lrs=[0.1, 1.0])
        >>> all_positive(lrs=[0.1, 0])
        Traceback (most recent call last):
        ...
        ValueError: lrs must be a list of finite numbers > 0, got [0.1, 0] (bad entry 0)
        >>> all_positive(lrs=[0.1, float("nan")])
        Traceback (most recent call last):
        ...
        ValueError: lrs must be a list of finite numbers > 0, got [0.1, nan] (bad entry nan)
    """
    for name, values in named.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"{name} must be a list of finite numbers > 0, got {values!r}")
        values = list(values)
        if not values:
            raise ValueError(f"{name} must be a non-empty list of finite numbers > 0, got []")
        for v in values:
            if not _number(v) or not v > 0:
                raise ValueError(f"{name} must be a list of finite numbers > 0, got {values!r} (bad entry {v!r})")


def in_range(low: float, high: float, *, closed_high: bool = False, none_ok: bool = False, **named: float | None) -> None:
    """Every value must be a finite number in ``[low, high)`` (``[low, high]`` with ``closed_high``), or None when
    ``none_ok``.

    Example:
        >>> in_range(0, 1, dropout=0.5)
        >>> in_range(0, 1, dropout=1)
        Traceback (most recent call last):
        ...
        ValueError: dropout must be a finite number in [0, 1), got 1
        >>> in_range(0, float("inf"), closed_high=True, momentum=float("inf"))
        Traceback (most recent call last):
        ...
        ValueError: momentum must be a finite number in [0, inf], got inf
    """
    for name, value in named.items():
        if none_ok and value is None:
            continue
        ok = _number(value) and low <= value and (value <= high if closed_high else value < high)
        if not ok:
            raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}{']' if closed_high else ')'}"
                             f"{' or None' if none_ok else ''}, got {value!r}")


def one_of(options: Collection, **named: object) -> None:
    """Every value must be one of ``options``.

    Example:
        >>> one_of(["relu", "sigmoid"], activation="relu")
        >>> one_of(["cpu", "cuda"], device="tpu")
        Traceback (most recent call last):
        ...
        ValueError: device must be one of 'cpu', 'cuda', got 'tpu'
    """
    for name, value in named.items():
        if value not in options:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")


def seeds_from(first_seed: int, seeds: int) -> list[int]:
    """The seeds of a notebook: ``first_seed, ..., first_seed + seeds - 1``.

    Example:
        >>> seeds_from(100, 3)
        [100, 101, 102]
    """
    nonnegative_int(first_seed=first_seed)
    positive_int(seeds=seeds)
    return list(range(first_seed, first_seed + seeds))


def executor(**named: str) -> None:
    """Check executor specs: ``"local"``, ``"dask"`` or ``"dask://HOST:PORT"`` (see :func:`bnlib.sweep.executor_from`).

    Example:
        >>> executor(executor="dask://10.0.0.5:8786")
        >>> executor(executor="cluster")
        Traceback (most recent call last):
        ...
        ValueError: executor must be "local", "dask" (a LocalCluster on this machine) or "dask://HOST:PORT", got 'cluster'
    """
    for name, value in named.items():
        ok = value in ("local", "dask") or (isinstance(value, str) and value.startswith("dask://") and ":" in value[7:])
        if not ok:
            raise ValueError(f'{name} must be "local", "dask" (a LocalCluster on this machine) or "dask://HOST:PORT", '
                             f"got {value!r}")


_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")


def device(**named: str) -> None:
    """Every value must be ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"auto"``; CUDA only where torch sees a GPU.

    ``"auto"`` picks CUDA when available, else the CPU (:func:`bnlib.train.resolve_device`).
    torch is imported only when a value asks for CUDA.

    Example:
        >>> device(device="cpu", probe_device="auto")
        >>> device(device="tpu")
        Traceback (most recent call last):
        ...
        ValueError: device must be 'cpu', 'cuda' (or 'cuda:N') or 'auto', got 'tpu'
        >>> from unittest import mock
        >>> with mock.patch("torch.cuda.is_available", return_value=False):
        ...     device(device="cuda")
        Traceback (most recent call last):
        ...
        ValueError: device='cuda' but torch ... sees no CUDA device (...is_available() is False); use -p device cpu or ...
    """
    for name, value in named.items():
        if not isinstance(value, str) or not _DEVICE.fullmatch(value):
            raise ValueError(f"{name} must be 'cpu', 'cuda' (or 'cuda:N') or 'auto', got {value!r}")
        if value.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(
                    f"{name}={value!r} but torch {torch.__version__} sees no CUDA device "
                    f"(torch.cuda.is_available() is False); use -p {name} cpu or -p {name} auto"
                )
