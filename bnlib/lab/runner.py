"""Execute the notebooks with papermill: ``python -m bnlib.run``.

    python -m bnlib.run [NOTEBOOK ...] [--preset smoke|quick|full] [-p NAME VALUE ...] [--out DIR] [--jobs N]

No notebook named: the series (``bnlib.lab.presets.SERIES``, ``notebooks/01_...`` to ``06_...``), in order; copies
such as JupyterLab's ``01_...-Copy1.ipynb`` run only when named. A notebook is named by its number (``01``), a
prefix or the whole of its stem, or a path; a prefix that matches several notebooks is refused with the list.
Presets apply by the notebook's identity stored in its metadata (``metadata.bnlib.notebook``), so a renamed copy
gets its notebook's presets; a notebook without one runs at ``quick`` only.

Every ``-p`` name is checked against the notebook's ``parameters`` cell before anything runs. Values are parsed
as JSON where possible (``-p lr 0.1``, ``-p seeds 3``, ``-p lrs "[0.1, 1]"``, ``-p test_size None``), else kept
as strings; each must be finite and of its default's type (a number where the default is a number, a list where
it is a list; ``1e4`` for an integer becomes ``10000``); a relative path for ``*_root`` is resolved against the
directory you run from. Each notebook then checks its values in its second cell.

Writes ``DIR/NN_name.ipynb`` (executed; ``NN_name.running.ipynb`` while it runs), ``DIR/NN_name/`` (figures,
tables, ``metrics.json``: the notebook's ``out_dir``), ``DIR/runs.json`` (one record per notebook run into DIR)
and ``DIR/SUMMARY.md``, each replaced whole through a temporary file (``runs.json`` under a lock, so runners that
share DIR keep each other's records; a damaged one is set aside and rebuilt from the executed notebooks). While a
notebook runs, its last good result waits as ``NN_name.previous.ipynb`` and ``NN_name/metrics.previous.json``;
it is deleted when the run succeeds and kept, named as stale in ``SUMMARY.md``, when it fails.

Output: a line as each notebook starts and ends, and while it runs its progress (cells done of all, time elapsed,
time left by its last run in ``runs.json``, else by ``bnlib.lab.presets.TYPICAL_SECONDS``): one line
rewritten on a terminal, else a new line at most once a minute (``--jobs``, log files). Kernels talk over local
sockets (no transport warning) and draw progress bars as one plain line each (``bnlib.lab.progress``), so no executed
notebook keeps a frozen widget. ``SUMMARY.md`` gives per notebook the wall time of this execution, the training time
stored in its run cache (what an empty cache costs), the seeds, and the git revision.

Exit status: 0; 1 if a notebook failed or a file could not be written (a full disk is named as such); 2 for bad
arguments (nothing ran); 128 + the signal's number after SIGINT, SIGTERM or SIGHUP, which stop the kernels and
worker processes and leave what finished on record.

Cores: the runner founds (or joins) a session of :mod:`bnlib.lab.cores`, so that runners and kernels started together
share the cores instead of fighting over them. ``--jobs N`` executes N notebooks at a time, each in its own
process and kernel, with 1/N of the session's share (``$BNLIB_JOBS``); the notebooks expected to take longest
start first (wall times in DIR's ``runs.json``, else ``bnlib.lab.presets.TYPICAL_SECONDS``).

The kernel is the Python running this module, whatever kernelspecs are installed (a temporary kernelspec is put
first on ``JUPYTER_PATH``).

Example (Python):
    >>> from bnlib.lab.runner import resolve_notebooks
    >>> [p.stem for p in resolve_notebooks(["01"])]
    ['01_internal_covariate_shift']
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import fcntl
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

from bnlib.lab import cores
from bnlib.lab.files import atomic_write_text
from bnlib.lab.machine import machine_info, machine_text
from bnlib.lab.presets import PRESET_NAMES, PRESETS, SERIES, TYPICAL_SECONDS, preset_parameters
from bnlib.lab.progress import TEXT_ENV, duration
from bnlib.verdicts import FINDINGS, tally

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
KERNEL_NAME = "bnlib-current-python"
PATH_SUFFIXES = ("_root",)  # parameters holding a path: a relative one is resolved against the caller's directory
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RunResult:
    """Outcome of executing one notebook: one record of ``runs.json``."""

    notebook: str  # the file's stem (names the outputs)
    status: str  # "ok", "failed" or "interrupted"
    wall_s: float
    preset: str
    parameters: dict
    error: str = ""
    identity: str | None = None  # the series notebook it is (metadata.bnlib.notebook)
    finished: str = ""  # when, UTC
    previous: dict | None = None  # the last good result, kept while this one is not ok
    compute: dict | None = None  # the training time recorded in its run cache (bnlib.lab.sweep.cache_compute)
    revision: str = ""  # the repository's git revision ("+changes" when bnlib/ or notebooks/ differed from it)
    machine: dict | None = None  # where it ran: bnlib.lab.machine.machine_info() and the executor of its runs


class Stopped(KeyboardInterrupt):
    """The runner received a stop signal; the notebooks in progress were stopped and recorded."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ---------------------------------------------------------------- which notebooks


