"""One seaborn theme and figure helpers: mean with a 95% band over seeds.

Example:
    >>> import pandas as pd
    >>> from bnlib.plots import set_theme, seed_band
    >>> set_theme()
    >>> df = pd.DataFrame({"step": [0, 1, 0, 1], "acc": [0.1, 0.5, 0.2, 0.6], "seed": [0, 0, 1, 1]})
    >>> ax = seed_band(df, x="step", y="acc", xlabel="step", ylabel="accuracy")
    >>> ax.get_ylabel()
    'accuracy'
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def set_theme() -> None:
    """The series' look: seaborn whitegrid, notebook context, colour-blind palette.

    Example:
        >>> set_theme()
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "axes.titlesize": "medium"})


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
    **kwargs,
) -> plt.Axes:
    """Line of the mean of ``y`` over seeds against ``x``, with a 95% confidence band.

    Every row of ``df`` is one (run, x) measurement; rows with the same ``x``
    (and ``hue``) are averaged. If ``df`` has a boolean ``diverged`` column,
    the diverged rows are marked with a red x at their ``x`` (their ``y`` is
    usually NaN, so they are drawn at the bottom of the axes).

    Example:
        >>> df = pd.DataFrame({"lr": [0.1, 1.0], "acc": [0.9, 0.8]})
        >>> seed_band(df, "lr", "acc", logx=True, xlabel="learning rate", ylabel="accuracy").get_xscale()
        'log'
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ok = df[~df["diverged"].astype(bool)] if "diverged" in df else df
    sns.lineplot(data=ok, x=x, y=y, hue=hue, errorbar=("ci", 95), estimator="mean", ax=ax, **kwargs)
    if "diverged" in df and df["diverged"].astype(bool).any():
        bad = df[df["diverged"].astype(bool)]
        bottom = ax.get_ylim()[0]
        ax.scatter(bad[x], [bottom] * len(bad), marker="x", color="red", zorder=5, label="diverged", clip_on=False)
        ax.legend()
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    return ax


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
