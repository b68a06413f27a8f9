"""Checks for the notebooks' parameter-validation cells.

Each check raises ``ValueError`` with a message that names the parameter, what
it must be and what it got, e.g. ``lr must be > 0, got -1``.

Example:
    >>> positive("lr", 0.1)
    >>> positive("lr", -1)
    Traceback (most recent call last):
    ...
    ValueError: lr must be > 0, got -1
"""

from __future__ import annotations

from collections.abc import Collection, Iterable


def positive(name: str, value: float) -> None:
    """``value`` must be a number > 0.

    Example:
        >>> positive("eps", 1e-5)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def positive_int(name: str, value: int, minimum: int = 1) -> None:
    """``value`` must be an integer >= ``minimum``.

    Example:
        >>> positive_int("steps", 10)
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def all_positive(name: str, values: Iterable[float]) -> None:
    """``values`` must be a non-empty list of numbers > 0.

    Example:
        >>> all_positive("lrs", [0.1, 1.0])
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of numbers > 0, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must be a non-empty list of numbers > 0, got []")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name} must be a list of numbers > 0, got {values!r} (bad entry {v!r})")


def one_of(name: str, value: object, options: Collection) -> None:
    """``value`` must be one of ``options``.

    Example:
        >>> one_of("activation", "relu", ["relu", "sigmoid"])
    """
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
