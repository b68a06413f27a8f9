"""A CIFAR-10 sweep of VGG-11 runs: one at a time in one process against bnlib's default executor.

The sweep is ``--runs`` runs of VGG-11 x``--width`` with BN (``torch_bn``), SGD with momentum at
batch ``--batch-size``, ``--steps`` steps each, learning rates spread over a decade (one seed):
what notebook 03's sweeps look like.

- **one at a time**: ``bnlib.lab.experiment.train_run`` for each run in this process with every core's
  threads (``threads=None``: this process's share, :func:`bnlib.lab.cores.use_share`, every core when it runs alone): what a
  notebook did before run_sweep had workers.
- **default executor**: ``bnlib.lab.sweep.run_sweep`` into an empty folder: a local pool of one
  single-threaded worker process per core (``--workers`` to change), timed twice: *cold* (the
  workers start: torch import and dataset loading included) and *warm* (a second sweep in the same
  process reuses them, as a notebook's later sweeps do).

Prints both wall times and their ratio (one at a time / executor), and checks that the executor's
tables equal single-threaded runs in this process; appends a row to ``benchmarks/results.csv``.
On a GPU (``--device cuda``) run_sweep runs the runs one after another on the device, so the
ratio there measures only the overhead of the sweep.

    python -m benchmarks.sweep_executor [--runs 4] [--steps 300] [--width 0.125] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, append_row, machine_row
from bnlib.lab.experiment import Run, train_run
from bnlib.lab.sweep import default_workers, run_sweep


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep_executor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = [Run(dataset="cifar10", model="vgg11", width=args.width, norm="torch_bn", steps=args.steps,
                batch_size=args.batch_size, lr=float(lr), momentum=0.9, augment=True, channels_last=True,
                eval_every=args.steps, test_size=1000) for lr in np.geomspace(0.01, 0.1, args.runs)]
    train_run(runs[0].replace(steps=2, eval_every=2), 0, device=args.device)  # loads the data and warms up, for both

    start = time.perf_counter()
    for run in runs:
        train_run(run, 0, device=args.device, threads=None)
    one_at_a_time = time.perf_counter() - start

    times = []
    for _ in range(2):  # cold: the pool's workers start (import torch, load CIFAR-10); warm: a later sweep of the same process
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            swept = run_sweep(runs, [0], folder, workers=args.workers, device=args.device, progress=False)
            times.append(time.perf_counter() - start)
    executor, warm = times
    same = all(np.array_equal(swept.loc[swept["lr"] == run.lr, "test_acc"].to_numpy(),
                              train_run(run, 0, device=args.device)["test_acc"].to_numpy()) for run in runs[:1])
    workers = args.workers or default_workers()
    row = {**machine_row(), "benchmark": "sweep_executor", "model": f"vgg11 x{args.width:g}", "batch_size": args.batch_size,
           "steps": args.steps, "runs": args.runs, "workers": workers if args.device == "cpu" else 1,
           "one_at_a_time_s": round(one_at_a_time, 2), "executor_s": round(executor, 2),
           "executor_speedup": round(one_at_a_time / executor, 2), "executor_warm_s": round(warm, 2),
           "executor_warm_speedup": round(one_at_a_time / warm, 2),
           "ms_per_run_step_one_at_a_time": round(1000 * one_at_a_time / (args.runs * args.steps), 2),
           "ms_per_run_step_executor": round(1000 * executor / (args.runs * args.steps), 2)}
    print(f"{args.runs} runs of {row['model']}, batch {args.batch_size}, {args.steps} steps each, on {row['machine']}:")
    print(f"  one at a time in one process ({torch.get_num_threads()} threads): {one_at_a_time:.1f} s "
          f"({row['ms_per_run_step_one_at_a_time']} ms per run-step)")
    print(f"  run_sweep, {row['workers']} worker(s) x 1 thread: {executor:.1f} s with the workers' start "
          f"({row['ms_per_run_step_executor']} ms per run-step); {warm:.1f} s for a later sweep (workers started)")
    print(f"  ratio (one at a time / executor): {row['executor_speedup']:.2f}x cold, {row['executor_warm_speedup']:.2f}x warm; "
          f"executor tables equal in-process single-thread runs: {same}")
    if not same:
        raise SystemExit("the executor's table differs from the same run in this process: a determinism bug")
    append_row(args.results, row)
    return [row]


if __name__ == "__main__":
    main()
