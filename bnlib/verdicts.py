"""From per-seed numbers to a verdict, and the verdicts of a notebook in ``metrics.json``.

A claim predicts a direction and declares ``min_effect``, the smallest effect
that would matter, in its own unit. The evidence is one number per seed and
arm; arms that share seeds (same initial weights and data order) are compared
**paired**, others with Welch's t. The outcome:

- **supported**: the whole 95% t-interval lies on the predicted side of the
  reference (zero, unless the claim names another) and the estimate reaches
  ``min_effect``;
- **not supported**: the whole interval lies short of ``min_effect`` (the
  effect is absent, negligible or reversed);
- **inconclusive**: neither; the evidence says about how many seeds would
  decide it, from the observed spread;
- **mixed**: only for a compound claim whose parts reach different decisive
  outcomes;
- **untestable here**: a :class:`Precondition` of the test failed (no positive
  control, an intervention that did not act, a tuned value at its grid's edge,
  no plateau, a measure at its floor or ceiling). It names the failed condition
  and what would make the claim testable, and is never read as evidence against
  the claim.

A **check** (:func:`check`) is an exact computation (an identity, a bound, a
single timing, a demonstration by construction): it *passes* or *fails*, and is
counted apart from the findings. Proportions and binary per-seed outcomes get
exact intervals (:func:`proportion`, :func:`paired_binary`); per-seed values
that are all equal say so instead of showing a zero-width t-interval.

Example:
    >>> bn = pd.Series([0.981, 0.979, 0.980, 0.982, 0.978], index=range(5))
    >>> plain = pd.Series([0.975, 0.973, 0.976, 0.974, 0.972], index=range(5))
    >>> e = difference(bn, plain, label="BN − plain test accuracy")
    >>> e.test, e.n
    ('paired t', 5)
    >>> claim = Claim("BN reaches a higher accuracy", "paper Fig. 1(a)", predicts="higher", min_effect=0.002)
    >>> claim.decide(e)
    'supported'
    >>> e.text()
    'BN − plain test accuracy: +0.0060 [95% CI +0.0042, +0.0078], paired t, n=5'

The module copies alone (numpy, pandas, scipy); ``Results(machine=...)`` records where the numbers came from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

FINDINGS = ("supported", "not supported", "inconclusive", "mixed", "untestable here")  # outcomes of a claim about BN
CHECKS = ("passes", "fails")  # outcomes of a check: an identity, a bound, a single timing, a demonstration by construction
OUTCOMES = FINDINGS + CHECKS
LEVEL = 0.95


# ---------------------------------------------------------------- numbers

def t_quantile(dof: float, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile for a ``level`` interval with ``dof`` degrees of freedom.

    Example:
        >>> round(t_quantile(4), 3)
        2.776
    """
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def fmt(x: float, scale: float | None = None, sign: bool = False) -> str:
    """``x`` with as many decimals as ``scale`` (an interval's half-width) warrants: two significant digits of it.

    Without ``scale`` (or a zero one): three significant digits. Very small or large numbers use exponent form.

    Example:
        >>> fmt(0.98034, 0.0014), fmt(6312.4, 274), fmt(1.4e-12), fmt(0.05, sign=True), fmt(9.3e-4, 0.005)
        ('0.9803', '6312', '1.4e-12', '+0.0500', '0.0009')
    """
    if x is None or not math.isfinite(x):
        return str(x)
    s = "+" if sign else ""
    if scale is not None and math.isfinite(scale) and scale > 0:
        decimals = 1 - math.floor(math.log10(scale))
        if decimals <= 6 and abs(x) < 1e6:
            return f"{x:{s}.{max(decimals, 0)}f}"
        return f"{x:{s}.2e}"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:{s}.2g}"
    if x == 0:
        return f"{x:{s}.0f}"
    decimals = 2 - math.floor(math.log10(abs(x)))
    return f"{x:{s}.{min(max(decimals, 0), 8)}f}"


def _values(x, name: str) -> pd.Series:
    """Per-seed values as a float Series (a plain sequence is indexed 0..n-1); NaN is refused with advice."""
    s = x.astype(float) if isinstance(x, pd.Series) else pd.Series(np.asarray(list(x), dtype=float))
    bad = s.index[~np.isfinite(s.to_numpy())].tolist()
    if bad:
        raise ValueError(
            f"{name} has non-finite values at seeds {bad}: give diverged or never-learning runs a value first "
            "(chance accuracy for a diverged run, the run's length for a target never reached) and count them in the note"
        )
    if len(s) == 0:
        raise ValueError(f"{name} is empty: a verdict needs at least one per-seed value")
    return s


def mean_sd(values, digits: int | None = None) -> str:
    """``"mean (SD sd, n=k)"`` of the finite values, for tables; non-finite values are counted, not dropped silently.

    Example:
        >>> mean_sd([0.97, 0.98, 0.99])
        '0.980 (SD 0.010, n=3)'
        >>> mean_sd([0.5, float("nan")], digits=2)
        '0.50 (n=1; 1 not finite)'
        >>> mean_sd([0.024, 0.024000000000000004])
        '0.0240 (SD 0, n=2)'
    """
    v = np.asarray(list(values), dtype=float)
    finite = v[np.isfinite(v)]
    missing = f"; {len(v) - len(finite)} not finite" if len(finite) < len(v) else ""
    if finite.size == 0:
        return f"n/a (no finite values of {len(v)})"
    sd = float(finite.std(ddof=1)) if finite.size > 1 else None
    if sd is not None and sd <= 1e-12 * max(1.0, float(np.abs(finite).max())):
        sd = 0.0  # equal values up to float rounding (0.024 and 0.024000000000000004)
    mean = f"{finite.mean():.{digits}f}" if digits is not None else fmt(float(finite.mean()), sd)
    if sd is None:
        return f"{mean} (n=1{missing})"
    sd_text = f"{sd:.{digits}f}" if digits is not None else fmt(sd, sd)
    return f"{mean} (SD {sd_text}, n={finite.size}{missing})"


def arms_text(arms: Mapping[str, Iterable[float]], digits: int | None = None) -> str:
    """Each arm's per-seed values as :func:`mean_sd`, named, in one line for a verdict's note.

    Example:
        >>> arms_text({"BN": [0.97, 0.98, 0.99], "plain": [0.90, 0.92, 0.94]})
        'BN 0.980 (SD 0.010, n=3), plain 0.920 (SD 0.020, n=3)'
    """
    return ", ".join(f"{name} {mean_sd(values, digits)}" for name, values in arms.items())


