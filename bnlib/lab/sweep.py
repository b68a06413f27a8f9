"""Runs x seeds through an executor; every finished run kept on disk under a key of its whole config.

:func:`run_sweep` takes :class:`bnlib.lab.experiment.Run` configs and seeds. Runs not
yet on disk go to an executor: by default a local pool of worker processes
(one intra-op thread each, so the numbers are the same whatever runs them), or
any ``concurrent.futures.Executor`` you pass, such as a Dask cluster's
``Client.get_executor()`` (:func:`executor_from` builds one from a string).
Each finished run is written as soon as it arrives: ``<key>.csv.gz`` (its
table), ``<key>.pt`` (its final weights, when ``Run.keep_weights``) and last
``<key>.json`` (the run, seed, cache version, row count and checksum), where
``key = run.key(seed)`` covers every field of the run, the seed and
:data:`bnlib.lab.experiment.CACHE_VERSION`. A cached run is verified when read: a
damaged one is named, moved to ``damaged/`` and trained again. A run that
raises is recorded in ``<key>.error.txt`` while the others go on; the sweep
then raises :class:`SweepError` naming every failed run, and a re-run retries
only those. :func:`call_sweep` (experiments that are not a Run yet) stores its
calls in the same files, under :func:`call_key`, verified the same way.

Example:
    >>> import tempfile
    >>> from bnlib.lab.experiment import Run
    >>> runs = [Run(dataset="mnist", model="mlp", hidden=(32,), steps=10, batch_size=50, lr=lr, eval_every=10,
    ...         test_size=200) for lr in (0.05, 0.5)]
    >>> d = tempfile.mkdtemp()
    >>> df = run_sweep(runs, seeds=[0, 1], out_dir=d, workers=1, progress=False)
    >>> df.groupby(["lr", "seed"]).size().tolist()  # two evaluation rows per run: steps 0 and 10
    [2, 2, 2, 2]
    >>> df.equals(run_sweep(runs, seeds=[0, 1], out_dir=d, progress=False))  # read back, not retrained
    True
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import gzip
import hashlib
import inspect
import io
import json
import multiprocessing
import os
import shutil
import socket
import struct
import tempfile  # noqa: F401 - the doctests below use it
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path

import pandas as pd

from bnlib.lab.cores import die_with_parent, intra_op_threads, usable_cores
from bnlib.lab.cores import share as core_share
from bnlib.lab.experiment import CACHE_VERSION, Run, batch_group, train_run, train_runs_batched
from bnlib.lab.files import atomic_write_bytes, atomic_write_text
from bnlib.lab.progress import progress_bar
from bnlib.lab.reads import code_fingerprint, reads

# ---------------------------------------------------------------- executors and the local pool

WORKERS_ENV = "BNLIB_WORKERS"  # worker processes of the local pool, all kept busy (see default_workers)


def default_workers() -> int:
    """Worker processes of a sweep's local pool: ``$BNLIB_WORKERS``, else the usable cores. Unless set there (or by
    ``run_sweep(workers=...)``), only :func:`bnlib.lab.cores.share` of them train at a time, so that bnlib processes
    running at once share the cores.

    Example:
        >>> default_workers() >= 1
        True
    """
    value = os.environ.get(WORKERS_ENV)
    if value is None:
        return usable_cores()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"${WORKERS_ENV} must be an integer >= 1, got {value!r}; unset it to use every core")
    return int(value)


def executor_from(spec: str | cf.Executor | None) -> cf.Executor | None:
    """The executor named by a notebook's ``executor`` parameter.

    ``"local"`` or None: None (:func:`run_sweep`'s local process pool). ``"dask"``: a new
    ``dask.distributed.LocalCluster`` with one single-threaded worker per core. ``"dask://HOST:PORT"`` (or
    ``"tcp://HOST:PORT"``): the Dask scheduler at that address. An ``Executor`` is returned as given.
    Dask needs the extra: ``pip install -e '.[dask]'``.

    Example:
        >>> executor_from("local") is None
        True
        >>> executor_from("ray://x")
        Traceback (most recent call last):
        ...
        ValueError: executor: unknown 'ray://x'; use "local", "dask" (a LocalCluster on this machine) or "dask://HOST:PORT"
    """
    if spec is None or isinstance(spec, cf.Executor):
        return spec
    if spec == "local":
        return None
    if spec != "dask" and not spec.startswith(("dask://", "tcp://")):
        raise ValueError(f'executor: unknown {spec!r}; use "local", "dask" (a LocalCluster on this machine) or "dask://HOST:PORT"')
    return _dask_executor(spec)


@cache
def _dask_executor(spec: str) -> cf.Executor:
    """One Dask client per spec and process (every sweep of a notebook shares the cluster)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as e:
        raise ImportError(f"executor={spec!r} needs Dask: pip install -e '.[dask]'") from e
    if spec == "dask":
        cluster = LocalCluster(n_workers=default_workers(), threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster).get_executor()
    host, port = check_dask_scheduler(spec)
    return Client(f"tcp://{host}:{port}", timeout=f"{SCHEDULER_TIMEOUT_S}s").get_executor()


SCHEDULER_TIMEOUT_S = 10.0  # seconds a Dask scheduler gets to connect and greet


def check_dask_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT_S) -> tuple[str, int]:
    """(host, port) of ``address`` ("dask://HOST:PORT" or "tcp://HOST:PORT") once a Dask scheduler answered there.

    A Dask scheduler greets every new connection at once: a message whose first 8 bytes give its length and whose
    next 8 its number of frames (little-endian). Anything else within ``timeout`` seconds (silence, as from Dask's
    dashboard or another HTTP server; text, as from a proxy) is refused before a client tries it: Dask's own client
    would wait for minutes, or read "HTTP" as a message length of exbibytes. Raises ``ValueError`` naming the
    address and the ports Dask uses.

    Example:
        >>> check_dask_scheduler("dask://localhost:x")
        Traceback (most recent call last):
        ...
        ValueError: executor: 'dask://localhost:x' is not HOST:PORT with a numeric port (the scheduler is usually 8786)
    """
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"executor: {address!r} is not HOST:PORT with a numeric port (the scheduler is usually 8786)")
    where = f"{host}:{port}"
    hint = "(the dashboard is usually 8787, the scheduler 8786)"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            conn.settimeout(timeout)
            greeting = b""
            while len(greeting) < 16 and (chunk := conn.recv(16 - len(greeting))):
                greeting += chunk
    except TimeoutError:
        raise ValueError(f"executor: not a Dask scheduler at {where}: it said nothing within {timeout:g} s {hint}") from None
    except OSError as e:
        raise ValueError(f"executor: cannot connect to a Dask scheduler at {where}: {e.strerror or e} {hint}") from None
    if not greeting:
        raise ValueError(f"executor: not a Dask scheduler at {where}: it closed the connection without a word {hint}")
    length, frames = struct.unpack("<QQ", greeting.ljust(16, b"\0"))
    if len(greeting) < 16 or not (0 < frames < 1000 and 8 * frames < length < 2**30):
        raise ValueError(f"executor: not a Dask scheduler at {where}: it answered {greeting[:16]!r} {hint}")
    return host, int(port)


