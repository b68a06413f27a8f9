"""Verdicts and numbers a notebook computes, written to ``metrics.json``.

``bnlib.run`` reads ``metrics.json`` to list every notebook's verdicts in
``SUMMARY.md``. A verdict is one of ``"supported"``, ``"not supported"`` and
``"mixed"``, with the claim, where it comes from, and the evidence as text
built from measured numbers.

Example:
    >>> import tempfile
    >>> r = Results(tempfile.mkdtemp())
    >>> r.number("acc_bn", 0.98)
    >>> r.verdict("BN trains faster", "supported", "97% after 2000 vs 9000 steps", source="Ioffe & Szegedy 2015, Fig. 1a")
    'supported'
    >>> r.save().name
    'metrics.json'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

VERDICTS = ("supported", "not supported", "mixed")


def spread(values: Iterable[float], digits: int = 3) -> str:
    """``"mean ± std (n=k)"`` of the finite values (sample std; 0 when n == 1).

    Example:
        >>> spread([0.97, 0.98, 0.99])
        '0.980 ± 0.010 (n=3)'
    """
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return "n/a (no finite values)"
    sd = v.std(ddof=1) if v.size > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f} (n={v.size})"


def mean_diff_ci(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Difference of means ``mean(a) - mean(b)`` and the half-width of its Welch confidence interval.

    The half-width is NaN when either sample has fewer than two values.

    Example:
        >>> d, half = mean_diff_ci([0.98, 0.97, 0.99], [0.95, 0.96, 0.94])
        >>> round(d, 3), round(half, 3)
        (0.03, 0.023)
    """
    from scipy import stats

    x, y = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return diff, math.nan
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0:
        return diff, 0.0
    dof = se**4 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    return diff, float(stats.t.ppf(0.5 + level / 2, dof) * se)


def compare(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> str:
    """``"higher"``, ``"lower"`` or ``"no clear difference"`` for a against b, from :func:`mean_diff_ci`.

    Example:
        >>> compare([0.98, 0.97, 0.99], [0.95, 0.96, 0.94])
        'higher'
    """
    diff, half = mean_diff_ci(a, b, level)
    if math.isnan(half):
        return "no clear difference"
    return "higher" if diff - half > 0 else ("lower" if diff + half < 0 else "no clear difference")


def _plain(value):
    """Convert numpy scalars/arrays and tuples to JSON-friendly Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class Results:
    """Collects a notebook's numbers and verdicts and saves them as ``out_dir/metrics.json``.

    Example:
        >>> import tempfile
        >>> r = Results(tempfile.mkdtemp())
        >>> r.verdict("x", "maybe", "")
        Traceback (most recent call last):
        ...
        ValueError: verdict must be one of 'supported', 'not supported', 'mixed', got 'maybe'
    """

    def __init__(self, out_dir: str | os.PathLike, **info) -> None:
        self.out_dir = Path(out_dir)
        self.info = dict(info)
        self.numbers: dict = {}
        self.verdicts: list[dict] = []

    def number(self, name: str, value) -> None:
        """Record a measured number (or list of numbers) under ``name``."""
        self.numbers[name] = _plain(value)

    def verdict(self, claim: str, verdict: str, evidence: str, source: str = "") -> str:
        """Record a verdict on ``claim``; replaces an earlier verdict on the same claim. Returns ``verdict``."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(map(repr, VERDICTS))}, got {verdict!r}")
        self.verdicts = [v for v in self.verdicts if v["claim"] != claim]
        self.verdicts.append({"claim": claim, "verdict": verdict, "evidence": evidence, "source": source})
        return verdict

    def table(self) -> pd.DataFrame:
        """The verdicts as a DataFrame (for display in the notebook)."""
        return pd.DataFrame(self.verdicts, columns=["claim", "source", "verdict", "evidence"])

    def save(self) -> Path:
        """Write ``metrics.json`` atomically; returns its path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "metrics.json"
        tmp = path.with_suffix(".json.tmp")
        payload = {"info": _plain(self.info), "verdicts": self.verdicts, "numbers": self.numbers}
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, path)
        return path
