"""One seaborn theme and figure helpers whose bands are the verdicts' Student-t intervals.

``t_interval`` is the interval of :func:`bnlib.verdicts.one_sample`, usable as
seaborn's ``errorbar=`` anywhere (bar plots, ``relplot``); ``seed_band`` draws
the mean over seeds with that interval as a band, or, with 3 seeds or fewer,
each seed as a thin line (an interval from 2 or 3 values says little). A band
never leaves the measure's range (``limits``: [0, 1] for accuracies), seeds that
split into groups (some learn, some stay at chance) are drawn one by one, and on
a log axis the band is computed on the log values.

Example:
    >>> import pandas as pd
    >>> from bnlib.plots import set_theme, seed_band
    >>> set_theme()
    >>> df = pd.DataFrame({"step": [0, 1, 0, 1], "acc": [0.1, 0.5, 0.2, 0.6], "seed": [0, 0, 1, 1]})
    >>> ax = seed_band(df, x="step", y="acc", xlabel="step", ylabel="accuracy")
    >>> ax.get_ylabel()
    'accuracy'

To copy it into another project, copy ``verdicts.py`` beside it, both in a folder named ``bnlib`` (with an empty ``__init__.py``):
the pair needs no other module (``tests/test_copy_alone.py``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from bnlib.verdicts import LEVEL, one_sample

THIN_UP_TO = 3  # seeds: at most this many are drawn one line each instead of a band
SPLIT_RATIO = 3.0  # seeds split into two groups where the largest gap exceeds this many times the wider group's range
SPLIT_MIN_GAP = 0.05  # ... and, for a measure with limits, this share of its range

# One colour per network family across the series (keys: bnlib.norms.NORM_KINDS and the variants of notebook 04);
# seaborn's colour-blind palette first: no norm grey, BN blue, and each variant family its own hue.
NETWORK_COLORS: dict[str, str] = {
    "none": "#949494",  # no normalization
    "bn": "#0173b2", "torch_bn": "#0173b2", "bn_no_gamma": "#56b4e9",  # batch norm
    "noisy_bn": "#029e73",
    "rigid": "#cc78bc", "rigid_mv": "#fbafe4", "rigid_clip": "#7b3294", "rigid_reg": "#ca9161",  # notebook 04
    "kl_bn": "#de8f05", "kl_only": "#d55e00", "kl_bn_original": "#ece133", "kl_only_original": "#8c2d04",
    "kl_only_no_gamma": "#f4a582",
    "l1": "#66a61e", "l2": "#1b7837", "linf": "#a6d96a",  # Lp batch norms (notebook 05)
    "ghost_bn": "#2166ac", "batch_renorm": "#4393c3",  # small-batch remedies that keep BN (notebook 06)
    "ln": "#b2182b", "gn": "#762a83", "in": "#c51b7d",  # batch-independent norms
}


def set_theme() -> None:
    """The series' look: seaborn whitegrid, notebook context, colour-blind palette.

    Example:
        >>> set_theme()
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "axes.titlesize": "medium"})


def network_palette(networks: dict[str, str]) -> dict[str, str]:
    """Colours for a figure's networks by their labels: ``{kind: label}`` (a notebook's ``NETS``) to
    ``{label: colour}`` from :data:`NETWORK_COLORS`, for seaborn's and :func:`seed_band`'s ``palette=``.

    Example:
        >>> network_palette({"none": "without BN", "bn": "with BN"})
        {'without BN': '#949494', 'with BN': '#0173b2'}
        >>> network_palette({"bnn": "x"})
        Traceback (most recent call last):
        ...
        ValueError: network_palette: no colour for network kind 'bnn'; known kinds: none, bn, ...
    """
    unknown = [kind for kind in networks if kind not in NETWORK_COLORS]
    if unknown:
        raise ValueError(f"network_palette: no colour for network kind {unknown[0]!r}; known kinds: "
                         f"{', '.join(NETWORK_COLORS)} (add one to bnlib.plots.NETWORK_COLORS)")
    return {label: NETWORK_COLORS[kind] for kind, label in networks.items()}


