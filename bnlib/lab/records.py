"""The runner's bookkeeping: ``executions.json`` (one record per notebook executed into a folder, under a lock), the
last good result kept while a new one is not ok, the executed copy put in place, and ``SUMMARY.md`` rendered from the
records and each ``metrics.json`` (:mod:`bnlib.lab.markdown`).

Example:
    >>> compute_text({"runs": 2, "seconds": 90.0, "untimed": 0})
    '1 min 30 s over 2 runs'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bnlib.lab.files import atomic_write_text
from bnlib.lab.machine import machine_text
from bnlib.lab.markdown import verdict_counts, verdict_table
from bnlib.lab.presets import TYPICAL_SECONDS
from bnlib.lab.progress import duration
from bnlib.lab.series import REPO, notebook_identity, runs_executor
from bnlib.verdicts import preset_note


@dataclass
class Execution:
    """Outcome of executing one notebook: one record of ``executions.json``."""

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
    code: dict | None = None  # which code made the runs in its cache (bnlib.lab.sweep.cache_code)


# ---------------------------------------------------------------- executions.json


@contextlib.contextmanager
def log_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock (``.executions.lock``) for a read-modify-write of ``executions.json``, across processes."""
    with open(out / ".executions.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_from_notebook(path: Path) -> dict | None:
    """A ``executions.json`` record rebuilt from an executed notebook's papermill metadata (None if it has none)."""
    try:
        nb = json.loads(path.read_text())
        meta = nb["metadata"]["papermill"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    params = meta.get("parameters") or {}
    failed = bool(meta.get("exception"))
    return asdict(Execution(
        path.stem, "failed" if failed else "ok", meta.get("duration") or float("nan"), params.get("preset", "?"), params,
        "failed (see the notebook)" if failed else "", nb["metadata"].get("bnlib", {}).get("notebook"),
        meta.get("end_time") or "",
    ))


def read_log(out: Path) -> dict:
    """``out/executions.json`` (empty if missing). A damaged one is named, set aside as ``executions.json.damaged-<time>`` and
    rebuilt (and rewritten) from the executed notebooks in ``out``; call it under :func:`log_lock`."""
    path = out / "executions.json"
    if not path.exists():
        return {}
    try:
        log = json.loads(path.read_text())
        if not isinstance(log, dict) or not all(isinstance(r, dict) for r in log.values()):
            raise ValueError("not an object of notebook records")
        return log
    except (ValueError, UnicodeDecodeError) as exc:
        aside = path.with_name(f"executions.json.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        records = (record_from_notebook(p) for p in sorted(out.glob("*.ipynb")) if p.stem.count(".") == 0)
        log = {r["notebook"]: r for r in records if r}
        atomic_write_text(path, json.dumps(log, indent=2))
        print(f"[bnlib.run] {path} was damaged ({exc}): set aside as {aside.name}; rebuilt from the executed "
              f"notebooks in {out} ({len(log)} found)", file=sys.stderr, flush=True)
        return log


def git_revision() -> str:
    """The repository's commit (short hash), with "+changes" when ``bnlib/`` or ``notebooks/`` differ from it (the
    code behind the results); "" outside git.

    Example:
        >>> import re; bool(re.fullmatch(r"([0-9a-f]{7,40}(\\+changes)?)?", git_revision()))
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
    execution recorded in ``out/executions.json`` ("last execution"), else ``bnlib.lab.presets.TYPICAL_SECONDS``
    ("typical at quick:" at ``quick``, likewise at ``smoke``), else None.

    Example:
        >>> expected_seconds(Path("/no/such/folder"), "01_internal_covariate_shift", "quick")[1]
        'typical at quick:'
        >>> expected_seconds(Path("/no/such/folder"), "01_internal_covariate_shift", "full") is None
        True
    """
    record = {}
    if (out / "executions.json").exists():
        with log_lock(out):
            record = read_log(out).get(stem, {})
    wall = record.get("wall_s")
    ok = record.get("status") == "ok" and record.get("preset") == preset and isinstance(wall, (int, float))
    if ok and math.isfinite(wall):
        return float(wall), "last execution"
    typical = TYPICAL_SECONDS.get(preset, {})
    if stem in typical:
        return float(typical[stem]), f"typical at {preset}:"
    return None


# ---------------------------------------------------------------- a notebook's result files


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
    """What ``executions.json`` says of the good result kept as ``<stem>.previous.ipynb`` (None if none is kept)."""
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


def restore_kernelspec(output: Path, source: Path) -> None:
    """Give the executed notebook the source notebook's kernelspec, so it opens with the reader's Python kernel."""
    import nbformat

    src = nbformat.read(source, as_version=4)
    out = nbformat.read(output, as_version=4)
    if "kernelspec" in src.metadata:
        out.metadata["kernelspec"] = src.metadata["kernelspec"]
        atomic_write_text(output, nbformat.writes(out) + "\n")


def finish(path: Path, out: Path, status: str, error: str, wall_s: float, params: dict, previous: dict | None,
           write_failed: bool = False, revision: str = "", machine: dict | None = None) -> Execution:
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
    from bnlib.lab.sweep import cache_code, cache_compute

    if machine is not None:
        machine = {**machine, "executor": runs_executor(path, params)}
    runs = out / path.stem / "runs"
    return Execution(path.stem, status, wall_s, params["preset"], params, error, notebook_identity(path), finished,
                     previous, cache_compute(runs), revision, machine, cache_code(runs) if runs.is_dir() else None)


# ---------------------------------------------------------------- SUMMARY.md


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


def code_warning(code: dict | None) -> str:
    """SUMMARY.md's warning when a notebook's cache holds runs made by other code than the code that rendered it
    (:func:`bnlib.lab.sweep.cache_code`); "" when every run carries this code.

    Example:
        >>> print(code_warning({"runs": 40, "other": 12, "unrecorded": 3, "code": "923eadd6b426"})[:110])
        **Cached runs from other code**: 12 of the 40 runs in its cache were made by other code than this execution's
        >>> print(code_warning({"runs": 40, "other": 0, "unrecorded": 3, "code": "923eadd6b426"})[:101])
        **Cached runs from other code**: 3 of the 40 runs in its cache were stored before runs recorded their
        >>> code_warning({"runs": 40, "other": 0, "unrecorded": 0, "code": "923eadd6b426"})
        ''
    """
    if not code or not (code["other"] or code["unrecorded"]):
        return ""
    parts, of = [], f" of the {code['runs']} runs in its cache"
    if code["other"]:
        parts.append(f"{code['other']}{of} were made by other code than this execution's (code {code['code']})")
    if code["unrecorded"]:
        parts.append(f"{code['unrecorded']}{'' if code['other'] else of} were stored before runs recorded their code")
    return ("**Cached runs from other code**: " + ", ".join(parts) + ". Their numbers are this code's only if the change "
            "left what runs compute alone: `tests/test_canary.py` fails on a change that does not, until `CACHE_VERSION` "
            "is bumped, which retrains them.")


def executor_text(executor: str | None) -> str:
    """Where a notebook's runs trained, from the ``executor`` its ``metrics.json`` records (the notebook's parameter;
    "kernel" for a notebook that trains in its kernel), for SUMMARY.md.

    Example:
        >>> executor_text("local")
        'local worker processes on the machine above (`executor="local"`)'
        >>> executor_text("dask")
        'a Dask LocalCluster on the machine above (`executor="dask"`)'
        >>> executor_text("dask://10.0.0.5:8786"), executor_text(None)
        ('the Dask cluster of the scheduler at tcp://10.0.0.5:8786 (`executor="dask://10.0.0.5:8786"`)', 'not recorded')
    """
    if not executor:
        return "not recorded"
    if executor == "kernel":
        return "the notebook's kernel (one process, on the machine above)"
    if executor == "local":
        return 'local worker processes on the machine above (`executor="local"`)'
    if executor == "dask":
        return 'a Dask LocalCluster on the machine above (`executor="dask"`)'
    if executor.startswith(("dask://", "tcp://")):
        address = "tcp://" + executor.split("://", 1)[1]
        return f'the Dask cluster of the scheduler at {address} (`executor="{executor}"`)'
    return f'`executor="{executor}"`'


def note_for(preset: str | None) -> str:
    """SUMMARY.md's banner for a notebook executed at ``preset`` (:func:`bnlib.verdicts.preset_note`): what a smoke or
    quick verdict is worth; "" at ``full`` and for a preset the note does not know.

    Example:
        >>> note_for("smoke")[:27], note_for("full"), note_for(None)
        ('**Preset smoke: these verdi', '', '')
    """
    try:
        return preset_note(preset) if preset else ""
    except ValueError:
        return ""


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
        lines += ["", f"## {name}", ""]
        if note := note_for(metrics.get(name, {}).get("info", {}).get("preset") or r.get("preset")):
            lines += [note, ""]
        machine = r.get("machine")
        executor = metrics.get(name, {}).get("info", {}).get("executor") or (machine or {}).get("executor")
        if machine:  # its executor gets its own line
            machine = {k: v for k, v in machine.items() if k != "executor"}
        lines += [f"Machine: {machine_text(machine)}", "", f"Runs trained on: {executor_text(executor)}", ""]
        if warning := code_warning(r.get("code")):
            lines += [warning, ""]
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
        lines.append(verdict_table(verdicts))
    return lines


def write_summary(out: Path, results: Sequence[Execution]) -> Path:
    """Merge ``results`` into ``out/executions.json`` and write ``out/SUMMARY.md`` from it and each ``metrics.json``,
    both atomically and under :func:`log_lock`."""
    with log_lock(out):
        log = read_log(out)
        for r in results:
            log[r.notebook] = asdict(r)
        atomic_write_text(out / "executions.json", json.dumps(log, indent=2))
        path = out / "SUMMARY.md"
        atomic_write_text(path, "\n".join(_summary_lines(out, log)) + "\n")
    return path