@dataclass(frozen=True)
class Effect:
    """An effect estimate over seeds with its Student-t interval.

    ``values`` are the per-seed numbers behind it (the paired differences for
    ``paired t``); ``sd`` their sample SD (Welch: the SD a single seed's
    difference would have, ``sqrt(sd_a² + sd_b²)``). ``low``/``high`` are NaN
    when n < 2. ``test`` is ``"paired t"``, ``"Welch t"``, ``"one-sample t"``,
    ``"exact"`` (one deterministic computation: the interval is the value), or an
    exact interval for binary outcomes (:data:`CLOPPER_PEARSON`, :data:`EXACT_PAIRED`).
    A t-effect whose per-seed values are all equal (SD 0) says "all n seeds equal"
    rather than showing a zero-width interval.

    Example:
        >>> e = one_sample([1.0, 2.0, 3.0], label="x")
        >>> round(e.low, 3), round(e.high, 3), e.dof
        (-0.484, 4.484, 2.0)
    """

    estimate: float
    low: float
    high: float
    n: int
    test: str
    sd: float
    dof: float
    label: str = ""
    n_b: int | None = None
    level: float = LEVEL
    values: tuple = ()

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN when it is undefined)."""
        return (self.high - self.low) / 2

    @property
    def all_equal(self) -> bool:
        """A t-effect over two or more seeds whose per-seed values are all equal (its t-interval has zero width)."""
        return self.test.endswith(" t") and self.n >= 2 and self.sd == 0

    def n_text(self) -> str:
        """``"n=5"``, or ``"n=3+3"`` for Welch."""
        return f"n={self.n}" if self.n_b is None else f"n={self.n}+{self.n_b}"

    def text(self) -> str:
        """One line that always says what the interval is.

        Example:
            >>> exact(2.4e-7, label="max |error|").text()
            'max |error|: 2.4e-07 (one computation: no interval)'
        """
        head = f"{self.label}: " if self.label else ""
        if self.test == "exact":
            return f"{head}{fmt(self.estimate)} (one computation: no interval)"
        if self.all_equal:
            return f"{head}{fmt(self.estimate, sign=True)} (all {self.n_text().removeprefix('n=')} seeds equal: no spread, " \
                   f"no interval; {self.test})"
        scale = self.half_width if math.isfinite(self.half_width) and self.half_width > 0 else None
        est = fmt(self.estimate, scale, sign=True)
        if not math.isfinite(self.low):
            return f"{head}{est} (no interval: {self.test}, {self.n_text()})"
        ci = f"[{self.level:.0%} CI {fmt(self.low, scale, sign=True)}, {fmt(self.high, scale, sign=True)}]"
        return f"{head}{est} {ci}, {self.test}, {self.n_text()}"

    def record(self) -> dict:
        """The JSON-friendly fields of ``metrics.json``."""
        return {"estimate": _plain(self.estimate), "ci": [_plain(self.low), _plain(self.high)], "n": self.n,
                "n_b": self.n_b, "test": self.test, "sd": _plain(self.sd), "dof": _plain(self.dof),
                "label": self.label, "values": _plain(list(self.values))}

    @classmethod
    def from_record(cls, rec: Mapping) -> Effect:
        """The effect back from its ``metrics.json`` fields (:meth:`record`; ``None`` read as NaN).

        Example:
            >>> Effect.from_record(exact(0.5, label="x").record()).text()
            'x: 0.500 (one computation: no interval)'
        """
        nan = float("nan")
        num = lambda v: nan if v is None else float(v)  # noqa: E731
        low, high = rec.get("ci") or (None, None)
        return cls(num(rec["estimate"]), num(low), num(high), rec["n"], rec["test"], num(rec.get("sd")),
                   num(rec.get("dof")), rec.get("label", ""), rec.get("n_b"), values=tuple(rec.get("values") or ()))


def _t_effect(values: np.ndarray, test: str, label: str, level: float, estimate: float | None = None) -> Effect:
    n = len(values)
    mean = float(values.mean()) if estimate is None else estimate
    if n < 2:
        return Effect(mean, math.nan, math.nan, n, test, math.nan, math.nan, label, level=level, values=tuple(values))
    sd = float(values.std(ddof=1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return Effect(mean, mean - half, mean + half, n, test, sd, float(n - 1), label, level=level, values=tuple(values))


def one_sample(x, *, label: str = "", level: float = LEVEL) -> Effect:
    """The mean of per-seed values with its Student-t interval.

    Example:
        >>> one_sample([0.5, 0.7], label="gain").text()
        'gain: +0.6 [95% CI -0.7, +1.9], one-sample t, n=2'
    """
    return _t_effect(_values(x, "x").to_numpy(), "one-sample t", label, level)


def _aligned(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Two arms' per-seed values in the same seed order; refused, naming the seeds, unless they share their seeds."""
    if set(a.index) != set(b.index):
        raise ValueError(
            "paired comparison needs the same seeds in both arms; "
            f"only in a: {sorted(set(a.index) - set(b.index))}; only in b: {sorted(set(b.index) - set(a.index))}"
        )
    return a, b.loc[a.index]


def paired(a, b, *, label: str = "", level: float = LEVEL, relative: bool = False) -> Effect:
    """``a − b`` over shared seeds (paired t); ``relative=True``: the per-seed ratio ``a / b − 1``.

    Series are aligned on their index (the seed); plain sequences by position.

    Example:
        >>> paired([3.0, 5.0, 4.0], [2.0, 3.0, 3.5]).text()
        '+1.2 [95% CI -0.7, +3.1], paired t, n=3'
        >>> paired(pd.Series([1.0], index=[0]), pd.Series([1.0], index=[1]))
        Traceback (most recent call last):
        ...
        ValueError: paired comparison needs the same seeds in both arms; only in a: [0]; only in b: [1]
    """
    a, b = _aligned(_values(a, "a"), _values(b, "b"))
    if relative:
        if (b.to_numpy() == 0).any():
            raise ValueError("relative=True needs b != 0 for every seed")
        d = a.to_numpy() / b.to_numpy() - 1
    else:
        d = a.to_numpy() - b.to_numpy()
    return _t_effect(d, "paired t", label, level)


def welch(a, b, *, label: str = "", level: float = LEVEL) -> Effect:
    """``mean(a) − mean(b)`` for arms that do not share seeds (Welch's t, Welch–Satterthwaite dof).

    Example:
        >>> welch([0.98, 0.97, 0.99], [0.95, 0.96, 0.94]).text()
        '+0.030 [95% CI +0.007, +0.053], Welch t, n=3+3'
    """
    x, y = _values(a, "a").to_numpy(), _values(b, "b").to_numpy()
    diff = float(x.mean() - y.mean())
    values = tuple(np.concatenate([x - x.mean(), y - y.mean()]) + diff)  # not per-seed differences: kept for plots only
    if len(x) < 2 or len(y) < 2:
        return Effect(diff, math.nan, math.nan, len(x), "Welch t", math.nan, math.nan, label, len(y), level, values)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    sd = math.sqrt(x.var(ddof=1) + y.var(ddof=1))
    if se == 0:
        return Effect(diff, diff, diff, len(x), "Welch t", 0.0, math.inf, label, len(y), level, values)
    dof = se**4 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = t_quantile(dof, level) * se
    return Effect(diff, diff - half, diff + half, len(x), "Welch t", sd, float(dof), label, len(y), level, values)


def difference(a, b, *, label: str = "", level: float = LEVEL, relative: bool = False) -> Effect:
    """``a − b``: paired when both are Series over the same seeds, Welch otherwise.

    Example:
        >>> difference(pd.Series([2.0, 3.0]), pd.Series([1.0, 1.5])).test
        'paired t'
        >>> difference([2.0, 3.0], [1.0, 1.5, 1.2]).test
        'Welch t'
    """
    if isinstance(a, pd.Series) and isinstance(b, pd.Series) and set(a.index) == set(b.index):
        return paired(a, b, label=label, level=level, relative=relative)
    if relative:
        raise ValueError("relative=True needs two arms over the same seeds (a paired comparison)")
    return welch(a, b, label=label, level=level)