def t_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """The Student-t interval of the mean of ``values`` (NaN values dropped): the verdicts' interval.

    Pass it as seaborn's ``errorbar=t_interval``. With fewer than two values the interval is the mean itself.

    Example:
        >>> lo, hi = t_interval([1.0, 2.0, 3.0])
        >>> round(lo, 3), round(hi, 3)
        (-0.484, 4.484)
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size < 2:
        return float(v[0]), float(v[0])
    e = one_sample(v, level=level)
    return e.low, e.high


def band_caption(n: int) -> str:
    """What a ``seed_band`` shows, for a title or caption.

    Example:
        >>> band_caption(5), band_caption(2)
        ('mean and 95% t-interval over 5 seeds', 'mean (thick) and each of 2 seeds (thin)')
    """
    if n <= THIN_UP_TO:
        return f"mean (thick) and each of {n} seed{'s' if n != 1 else ''} (thin)"
    return f"mean and {LEVEL:.0%} t-interval over {n} seeds"  # seed_band notes where split seeds are drawn instead


def split_seeds(values, min_seeds: int = 4, min_gap: float = 0.0) -> bool:
    """Whether per-seed values split into two groups (some runs learn, some stay at chance): cut at the largest gap
    between sorted values, the gap exceeds :data:`SPLIT_RATIO` times the wider group's range, and ``min_gap`` (for a
    bounded measure, a share of its range: values that barely leave a bound, such as 0, 0, 0, 0.001, do not split).
    A mean with a t-band would then describe no seed.

    Example:
        >>> split_seeds([0.10, 0.11, 0.90, 0.91, 0.92]), split_seeds([0.96, 0.98, 0.99, 0.995])
        (True, False)
        >>> split_seeds([0.0, 0.0, 0.0, 0.001]), split_seeds([0.0, 0.0, 0.0, 0.001], min_gap=0.05)
        (True, False)
    """
    v = np.asarray(values, dtype=float)
    v = np.sort(v[np.isfinite(v)])
    if v.size < min_seeds or v[-1] == v[0]:
        return False
    cut = int(np.argmax(np.diff(v)))
    within = max(v[cut] - v[0], v[-1] - v[cut + 1])
    gap = v[cut + 1] - v[cut]
    return bool(gap > SPLIT_RATIO * within and gap > min_gap)


def band_table(df: pd.DataFrame, x: str, y: str, hue: str | None = None, *, limits: tuple[float, float] | None = None,
               log: bool = False) -> pd.DataFrame:
    """Mean, t-interval (``low``, ``high``) and n of ``y`` per ``x`` (and ``hue``): the numbers ``seed_band`` draws.

    ``limits``: the measure's range; an interval reaching beyond it is clipped there (``clipped`` says where).
    ``log``: the mean and interval of log10(``y``), back on the original scale (a geometric mean), for log axes.
    ``split``: the seeds split into groups there (:func:`split_seeds`).

    Example:
        >>> t = band_table(pd.DataFrame({"x": [0, 0, 0], "y": [1.0, 2.0, 3.0]}), "x", "y")
        >>> t[["mean", "n"]].to_dict("records")
        [{'mean': 2.0, 'n': 3}]
        >>> accuracy = pd.DataFrame({"x": [0, 0], "y": [0.96, 0.99]})
        >>> band_table(accuracy, "x", "y", limits=(0, 1))[["high", "clipped"]].values.tolist()
        [[1.0, True]]
    """
    keys = [hue, x] if hue else [x]
    rows = []
    for key, g in df.groupby(keys, sort=True):
        vals = g[y].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if log:
            vals = np.log10(vals[vals > 0])
        lo, hi = t_interval(vals)
        mean = float(vals.mean()) if vals.size else math.nan
        span = float(limits[1]) - float(limits[0]) if limits is not None and not log else math.inf
        split = split_seeds(vals, min_gap=SPLIT_MIN_GAP * span if math.isfinite(span) else 0.0)
        if log:
            mean, lo, hi = 10**mean, 10**lo, 10**hi
        clipped = False
        if limits is not None and vals.size:
            clipped = bool(lo < limits[0] or hi > limits[1])
            lo, hi = max(lo, float(limits[0])), min(hi, float(limits[1]))
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), "mean": mean, "low": lo, "high": hi, "n": int(vals.size),
                     "clipped": clipped, "split": split})
    return pd.DataFrame(rows)


def seed_band(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    *,
    ax: plt.Axes | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    limits: tuple[float, float] | None = None,
    hue_order: list | None = None,
    palette=None,
    marker: str | dict | None = None,
    units: str = "seed",
    linestyle: str = "-",
    label: str | None = None,
) -> plt.Axes:
    """The mean of ``y`` over seeds against ``x`` with the verdicts' 95% t-interval as a band.

    Every row of ``df`` is one (run, x) measurement. With at most 3 seeds per point (counted by ``units``), or where
    the seeds split into groups (:func:`split_seeds`: some learn, some stay at chance), each seed is drawn as a thin
    line instead of a band. ``limits`` is the measure's range (default ``(0, 1)`` for a ``y`` whose name says
    accuracy): the band never leaves it, and a clipped band is said so in the corner. ``logy``: a log axis, with the
    band computed on the log values. If ``df`` has a boolean ``diverged`` column, diverged rows are left out of the
    mean and marked with a red x at the bottom of the axes; give them a value (e.g. chance) in ``y`` beforehand to
    count them instead, as the verdicts do. ``label`` names a single series (no ``hue``) in the legend. ``marker``:
    one for every line, or ``{hue value: marker}`` to tell apart series of similar colours.

    Example:
        >>> df = pd.DataFrame({"lr": [0.1, 1.0], "acc": [0.9, 0.8]})
        >>> seed_band(df, "lr", "acc", logx=True, xlabel="learning rate", ylabel="accuracy").get_xscale()
        'log'
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    if limits is None and "acc" in y.lower():
        limits = (0.0, 1.0)
    bad_mask = df["diverged"].astype(bool) if "diverged" in df else pd.Series(False, index=df.index)
    bad_mask = bad_mask & ~np.isfinite(pd.to_numeric(df[y], errors="coerce"))
    ok = df[~bad_mask]
    groups = (hue_order or list(dict.fromkeys(ok[hue]))) if hue else [None]
    colors = sns.color_palette(palette, len(groups)) if not isinstance(palette, dict) else [palette[g] for g in groups]
    clipped = split = False
    for group, color in zip(groups, colors):
        part = ok if hue is None else ok[ok[hue] == group]
        if part.empty:
            continue
        table = band_table(part, x, y, limits=limits, log=logy).sort_values(x)
        label_ = label if group is None else str(group)
        marker_ = marker.get(group) if isinstance(marker, dict) else marker
        ax.plot(table[x], table["mean"], color=color, marker=marker_, linestyle=linestyle, label=label_, lw=2)
        if (table["n"].max() <= THIN_UP_TO or table["split"].any()) and units in part:
            split = split or table["n"].max() > THIN_UP_TO
            for _, run in part.groupby(units):
                run = run.groupby(x, as_index=False)[y].mean().sort_values(x)
                ax.plot(run[x], run[y], color=color, lw=0.8, alpha=0.45, linestyle=linestyle)
        else:
            ax.fill_between(table[x], table["low"], table["high"], color=color, alpha=0.2, lw=0)
            clipped = clipped or bool(table["clipped"].any())
    notes = ([f"band clipped to [{limits[0]:g}, {limits[1]:g}]"] if clipped else []) + (
        ["thin lines: each seed, where the seeds split into groups"] if split else [])
    if notes:
        ax.text(0.99, 0.01, "; ".join(notes), transform=ax.transAxes, ha="right", va="bottom", fontsize="x-small",
                color="0.4")
    if bad_mask.any():
        bad = df[bad_mask]
        bottom = ax.get_ylim()[0]
        ax.scatter(bad[x], [bottom] * len(bad), marker="x", color="red", zorder=5, label="diverged", clip_on=False)
    if hue or label or bad_mask.any():
        ax.legend(title=hue if hue else None)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x if xlabel is None else xlabel)  # "" leaves the axis unlabelled
    ax.set_ylabel(y if ylabel is None else ylabel)
    if title:
        ax.set_title(title)
    return ax


