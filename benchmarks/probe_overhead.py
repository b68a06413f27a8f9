"""Cost of notebook 05's probes relative to a training step.

The network and settings are notebook 05's: VGG-11 (``--width``, BN after every convolution or
none), plain SGD at batch 128, a fixed probe batch of 256 training images. Timed, each as the
median of ``--repeats``:

- one training step (forward, backward, SGD update; tensor batches as in ``bnlib.train.fit``),
- ``bnlib.probes.ics`` (Santurkar et al. Def. 2.1: one gradient, then one per layer after the
  earlier layers' step),
- ``bnlib.probes.landscape_probe`` with the notebook's 4 step sizes,
- ``bnlib.probes.hessian_top_eigenvalue`` with ``--hessian-iters`` power iterations.

Prints each in milliseconds and in training steps, and the overhead at the notebook's schedule
(all three probes every ``--probe-every`` steps); appends one row per network to
``benchmarks/results.csv``.

    python -m benchmarks.probe_overhead [--width 0.125] [--repeats 5] [--probe-every 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import RESULTS, append_row, machine_row
from bnlib.data import dataset_stats, load_dataset, to_float
from bnlib.models import vgg
from bnlib.probes import hessian_top_eigenvalue, ics, landscape_probe

ETAS = [0.5, 1.0, 2.0, 4.0]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=0.125, help="VGG-11 width multiplier (notebook 05 quick: 0.125)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--probe-size", type=int, default=256)
    parser.add_argument("--hessian-iters", type=int, default=10)
    parser.add_argument("--probe-every", type=int, default=100, help="training steps between probes, for the overhead")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each; the medians are reported")
    parser.add_argument("--results", default=str(RESULTS), help="CSV to append to ('' for none)")
    args = parser.parse_args(argv)

    x, y = load_dataset("cifar10", "train")
    mean, std = dataset_stats("cifar10")
    gen = torch.Generator().manual_seed(0)
    train_idx = torch.randint(len(y), (args.batch_size,), generator=gen)
    probe_idx = torch.randint(len(y), (args.probe_size,), generator=gen)
    batch = (to_float(x[train_idx], mean, std), y[train_idx])
    probe = (to_float(x[probe_idx], mean, std), y[probe_idx])
    rows = []
    for norm in ("torch_bn", "none"):
        torch.manual_seed(0)
        model = vgg("vgg11", width=args.width, norm=norm).train()
        opt = torch.optim.SGD(model.parameters(), lr=args.lr)

        def step() -> None:
            loss = F.cross_entropy(model(batch[0]), batch[1])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        timings = {
            "step": median_seconds(step, args.repeats),
            "ics": median_seconds(lambda: ics(model, F.cross_entropy, probe, lr=args.lr), args.repeats),
            "landscape": median_seconds(lambda: landscape_probe(model, F.cross_entropy, probe,
                                                                [e * args.lr for e in ETAS]), args.repeats),
            "hessian": median_seconds(lambda: hessian_top_eigenvalue(model, F.cross_entropy, probe, iters=args.hessian_iters,
                                                                     tol=0.0), args.repeats),
        }
        probes = timings["ics"] + timings["landscape"] + timings["hessian"]
        overhead = probes / (args.probe_every * timings["step"])
        label = "with BN" if norm != "none" else "without BN"
        print(f"VGG-11 x{args.width:g} {label}, batch {args.batch_size}, probe batch {args.probe_size} "
              f"(medians of {args.repeats}):")
        for name, seconds in timings.items():
            print(f"  {name:10s} {seconds * 1000:9.1f} ms = {seconds / timings['step']:6.1f} training steps")
        print(f"  all probes every {args.probe_every} steps: +{overhead:.0%} on top of training")
        row = {**machine_row(), "benchmark": "probe_overhead", "model": f"vgg11 x{args.width:g} {norm}",
               "batch_size": args.batch_size, "repeats": args.repeats, "probe_size": args.probe_size,
               "hessian_iters": args.hessian_iters, "step_ms": round(timings["step"] * 1000, 2),
               "ics_steps": round(timings["ics"] / timings["step"], 2),
               "landscape_steps": round(timings["landscape"] / timings["step"], 2),
               "hessian_steps": round(timings["hessian"] / timings["step"], 2),
               "probe_every": args.probe_every, "probe_overhead": round(overhead, 3)}
        if args.results:
            append_row(Path(args.results), row)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
