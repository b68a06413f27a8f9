"""Speed of a CIFAR-10 VGG training epoch: bnlib's tensor batches against torchvision's DataLoader.

Both train the same network (``bnlib.models.vgg``, BN after every convolution, torch's
BatchNorm2d kernels) with SGD at batch 128 and the standard augmentation (random crop with
4 pixels of padding, horizontal flip):

- fast: ``bnlib.train.fit(..., augment=True, channels_last=True)``: the training set stays a
  uint8 tensor, batches are drawn by index and augmented as whole tensors.
- plain: what a user would write: ``torchvision.datasets.CIFAR10`` with ``RandomCrop(32,
  padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` and a ``DataLoader(
  batch_size=128, shuffle=True)`` with 0 and with 2 worker processes.

Each is timed for ``--steps`` steps (medians of ``--repeats``), scaled to one epoch (390
steps), and the ratios are printed; a row goes to ``benchmarks/results.csv``.

    python -m benchmarks.cifar_vgg_epoch [--width 0.25] [--steps 60] [--repeats 3] [--workers 0 2]
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

from benchmarks.common import RESULTS, append_row, machine_row
from bnlib.data import dataset_stats, default_root, load_dataset
from bnlib.models import vgg
from bnlib.train import fit

EPOCH_STEPS = 50000 // 128


def run_fast(train, steps: int, batch_size: int, width: float, depth: str) -> float:
    """Seconds for ``steps`` steps of bnlib's path (tensor batches, vectorized augmentation, channels_last)."""
    torch.manual_seed(0)
    model = vgg(depth, width=width, norm="torch_bn")
    mean, std = dataset_stats("cifar10")
    start = time.perf_counter()
    fit(model, train, steps=steps, batch_size=batch_size, lr=0.05, momentum=0.9, eval_every=steps, mean=mean, std=std,
        augment=True, channels_last=True, progress=False, device="cpu")
    return time.perf_counter() - start


def run_plain(dataset, steps: int, batch_size: int, width: float, depth: str, workers: int) -> float:
    """Seconds for ``steps`` steps of the plain recipe (DataLoader startup included, as in every epoch)."""
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    model = vgg(depth, width=width, norm="torch_bn")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start = time.perf_counter()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    for step, (x, y) in enumerate(loader, start=1):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == steps:
            break
    return time.perf_counter() - start


def _unchecked(cifar10_class):
    """torchvision's CIFAR10 without its md5 check: the shared copies hold the official pixels and labels but are
    not byte-identical to the archive (see the data README); loading and ``__getitem__`` are unchanged."""
    return type("CIFAR10", (cifar10_class,), {"_check_integrity": lambda self: True})


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", default="vgg11")
    parser.add_argument("--width", type=float, default=0.25, help="VGG width multiplier (1 = 64..512 channels)")
    parser.add_argument("--steps", type=int, default=60, help="steps timed per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the medians are reported")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to time")
    parser.add_argument("--results", default=str(RESULTS), help="CSV to append to ('' for none)")
    args = parser.parse_args(argv)
    from torchvision import datasets, transforms

    mean, std = dataset_stats("cifar10")
    train = load_dataset("cifar10", "train")
    with tempfile.TemporaryDirectory() as tmp:  # torchvision reads the same python batches; a copy keeps the source clean
        shutil.copytree(default_root() / "cifar-10-batches-py", Path(tmp) / "cifar-10-batches-py")
        tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor(), transforms.Normalize(mean, std)])
        dataset = _unchecked(datasets.CIFAR10)(tmp, train=True, download=False, transform=tf)
        fast = statistics.median(run_fast(train, args.steps, args.batch_size, args.width, args.depth)
                                 for _ in range(args.repeats))
        plain = {w: statistics.median(run_plain(dataset, args.steps, args.batch_size, args.width, args.depth, w)
                                      for _ in range(args.repeats)) for w in args.workers}
    per_epoch = EPOCH_STEPS / args.steps
    row = {**machine_row(), "benchmark": "cifar_vgg_epoch", "model": f"{args.depth} x{args.width:g}",
           "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
           "fast_epoch_s": round(fast * per_epoch, 1)}
    print(f"CIFAR-10 {args.depth} (width x{args.width:g}), batch {args.batch_size}, one epoch = {EPOCH_STEPS} steps "
          f"(from {args.steps} steps timed, medians of {args.repeats}):")
    print(f"  bnlib tensor batches      : {fast * per_epoch:7.1f} s")
    for w, seconds in plain.items():
        row[f"plain_{w}_workers_epoch_s"] = round(seconds * per_epoch, 1)
        row[f"speedup_vs_{w}_workers"] = round(seconds / fast, 2)
        print(f"  DataLoader, {w} workers     : {seconds * per_epoch:7.1f} s   ratio {seconds / fast:.2f}x")
    if args.results:
        append_row(Path(args.results), row)
    return [row]


if __name__ == "__main__":
    main()