_POOLS: dict[int, cf.ProcessPoolExecutor] = {}  # worker count -> this process's local pool, started once and reused


def _local_pool(workers: int) -> cf.ProcessPoolExecutor:
    """The local pool of ``workers`` single-threaded worker processes, kept for the life of this process.

    Its workers start once (importing torch and loading a dataset take seconds) and serve every later sweep; they
    stop with this process (or when it is killed, see :func:`bnlib.lab.cores.die_with_parent`).
    """
    pool = _POOLS.get(workers)
    if pool is None:
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent,
                                      initargs=(os.getpid(),))
        _POOLS[workers] = pool
        atexit.register(pool.shutdown, cancel_futures=True)
    return pool


def _stop_pool(workers: int) -> None:
    """Stop this process's local pool of ``workers`` now, runs in progress included (after Ctrl-C); the next sweep
    starts a fresh one."""
    pool = _POOLS.pop(workers, None)
    if pool is not None:
        for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public way to stop a running task
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- tasks on the workers

def _train(jobs: list[tuple[str, int]], device: str, data_root: str | None) -> list[tuple[str, bytes | None, float]]:
    """Worker side of a sweep: one task, either one run or several batched ones trained together (:func:`_tasks`),
    each from its JSON config; returns each job's table as CSV text, its weights if kept, and its share of the
    task's wall time (seconds over the number of jobs)."""
    import torch

    start = time.perf_counter()
    runs = [(Run.from_json(run_json), seed) for run_json, seed in jobs]
    if runs[0][0].batched:  # a task of several jobs is always a batched group
        tables = train_runs_batched(runs, device=device, data_root=data_root)
        share = (time.perf_counter() - start) / len(runs)
        return [(table.to_csv(index=False), None, share) for table in tables]
    run, seed = runs[0]
    table, model = train_run(run, seed, device=device, data_root=data_root, return_model=True)
    weights = None
    if run.keep_weights:
        buffer = io.BytesIO()
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buffer)
        weights = buffer.getvalue()
    return [(table.to_csv(index=False), weights, time.perf_counter() - start)]


