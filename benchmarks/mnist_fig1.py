"""Speed of the paper's Figure 1 sweep: bnlib's batched seeds against the plain recipe.

The sweep: 2 networks (with / without BN) x S seeds x STEPS steps of the sigmoid MLP
784-100-100-100-10 at batch 60, test accuracy on all 10,000 test images every 500
steps, with bnlib also recording the sigmoid-input percentiles of every hidden unit.

- fast: ``bnlib.lab.batched.fit_batched`` on ``bnlib.lab.batched.BatchedMLP`` (all seeds of a
  network together, data kept as uint8 tensors, batches by index).
- plain: what a user would write: ``torchvision.datasets.MNIST`` + ``DataLoader(
  batch_size=60, shuffle=True)`` + ``ToTensor/Normalize``, ``nn.Sequential`` with
  ``nn.BatchNorm1d``, one seed after another, a test ``DataLoader`` for evaluation.

Both are timed in the same run for ``--steps`` steps (default 2,000 of the paper's
50,000; the plain recipe ``--plain-steps``), ``--repeats`` times each, and the medians
are extrapolated linearly to ``--paper-steps``; the ratio does not depend on that.
Prints a table and appends a row to ``benchmarks/results.csv``.

    python -m benchmarks.mnist_fig1 [--steps 2000] [--seeds 5] [--plain-steps 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import RESULTS, append_row, machine_row
from bnlib.data import dataset_stats, default_root, load_dataset, to_float
from bnlib.lab.batched import BatchedMLP, fit_batched
from bnlib.probes import QuantileProbe

# multiply-accumulates per image: forward, and a training step (forward + input grads except the first layer + weight grads)
FORWARD_MACS = 784 * 100 + 100 * 100 + 100 * 100 + 100 * 10
TRAIN_MACS = 3 * FORWARD_MACS - 784 * 100


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large float32 matmul on this machine (the practical peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def run_fast(train, test, seeds: int, steps: int, eval_every: int, lr: float) -> float:
    """Seconds for both networks, all seeds batched, percentiles recorded (the datasets as uint8 tensors)."""
    mean, std = dataset_stats("mnist")
    probe_x = to_float(test[0][:1000], mean, std)
    start = time.perf_counter()
    for norm in ("none", "bn"):
        net = BatchedMLP.from_seeds(range(seeds), norm=norm, activation="sigmoid", init_std=0.1)
        probe = QuantileProbe({f"h{i}": getattr(net, f"norm{i}") for i in (1, 2, 3)}, probe_x)
        fit_batched(net, train, test, seeds=range(seeds), steps=steps, batch_size=60, lr=lr, eval_every=eval_every,
                    mean=mean, std=std, callbacks=[probe], progress=False, device="cpu")
    return time.perf_counter() - start


def plain_mlp(bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 784
    for _ in range(3):
        layers += [nn.Linear(width, 100, bias=not bn)] + ([nn.BatchNorm1d(100)] if bn else []) + [nn.Sigmoid()]
        width = 100
    return nn.Sequential(*layers, nn.Linear(width, 10))


def run_plain(seeds: int, steps: int, eval_every: int, lr: float) -> float:
    """Seconds for the plain recipe: torchvision dataset + DataLoader, one seed after another."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory() as tmp:  # torchvision unpacks the archives next to them: use a copy
        shutil.copytree(default_root() / "MNIST", Path(tmp) / "MNIST")
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        train = datasets.MNIST(tmp, train=True, download=True, transform=tf)
        test = datasets.MNIST(tmp, train=False, download=True, transform=tf)
        start = time.perf_counter()
        for bn in (False, True):
            for seed in range(seeds):
                torch.manual_seed(seed)
                model = plain_mlp(bn)
                for m in model.modules():
                    if isinstance(m, nn.Linear):
                        nn.init.normal_(m.weight, 0, 0.1)
                opt = torch.optim.SGD(model.parameters(), lr=lr)
                loader = DataLoader(train, batch_size=60, shuffle=True)
                step = 0
                while step < steps:
                    for x, y in loader:
                        model.train()
                        loss = F.cross_entropy(model(x), y)
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        step += 1
                        if step % eval_every == 0 or step == steps:
                            model.eval()
                            correct = 0
                            with torch.no_grad():
                                for xt, yt in DataLoader(test, batch_size=1000):
                                    correct += (model(xt).argmax(1) == yt).sum().item()
                        if step == steps:
                            break
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000, help="steps timed for the fast path")
    parser.add_argument("--plain-steps", type=int, default=500, help="steps timed for the plain recipe")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the medians are reported")
    parser.add_argument("--paper-steps", type=int, default=50000, help="steps to extrapolate to")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--results", default=str(RESULTS), help="CSV to append to ('' for none)")
    args = parser.parse_args(argv)
    peak = matmul_gflops()
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")  # once, outside the timed runs
    fast_runs = [run_fast(train, test, args.seeds, args.steps, args.eval_every, args.lr) for _ in range(args.repeats)]
    plain_runs = [run_plain(args.seeds, args.plain_steps, args.eval_every, args.lr) for _ in range(args.repeats)]
    fast, plain = statistics.median(fast_runs), statistics.median(plain_runs)
    fast_full = fast * args.paper_steps / args.steps
    plain_full = plain * args.paper_steps / args.plain_steps
    models = 2 * args.seeds
    flops = 2 * models * (args.steps * 60 * TRAIN_MACS + (args.steps // args.eval_every + 1) * 10000 * FORWARD_MACS)
    row = {
        **machine_row(), "benchmark": "mnist_fig1", "seeds": args.seeds, "repeats": args.repeats,
        "fast_steps": args.steps, "fast_s": round(fast, 2), "plain_steps": args.plain_steps, "plain_s": round(plain, 2),
        "fast_s_at_paper_steps": round(fast_full, 1), "plain_s_at_paper_steps": round(plain_full, 1),
        "speedup": round(plain_full / fast_full, 2), "fast_gflops": round(flops / fast / 1e9, 1),
        "matmul_gflops": round(peak, 1),
    }
    print(f"Figure 1 sweep, 2 networks x {args.seeds} seeds, extrapolated to {args.paper_steps} steps "
          f"(medians of {args.repeats}):")
    print(f"  bnlib batched : {fast_full:8.0f} s   ({args.steps} steps timed: {fast:.1f} s, {row['fast_gflops']} GFLOP/s)")
    print(f"  plain recipe  : {plain_full:8.0f} s   ({args.plain_steps} steps timed: {plain:.1f} s)")
    print(f"  speed-up      : {row['speedup']:.1f}x   (large matmul on this machine: {row['matmul_gflops']} GFLOP/s)")
    if args.results:
        append_row(Path(args.results), row)
    return [row]


if __name__ == "__main__":
    main()