def exact(value: float, *, label: str = "") -> Effect:
    """A number computed once (a float64 error, a rank, a timing ratio): no interval, so the value itself decides.

    Use it for deterministic checks against a tolerance; for anything that varies with the seed, measure per seed.

    Example:
        >>> exact(3.0).low
        3.0
    """
    v = float(value)
    return Effect(v, v, v, 1, "exact", 0.0, math.nan, label, values=(v,))


CLOPPER_PEARSON = "exact binomial (Clopper–Pearson)"
EXACT_PAIRED = "exact paired (McNemar: the discordant seeds)"


def _binary(x, name: str) -> pd.Series:
    s = _values(x, name)
    if not s.isin([0.0, 1.0]).all():
        raise ValueError(f"{name} must hold one binary outcome per seed (True/False or 1/0), got {sorted(set(s))}")
    return s


def _clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def proportion(outcomes, *, label: str = "", level: float = LEVEL) -> Effect:
    """The share of seeds with a binary outcome (diverged, reached the target), with its exact Clopper–Pearson
    interval: never a t-interval, which is zero-wide when every seed agrees.

    Example:
        >>> proportion([True, True, True, True, True], label="diverged").text()
        'diverged: +1.00 [95% CI +0.48, +1.00], exact binomial (Clopper–Pearson), n=5'
    """
    s = _binary(outcomes, "outcomes")
    k, n = int(s.sum()), len(s)
    low, high = _clopper_pearson(k, n, level)
    return Effect(k / n, low, high, n, CLOPPER_PEARSON, math.nan, math.nan, label, level=level, values=tuple(s))


def paired_binary(a, b, *, label: str = "", level: float = LEVEL) -> Effect:
    """``share(a) − share(b)`` for binary outcomes over shared seeds, with an exact paired interval.

    Only discordant seeds (the outcome in one arm, not in the other) carry information (McNemar): with ``d`` of the
    ``n`` seeds discordant and ``k`` of them for ``a``, the difference is ``(d / n)(2θ − 1)`` with ``θ`` the share of
    discordant seeds that favour ``a``, and the interval maps ``θ``'s Clopper–Pearson interval (conditional on
    ``d``). With no discordant seed, the bound is the Clopper–Pearson upper limit of the discordant share, 0 of n.

    Example:
        >>> paired_binary([1, 1, 1, 1, 1], [0, 0, 0, 0, 0], label="diverged, A − B").text()  # 5 of 5: McNemar's p = 0.06
        'diverged, A − B: +1.00 [95% CI -0.04, +1.00], exact paired (McNemar: the discordant seeds), n=5'
        >>> paired_binary([1, 0, 1], [1, 0, 1]).text()
        '+0.00 [95% CI -0.71, +0.71], exact paired (McNemar: the discordant seeds), n=3'
    """
    a, b = _aligned(_binary(a, "a"), _binary(b, "b"))
    n = len(a)
    wins, losses = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    d = wins + losses
    if d == 0:
        bound = _clopper_pearson(0, n, level)[1]
        low, high = -bound, bound
    else:
        t_low, t_high = _clopper_pearson(wins, d, level)
        low, high = d / n * (2 * t_low - 1), d / n * (2 * t_high - 1)
    diffs = tuple(a.to_numpy() - b.to_numpy())
    return Effect((wins - losses) / n, low, high, n, EXACT_PAIRED, math.nan, math.nan, label, level=level, values=diffs)


def sign_test(differences) -> tuple[int, int, float]:
    """Wins (positive differences), non-zero differences and the two-sided sign-test p-value.

    A win count describes; it never decides a verdict alone.

    Example:
        >>> sign_test([0.1, 0.2, -0.1, 0.3, 0.0])
        (3, 4, 0.625)
    """
    from scipy import stats

    d = np.asarray(list(differences), dtype=float)
    d = d[np.isfinite(d) & (d != 0)]
    wins = int((d > 0).sum())
    p = float(stats.binomtest(wins, len(d)).pvalue) if len(d) else 1.0
    return wins, int(len(d)), p


def sign_text(differences, predicts: str = "higher", what: str | None = None) -> str:
    """How many seeds' paired differences lie on the predicted side, with the sign-test p-value (:func:`sign_test`), in
    words for a note: a count describes and never decides. ``differences`` may be an :class:`Effect` (its values).

    Example:
        >>> sign_text([0.1, 0.2, -0.1, 0.3, 0.0])
        'higher in 3/4 seeds with a nonzero difference (sign test p=0.62)'
        >>> sign_text([-0.1, -0.2], predicts="lower", what="BN needs fewer steps")
        'BN needs fewer steps in 2/2 seeds with a nonzero difference (sign test p=0.50)'
    """
    values = list(differences.values if isinstance(differences, Effect) else differences)
    wins, n, p = sign_test(values if predicts == "higher" else [-v for v in values])
    return f"{what or predicts} in {wins}/{n} seeds with a nonzero difference (sign test p={p:.2f})"


def arms_in_range(what: str, arms: Mapping[str, Iterable[float] | float], low: float, high: float, *,
                  remedy: str = "") -> Precondition:
    """:func:`in_range` over several arms at once: the arm whose mean lies nearest an edge of ``(low, high)`` is the
    one recorded, so the precondition passes only when every arm's mean is inside.

    Example:
        >>> arms_in_range("mean test accuracy", {"BN": [0.9, 0.92], "plain": [0.11, 0.12]}, 0.15, 0.99).text()
        'in range: mean test accuracy of plain (the arm nearest an edge, of 2) = 0.115, inside (0.15, 0.99) → fails (...)'
    """
    means = {k: float(np.mean(list(v) if isinstance(v, Iterable) else [v])) for k, v in arms.items()}
    nearest = min(means, key=lambda k: min(means[k] - low, high - means[k]))
    return in_range(f"{what} of {nearest} (the arm nearest an edge, of {len(means)})", means[nearest], low, high,
                    remedy=remedy or "a regime where no arm is at its floor or at the ceiling")


def seeds_to_decide(effect: Effect, gap: float, level: float = LEVEL, cap: int = 1000) -> int | None:
    """About how many seeds would make the interval's half-width smaller than ``gap``, from the observed SD.

    ``None`` when it cannot be said (no SD, no gap) or it exceeds ``cap``.

    Example:
        >>> seeds_to_decide(one_sample([0.0, 0.1, 0.05]), gap=0.02)
        27
    """
    if not (math.isfinite(effect.sd) and effect.sd > 0 and gap > 0):
        return None
    for n in range(2, cap + 1):
        if t_quantile(n - 1, level) * effect.sd / math.sqrt(n) < gap:
            return n
    return None


# ---------------------------------------------------------------- runs -> per-seed numbers

