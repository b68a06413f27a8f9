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