def _tasks(jobs: Sequence[tuple[Run, int]], parts: int) -> list[list[tuple[Run, int]]]:
    """Jobs as units of work: one per job, except batched runs of one :func:`~bnlib.lab.experiment.batch_group`, which
    train together, split into at most ``parts`` tasks (so that ``parts`` workers share them)."""
    tasks: list[list[tuple[Run, int]]] = []
    groups: dict[Run, list[tuple[Run, int]]] = {}
    for run, seed in jobs:
        if run.batched:
            groups.setdefault(batch_group(run), []).append((run, seed))
        else:
            tasks.append([(run, seed)])
    for group in groups.values():
        n = max(1, min(parts, len(group)))
        tasks += [group[i::n] for i in range(n)]
    return tasks


# ---------------------------------------------------------------- the files of finished runs

class RunCache:
    """The files of finished runs and calls under one folder (see the module docstring), each under a key; verified
    when read. :func:`run_sweep` stores a Run by ``run.key(seed)``, :func:`call_sweep` a call by :func:`call_key`.

    Example:
        >>> from bnlib.lab.experiment import Run
        >>> cache, run = RunCache(tempfile.mkdtemp()), Run(dataset="mnist", model="mlp", steps=1, batch_size=2, lr=0.1)
        >>> cache.load(run, 0) is None
        True
        >>> cache.save(run, 0, "step,test_acc\\n0,0.1\\n")
        >>> cache.load(run, 0)["test_acc"].tolist()
        [0.1]
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def paths(self, key: str) -> dict[str, Path]:
        return {kind: self.folder / f"{key}{suffix}" for kind, suffix in
                (("meta", ".json"), ("table", ".csv.gz"), ("weights", ".pt"), ("error", ".error.txt"))}

    def save(self, run: Run, seed: int, csv_text: str, weights: bytes | None = None, train_s: float | None = None) -> None:
        """Store one finished run: its table, its weights (if given), then the marker that makes it count (with
        ``train_s``, the run's wall time: its share of a batched group's)."""
        self.store(run.key(seed), {"run": json.loads(run.to_json()), "seed": seed}, csv_text, weights, train_s)

    def load(self, run: Run, seed: int) -> pd.DataFrame | None:
        """The run's table, or None if it is not stored (or was damaged: then it is moved to ``damaged/``)."""
        return self.fetch(run.key(seed), weights=run.keep_weights)

    def store(self, key: str, about: dict, csv_text: str, weights: bytes | None = None, train_s: float | None = None) -> None:
        """Store a table under ``key``: the table, the weights (if given), then the record that makes it count:
        ``about`` (what was computed) with the cache version, the code that computed it (:func:`code_fingerprint`), row
        count, checksums and ``train_s``."""
        p = self.paths(key)
        atomic_write_bytes(p["table"], gzip.compress(csv_text.encode(), mtime=0))
        if weights is not None:
            atomic_write_bytes(p["weights"], weights)
        meta = {**about, "version": CACHE_VERSION, "code": code_fingerprint(), "rows": len(pd.read_csv(io.StringIO(csv_text))),
                "sha256": hashlib.sha256(csv_text.encode()).hexdigest(),
                "weights_sha256": None if weights is None else hashlib.sha256(weights).hexdigest(), "train_s": train_s}
        atomic_write_text(p["meta"], json.dumps(meta, indent=1, default=str))
        p["error"].unlink(missing_ok=True)

    def fetch(self, key: str, weights: bool = False) -> pd.DataFrame | None:
        """The table stored under ``key``, or None if there is none (or it was damaged: then it is moved to
        ``damaged/``); ``weights``: a weights file must be there too."""
        p = self.paths(key)
        if not p["meta"].exists():
            return None
        problem = self._check(p, weights)
        if problem:
            self._set_aside(p, problem)
            return None
        return pd.read_csv(io.StringIO(gzip.decompress(p["table"].read_bytes()).decode()))

    def weights_path(self, run: Run, seed: int) -> Path:
        return self.paths(run.key(seed))["weights"]

    def record_error(self, run: Run, seed: int, error: str) -> None:
        atomic_write_text(self.paths(run.key(seed))["error"], f"{run.to_json()}\nseed {seed}\n\n{error}")

    @staticmethod
    def _check(p: dict[str, Path], weights: bool) -> str | None:
        try:
            meta = json.loads(p["meta"].read_text())
            if not isinstance(meta, dict):
                return f"{p['meta'].name} holds a JSON {type(meta).__name__}, not a record"
            text = gzip.decompress(p["table"].read_bytes()).decode()
        except (OSError, EOFError, ValueError, zlib.error) as e:  # missing, truncated, bits flipped, not gzip / JSON
            return f"unreadable ({type(e).__name__}: {e})"
        if hashlib.sha256(text.encode()).hexdigest() != meta.get("sha256"):
            return "table checksum differs from the one recorded"
        try:
            rows = len(pd.read_csv(io.StringIO(text)))
        except ValueError as e:  # pandas' EmptyDataError and ParserError are ValueErrors
            return f"table unreadable as CSV ({type(e).__name__}: {e})"
        if rows != meta.get("rows"):
            return f"{rows} rows where {meta.get('rows')} were recorded"
        if weights:
            if not p["weights"].exists():
                return "weights file missing"
            if hashlib.sha256(p["weights"].read_bytes()).hexdigest() != meta.get("weights_sha256"):
                return "weights checksum differs from the one recorded"
        return None

    def _set_aside(self, p: dict[str, Path], problem: str) -> None:
        damaged = self.folder / "damaged"
        damaged.mkdir(exist_ok=True)
        for path in p.values():
            if path.exists():
                shutil.move(str(path), damaged / path.name)
        print(f"[bnlib.lab.sweep] damaged cached run {p['meta'].name} in {self.folder} ({problem}): moved to {damaged}, "
              "computing it again", flush=True)


