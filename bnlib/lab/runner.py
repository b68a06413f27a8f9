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
tables, ``metrics.json``: the notebook's ``out_dir``), ``DIR/executions.json`` (one record per notebook execution into DIR)
and ``DIR/SUMMARY.md``, each replaced whole through a temporary file (``executions.json`` under a lock, so runners that
share DIR keep each other's records; a damaged one is set aside and rebuilt from the executed notebooks). While a
notebook runs, its last good result waits as ``NN_name.previous.ipynb`` and ``NN_name/metrics.previous.json``;
it is deleted when the run succeeds and kept, named as stale in ``SUMMARY.md``, when it fails.

Output: a line as each notebook starts and ends, and while it runs its progress (cells done of all, time elapsed,
time left by its last execution in ``executions.json``, else by ``bnlib.lab.presets.TYPICAL_SECONDS``): one line
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
start first (wall times in DIR's ``executions.json``, else ``bnlib.lab.presets.TYPICAL_SECONDS``).

The kernel is the Python running this module, whatever kernelspecs are installed (a temporary kernelspec is put
first on ``JUPYTER_PATH``).

The runner's parts: :mod:`bnlib.lab.series` (which notebooks, their parameters), :mod:`bnlib.lab.kernels` (kernels
and processes), :mod:`bnlib.lab.records` (``executions.json``, kept results, ``SUMMARY.md``).

Example (Python):
    >>> from bnlib.lab.series import resolve_notebooks
    >>> [p.stem for p in resolve_notebooks(["01"])]
    ['01_internal_covariate_shift']
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from bnlib.lab import cores
from bnlib.lab.kernels import Stopped, current_python_kernel, environ, execute_notebook, stop_descendants, stop_signals_raise
from bnlib.lab.machine import machine_info
from bnlib.lab.presets import PRESET_NAMES
from bnlib.lab.progress import TEXT_ENV, duration
from bnlib.lab.records import (
    Execution,
    expected_seconds,
    finish,
    git_revision,
    kept_previous,
    log_lock,
    read_log,
    result_files,
    write_summary,
)
from bnlib.lab.series import (
    NOTEBOOK_DIR,
    REPO,
    check_parameters,
    kernel_path,
    notebook_presets,
    parse_value,
    prepare_out,
    resolve_notebooks,
)


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
        with environ(**{cores.JOBS_ENV: str(jobs)}):
            yield
    finally:
        stop.set()


def longest_first(paths: Sequence[Path], out: Path, preset: str = "quick") -> list[Path]:
    """``paths`` ordered by expected wall time at ``preset``, longest first (:func:`expected_seconds`: an earlier run's
    ``out/executions.json``, else ``bnlib.lab.presets.TYPICAL_SECONDS``); notebooks known to neither come first, in their order.

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
) -> list[Execution]:
    """Execute notebooks (the series if ``names`` is empty) and write ``SUMMARY.md``; the Python API of the CLI.

    ``jobs`` > 1 runs that many notebooks at a time, each in its own process and kernel. Results come back in the
    order of ``names``. Raises ``ValueError`` before running anything for an unknown notebook, preset or
    parameter, a value of the wrong kind, an ``out`` that cannot be written, or ``jobs`` < 1; :class:`Stopped`
    after a stop signal (the notebooks in progress stopped and recorded as interrupted); ``OSError`` when
    ``executions.json`` or ``SUMMARY.md`` cannot be written.
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
        # the series' notebooks resolve a relative out_dir from the repository root (bnlib.lab.notebook.output_folder), so
        # theirs is relative to it inside the clone; other notebooks (tests' toys) get an absolute one
        target, series = out / path.stem, path.parent.resolve() == NOTEBOOK_DIR.resolve()
        params["out_dir"] = kernel_path(target, REPO) if series else str(target.resolve())
    if os.environ.get("BNLIB_DATA"):  # kernels run in notebooks/, so a relative data path must not depend on cwd
        os.environ["BNLIB_DATA"] = str(Path(os.environ["BNLIB_DATA"]).expanduser().resolve())
    jobs = min(jobs, len(paths))
    done: dict[str, Execution] = {}
    started = time.time()
    revision, machine = git_revision(), machine_info()
    live = jobs == 1 and sys.stdout.isatty()

    def finished(result: Execution) -> None:
        print(f"[bnlib.run] {result.notebook}: {result.status} in {duration(result.wall_s)}", flush=True)
        done[result.notebook] = result
        write_summary(out, [result])  # a finished notebook is on record even if a later one crashes the runner

    pool = None
    try:
        with stop_signals_raise(), active_session(jobs), current_python_kernel() as kernel, environ(**{TEXT_ENV: "text"}):
            if jobs == 1:
                for path in paths:
                    finished(execute_notebook(path, out, plan[path], kernel, live, revision, machine))
            else:
                pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),  # a killed runner
                                           initializer=cores.die_with_parent, initargs=(os.getpid(),))  # leaves none
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
              f"{len(done)} notebook(s) on record in {out / 'executions.json'}", file=sys.stderr, flush=True)
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