def steps_to_target(steps: Sequence[float], values: Sequence[float], target: float) -> float:
    """First step at which ``values`` reach ``target``, linearly interpolated between evaluations; NaN if never.

    Interpolation keeps a tie at the evaluation resolution a tie: two runs that cross the target between the same two
    evaluations get different steps only as far as their values differ.

    Example:
        >>> steps_to_target([0, 100, 200], [0.1, 0.4, 0.8], 0.6)
        150.0
        >>> steps_to_target([0, 100], [0.1, 0.4], 0.6)
        nan
    """
    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    hit = np.flatnonzero(np.nan_to_num(v, nan=-np.inf) >= target)
    if not len(hit):
        return math.nan
    i = int(hit[0])
    if i == 0 or not math.isfinite(v[i - 1]):
        return float(s[i])
    return float(s[i - 1] + (target - v[i - 1]) / (v[i] - v[i - 1]) * (s[i] - s[i - 1]))


def final_rows(df: pd.DataFrame, keys: Sequence[str], *, column: str = "test_acc", diverged_value: float | None = None,
               step: str = "step", seed: str = "seed") -> pd.DataFrame:
    """The last row of every run (``keys`` + ``seed``), with ``value``: ``column``, or ``diverged_value`` for a run
    that diverged (``diverged`` column true in its last row). Diverged runs stay in the table and are counted.

    Example:
        >>> runs = pd.DataFrame({"norm": ["bn"] * 4, "seed": [0, 0, 1, 1], "step": [0, 10, 0, 5],
        ...                      "test_acc": [0.1, 0.9, 0.1, float("nan")], "diverged": [False, False, False, True]})
        >>> final_rows(runs, ["norm"], diverged_value=0.1)[["seed", "value", "diverged"]].to_dict("records")
        [{'seed': 0, 'value': 0.9, 'diverged': False}, {'seed': 1, 'value': 0.1, 'diverged': True}]
    """
    last = df.sort_values(step, kind="stable").groupby(list(keys) + [seed], sort=False).tail(1)
    last = last.sort_values(list(keys) + [seed], kind="stable").reset_index(drop=True)
    diverged = last["diverged"].astype(bool) if "diverged" in last else pd.Series(False, index=last.index)
    last["diverged"] = diverged
    value = last[column].astype(float)
    if diverged_value is not None:
        value = value.where(~diverged, diverged_value)
    last["value"] = value
    return last


def per_seed(df: pd.DataFrame, where: Mapping | None = None, *, value: str = "value", seed: str = "seed") -> pd.Series:
    """The ``value`` column of the rows matching ``where`` (column -> value) as a Series indexed by seed.

    Example:
        >>> t = pd.DataFrame({"net": ["a", "a", "b"], "seed": [0, 1, 0], "value": [1.0, 2.0, 3.0]})
        >>> per_seed(t, {"net": "a"}).to_dict()
        {0: 1.0, 1: 2.0}
    """
    rows = df
    for k, v in (where or {}).items():
        rows = rows[rows[k] == v]
    if rows[seed].duplicated().any():
        raise ValueError(f"more than one row per seed for {dict(where or {})}: add the missing keys to `where`")
    if rows.empty:
        raise ValueError(f"no rows match {dict(where or {})}")
    return rows.set_index(seed)[value].astype(float).sort_index()


# ---------------------------------------------------------------- preconditions

PRECONDITION_KINDS = ("positive control", "manipulation check", "interior optimum", "plateau", "in range")


@dataclass(frozen=True)
class Precondition:
    """A condition under which a claim's test can decide, measured in this run, with its requirement.

    A failed one makes the verdict *untestable here* (:func:`judge`), naming it and ``remedy``: what would make the
    claim testable. Build them with :func:`positive_control`, :func:`manipulation_check`, :func:`interior_optimum`,
    :func:`plateau` and :func:`in_range`. ``parts`` names the parts of a compound claim it gates (:meth:`for_parts`);
    empty, it gates the whole claim.

    Example:
        >>> interior_optimum("plain network's lr", 1.0, [0.01, 0.1, 1.0]).text()
        "interior optimum: plain network's lr = 1, inside the grid (0.01, 1) → fails (extend the grid beyond 1)"
    """

    kind: str
    name: str
    value: float
    requirement: str
    passed: bool
    remedy: str = ""
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in PRECONDITION_KINDS:
            raise ValueError(f"unknown precondition kind {self.kind!r}; valid kinds: {', '.join(PRECONDITION_KINDS)}")

    def for_parts(self, *parts: str) -> Precondition:
        """This condition gating only the named parts of a compound claim: when it fails, those parts are
        *untestable here* and the claim is decided by its other parts.

        Example:
            >>> in_range("plain ICS at lr 0.5", 0.92, 0.1, 0.9).for_parts("lr 0.5").text()
            '[lr 0.5] in range: plain ICS at lr 0.5 = 0.92, inside (0.1, 0.9) → fails (a regime where the measure can move)'
        """
        if not parts:
            raise ValueError("for_parts needs at least one part name")
        return dataclasses.replace(self, parts=tuple(parts))

    def text(self) -> str:
        """The condition, its measured value and requirement, and whether it holds (with the remedy when not)."""
        verdict = "passes" if self.passed else "fails" + (f" ({self.remedy})" if self.remedy else "")
        where = f"[{'; '.join(self.parts)}] " if self.parts else ""
        return f"{where}{self.kind}: {self.name} = {self.value:.4g}, {self.requirement} → {verdict}"

    def record(self) -> dict:
        """The JSON-friendly fields of ``metrics.json``."""
        return {"kind": self.kind, "name": self.name, "value": _plain(self.value), "requirement": self.requirement,
                "passed": bool(self.passed), "remedy": self.remedy, "parts": list(self.parts)}


def positive_control(name: str, effect: Effect, margin: float, *, remedy: str = "") -> Precondition:
    """A known difference measured in the same setting (e.g. BN − no normalization) whose whole interval lies beyond
    ``margin``, the claim's margin: the test could see a difference of the size the claim is about.

    Example:
        >>> positive_control("BN − none", paired([0.90, 0.91, 0.92], [0.90, 0.905, 0.915]), 0.01).passed
        False
    """
    passed = math.isfinite(effect.low) and (effect.low > margin or effect.high < -margin)
    return Precondition("positive control", name, effect.estimate,
                        f"its interval [{fmt(effect.low)}, {fmt(effect.high)}] beyond ±{margin:g}", passed,
                        remedy or "a setting where a known difference exceeds the margin")


def manipulation_check(name: str, value: float, threshold: float, *, above: bool = True,
                       remedy: str = "") -> Precondition:
    """The intervention did what it must (the clip clips, the noise perturbs more than the control drifts):
    ``value`` above (or below) ``threshold``.

    Example:
        >>> manipulation_check("share of values clipped", 0.00045, 0.01).text()
        'manipulation check: share of values clipped = 0.00045, > 0.01 → fails (an intervention that acts)'
    """
    passed = value > threshold if above else value < threshold
    return Precondition("manipulation check", name, float(value), f"{'>' if above else '<'} {threshold:g}", passed,
                        remedy or "an intervention that acts")


def interior_optimum(name: str, chosen: float, grid: Sequence[float], *, remedy: str = "") -> Precondition:
    """A tuned value lies strictly inside its grid: at an edge, the optimum may lie outside what was tried.

    Example:
        >>> interior_optimum("lr", 0.1, [0.01, 0.1, 1.0]).passed, interior_optimum("lr", 0.01, [0.01, 0.1]).passed
        (True, False)
    """
    low, high = min(grid), max(grid)
    passed = low < chosen < high
    return Precondition("interior optimum", name, float(chosen), f"inside the grid ({low:g}, {high:g})", passed,
                        remedy or f"extend the grid beyond {chosen:g}")


