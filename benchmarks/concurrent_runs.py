"""Two ``bnlib.run`` invocations started together against one alone: do they share the cores or fight over them?

Runs ``python -m bnlib.run NOTEBOOK --preset PRESET`` once alone, then twice at the same time into two folders, as
two users (or a terminal and a JupyterLab kernel) would: separate processes, neither started by the other (each
founds its own :mod:`bnlib.lab.cores` session). Without core sharing, each process's PyTorch threads and sweep workers
expect every core, and the two runs slowed each other by ≈ 15× (issue 16: 237 s each against 16 s alone for
notebook 01 at smoke). The target: at most about twice the time alone. Prints the wall times and appends a row to
``benchmarks/results.csv``.

    python -m benchmarks.concurrent_runs [--notebook 01] [--preset smoke]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, append_row, machine_row
from bnlib.lab.cores import SESSION_ENV


def start(notebook: str, preset: str, out: Path) -> tuple[subprocess.Popen, float]:
    """A runner in its own session (``$BNLIB_SESSION`` dropped: it is nobody's child) and its start time."""
    env = {k: v for k, v in os.environ.items() if k != SESSION_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "bnlib.run", notebook, "--preset", preset, "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, time.perf_counter()


def wait(proc: subprocess.Popen, started: float) -> float:
    """Wall seconds of the runner; raises if it failed."""
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"bnlib.run failed (exit {proc.returncode}):\n{err[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.concurrent_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", default="01", help="a notebook as bnlib.run names it: number, stem or path")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        alone = wait(*start(args.notebook, args.preset, Path(tmp, "alone")))
        pair = [start(args.notebook, args.preset, Path(tmp, name)) for name in ("first", "second")]
        together = [wait(*p) for p in pair]
    row = {**machine_row(), "benchmark": "concurrent_runs", "notebook": args.notebook, "preset": args.preset,
           "alone_s": round(alone, 1), "together_s": round(max(together), 1),
           "together_ratio": round(max(together) / alone, 2)}
    print(f"python -m bnlib.run {args.notebook} --preset {args.preset} on {row['machine']}: {alone:.1f} s alone; "
          f"two started together: {together[0]:.1f} s and {together[1]:.1f} s "
          f"({row['together_ratio']:.2f}x the time alone; sharing the cores perfectly would give 2x)")
    append_row(args.results, row)
    return [row]


if __name__ == "__main__":
    main()
