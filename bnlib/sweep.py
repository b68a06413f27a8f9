"""Run a grid of configurations x seeds; keep every finished run on disk.

Each run is stored as ``<out_dir>/<key>.csv`` (its DataFrame) and
``<key>.json`` (its configuration), where ``key`` is a hash of the function
name, the configuration and the seed. Files are written atomically, so an
interrupted sweep loses only the run in progress, and a re-run loads the
finished runs instead of training them again.

Example:
    >>> import tempfile, pandas as pd
    >>> from bnlib.sweep import run_sweep
    >>> def square(x, seed):
    ...     return pd.DataFrame({"y": [x * x + seed]})
    >>> d = tempfile.mkdtemp()
    >>> run_sweep(square, [{"x": 2}, {"x": 3}], seeds=[0, 1], out_dir=d, progress=False)["y"].tolist()
    [4, 5, 9, 10]
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm


def run_key(name: str, config: Mapping, seed: int) -> str:
    """A stable 16-hex-digit key for one run.

    Example:
        >>> run_key("f", {"lr": 0.1}, 0) == run_key("f", {"lr": 0.1}, 0)
        True
    """
    text = json.dumps({"fn": name, "config": dict(config), "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write_text(p, "hi"); p.read_text()
        'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_sweep(
    fn: Callable[..., pd.DataFrame],
    configs: Iterable[Mapping],
    seeds: Iterable[int] = (0,),
    out_dir: str | os.PathLike = "sweep",
    *,
    progress: bool = True,
    desc: str | None = None,
) -> pd.DataFrame:
    """Call ``fn(**config, seed=seed)`` for every config and seed, reusing finished runs.

    ``fn`` returns a DataFrame. The result concatenates all runs in order, with
    each config's keys and ``seed`` added as columns (non-scalar config values
    are stored as strings). A run that raises stops the sweep; everything that
    finished before it stays on disk.

    Example:
        >>> import tempfile
        >>> calls = []
        >>> def f(lr, seed):
        ...     calls.append((lr, seed)); return pd.DataFrame({"loss": [lr]})
        >>> d = tempfile.mkdtemp()
        >>> _ = run_sweep(f, [{"lr": 0.1}], seeds=[0], out_dir=d, progress=False)
        >>> _ = run_sweep(f, [{"lr": 0.1}], seeds=[0], out_dir=d, progress=False)
        >>> calls
        [(0.1, 0)]
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = getattr(fn, "__qualname__", repr(fn))
    jobs = [(dict(c), s) for c in configs for s in seeds]
    frames = []
    bar = tqdm(jobs, desc=desc or name, disable=not progress)
    for config, seed in bar:
        key = run_key(name, config, seed)
        csv = out / f"{key}.csv"
        if csv.exists():
            df = pd.read_csv(csv)
        else:
            df = fn(**config, seed=seed).copy()
            for k, v in config.items():
                df[k] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
            df["seed"] = seed
            atomic_write_text(out / f"{key}.json", json.dumps({"fn": name, "config": config, "seed": seed}, default=str))
            atomic_write_text(csv, df.to_csv(index=False))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def cached_frames(
    out_dir: str | os.PathLike, name: str, config: Mapping, compute: Callable[[], Mapping[str, pd.DataFrame]]
) -> dict[str, pd.DataFrame]:
    """Tables computed once per ``(name, config)`` and kept as CSV under ``out_dir``; later calls read them back.

    ``compute()`` returns named DataFrames. They are written atomically, a JSON marker last (its presence means
    the set is complete), and returned **as read back from the CSV files**, so a first run and a re-run see the
    same dtypes and numbers. ``config`` must hold everything that changes the result (a changed setting recomputes).

    Example:
        >>> import tempfile
        >>> d, calls = tempfile.mkdtemp(), []
        >>> def compute():
        ...     calls.append(1); return {"rows": pd.DataFrame({"x": [1.5]})}
        >>> cached_frames(d, "demo", {"lr": 0.1}, compute)["rows"]["x"].tolist()
        [1.5]
        >>> _ = cached_frames(d, "demo", {"lr": 0.1}, compute); len(calls)
        1
    """
    out = Path(out_dir)
    key = run_key(name, config, 0)
    marker = out / f"{key}.json"
    if not marker.exists():
        frames = compute()
        for part, df in frames.items():
            atomic_write_text(out / f"{key}_{part}.csv", df.to_csv(index=False))
        atomic_write_text(marker, json.dumps({"fn": name, "config": dict(config), "parts": list(frames)}, default=str))
    parts = json.loads(marker.read_text())["parts"]
    return {part: pd.read_csv(out / f"{key}_{part}.csv") for part in parts}


def cached_checkpoint(
    out_dir: str | os.PathLike, name: str, config: Mapping, seed: int, model, train: Callable[[], pd.DataFrame]
) -> pd.DataFrame:
    """Load ``model``'s trained weights (``state_dict``) for ``(name, config, seed)``, or call ``train()`` and save them.

    ``train()`` trains ``model`` in place and returns its training table; the table is saved beside the weights and
    returned in both cases. Loading uses ``torch.load(..., weights_only=True)``; files are written atomically.

    Example:
        >>> import tempfile, torch
        >>> d, net = tempfile.mkdtemp(), torch.nn.Linear(2, 1)
        >>> def train():
        ...     torch.nn.init.ones_(net.weight); return pd.DataFrame({"step": [1]})
        >>> _ = cached_checkpoint(d, "demo", {}, 0, net, train)
        >>> fresh = torch.nn.Linear(2, 1)
        >>> _ = cached_checkpoint(d, "demo", {}, 0, fresh, lambda: 1 / 0)  # loaded, not trained
        >>> fresh.weight.tolist()
        [[1.0, 1.0]]
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = run_key(name, config, seed)
    weights, table = out / f"{key}.pt", out / f"{key}.csv"
    if weights.exists() and table.exists():
        model.load_state_dict(torch.load(weights, weights_only=True))
        return pd.read_csv(table)
    curve = train()
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{key}.", suffix=".pt.tmp")
    os.close(fd)
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, weights)
    atomic_write_text(table, curve.to_csv(index=False))
    return pd.read_csv(table)