def plateau(name: str, change: float, max_change: float, *, remedy: str = "") -> Precondition:
    """For a claim about final values: the change over the last quarter of training is at most ``max_change``.

    Example:
        >>> plateau("test accuracy, last quarter", 0.008, 0.005).passed
        False
    """
    return Precondition("plateau", name, float(change), f"|change| ≤ {max_change:g}", abs(change) <= max_change,
                        remedy or "train to a plateau")


def in_range(name: str, value: float, low: float, high: float, *, remedy: str = "") -> Precondition:
    """A measure away from its floor, chance or saturation: strictly between ``low`` and ``high`` (check each arm).

    Example:
        >>> in_range("plain network's accuracy", 0.101, 0.12, 0.99).text()
        "in range: plain network's accuracy = 0.101, inside (0.12, 0.99) → fails (a regime where the measure can move)"
    """
    return Precondition("in range", name, float(value), f"inside ({low:g}, {high:g})", low < value < high,
                        remedy or "a regime where the measure can move")


# ---------------------------------------------------------------- claims and outcomes

def _more_seeds(effect: Effect, gap: float) -> str:
    """How many seeds would decide an inconclusive effect, in words (from :func:`seeds_to_decide`)."""
    if effect.test in (CLOPPER_PEARSON, EXACT_PAIRED):
        return "more seeds would narrow the exact interval"
    n = seeds_to_decide(effect, gap, effect.level)
    per = " per arm" if effect.n_b is not None else ""
    more = f"about {n} seeds{per} would decide it" if n else "more seeds than is practical would be needed to decide it"
    return f"{more} (from the observed SD)"


@dataclass(frozen=True)
class Claim:
    """A claim: the direction it predicts and the smallest effect that would matter, declared once.

    ``predicts`` is ``"higher"`` or ``"lower"``: the sign of the effect (measured from ``reference``, zero by
    default) if the claim is right. ``min_effect`` >= 0 is in the effect's own unit; with 0, an absent effect
    can never be "not supported", so set it whenever the claim is about a size.

    ``predicts="same"`` is a claim of *no* effect (equivalence): supported when the whole interval lies within
    ``reference ± min_effect`` (``min_effect`` > 0: the largest effect that would not matter), not supported when it
    lies wholly outside that band, inconclusive otherwise.

    Example:
        >>> c = Claim("BN trains faster", "paper Fig. 1(a)", predicts="lower", min_effect=0.1, unit="relative steps")
        >>> c.decide(paired([50.0, 60.0, 55.0], [100.0, 110.0, 105.0], relative=True))
        'supported'
        >>> c.rule()
        'supported if the 95% CI of relative steps lies below 0 and the estimate reaches -0.1; not supported ... above -0.1'
        >>> same = Claim("eps does not matter", "note 003", predicts="same", min_effect=0.005, unit="accuracy difference")
        >>> same.decide(paired([0.910, 0.920, 0.900, 0.915], [0.911, 0.919, 0.901, 0.914])), same.decide(exact(0.02))
        ('supported', 'not supported')
    """

    text: str
    source: str
    predicts: str
    min_effect: float
    unit: str = "the effect"
    reference: float = 0.0
    margin: str = ""  # where min_effect came from, when it was measured in the run (:meth:`margin_from`)

    def __post_init__(self) -> None:
        if self.predicts not in ("higher", "lower", "same"):
            raise ValueError(f"predicts must be 'higher', 'lower' or 'same', got {self.predicts!r}")
        if not (isinstance(self.min_effect, (int, float)) and self.min_effect >= 0):
            raise ValueError(f"min_effect must be a number >= 0 (in the effect's unit), got {self.min_effect!r}")
        if self.predicts == "same" and not self.min_effect > 0:
            raise ValueError("a claim of no effect (predicts='same') needs min_effect > 0: "
                             "the largest effect that would not matter")

    def margin_from(self, effect: Effect, fraction: float, what: str) -> Claim:
        """This claim with ``min_effect`` = ``fraction`` × |``effect``'s estimate|: a margin relative to an effect
        measured in the same run (``what`` names it), printed with the rule.

        Example:
            >>> same = Claim("rigid BN does no better than BN", "note 000", predicts="same", min_effect=0.01)
            >>> same.margin_from(paired([0.98, 0.97], [0.90, 0.91]), 0.5, "BN − none").rule()
            'supported if the 95% CI of the effect lies within 0 ± 0.035; ... (margin: 0.5 × |BN − none| = 0.5 × 0.0700)'
        """
        if not (math.isfinite(effect.estimate) and effect.estimate != 0 and fraction > 0):
            raise ValueError(f"a margin from {what!r} needs a finite, nonzero estimate and fraction > 0, "
                             f"got {effect.estimate!r} and {fraction!r}")
        size = fraction * abs(effect.estimate)
        return dataclasses.replace(self, min_effect=size,
                                   margin=f"{fraction:g} × |{what}| = {fraction:g} × {fmt(abs(effect.estimate))}")

    @property
    def sign(self) -> int:
        return 1 if self.predicts == "higher" else -1

    @property
    def threshold(self) -> float:
        """The value the estimate must reach: ``reference ± min_effect``."""
        return self.reference + self.sign * self.min_effect

    def rule(self) -> str:
        """The rule in words, with its numbers (and where the margin came from, when it was measured)."""
        return self._rule() + (f" (margin: {self.margin})" if self.margin else "")

    def _rule(self) -> str:
        if self.predicts == "same":
            band = f"{self.reference:g} ± {self.min_effect:g}"
            return (f"supported if the {LEVEL:.0%} CI of {self.unit} lies within {band}; "
                    f"not supported if it lies wholly outside {band}")
        side = "above" if self.sign > 0 else "below"
        other = "below" if self.sign > 0 else "above"
        if self.min_effect == 0:
            return (f"supported if the {LEVEL:.0%} CI of {self.unit} lies {side} {self.reference:g}; "
                    f"not supported if it lies {other} it")
        return (f"supported if the {LEVEL:.0%} CI of {self.unit} lies {side} {self.reference:g} and the estimate reaches "
                f"{self.threshold:g}; not supported if it lies {other} {self.threshold:g}")

    def decide(self, effect: Effect) -> str:
        """``"supported"``, ``"not supported"`` or ``"inconclusive"`` for ``effect`` (see the module docstring)."""
        if not math.isfinite(effect.low):
            return "inconclusive"
        if self.predicts == "same":
            lo, hi = effect.low - self.reference, effect.high - self.reference
            if -self.min_effect < lo and hi < self.min_effect:
                return "supported"
            if lo >= self.min_effect or hi <= -self.min_effect:
                return "not supported"
            return "inconclusive"
        lo, hi = sorted(self.sign * (v - self.reference) for v in (effect.low, effect.high))
        est = self.sign * (effect.estimate - self.reference)
        if lo > 0 and est >= self.min_effect:
            return "supported"
        if hi < self.min_effect:
            return "not supported"
        return "inconclusive"

    def explain(self, effect: Effect) -> str:
        """Why ``effect`` gets its outcome, in words; for an inconclusive one, about how many seeds would decide."""
        outcome = self.decide(effect)
        ci, lies = ((f"all {effect.n} seeds (equal)", "lie") if effect.all_equal
                    else ("the value", "lies") if effect.test == "exact" else ("the CI", "lies"))
        if self.predicts == "same":
            band = f"{self.reference:g} ± {self.min_effect:g}"
            if outcome == "supported":
                return f"{ci} {lies} within {band}"
            if outcome == "not supported":
                return f"{ci} {lies} outside {band}"
            if effect.test == "exact" or effect.n < 2:
                return ("one value cannot decide: run more seeds" if effect.test != "exact"
                        else "the value sits on the band's edge")
            dist = abs(effect.estimate - self.reference)
            return f"the CI crosses an edge of {band}; {_more_seeds(effect, abs(self.min_effect - dist))}"
        if outcome == "supported":
            reach = f" and the estimate reaches {self.threshold:g}" if self.min_effect else ""
            return f"{ci} {lies} {'above' if self.sign > 0 else 'below'} {self.reference:g}{reach}"
        if outcome == "not supported":
            return (f"{ci} {lies} {'below' if self.sign > 0 else 'above'} {self.threshold:g}, "
                    "the smallest effect that would matter")
        if effect.test == "exact" or effect.n < 2:
            return "one value cannot decide: run more seeds" if effect.test != "exact" else "the value sits on the threshold"
        est = self.sign * (effect.estimate - self.reference)
        gap = est if est >= self.min_effect else self.min_effect - est
        where = (f"the CI contains {self.reference:g}" if self.min_effect == 0
                 else f"the CI reaches both sides of {self.threshold:g} or of {self.reference:g}")
        return f"{where}; {_more_seeds(effect, gap)}"