def notebook_identity(path: Path) -> str | None:
    """The series notebook ``path`` is (``metadata.bnlib.notebook``), or None for a notebook outside the series.

    Example:
        >>> notebook_identity(NOTEBOOK_DIR / "01_internal_covariate_shift.ipynb")
        '01_internal_covariate_shift'
    """
    try:
        metadata = json.loads(Path(path).read_text()).get("metadata", {})
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read notebook {path}: {exc}") from exc
    identity = metadata.get("bnlib", {}).get("notebook")
    return identity if isinstance(identity, str) else None


def series() -> list[Path]:
    """The series' notebooks in order (``notebooks/<identity>.ipynb`` for each of ``bnlib.lab.presets.SERIES``)."""
    return [NOTEBOOK_DIR / f"{name}.ipynb" for name in SERIES]


def resolve_notebooks(names: Sequence[str] = ()) -> list[Path]:
    """Notebook paths for names like ``01``, ``01_internal_covariate_shift`` or a path; the series if empty.

    A name is a path to a notebook, a whole stem in ``notebooks/``, or a prefix of one: of a series notebook
    first (``01`` is the series' 01, not its copies), else of any notebook there. A prefix matching several is
    refused with the list.

    Example:
        >>> resolve_notebooks(["no_such"])
        Traceback (most recent call last):
        ...
        ValueError: no notebook matches 'no_such'; the series: 01_internal_covariate_shift, 02_mnist_reproduction...
        >>> resolve_notebooks(["0"])
        Traceback (most recent call last):
        ...
        ValueError: '0' matches several notebooks: 01_internal_covariate_shift, 02_mnist_reproduction, ...; name one
    """
    if not names:
        return series()
    everything = series() + sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if p not in series())
    paths = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            paths.append(path.resolve())
            continue
        stem = path.name.removesuffix(".ipynb")
        exact = [p for p in everything if p.stem == stem]
        for pool in (exact, series(), everything):
            matches = [p for p in pool if p.stem.startswith(stem)]
            if len(matches) > 1:
                raise ValueError(f"{name!r} matches several notebooks: {', '.join(p.stem for p in matches)}; name one")
            if matches:
                paths.append(matches[0])
                break
        else:
            raise ValueError(f"no notebook matches {name!r}; the series: {', '.join(SERIES)}")
    return paths


def notebook_presets(path: Path, preset: str) -> dict:
    """The parameters ``preset`` sets for the notebook at ``path``, by its identity (a renamed copy gets them too).

    Example:
        >>> notebook_presets(NOTEBOOK_DIR / "01_internal_covariate_shift.ipynb", "smoke")["seeds"]
        2
    """
    identity = notebook_identity(path)
    if identity in PRESETS:
        return preset_parameters(identity, preset)
    if preset == "quick":  # a notebook's own defaults need no identity
        return {}
    raise ValueError(f"{path.name} is not a notebook of the series (its metadata has no bnlib.notebook among "
                     f"{', '.join(SERIES)}), so preset {preset!r} does not apply to it; run it with --preset quick "
                     "(its own defaults), or give it the metadata of the notebook it was copied from")


# ---------------------------------------------------------------- parameters


def parse_value(text: str):
    """Parse a ``-p`` value: JSON (numbers, lists, true/false/null), Python's True/False/None, else the string.

    Example:
        >>> parse_value("1e-3"), parse_value("[1, 2]"), parse_value("True"), parse_value("relu")
        (0.001, [1, 2], True, 'relu')
    """
    python_words = {"True": True, "False": False, "None": None}
    if text in python_words:
        return python_words[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def notebook_parameters(path: Path) -> dict:
    """Names and defaults (as source text) of the notebook's ``parameters`` cell (``papermill.inspect_notebook``)."""
    import papermill

    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def _kind(value) -> str | None:
    for kind, types in (("bool", bool), ("integer", int), ("number", float), ("string", str), ("list", list)):
        if isinstance(value, types):
            return kind
    return None


def _numbers(value) -> Iterator:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, float):
        yield value


