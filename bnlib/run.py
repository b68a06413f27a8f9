"""Execute the notebooks with papermill: ``python -m bnlib.run``.

    python -m bnlib.run [NOTEBOOK ...] [--preset smoke|quick|full] [-p NAME VALUE ...] [--out DIR] [--jobs N]

No notebook named: all of ``notebooks/``, in order. A notebook is named by its
number (``01``), its stem or a path. Every ``-p`` name is checked against the
notebook's ``parameters`` cell before anything runs; values are parsed as JSON
where possible (``-p lr 0.1``, ``-p seeds 3``, ``-p lrs "[0.1, 1]"``), else
kept as strings. Each notebook validates its values in its second cell.

Writes ``DIR/NN_name.ipynb`` (executed), ``DIR/NN_name/`` (figures, tables,
``metrics.json``; the notebook's ``out_dir``), ``DIR/runs.json`` (status of
every notebook run into DIR) and ``DIR/SUMMARY.md``. Exits non-zero if a
notebook failed, naming the notebook and the cell.

The kernel is the Python running this module, whatever kernelspecs are
installed (a temporary kernelspec is put first on ``JUPYTER_PATH``).

``--jobs N`` executes N notebooks at a time, each in its own process and kernel, with
``cpu_count // N`` threads per kernel (``OMP_NUM_THREADS``, which torch reads at import) and as
many worker processes for each sweep in it (``BNLIB_WORKERS``, one thread each), so that N kernels
do not oversubscribe the cores. The notebooks expected to take longest start
first (wall times of an earlier run into the same ``DIR``, else ``bnlib.presets.QUICK_SECONDS``).
``runs.json`` and ``SUMMARY.md`` are updated as each notebook finishes.

Example (Python):
    >>> from bnlib.run import resolve_notebooks
    >>> [p.stem for p in resolve_notebooks(["01"])]
    ['01_internal_covariate_shift']
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from bnlib.presets import PRESET_NAMES, QUICK_SECONDS, preset_parameters

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
KERNEL_NAME = "bnlib-current-python"


@dataclass
class RunResult:
    """Outcome of executing one notebook."""

    notebook: str
    status: str  # "ok" or "failed"
    wall_s: float
    preset: str
    parameters: dict
    error: str = ""


def resolve_notebooks(names: Sequence[str] = ()) -> list[Path]:
    """Notebook paths for names like ``01``, ``01_internal_covariate_shift`` or a path; all if empty.

    Example:
        >>> resolve_notebooks(["no_such"])
        Traceback (most recent call last):
        ...
        ValueError: no notebook matches 'no_such'; available: 01_internal_covariate_shift, 02_mnist_reproduction...
    """
    available = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return available
    paths = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            paths.append(path.resolve())
            continue
        stem = path.name.removesuffix(".ipynb")
        matches = [p for p in available if p.stem == stem or p.stem.split("_", 1)[0] == stem]
        if len(matches) != 1:
            raise ValueError(f"no notebook matches {name!r}; available: {', '.join(p.stem for p in available)}")
        paths.append(matches[0])
    return paths


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
    """Names and defaults of the notebook's ``parameters`` cell (via ``papermill.inspect_notebook``)."""
    import papermill

    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def check_parameters(path: Path, params: dict) -> None:
    """Refuse parameter names the notebook does not declare, listing the valid ones.

    Example:
        >>> check_parameters(resolve_notebooks(["01"])[0], {"no_such_param": 1})
        Traceback (most recent call last):
        ...
        ValueError: unknown parameter 'no_such_param' for 01_internal_covariate_shift; valid parameters: ...
    """
    valid = notebook_parameters(path)
    unknown = [name for name in params if name not in valid]
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} for {path.stem}; valid parameters: {', '.join(valid)}"
        )


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
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + old if old else "")
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


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


def describe_failure(exc: Exception, output: Path) -> str:
    """A one-line description of a failed execution: the cell and the error."""
    import papermill

    if isinstance(exc, papermill.PapermillExecutionError):
        return f"cell {exc.cell_index} (execution count {exc.exec_count}): {exc.ename}: {exc.evalue} (see {output})"
    return f"{type(exc).__name__}: {exc}"


def restore_kernelspec(output: Path, source: Path) -> None:
    """Give the executed notebook the source notebook's kernelspec, so it opens with the reader's Python kernel."""
    import nbformat

    src = nbformat.read(source, as_version=4)
    out = nbformat.read(output, as_version=4)
    if "kernelspec" in src.metadata:
        out.metadata["kernelspec"] = src.metadata["kernelspec"]
        nbformat.write(out, output)


def execute(path: Path, out: Path, preset: str, overrides: dict, kernel: str) -> RunResult:
    """Execute one notebook into ``out``; never raises for a failing notebook (the result says so)."""
    import papermill

    params = {**preset_parameters(path.stem, preset), **overrides}
    params["preset"] = preset
    params["out_dir"] = kernel_path(out / path.stem, path.parent)
    output = out / path.name
    print(f"[bnlib.run] {path.stem} (preset {preset}) ...", flush=True)
    start = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(
            str(path), str(output), parameters=params, kernel_name=kernel, cwd=str(path.parent), progress_bar=False
        )
    except Exception as exc:  # noqa: BLE001 - any failure is reported, the other notebooks still run
        error = describe_failure(exc, output)
    if output.exists():
        restore_kernelspec(output, path)
    return RunResult(path.stem, "failed" if error else "ok", time.perf_counter() - start, preset, params, error)