def _records(folder: str | os.PathLike) -> list[tuple[Path, dict]]:
    """The records (``*.json``: path, content) of the runs and calls in a cache, its subfolders' included (notebook 01
    keeps one per sweep); ``damaged/`` and files that are no record left out."""
    found = []
    for path in sorted(p for p in Path(folder).rglob("*.json") if "damaged" not in p.relative_to(folder).parts):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and {"run", "fn"} & set(meta):
            found.append((path, meta))
    return found


def cache_code(folder: str | os.PathLike) -> dict:
    """Which code made the runs and calls stored under ``folder`` (subfolders included, ``damaged/`` left out), against
    this process's :func:`code_fingerprint`: ``{"runs": n, "other": k, "unrecorded": u, "code": fingerprint}``: ``k``
    were made by other code, ``u`` before the code was recorded (2026-12-07).

    Example:
        >>> from bnlib.lab.experiment import Run
        >>> d = tempfile.mkdtemp()
        >>> RunCache(d).save(Run(dataset="mnist", model="mlp", steps=1, batch_size=2, lr=0.1), 0, "step\\n0\\n")
        >>> {k: v for k, v in cache_code(d).items() if k != "code"}
        {'runs': 1, 'other': 0, 'unrecorded': 0}
    """
    runs, other, unrecorded, code = 0, 0, 0, code_fingerprint()
    for _, meta in _records(folder):
        runs += 1
        other += meta.get("code") not in (None, code)
        unrecorded += meta.get("code") is None
    return {"runs": runs, "other": other, "unrecorded": unrecorded, "code": code}