def shared_legend(fig: plt.Figure, axes, title: str | None = None):
    """One legend for panels that draw the same series: every panel's own legend removed, each entry once (in the order
    the panels first show it), just right of the panels, off the data; call it after ``tight_layout``. Returns the legend.

    Example:
        >>> fig, axes = plt.subplots(1, 2)
        >>> for ax, names in zip(axes, (["a", "b"], ["b", "c"])):
        ...     for n in names:
        ...         _ = ax.plot([0, 1], label=n)
        ...     _ = ax.legend()
        >>> [t.get_text() for t in shared_legend(fig, axes, "series").get_texts()], [ax.get_legend() for ax in axes]
        (['a', 'b', 'c'], [None, None])
    """
    handles, axes = {}, np.ravel(axes)
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    right = max(ax.get_position().x1 for ax in axes)  # the panels' right edge, in figure coordinates (after any layout call)
    return fig.legend(handles.values(), handles.keys(), title=title, loc="center left", bbox_to_anchor=(right + 0.01, 0.5))


def save_figure(fig: plt.Figure, out_dir: str | os.PathLike, name: str) -> Path:
    """Save ``fig`` as ``out_dir/name.png`` (creating ``out_dir``) and return the path.

    Example:
        >>> import tempfile
        >>> fig, _ = plt.subplots()
        >>> save_figure(fig, tempfile.mkdtemp(), "empty").suffix
        '.png'
    """
    path = Path(out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path