def checked_value(name: str, value, default):
    """``value`` for parameter ``name`` as the notebook gets it, or ``ValueError`` naming the parameter: it must be
    finite and of the default's kind (None always passes, and anything where the default is None); an integral float
    for an integer becomes an int; a relative path for a ``*_root`` parameter becomes absolute (from the cwd).

    Example:
        >>> checked_value("steps", 1e4, 300), checked_value("lr", 1, 0.1)
        (10000, 1)
        >>> checked_value("lr", float("inf"), 0.1)
        Traceback (most recent call last):
        ...
        ValueError: parameter 'lr' must be finite, got inf
        >>> checked_value("steps", 2.5, 300)
        Traceback (most recent call last):
        ...
        ValueError: parameter 'steps' takes an integer (its default is 300), got 2.5
    """
    if any(not math.isfinite(v) for v in _numbers(value)):
        raise ValueError(f"parameter {name!r} must be finite, got {value!r}")
    if name.endswith(PATH_SUFFIXES) and isinstance(value, str):
        return str(Path(value).expanduser().resolve())
    kind, got = _kind(default), _kind(value)
    if value is None or kind is None or got == kind or (kind == "number" and got == "integer"):
        return value
    if kind == "integer" and got == "number" and value.is_integer():
        return int(value)
    hint = "; for None write None or null" if isinstance(value, str) and value.lower() in ("none", "null") else ""
    article = "an" if kind == "integer" else "a"
    raise ValueError(f"parameter {name!r} takes {article} {kind} (its default is {default!r}), got {value!r}{hint}")


def check_parameters(path: Path, params: dict) -> dict:
    """Refuse parameter names the notebook does not declare (listing the valid ones) and values of the wrong kind;
    returns the values as the notebook will get them (:func:`checked_value`).

    Example:
        >>> check_parameters(resolve_notebooks(["01"])[0], {"no_such_param": 1})
        Traceback (most recent call last):
        ...
        ValueError: unknown parameter 'no_such_param' for 01_internal_covariate_shift; valid parameters: ...
    """
    if not params:
        return {}
    valid = notebook_parameters(path)
    unknown = [name for name in params if name not in valid]
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} for {path.stem}; valid parameters: {', '.join(valid)}"
        )
    checked = {}
    for name, value in params.items():
        try:
            default = ast.literal_eval(valid[name])
        except (ValueError, SyntaxError):  # an expression: no kind to check against
            default = None
        try:
            checked[name] = checked_value(name, value, default)
        except ValueError as exc:
            raise ValueError(f"{path.stem}: {exc}") from None
    return checked