def combine(outcomes: Iterable[str]) -> str:
    """One outcome for a compound claim: the parts' common decisive outcome, ``"mixed"`` when decisive parts
    disagree, else ``"inconclusive"``.

    Example:
        >>> combine(["supported", "supported"]), combine(["supported", "not supported"]), combine(["supported", "inconclusive"])
        ('supported', 'mixed', 'inconclusive')
    """
    outcomes = list(outcomes)
    decisive = {o for o in outcomes if o in ("supported", "not supported")}
    if len(decisive) > 1 or "mixed" in outcomes:
        return "mixed"
    if outcomes and len(decisive) == 1 and all(o in decisive for o in outcomes):
        return decisive.pop()
    return "inconclusive"


@dataclass
class Verdict:
    """A claim, its evidence and its outcome (``parts`` for a compound claim).

    ``kind`` is ``"finding"`` (a claim about BN: :data:`FINDINGS`) or ``"check"`` (an exact computation that
    *passes* or *fails*: :data:`CHECKS`); ``preconditions`` are the conditions under which a finding's test can
    decide (:class:`Precondition`).
    """

    claim: Claim
    outcome: str
    effects: dict[str, Effect]
    note: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    preconditions: tuple[Precondition, ...] = ()
    kind: str = "finding"

    def failed_preconditions(self) -> list[Precondition]:
        return [p for p in self.preconditions if not p.passed]

    def rule(self) -> str:
        """The claim's rule; for a check, in its own words (*passes* where a finding would be *supported*, *fails*
        otherwise)."""
        rule = self.claim.rule()
        if self.kind != "check":
            return rule
        passes = rule.split("; not supported")[0].replace("supported if", "passes if", 1)
        return passes.replace(f"the {LEVEL:.0%} CI of ", "", 1) + "; fails otherwise"

    def held_preconditions(self) -> list[Precondition]:
        return [p for p in self.preconditions if p.passed]

    def _untestable_head(self) -> str:
        return "untestable here" if self.outcome == "untestable here" else "a part is untestable here"

    def _explain(self, name: str, e: Effect) -> str:
        if self.parts[name] == "untestable here" and len(self.effects) > 1:
            return "a precondition of this part failed: left out of the outcome"
        return self.claim.explain(e)

    def combination(self) -> str:
        """For a compound claim, how the parts' outcomes make the outcome; empty for a single effect."""
        if len(self.effects) < 2:
            return ""
        counts = ", ".join(f"{sum(o == k for o in self.parts.values())} {k}" for k in OUTCOMES if k in self.parts.values())
        why = {"mixed": "decisive parts disagree", "inconclusive": "not every part is decided",
               "untestable here": "a precondition failed", "fails": "a part fails"}.get(self.outcome, "every part agrees")
        if "untestable here" in self.parts.values():
            why = ("the testable parts refute or split it on their own; the untestable parts left out"
                   if self.outcome in ("not supported", "mixed") else "a claim is supported only by all of its parts")
        return f"parts: {counts} → {self.outcome} ({why})"

    def evidence(self) -> str:
        """The evidence as one string: failed preconditions first, every effect with its interval and decision, the
        preconditions that held, the note."""
        failed = self.failed_preconditions()
        lines = [f"{self._untestable_head()}: {'; '.join(p.text() for p in failed)}"] if failed else []
        combination = self.combination()
        lines += [combination] if combination else []
        for name, e in self.effects.items():
            prefix = f"{name}: " if len(self.effects) > 1 or name else ""
            lines.append(f"{prefix}{e.text()} → {self.parts[name]} ({self._explain(name, e)})")
        held = self.held_preconditions()
        if held:
            lines.append(f"preconditions: {'; '.join(p.text() for p in held)}")
        if self.note:
            lines.append(self.note)
        return "; ".join(lines)

    def record(self) -> dict:
        """The dict stored in ``metrics.json``."""
        rec = {"claim": self.claim.text, "source": self.claim.source, "kind": self.kind, "outcome": self.outcome,
               "predicts": self.claim.predicts, "min_effect": self.claim.min_effect, "reference": self.claim.reference,
               "unit": self.claim.unit, "rule": self.rule(), "evidence": self.evidence(), "note": self.note,
               "preconditions": [p.record() for p in self.preconditions]}
        if len(self.effects) == 1:
            rec.update(next(iter(self.effects.values())).record())
        else:
            rec["parts"] = [{"part": name, "outcome": self.parts[name], **e.record()} for name, e in self.effects.items()]
        return rec

    def __str__(self) -> str:
        lines = [f"{self.outcome.upper()}: {self.claim.text} ({self.claim.source})",
                 f"  {'check' if self.kind == 'check' else 'rule'}: {self.rule()}"]
        failed = self.failed_preconditions()
        if failed:
            lines += [f"  {self._untestable_head()}, because a precondition failed:"] + [f"    {p.text()}" for p in failed]
        combination = self.combination()
        if combination:
            lines.append(f"  {combination}")
        for name, e in self.effects.items():
            head = f"  {name}: " if name else "  "
            lines.append(f"{head}{e.text()} → {self.parts[name]}: {self._explain(name, e)}")
        held = self.held_preconditions()
        if held:
            lines += ["  preconditions that held:"] + [f"    {p.text()}" for p in held]
        if self.note:
            lines.append(f"  {self.note}")
        return "\n".join(lines)