def cache_compute(folder: str | os.PathLike) -> dict:
    """The training time recorded in a folder of finished runs (:func:`run_sweep`'s and :func:`call_sweep`'s files,
    subfolders included).

    Returns ``{"runs": n, "seconds": s, "untimed": k}``: ``s`` sums the wall time of the ``n - k`` runs whose time is
    known (a run of a batched group counts its share of the group's); the ``k`` others were stored before times
    were recorded. A run stored without its time that trained alone counts its table's last ``elapsed_s``.

    Example:
        >>> from bnlib.lab.experiment import Run
        >>> d = tempfile.mkdtemp()
        >>> RunCache(d).save(Run(dataset="mnist", model="mlp", steps=1, batch_size=2, lr=0.1), 0, "step\\n0\\n", train_s=2.5)
        >>> cache_compute(d)
        {'runs': 1, 'seconds': 2.5, 'untimed': 0}
    """
    runs, seconds, untimed = 0, 0.0, 0
    for meta_path, meta in _records(folder):
        runs += 1
        if meta.get("train_s") is not None:
            seconds += float(meta["train_s"])
            continue
        table = meta_path.with_name(meta_path.name.removesuffix(".json") + ".csv.gz")
        if "run" in meta and not meta["run"].get("batched") and table.exists():
            with contextlib.suppress(OSError, ValueError, EOFError, KeyError):
                seconds += float(pd.read_csv(table, usecols=["elapsed_s"])["elapsed_s"].max())
                continue
        untimed += 1
    return {"runs": runs, "seconds": seconds, "untimed": untimed}


# ---------------------------------------------------------------- sweeps of runs

class SweepError(RuntimeError):
    """Some runs of a sweep raised; the finished ones are on disk and a re-run retries the rest."""


def _describe(run: Run, seed: int, others: Sequence[Run]) -> str:
    """The fields in which ``run`` differs from the other runs of its sweep, and its seed (for messages)."""
    fields = [f for f in run.__dataclass_fields__ if len({getattr(r, f) for r in others}) > 1] or ["model", "norm", "lr"]
    return ", ".join(f"{f}={getattr(run, f)!r}" for f in fields) + f", seed {seed}"


def _columns(run: Run) -> dict:
    """The run's fields as table columns: tuples joined by commas, keyword arguments (``*_args``) as a JSON object."""
    out = {}
    for name, value in json.loads(run.to_json()).items():
        if name.endswith("_args"):
            out[name] = json.dumps(dict(value), sort_keys=True)
        else:
            out[name] = ",".join(map(str, value)) if isinstance(value, list) else value
    return out


def _with_fields(table: pd.DataFrame, run: Run, seed: int) -> pd.DataFrame:
    """``table`` with the run's fields and the seed as columns, added in one piece (one insert per field fragments a table
    that has hundreds of probe columns, and pandas warns); existing columns keep their place."""
    fields = {**_columns(run), "seed": seed}
    added = pd.DataFrame(fields, index=table.index)
    kept = table.drop(columns=[c for c in fields if c in table.columns])
    return pd.concat([kept, added], axis=1)[[*table.columns, *(c for c in fields if c not in table.columns)]]