@contextlib.contextmanager
def threads_per_kernel(threads: int | None) -> Iterator[None]:
    """Set ``OMP_NUM_THREADS`` (and MKL's) for the kernels started inside the block, and ``BNLIB_WORKERS`` (the worker
    processes of their sweeps, :func:`bnlib.sweep.default_workers`) to the same share of the cores; ``None`` leaves them
    alone."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "BNLIB_WORKERS")
    old = {n: os.environ.get(n) for n in names}
    if threads is not None:
        for n in names:
            os.environ[n] = str(threads)
    try:
        yield
    finally:
        for n, value in old.items():
            if value is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = value


def longest_first(paths: Sequence[Path], out: Path) -> list[Path]:
    """``paths`` ordered by expected wall time, longest first: from an earlier run's ``out/runs.json``, else from
    ``bnlib.presets.QUICK_SECONDS``; notebooks known to neither come first, in their order.

    Example:
        >>> [p.name for p in longest_first([Path("01_internal_covariate_shift"), Path("04_failed_variants")], Path("/no"))]
        ['04_failed_variants', '01_internal_covariate_shift']
    """
    log_path = out / "runs.json"
    previous = json.loads(log_path.read_text()) if log_path.exists() else {}

    def expected(p: Path) -> float:
        return float(previous.get(p.stem, {}).get("wall_s", QUICK_SECONDS.get(p.stem, math.inf)))

    return sorted(paths, key=lambda p: -expected(p))


def write_summary(out: Path, results: Sequence[RunResult]) -> Path:
    """Merge ``results`` into ``out/runs.json`` and write ``out/SUMMARY.md`` from it and each ``metrics.json``."""
    log_path = out / "runs.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    for r in results:
        log[r.notebook] = asdict(r)
    log_path.write_text(json.dumps(log, indent=2))
    lines = ["# Run summary", "", "| notebook | status | preset | wall time |", "|---|---|---|---|"]
    for name in sorted(log):
        r = log[name]
        wall = f"{r['wall_s']:.0f} s" if isinstance(r.get("wall_s"), (int, float)) else "?"
        lines.append(f"| {name} | {r.get('status', '?')} | {r.get('preset', '?')} | {wall} |")
    for name in sorted(log):
        r = log[name]
        lines += ["", f"## {name}", ""]
        if r.get("error"):
            lines += [f"**Failed**: {r['error']}", ""]
        metrics = out / name / "metrics.json"
        verdicts = json.loads(metrics.read_text()).get("verdicts", []) if metrics.exists() else []
        if not verdicts:
            lines.append("No verdicts recorded.")
            continue
        lines += ["| claim | source | outcome | evidence |", "|---|---|---|---|"]
        for v in verdicts:
            cells = [v["claim"], v.get("source", ""), f"**{v['outcome']}**", v["evidence"]]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    path = out / "SUMMARY.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_notebooks(
    names: Sequence[str] = (),
    preset: str = "quick",
    parameters: dict | None = None,
    out: str | os.PathLike = "outputs",
    jobs: int = 1,
) -> list[RunResult]:
    """Execute notebooks (all if ``names`` is empty) and write ``SUMMARY.md``; the Python API of the CLI.

    ``jobs`` > 1 runs that many notebooks at a time in separate processes, each kernel with
    ``cpu_count // jobs`` threads. Results come back in the order of ``names``.
    Raises ``ValueError`` before running anything for an unknown notebook,
    preset or parameter name, or for ``jobs`` < 1.
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
    for path in paths:
        check_parameters(path, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if os.environ.get("BNLIB_DATA"):  # kernels run in notebooks/, so a relative data path must not depend on cwd
        os.environ["BNLIB_DATA"] = str(Path(os.environ["BNLIB_DATA"]).expanduser().resolve())
    jobs = min(jobs, len(paths))
    done: dict[str, RunResult] = {}

    def finished(result: RunResult) -> None:
        print(f"[bnlib.run] {result.notebook}: {result.status} in {result.wall_s:.0f} s", flush=True)
        done[result.notebook] = result
        write_summary(out, [result])  # a finished notebook is on record even if a later one crashes the runner

    with current_python_kernel() as kernel:
        if jobs == 1:
            for path in paths:
                finished(execute(path, out, preset, overrides, kernel))
        else:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            with threads_per_kernel(threads), ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                order = longest_first(paths, out)
                print(f"[bnlib.run] {len(order)} notebooks, {jobs} at a time with {threads} thread(s) each, in this order: "
                      + ", ".join(p.stem for p in order), flush=True)
                futures = [pool.submit(execute, path, out, preset, overrides, kernel) for path in order]
                for future in as_completed(futures):
                    finished(future.result())
    print(f"[bnlib.run] summary: {out / 'SUMMARY.md'}", flush=True)
    return [done[p.stem] for p in paths]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bnlib.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="numbers (01), stems or paths; default: all, in order")
    parser.add_argument("--preset", default="quick", choices=PRESET_NAMES, help="parameter preset (default: quick)")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="override a parameter"
    )
    parser.add_argument("--out", default="outputs", help="output directory (default: outputs)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at a time, each in its own process with cpu_count/N threads (default: 1)")
    args = parser.parse_args(argv)
    params = {name: parse_value(value) for name, value in args.parameter}
    try:
        results = run_notebooks(args.notebooks, args.preset, params, args.out, jobs=args.jobs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        print(f"error: notebook {r.notebook} failed in {r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