def _effects(claim: Claim, effect: Effect | Mapping[str, Effect]) -> dict[str, Effect]:
    effects = dict(effect) if isinstance(effect, Mapping) else {"": effect}
    if not effects:
        raise ValueError(f"no evidence for {claim.text!r}: pass an Effect or a non-empty mapping of parts")
    return effects


def judge(claim: Claim, effect: Effect | Mapping[str, Effect], note: str = "",
          preconditions: Sequence[Precondition] = ()) -> Verdict:
    """The verdict on ``claim`` from one effect, or from named parts (a compound claim, combined by :func:`combine`);
    *untestable here* when one of ``preconditions`` failed, whatever the effect. A precondition of some parts
    (:meth:`Precondition.for_parts`) that fails makes those parts *untestable here*: the other parts can still refute
    the claim (*not supported*) or split it (*mixed*), but not support it, since a claim is supported by all its parts.

    Example:
        >>> c = Claim("x is higher", "test", predicts="higher", min_effect=0.1)
        >>> judge(c, {"A": exact(0.5), "B": exact(0.01)}).outcome
        'mixed'
        >>> judge(c, exact(0.01), preconditions=[manipulation_check("share clipped", 0.0005, 0.01)]).outcome
        'untestable here'
        >>> judge(c, {"A": exact(0.5), "B": exact(0.01)},
        ...       preconditions=[in_range("B's accuracy", 0.1, 0.15, 0.99).for_parts("B")]).outcome
        'untestable here'
        >>> judge(c, {"A": exact(0.01), "B": exact(0.5)},
        ...       preconditions=[in_range("B's accuracy", 0.1, 0.15, 0.99).for_parts("B")]).outcome
        'not supported'
    """
    effects = _effects(claim, effect)
    unknown = sorted({name for p in preconditions for name in p.parts} - set(effects))
    if unknown:
        raise ValueError(f"{claim.text!r}: preconditions for parts {unknown} that the claim does not have "
                         f"(its parts: {list(effects)})")
    gated_parts = {name for p in preconditions if not p.passed for name in p.parts}
    parts = {name: "untestable here" if name in gated_parts else claim.decide(e) for name, e in effects.items()}
    whole_failed = any(not p.passed for p in preconditions if not p.parts)
    return Verdict(claim, _outcome(list(parts.values()), whole_failed), effects, note, parts, tuple(preconditions))


def _outcome(parts: list[str], whole_failed: bool) -> str:
    """A finding's outcome from its parts' outcomes (an untestable part: ``"untestable here"``). The testable parts can
    refute a claim (*not supported*) or split it (*mixed*) on their own, but support it (or leave it open) only when no
    part is untestable: a claim is supported by all of its parts."""
    testable = [o for o in parts if o != "untestable here"]
    if whole_failed or not testable:
        return "untestable here"
    outcome = testable[0] if len(parts) == 1 else combine(testable)
    return outcome if len(testable) == len(parts) or outcome in ("not supported", "mixed") else "untestable here"


def check(claim: Claim, effect: Effect | Mapping[str, Effect], note: str = "") -> Verdict:
    """A check, not a finding: an exact computation (an identity, a bound, a single timing, a demonstration by
    construction) that *passes* when every part meets the claim's rule and *fails* otherwise. Counted apart from
    the findings, never as *supported*.

    Example:
        >>> identity = Claim("the manual backward equals autograd", "paper Sec. 3", predicts="lower", min_effect=0,
        ...                  reference=1e-4, unit="largest relative error")
        >>> v = check(identity, exact(3.6e-15, label="float64"))
        >>> v.kind, v.outcome
        ('check', 'passes')
    """
    effects = _effects(claim, effect)
    parts = {name: "passes" if claim.decide(e) == "supported" else "fails" for name, e in effects.items()}
    outcome = "passes" if all(o == "passes" for o in parts.values()) else "fails"
    return Verdict(claim, outcome, effects, note, parts, kind="check")


def gated(record: Mapping) -> bool:
    """Whether a verdict record's preconditions (as in ``metrics.json``) make it *untestable here* (:func:`judge`): a
    precondition of the whole claim failed, or the parts left testable neither refute nor split the claim.

    Example:
        >>> parts = [{"part": "lr 0.1", "outcome": "not supported"}, {"part": "lr 0.5", "outcome": "untestable here"}]
        >>> gated({"preconditions": [{"passed": False, "parts": ["lr 0.5"]}], "parts": parts})
        False
    """
    failed = [p for p in record.get("preconditions") or () if not p["passed"]]
    gated_parts = {name for p in failed for name in p.get("parts") or ()}
    parts = ["untestable here" if p["part"] in gated_parts else p["outcome"] for p in record.get("parts") or ()]
    return _outcome(parts or [record["outcome"]], any(not p.get("parts") for p in failed)) == "untestable here"


def tally(records: Iterable[Mapping]) -> dict[str, int]:
    """How many verdict records (as in ``metrics.json``) have each outcome: every finding outcome and every check
    outcome, counted apart (a record without ``kind`` is a finding).

    Example:
        >>> tally([{"outcome": "supported"}, {"outcome": "passes", "kind": "check"}])["supported"]
        1
    """
    counts = dict.fromkeys(OUTCOMES, 0)
    for r in records:
        is_check = r.get("kind", "finding") == "check"
        if (r["outcome"] in CHECKS) != is_check:
            raise ValueError(f"{r.get('claim', 'a verdict')!r}: outcome {r['outcome']!r} does not fit kind "
                             f"{r.get('kind', 'finding')!r}")
        counts[r["outcome"]] += 1
    return counts


# ---------------------------------------------------------------- summaries

PRESET_NOTES = {
    "smoke": "**Preset smoke: these verdicts are not results.** Its sizes only check that the code runs (a few steps and "
             "seeds); the executed references in `outputs/reference/` hold the results.",
    "quick": "**Preset quick: decided at reduced sizes.** Shorter runs, fewer seeds and smaller networks than the "
             "papers' scale, so verdicts can read differently; the `full` references in "
             "`outputs/reference/` hold the results.",
    "full": "",
}


def preset_note(preset: str) -> str:
    """A one-paragraph banner (Markdown) saying what a notebook's verdicts are worth at ``preset``: ``smoke`` only
    checks that the code runs, ``quick`` decides at reduced sizes, and ``full`` needs no note (""). Shown at the top of
    :func:`summary` when given a preset, and in ``SUMMARY.md``.

    Example:
        >>> preset_note("smoke")[:54]
        '**Preset smoke: these verdicts are not results.** Its '
        >>> preset_note("full")
        ''
        >>> preset_note("tiny")
        Traceback (most recent call last):
            ...
        ValueError: preset_note: unknown preset 'tiny'; one of ['smoke', 'quick', 'full']
    """
    if preset not in PRESET_NOTES:
        raise ValueError(f"preset_note: unknown preset {preset!r}; one of {list(PRESET_NOTES)}")
    return PRESET_NOTES[preset]