def prepare_out(out: str | os.PathLike) -> Path:
    """``out`` created if needed and checked writable, before any notebook runs; ``ValueError`` naming it if not.

    Example:
        >>> prepare_out("/proc/version")
        Traceback (most recent call last):
        ...
        ValueError: --out /proc/version is a file, not a folder; name a folder (it is created if missing)
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder; name a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"--out {path.resolve()} cannot be written ({exc.strerror}); choose a folder you can write "
                         "to") from exc
    return path


# ---------------------------------------------------------------- runs.json and SUMMARY.md


@contextlib.contextmanager
def log_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock (``.runs.lock``) for a read-modify-write of ``runs.json``, across processes."""
    with open(out / ".runs.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_from_notebook(path: Path) -> dict | None:
    """A ``runs.json`` record rebuilt from an executed notebook's papermill metadata (None if it has none)."""
    try:
        nb = json.loads(path.read_text())
        meta = nb["metadata"]["papermill"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    params = meta.get("parameters") or {}
    failed = bool(meta.get("exception"))
    return asdict(RunResult(
        path.stem, "failed" if failed else "ok", meta.get("duration") or float("nan"), params.get("preset", "?"), params,
        "failed (see the notebook)" if failed else "", nb["metadata"].get("bnlib", {}).get("notebook"),
        meta.get("end_time") or "",
    ))


def read_log(out: Path) -> dict:
    """``out/runs.json`` (empty if missing). A damaged one is named, set aside as ``runs.json.damaged-<time>`` and
    rebuilt (and rewritten) from the executed notebooks in ``out``; call it under :func:`log_lock`."""
    path = out / "runs.json"
    if not path.exists():
        return {}
    try:
        log = json.loads(path.read_text())
        if not isinstance(log, dict) or not all(isinstance(r, dict) for r in log.values()):
            raise ValueError("not an object of notebook records")
        return log
    except (ValueError, UnicodeDecodeError) as exc:
        aside = path.with_name(f"runs.json.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        records = (record_from_notebook(p) for p in sorted(out.glob("*.ipynb")) if p.stem.count(".") == 0)
        log = {r["notebook"]: r for r in records if r}
        atomic_write_text(path, json.dumps(log, indent=2))
        print(f"[bnlib.run] {path} was damaged ({exc}): set aside as {aside.name}; rebuilt from the executed "
              f"notebooks in {out} ({len(log)} found)", file=sys.stderr, flush=True)
        return log


def compute_text(compute: dict | None) -> str:
    """A run cache's recorded training time (:func:`bnlib.lab.sweep.cache_compute`) for SUMMARY.md.

    Example:
        >>> compute_text({"runs": 3, "seconds": 4000.0, "untimed": 1}), compute_text({"runs": 0, "seconds": 0, "untimed": 0})
        ('1 h 6 min over 2 runs (1 more stored without its time)', 'no cached runs')
    """
    if not compute:
        return "?"
    if not compute["runs"]:
        return "no cached runs"
    timed, untimed = compute["runs"] - compute["untimed"], compute["untimed"]
    if not timed:
        return f"no recorded times ({untimed} runs stored before times were recorded)"
    text = f"{duration(compute['seconds'])} over {timed} runs"
    return text + (f" ({untimed} more stored without its time)" if untimed else "")


def verdict_counts(verdicts: Sequence[dict]) -> str:
    """Findings by outcome and checks apart, in one line (a check never counts as a finding).

    Example:
        >>> verdict_counts([{"outcome": "supported"}, {"outcome": "passes", "kind": "check"}])
        'Findings: 1 supported, 0 not supported, 0 inconclusive, 0 mixed, 0 untestable here; checks: 1 passed, 0 failed.'
    """
    n = tally(verdicts)
    return f"Findings: {', '.join(f'{n[o]} {o}' for o in FINDINGS)}; checks: {n['passes']} passed, {n['fails']} failed."


def _summary_lines(out: Path, log: dict) -> list[str]:
    metrics = {}  # each notebook's metrics.json, read once: its info (seeds) and its verdicts
    for name in log:
        with contextlib.suppress(OSError, ValueError):
            metrics[name] = json.loads((out / name / "metrics.json").read_text())
    lines = ["# Run summary", "",
             "Wall time: this execution of the notebook (from a warm run cache it only reads the finished runs). Training "
             "in the run cache: the wall time of the runs the notebook read, summed over runs (one worker at a time): "
             "what an empty cache costs.", "",
             "| notebook | status | preset | seeds | wall time | training in the run cache | revision | finished (UTC) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in sorted(log):
        r, i = log[name], metrics.get(name, {}).get("info", {})
        wall = duration(r["wall_s"]) if isinstance(r.get("wall_s"), (int, float)) and math.isfinite(r["wall_s"]) else "?"
        seeds = f"{i['seeds']} from {i.get('first_seed', 0)}" if "seeds" in i else "?"
        lines.append(f"| {name} | {r.get('status', '?')} | {r.get('preset', '?')} | {seeds} | {wall} | "
                     f"{compute_text(r.get('compute'))} | {r.get('revision') or '?'} | {r.get('finished') or '?'} |")
    for name in sorted(log):
        r = log[name]
        lines += ["", f"## {name}", "", f"Machine: {machine_text(r.get('machine'))}", ""]
        if r.get("error"):
            lines += [f"**{r.get('status', 'failed').capitalize()}**: {r['error']}", ""]
        previous = r.get("previous")
        if r.get("status") != "ok" and previous:
            lines += [f"**Stale result kept**: the last good run (preset {previous.get('preset', '?')}, finished "
                      f"{previous.get('finished') or '?'}) is `{previous['notebook']}`"
                      + (f" with `{previous['metrics']}`" if previous.get("metrics") else "")
                      + "; it is not this run's result.", ""]
        verdicts = metrics.get(name, {}).get("verdicts", [])
        if not verdicts:
            lines.append("No verdicts recorded.")
            continue
        if r.get("status") != "ok":
            lines += ["Verdicts this run reached before it stopped:", ""]
        lines += [verdict_counts(verdicts), ""]
        lines += ["| claim | source | outcome | evidence |", "|---|---|---|---|"]
        for v in verdicts:
            cells = [v["claim"], v.get("source", ""), f"**{v['outcome']}**", v["evidence"]]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return lines


def write_summary(out: Path, results: Sequence[RunResult]) -> Path:
    """Merge ``results`` into ``out/runs.json`` and write ``out/SUMMARY.md`` from it and each ``metrics.json``,
    both atomically and under :func:`log_lock`."""
    with log_lock(out):
        log = read_log(out)
        for r in results:
            log[r.notebook] = asdict(r)
        atomic_write_text(out / "runs.json", json.dumps(log, indent=2))
        path = out / "SUMMARY.md"
        atomic_write_text(path, "\n".join(_summary_lines(out, log)) + "\n")
    return path


# ---------------------------------------------------------------- executing one notebook


def result_files(out: Path, stem: str) -> dict[str, Path]:
    """Where a notebook's results go in ``out``: the executed copy, its copy while running, and the last good result
    kept while a new run has not succeeded (notebook and ``metrics.json``)."""
    return {
        "output": out / f"{stem}.ipynb",
        "running": out / f"{stem}.running.ipynb",
        "previous": out / f"{stem}.previous.ipynb",
        "metrics": out / stem / "metrics.json",
        "previous_metrics": out / stem / "metrics.previous.json",
    }


def kept_previous(out: Path, stem: str, record: dict | None) -> dict | None:
    """What ``runs.json`` says of the good result kept as ``<stem>.previous.ipynb`` (None if none is kept)."""
    f = result_files(out, stem)
    if not f["previous"].exists():
        return None
    if record is None or record.get("status") != "ok":
        return (record or {}).get("previous") or {"notebook": f["previous"].name}
    metrics = f["previous_metrics"]
    return {"notebook": f["previous"].name, "metrics": str(metrics.relative_to(out)) if metrics.exists() else None,
            "preset": record.get("preset"), "finished": record.get("finished")}


def set_aside_previous(out: Path, stem: str) -> dict | None:
    """Before a notebook runs: move its last result out of the way. A good one becomes ``<stem>.previous.ipynb`` and
    ``metrics.previous.json`` (deleted when this run succeeds); a failed one is deleted (an older good one stays
    kept). Returns :func:`kept_previous`."""
    f = result_files(out, stem)
    with log_lock(out):
        record = read_log(out).get(stem)
    if record is None and f["output"].exists():
        record = record_from_notebook(f["output"]) or {"status": "ok"}  # unknown provenance: keep it
    if record and record.get("status") == "ok" and f["output"].exists():
        os.replace(f["output"], f["previous"])
        if f["metrics"].exists():
            os.replace(f["metrics"], f["previous_metrics"])
        else:
            f["previous_metrics"].unlink(missing_ok=True)
    else:
        f["output"].unlink(missing_ok=True)
        f["metrics"].unlink(missing_ok=True)
    f["running"].unlink(missing_ok=True)
    return kept_previous(out, stem, record)


def kernel_path(target: Path, cwd: Path) -> str:
    """``target`` as the kernel (running in ``cwd``) should see it: relative inside the repository, else absolute.

    Example:
        >>> kernel_path(REPO / "outputs" / "01_x", NOTEBOOK_DIR)
        '../outputs/01_x'
    """
    target, cwd = target.resolve(), cwd.resolve()
    if target.is_relative_to(REPO) and cwd.is_relative_to(REPO):
        return os.path.relpath(target, cwd)
    return str(target)


def is_write_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error a kernel reported) is a failure to write: full disk, quota, read-only, denied.

    Example:
        >>> is_write_error(OSError(errno.ENOSPC, "No space left on device")), is_write_error(ValueError("x"))
        (True, False)
    """
    if isinstance(exc, OSError):
        return exc.errno in WRITE_ERRNOS
    found = re.search(r"\[Errno (\d+)\]", str(getattr(exc, "evalue", "")))
    return bool(found) and int(found.group(1)) in WRITE_ERRNOS


def describe_failure(exc: BaseException, output: Path) -> str:
    """A one-line description of a failed execution: the cell and the error, or the write that failed."""
    import papermill

    if isinstance(exc, papermill.PapermillExecutionError):
        text = f"cell {exc.cell_index} (execution count {exc.exec_count}): {exc.ename}: {exc.evalue} (see {output})"
        return f"write error in the notebook's {text}; free space or choose another --out" if is_write_error(exc) else text
    if is_write_error(exc):
        return f"write error: {exc.strerror} ({exc.filename or output}); free space or choose another --out"
    return f"{type(exc).__name__}: {exc}"


def restore_kernelspec(output: Path, source: Path) -> None:
    """Give the executed notebook the source notebook's kernelspec, so it opens with the reader's Python kernel."""
    import nbformat

    src = nbformat.read(source, as_version=4)
    out = nbformat.read(output, as_version=4)
    if "kernelspec" in src.metadata:
        out.metadata["kernelspec"] = src.metadata["kernelspec"]
        atomic_write_text(output, nbformat.writes(out) + "\n")


def finish(path: Path, out: Path, status: str, error: str, wall_s: float, params: dict, previous: dict | None,
           write_failed: bool = False, revision: str = "", machine: dict | None = None) -> RunResult:
    """After a notebook ran (or was stopped): its executed copy takes its place (a truncated one, after a write
    error, is deleted), a superseded good result is deleted; returns its record (``machine`` gains the notebook's
    ``executor`` parameter: where its runs trained, "kernel" for a notebook without one)."""
    f = result_files(out, path.stem)
    if f["running"].exists():
        if write_failed:
            f["running"].unlink()
        else:
            with contextlib.suppress(OSError, ValueError):  # an unreadable copy keeps the temporary kernelspec
                restore_kernelspec(f["running"], path)
            os.replace(f["running"], f["output"])
    if status == "ok":
        f["previous"].unlink(missing_ok=True)
        f["previous_metrics"].unlink(missing_ok=True)
        previous = None
    finished = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    from bnlib.lab.sweep import cache_compute

    if machine is not None:
        machine = {**machine, "executor": runs_executor(path, params)}
    return RunResult(path.stem, status, wall_s, params["preset"], params, error, notebook_identity(path), finished,
                     previous, cache_compute(out / path.stem / "runs"), revision, machine)


def runs_executor(path: Path, params: dict) -> str:
    """Where the notebook's runs train: its ``executor`` parameter as given, else its default, else "kernel" (a
    notebook without one trains in its kernel).

    Example:
        >>> runs_executor(NOTEBOOK_DIR / "02_mnist_reproduction.ipynb", {}), runs_executor(Path("x.ipynb"), {"executor": "dask"})
        ('local', 'dask')
        >>> runs_executor(NOTEBOOK_DIR / "01_internal_covariate_shift.ipynb", {})
        'kernel'
    """
    if "executor" in params:
        return str(params["executor"])
    try:
        return str(ast.literal_eval(notebook_parameters(path)["executor"]))
    except (KeyError, ValueError, SyntaxError, OSError):
        return "kernel"


def git_revision() -> str:
    """The repository's commit (short hash), with "+changes" when ``bnlib/`` or ``notebooks/`` differ from it (the
    code behind the results); "" outside git.

    Example:
        >>> bool(re.fullmatch(r"([0-9a-f]{7,40}(\\+changes)?)?", git_revision()))
        True
    """
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        changed = bool(git("status", "--porcelain", "--untracked-files=no", "--", "bnlib", "notebooks").strip())
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+changes" if changed else "")


def expected_seconds(out: Path, stem: str, preset: str) -> tuple[float, str] | None:
    """How long notebook ``stem`` at ``preset`` should take, and where that comes from: the wall time of its last good
    run recorded in ``out/runs.json`` ("last run"), else ``bnlib.lab.presets.TYPICAL_SECONDS`` ("typical at quick:" at
    ``quick``, likewise at ``smoke``), else None.

    Example:
        >>> expected_seconds(Path("/no/such/folder"), "01_internal_covariate_shift", "quick")[1]
        'typical at quick:'
        >>> expected_seconds(Path("/no/such/folder"), "01_internal_covariate_shift", "full") is None
        True
    """
    record = {}
    if (out / "runs.json").exists():
        with log_lock(out):
            record = read_log(out).get(stem, {})
    wall = record.get("wall_s")
    ok = record.get("status") == "ok" and record.get("preset") == preset and isinstance(wall, (int, float))
    if ok and math.isfinite(wall):
        return float(wall), "last run"
    typical = TYPICAL_SECONDS.get(preset, {})
    if stem in typical:
        return float(typical[stem]), f"typical at {preset}:"
    return None


def ipc_kernel_manager():
    """A kernel manager class whose kernels talk over local sockets (IPC) instead of TCP on POSIX systems: ipykernel
    warns at every start of a TCP kernel without encryption. Its kernels are not sent SIGINT as they are shut down
    (jupyter_client does so before every shutdown request; one that lands while the kernel still handles a message
    prints "KeyboardInterrupt caught in kernel." under the runner's lines); the shutdown request, then SIGTERM and
    SIGKILL still stop a busy kernel. None elsewhere (papermill's default manager)."""
    if os.name != "posix":
        return None
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:  # the sockets' path prefix: one per kernel (the default, "kernel-ipc", is shared)
            return os.path.join(tempfile.gettempdir(), f"bnlib-kernel-{uuid.uuid4().hex}")

        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return IPCKernelManager


def execute_notebook(path: Path, out: Path, params: dict, kernel: str, live: bool = False, revision: str = "",
            machine: dict | None = None) -> RunResult:
    """Execute one notebook into ``out`` with ``params`` (everything papermill injects, ``preset`` and ``out_dir``
    included), reporting its progress (:class:`bnlib.lab.progress.NotebookWatch`; ``live``: one line rewritten on a
    terminal); never raises for a failing notebook (the result says so)."""
    import papermill

    from bnlib.lab.progress import NotebookWatch

    expected_s, expected_from = expected_seconds(out, path.stem, params["preset"]) or (None, "")
    previous = set_aside_previous(out, path.stem)
    running = result_files(out, path.stem)["running"]
    print(f"[bnlib.run] {path.stem} (preset {params['preset']}) started", flush=True)
    start = time.perf_counter()
    error, write_failed = "", False
    manager = ipc_kernel_manager()
    try:
        with NotebookWatch(running, path.stem, expected_s, live=live, expected_from=expected_from):
            papermill.execute_notebook(
                str(path), str(running), parameters=params, kernel_name=kernel, language="python", cwd=str(path.parent),
                progress_bar=False, **({"kernel_manager_class": manager} if manager else {}),
            )
    except Exception as exc:  # noqa: BLE001 - any failure is reported, the other notebooks still run
        error, write_failed = describe_failure(exc, out / path.name), isinstance(exc, OSError) and is_write_error(exc)
    return finish(path, out, "failed" if error else "ok", error, time.perf_counter() - start, params, previous,
                  write_failed, revision, machine)


# ---------------------------------------------------------------- the runner


@contextlib.contextmanager
def current_python_kernel() -> Iterator[str]:
    """A temporary kernelspec that starts ``sys.executable``, first on ``JUPYTER_PATH``; yields its name."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp, "kernels", KERNEL_NAME)
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec.joinpath("kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "Python 3 (bnlib)", "language": "python"})
        )
        with _environ(JUPYTER_PATH=tmp + (os.pathsep + os.environ["JUPYTER_PATH"] if "JUPYTER_PATH" in os.environ else "")):
            yield KERNEL_NAME


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {n: os.environ.get(n) for n in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for n, value in old.items():
            if value is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = value


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Inside the block, SIGINT, SIGTERM and SIGHUP raise :class:`Stopped` (signals the caller ignores, as under
    ``nohup``, stay ignored); outside the main thread, nothing changes."""
    def handler(signum, frame):
        raise Stopped(signum)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:
                old[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def stop_descendants(since: float, timeout: float = 10.0) -> int:
    """Terminate every process this one started at or after time ``since`` (the runner's kernels, pool workers and
    their sweep workers; not, in a JupyterLab kernel that called the runner, its earlier children), killing those
    still alive after ``timeout`` seconds; returns how many there were (resource trackers aside: they end with their
    owner)."""
    import psutil

    def tracker(p: psutil.Process) -> bool:  # multiprocessing's resource trackers ignore SIGTERM; they end with their owner
        with contextlib.suppress(psutil.Error):
            return "multiprocessing.resource_tracker" in " ".join(p.cmdline())
        return False

    def started_here(p: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error):
            return p.create_time() >= since - 1.0  # create_time has a clock tick's resolution
        return False

    # listed before any dies: an orphan leaves the tree
    procs = [p for p in psutil.Process().children(recursive=True) if started_here(p) and not tracker(p)]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return len(procs)


@contextlib.contextmanager
def active_session(jobs: int) -> Iterator[None]:
    """This runner's :mod:`bnlib.lab.cores` session, marked active while the block runs; kernels started inside join it
    and split its share ``jobs`` ways (``$BNLIB_JOBS``)."""
    cores.session()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(cores.ACTIVE_SECONDS / 3):
            cores.mark_active()

    cores.mark_active()
    thread = threading.Thread(target=beat, name="bnlib-session", daemon=True)
    thread.start()
    try:
        with _environ(**{cores.JOBS_ENV: str(jobs)}):
            yield
    finally:
        stop.set()


def longest_first(paths: Sequence[Path], out: Path, preset: str = "quick") -> list[Path]:
    """``paths`` ordered by expected wall time at ``preset``, longest first (:func:`expected_seconds`: an earlier run's
    ``out/runs.json``, else ``bnlib.lab.presets.TYPICAL_SECONDS``); notebooks known to neither come first, in their order.

    Example:
        >>> [p.name for p in longest_first([Path("01_internal_covariate_shift"), Path("02_mnist_reproduction")], Path("/no"))]
        ['02_mnist_reproduction', '01_internal_covariate_shift']
        >>> [p.name[:2] for p in longest_first([Path("02_mnist_reproduction"), Path("04_failed_variants")], Path("/no"), "smoke")]
        ['04', '02']
    """

    def expected(p: Path) -> float:
        found = expected_seconds(out, p.stem, preset)
        return found[0] if found else math.inf

    return sorted(paths, key=lambda p: -expected(p))


def run_notebooks(
    names: Sequence[str] = (),
    preset: str = "quick",
    parameters: dict | None = None,
    out: str | os.PathLike = "outputs",
    jobs: int = 1,
) -> list[RunResult]:
    """Execute notebooks (the series if ``names`` is empty) and write ``SUMMARY.md``; the Python API of the CLI.

    ``jobs`` > 1 runs that many notebooks at a time, each in its own process and kernel. Results come back in the
    order of ``names``. Raises ``ValueError`` before running anything for an unknown notebook, preset or
    parameter, a value of the wrong kind, an ``out`` that cannot be written, or ``jobs`` < 1; :class:`Stopped`
    after a stop signal (the notebooks in progress stopped and recorded as interrupted); ``OSError`` when
    ``runs.json`` or ``SUMMARY.md`` cannot be written.
    """
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESET_NAMES)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    paths = resolve_notebooks(names)
    overrides = dict(parameters or {})
    for name in ("preset", "out_dir"):
        if name in overrides:
            raise ValueError(f"parameter {name!r} is set by the runner; use --{name.split('_')[0]} instead")
    plan = {path: {**notebook_presets(path, preset), **check_parameters(path, overrides), "preset": preset}
            for path in paths}  # each notebook's parameters, checked before anything is created
    out = prepare_out(out)
    for path, params in plan.items():
        params["out_dir"] = kernel_path(out / path.stem, path.parent)
    if os.environ.get("BNLIB_DATA"):  # kernels run in notebooks/, so a relative data path must not depend on cwd
        os.environ["BNLIB_DATA"] = str(Path(os.environ["BNLIB_DATA"]).expanduser().resolve())
    jobs = min(jobs, len(paths))
    done: dict[str, RunResult] = {}
    started = time.time()
    revision, machine = git_revision(), machine_info()
    live = jobs == 1 and sys.stdout.isatty()

    def finished(result: RunResult) -> None:
        print(f"[bnlib.run] {result.notebook}: {result.status} in {duration(result.wall_s)}", flush=True)
        done[result.notebook] = result
        write_summary(out, [result])  # a finished notebook is on record even if a later one crashes the runner

    pool = None
    try:
        with stop_signals_raise(), active_session(jobs), current_python_kernel() as kernel, _environ(**{TEXT_ENV: "text"}):
            if jobs == 1:
                for path in paths:
                    finished(execute_notebook(path, out, plan[path], kernel, live, revision, machine))
            else:
                pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
                order = longest_first(paths, out, preset)
                print(f"[bnlib.run] {len(order)} notebooks, {jobs} at a time (each with 1/{jobs} of the cores), in this "
                      "order: " + ", ".join(p.stem for p in order), flush=True)
                pending = {pool.submit(execute_notebook, path, out, plan[path], kernel, False, revision, machine)
                           for path in order}
                while pending:
                    complete, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in complete:
                        finished(future.result())
                pool.shutdown()
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
        stopped = stop_descendants(since=started)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        elapsed = time.time() - started
        for path in paths:
            running = result_files(out, path.stem)["running"]
            if path.stem not in done and running.exists() and running.stat().st_mtime >= started:
                with log_lock(out):
                    previous = kept_previous(out, path.stem, read_log(out).get(path.stem))
                finished(finish(path, out, "interrupted", f"stopped by {signal.Signals(signum).name} after "
                                f"{elapsed:.0f} s (see {out / path.name})", elapsed, plan[path], previous,
                                revision=revision, machine=machine))
        print(f"[bnlib.run] stopped by {signal.Signals(signum).name}: {stopped} kernel and worker processes ended; "
              f"{len(done)} notebook(s) on record in {out / 'runs.json'}", file=sys.stderr, flush=True)
        raise Stopped(signum) from None
    print(f"[bnlib.run] summary: {out / 'SUMMARY.md'}", flush=True)
    return [done[p.stem] for p in paths]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bnlib.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="numbers (01), stems or paths; default: the series, in order")
    parser.add_argument("--preset", default="quick", choices=PRESET_NAMES, help="parameter preset (default: quick)")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="override a parameter"
    )
    parser.add_argument("--out", default="outputs", help="output directory (default: outputs)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at a time, each in its own process with 1/N of the cores (default: 1)")
    args = parser.parse_args(argv)
    params = {name: parse_value(value) for name, value in args.parameter}
    try:
        results = run_notebooks(args.notebooks, args.preset, params, args.out, jobs=args.jobs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:
        return 128 + exc.signum
    except OSError as exc:
        print(f"error: cannot write {exc.filename or args.out}: {exc.strerror}; free space or choose another --out",
              file=sys.stderr)
        return 1
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        print(f"error: notebook {r.notebook} failed in {r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