def run_sweep(
    runs: Sequence[Run],
    seeds: Iterable[int] = (0,),
    out_dir: str | os.PathLike = "runs",
    *,
    executor: cf.Executor | str | None = None,
    workers: int | None = None,
    device: str = "cpu",
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> pd.DataFrame:
    """Train every run for every seed (or read it from ``out_dir``); one table, in the order asked.

    Columns: the run's table (:func:`bnlib.lab.experiment.train_run`), then every field of its ``Run`` (tuples joined
    by commas, ``norm_args``/``probe_args``/``schedule_args`` as JSON objects) and ``seed``. Runs not on disk go to
    ``executor`` (an ``Executor``, or a string for :func:`executor_from`); with None, to a local pool of ``workers``
    processes (default :func:`default_workers`, of which only :func:`bnlib.lab.cores.share` train at a time unless ``workers`` or
    ``$BNLIB_WORKERS`` is given), or to this process when ``workers=1``, when one run is left, or when ``device``
    is a GPU (one run after another on it). Each run uses one intra-op thread wherever it runs, so the table
    is the same as ``train_run(run, seed)`` in the caller's process. Batched runs (``Run.batched``, the MLP fast path)
    of one :func:`~bnlib.lab.experiment.batch_group` train together as one batched model per worker
    (:func:`~bnlib.lab.experiment.train_runs_batched`); each is still cached under its own key. Tables are returned as read
    back from disk. The local pool's workers start on the first sweep and serve the later ones of the same process
    (in a script, call ``run_sweep`` under ``if __name__ == "__main__":``, as for any process pool).

    Errors: a bad argument raises before any training. A run that raises is recorded beside the cache and
    the others go on; at the end :class:`SweepError` names every failed run (the finished ones stay on disk;
    calling again retries only the failed ones).

    Example:
        >>> run_sweep([{"lr": 0.1}], seeds=[0], out_dir=tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        TypeError: run_sweep: runs must be bnlib.lab.experiment.Run configs, got dict at position 0; build them as Run(...)
    """
    runs = list(runs)
    for i, run in enumerate(runs):
        if not isinstance(run, Run):
            raise TypeError(f"run_sweep: runs must be bnlib.lab.experiment.Run configs, got {type(run).__name__} at position "
                            f"{i}; build them as Run(dataset=..., model=..., steps=..., batch_size=..., lr=...)")
    seeds = list(seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"run_sweep: seeds must be integers >= 0, got {s!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"run_sweep: workers must be an integer >= 1 or None, got {workers!r}")
    executor = executor_from(executor)
    cache = RunCache(out_dir)
    cache.folder.mkdir(parents=True, exist_ok=True)
    jobs = list(dict.fromkeys((run, seed) for run in runs for seed in seeds))  # a run asked twice is trained once
    tables = {job: cache.load(*job) for job in jobs}
    todo = [job for job in jobs if tables[job] is None]
    errors: dict[tuple[Run, int], str] = {}  # job -> the error's first line
    root = None if data_root is None else str(data_root)
    bar = progress_bar(total=len(jobs), initial=len(jobs) - len(todo), desc=desc or "runs", unit="run", disable=not progress,
               mininterval=1.0, smoothing=0)

    def finished(task: list[tuple[Run, int]], get_result: Callable[[], list[tuple[str, bytes | None, float]]]) -> None:
        try:
            results = get_result()
        except Exception as e:  # the task failed in its worker (or the worker died): record it, go on
            for job in task:
                errors[job] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
                cache.record_error(*job, "".join(traceback.format_exception(e)).strip())
            bar.set_postfix(failed=len(errors))
        else:
            for job, (csv_text, weights, train_s) in zip(task, results):
                cache.save(*job, csv_text, weights, train_s=train_s)
                tables[job] = cache.load(*job)
        bar.update(len(task))

    fixed = workers is not None or WORKERS_ENV in os.environ  # a worker count asked for is kept busy
    workers = workers or default_workers()
    on_gpu = not str(device).startswith("cpu")
    tasks = _tasks(todo, workers)
    in_process = executor is None and (workers == 1 or len(tasks) <= 1 or on_gpu)
    if in_process:  # one task per batched group: one process trains it as one model
        tasks = _tasks(todo, 1)
    as_json = lambda task: [(run.to_json(), seed) for run, seed in task]  # noqa: E731
    if in_process:
        for task in tasks:
            finished(task, lambda task=task: _train(as_json(task), device, root))
    elif tasks:
        pool = executor or _local_pool(workers)
        # the default pool keeps only this process's share of the cores busy (bnlib.lab.cores), re-read as runs finish
        busy = (lambda: len(tasks)) if executor is not None or fixed else (lambda: min(workers, core_share()))
        waiting, running, futures = list(reversed(tasks)), {}, []
        try:
            while waiting or running:
                while waiting and len(running) < busy():
                    task = waiting.pop()
                    future = pool.submit(_train, as_json(task), device, root)
                    running[future] = task
                    futures.append(future)
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    finished(running.pop(future), future.result)
        except BaseException as e:  # interrupted (Ctrl-C in a notebook): keep what finished, stop the rest
            for future in futures:
                future.cancel()
            if executor is None and isinstance(e, KeyboardInterrupt):
                _stop_pool(workers)
            raise
        finally:
            if executor is None and any(isinstance(f.exception(), BrokenProcessPool)
                                        for f in futures if f.done() and not f.cancelled()):
                _POOLS.pop(workers, None)  # a worker died: the next sweep starts a fresh pool
    bar.close()
    if errors:
        lines = [f"  {_describe(run, seed, runs)}: {errors[run, seed]}" for run, seed in jobs if (run, seed) in errors]
        raise SweepError(f"{len(errors)} of {len(jobs)} runs failed (tracebacks in {cache.folder}/*.error.txt; the "
                         f"{len(jobs) - len(errors)} others are saved; run the sweep again to retry the failed ones):\n"
                         + "\n".join(lines))
    frames = [_with_fields(tables[(run, seed)], run, seed) for run in runs for seed in seeds]
    # tables with different probe columns concatenate into many blocks: copy() consolidates them (or a caller's assign warns)
    return pd.concat(frames, ignore_index=True).copy() if frames else pd.DataFrame()


def trained_model(run: Run, seed: int, out_dir: str | os.PathLike, data_root: str | os.PathLike | None = None):
    """The network of ``run`` and ``seed`` with its final weights, from a sweep's cache (``Run.keep_weights``).

    Example:
        >>> from bnlib.lab.experiment import Run
        >>> run = Run(dataset="mnist", model="mlp", hidden=(8,), steps=2, batch_size=10, lr=0.1, keep_weights=True)
        >>> d = tempfile.mkdtemp()
        >>> _ = run_sweep([run], seeds=[0], out_dir=d, progress=False)
        >>> trained_model(run, 0, d).training
        False
    """
    import torch

    from bnlib.lab.experiment import build_run_model

    if not run.keep_weights:
        raise ValueError("trained_model: the run does not keep its weights; set Run(keep_weights=True) and sweep it")
    path = RunCache(out_dir).weights_path(run, seed)
    if RunCache(out_dir).load(run, seed) is None or not path.exists():
        raise FileNotFoundError(f"trained_model: no finished run with weights for seed {seed} in {out_dir}; "
                                "train it first with run_sweep([run], [seed], out_dir)")
    model = build_run_model(run, seed, data_root)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


# ---------------------------------------------------------------- sweeps of calls

def one_thread() -> contextlib.AbstractContextManager:
    """Torch's intra-op threads set to 1 inside the block, restored after (:func:`bnlib.lab.cores.intra_op_threads`)."""
    return intra_op_threads(1)


def call_key(fn: Callable | str, config: Mapping, seed: int, read: Mapping | None = None) -> str:
    """A stable 16-hex-digit key of a function (its name and source code), what it reads besides its arguments, a
    config and a seed.

    For experiments that are not yet a :class:`~bnlib.lab.experiment.Run`. The source is part of the key, so two
    different lambdas or an edited function never share results; so is ``read``, the fingerprint of the globals it
    reads (:func:`bnlib.lab.reads.reads`, computed here when not given), so a notebook parameter, a dataset or a run
    config read outside ``config`` changes the key too.

    Example:
        >>> (call_key("f", {"lr": 0.1}, 0) == call_key("f", {"lr": 0.1}, 0),
        ...  call_key("f", {"lr": 0.1}, 1) == call_key("f", {"lr": 0.1}, 0))
        (True, False)
        >>> etas = [1.0]
        >>> def g(seed):
        ...     return etas
        >>> before = call_key(g, {}, 0); etas = [2.0]; call_key(g, {}, 0) == before
        False
    """
    if callable(fn):
        try:
            source = inspect.getsource(fn)
        except (OSError, TypeError):
            source = getattr(fn.__code__, "co_code", b"").hex() if hasattr(fn, "__code__") else repr(fn)
        name = f"{getattr(fn, '__qualname__', repr(fn))}\n{source}"
        read = reads(fn) if read is None and hasattr(fn, "__code__") else read
    else:
        name = fn
    payload = {"fn": name, "config": dict(config), "seed": seed, "version": CACHE_VERSION}
    if read:  # absent when the function reads nothing: such keys stay as they were
        payload["reads"] = dict(read)
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def call_sweep(
    fn: Callable[..., pd.DataFrame],
    configs: Iterable[Mapping],
    seeds: Iterable[int] = (0,),
    out_dir: str | os.PathLike = "sweep",
    *,
    progress: bool = True,
    desc: str | None = None,
) -> pd.DataFrame:
    """Call ``fn(**config, seed=seed)`` in this process for every config and seed, reusing finished calls.

    For experiments that are not (yet) a :class:`~bnlib.lab.experiment.Run`; prefer :func:`run_sweep`. ``fn``
    returns a DataFrame; the result concatenates them in order with each config's keys and ``seed`` as
    columns. Calls are keyed by :func:`call_key` (the function's source, what it reads besides its arguments: notebook
    globals and the notebook functions it calls, :func:`bnlib.lab.reads.reads`; the config, the seed, the cache version),
    stored and verified by :class:`RunCache` as :func:`run_sweep`'s runs are (a damaged table is set aside and
    computed again), and run with one intra-op thread (as :func:`run_sweep`'s runs: the same numbers whatever the
    machine's core count). A call that raises stops the sweep; everything finished before it stays on disk.

    Example:
        >>> def f(lr, seed):
        ...     print("computing", lr, seed); return pd.DataFrame({"loss": [lr]})
        >>> d = tempfile.mkdtemp()
        >>> _ = call_sweep(f, [{"lr": 0.1}], seeds=[0], out_dir=d, progress=False)
        computing 0.1 0
        >>> _ = call_sweep(f, [{"lr": 0.1}], seeds=[0], out_dir=d, progress=False)  # from the cache
    """
    cache = RunCache(out_dir)
    cache.folder.mkdir(parents=True, exist_ok=True)
    jobs = [(dict(c), s) for c in configs for s in seeds]
    read = reads(fn) if hasattr(fn, "__code__") else {}  # once: the globals do not change during the sweep
    frames = []
    for config, seed in progress_bar(jobs, desc=desc or getattr(fn, "__qualname__", "calls"), unit="call", disable=not progress):
        key = call_key(fn, config, seed, read)
        df = cache.fetch(key)
        if df is None:
            start = time.perf_counter()
            with one_thread():
                df = fn(**config, seed=seed).copy()
            for k, v in config.items():
                df[k] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
            df["seed"] = seed
            text = df.to_csv(index=False)
            cache.store(key, {"fn": getattr(fn, "__qualname__", ""), "config": config, "seed": seed}, text,
                        train_s=time.perf_counter() - start)
            df = pd.read_csv(io.StringIO(text))  # as a re-run reads it back
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