def _summary_line(r: Mapping) -> str:
    """One verdict record as one Markdown list item: the claim, its outcome after it, then why."""
    pres = r.get("preconditions") or ()
    where = lambda p: f"[{'; '.join(p['parts'])}] " if p.get("parts") else ""  # noqa: E731
    failed = [f"{where(p)}{p['kind']} failed: {p['name']} = {p['value']:.4g}, {p['requirement']}"
              + (f" ({p['remedy']})" if p.get("remedy") else "") for p in pres if not p["passed"]]
    if r["outcome"] == "untestable here":
        why = "; ".join(failed)
    elif "parts" in r:
        why = "; ".join([f"{p['part']}: {Effect.from_record(p).text()} → {p['outcome']}" for p in r["parts"]] + failed)
    else:
        why = Effect.from_record(r).text()
    held = sum(p["passed"] for p in pres)
    pre = f" ({held} precondition{'s' if held != 1 else ''} held)" if held and not failed else ""
    return f"- {r['claim']}: **{r['outcome']}**{pre}. {why}"


def summary(records: Sequence[Mapping], preset: str = "full") -> str:
    """The closing summary of a notebook, generated from its verdict records (as in ``metrics.json``): the tally, then
    one line per finding and per check, each stating the recorded outcome and its evidence, so that no summary can
    name an outcome the data do not hold (:func:`summary_mismatches` checks any text). Below ``full`` it opens with
    :func:`preset_note`, so a smoke or quick verdict does not read as a result.

    Example:
        >>> r = judge(Claim("BN is higher", "demo", predicts="higher", min_effect=0.01), exact(0.5)).record()
        >>> print(summary([r]))
        **Findings** (1 supported, 0 not supported, 0 inconclusive, 0 mixed, 0 untestable here):
        - BN is higher: **supported**. 0.500 (one computation: no interval)
    """
    counts = tally(records)
    findings = [r for r in records if r.get("kind", "finding") == "finding"]
    checks = [r for r in records if r.get("kind", "finding") == "check"]
    lines = [preset_note(preset), ""] if preset_note(preset) else []
    if findings:
        lines.append(f"**Findings** ({', '.join(f'{counts[k]} {k}' for k in FINDINGS)}):")
        lines += [_summary_line(r) for r in findings]
    if checks:
        lines += [""] if lines else []  # a blank line ends the findings' list in Markdown
        lines.append(f"**Checks**, exact computations that cannot support a claim ({counts['passes']} passed, "
                     f"{counts['fails']} failed):")
        lines += [_summary_line(r) for r in checks]
    return "\n".join(lines)


_CLAIM_END = re.compile(r"$|[:|*).,;'\"]| [(|—→-]")  # what may follow a claim's whole text
_OUTCOME_WORDS = re.compile("|".join(sorted(OUTCOMES, key=len, reverse=True)), re.IGNORECASE)


def summary_mismatches(text: str, records: Sequence[Mapping]) -> list[str]:
    """Every line of ``text`` that names a claim of ``records`` with another outcome than the recorded one: the
    outcome stated is the first outcome word after the claim's text on its line, else the last one before it.

    Example:
        >>> rec = {"claim": "BN trains faster", "outcome": "inconclusive"}
        >>> summary_mismatches("BN trains faster: **supported**", [rec])
        ["'BN trains faster' is stated as 'supported', but metrics.json holds 'inconclusive'"]
        >>> summary_mismatches("INCONCLUSIVE: BN trains faster (paper)", [rec])
        []
    """
    problems = []
    for line in text.splitlines():
        for r in records:
            at = line.find(r["claim"])
            end = at + len(r["claim"])
            if at < 0 or not _CLAIM_END.match(line, end):  # another claim that starts with this one's text
                continue
            after = _OUTCOME_WORDS.search(line, end)
            before = _OUTCOME_WORDS.findall(line[:at])
            stated = after.group(0) if after else (before[-1] if before else None)
            if stated is not None and stated.lower() != r["outcome"]:
                problems.append(f"{r['claim']!r} is stated as {stated.lower()!r}, but metrics.json holds {r['outcome']!r}")
    return problems


# ---------------------------------------------------------------- metrics.json

def _plain(value):
    """numpy scalars/arrays and tuples as JSON-friendly Python values; NaN as None, infinities as strings."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class Results:
    """A notebook's numbers and verdicts, saved as ``out_dir/metrics.json``.

    ``verdict`` decides, prints the claim, the outcome and the evidence under the cell, and records it.

    Example:
        >>> import tempfile
        >>> r = Results(tempfile.mkdtemp(), notebook="demo")
        >>> r.verdict(Claim("BN is higher", "demo", predicts="higher", min_effect=0.01),
        ...           paired([0.9, 0.92, 0.91], [0.8, 0.83, 0.81], label="BN − plain"))
        SUPPORTED: BN is higher (demo)
          rule: supported if the 95% CI of the effect lies above 0 and the estimate reaches 0.01; not supported ... below 0.01
          BN − plain: +0.097 [95% CI +0.082, +0.111], paired t, n=3 → supported: the CI lies above 0 and the estimate reaches 0.01
        >>> r.outcome("BN is higher"), r.save().name
        ('supported', 'metrics.json')
    """

    def __init__(self, out_dir: str | os.PathLike, *, machine: Mapping | None = None, **info) -> None:
        self.out_dir = Path(out_dir)
        self.machine = dict(machine or {})  # where the numbers came from (bnlib.lab.machine.machine_info in the notebooks)
        self.info = dict(info)
        self.numbers: dict = {}
        self.verdicts: list[dict] = []

    def number(self, name: str, value) -> None:
        """Record a measured number (or a list or dict of numbers) under ``name``."""
        self.numbers[name] = _plain(value)

    def verdict(self, claim: Claim, effect: Effect | Mapping[str, Effect], note: str = "",
                preconditions: Sequence[Precondition] = ()) -> None:
        """Decide ``claim`` from ``effect`` (or named parts) under ``preconditions`` (:func:`judge`), print it, and
        record it (replacing an earlier one)."""
        self._record(judge(claim, effect, note, preconditions))

    def check(self, claim: Claim, effect: Effect | Mapping[str, Effect], note: str = "") -> None:
        """Record a check (:func:`check`): an exact computation that passes or fails, counted apart from findings."""
        self._record(check(claim, effect, note))

    def _record(self, v: Verdict) -> None:
        self.verdicts = [r for r in self.verdicts if r["claim"] != v.claim.text] + [v.record()]
        print(v)

    def outcome(self, claim_text: str) -> str:
        """The recorded outcome of the claim with this text."""
        for r in self.verdicts:
            if r["claim"] == claim_text:
                return r["outcome"]
        raise KeyError(f"no verdict recorded for {claim_text!r}")

    def summary(self) -> str:
        """The closing summary, generated from the recorded verdicts (:func:`summary`); below the ``full`` preset
        (``info["preset"]``, as :func:`bnlib.lab.notebook.setup` records it) it opens with :func:`preset_note`."""
        return summary(self.verdicts, preset=self.info.get("preset", "full"))

    def table(self) -> pd.DataFrame:
        """The verdicts as a DataFrame (for display in the notebook)."""
        return pd.DataFrame(self.verdicts, columns=["claim", "source", "outcome", "evidence"])

    def save(self) -> Path:
        """Write ``metrics.json`` whole or not at all (a temporary file, then ``os.replace``), with the ``machine`` record
        given to the constructor; returns its path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "metrics.json"
        payload = {"info": _plain(self.info), "machine": self.machine, "verdicts": self.verdicts, "numbers": self.numbers}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
        os.replace(tmp, path)
        return path

