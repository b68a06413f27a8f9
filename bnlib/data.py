"""Real image datasets as uint8 tensors, and batches drawn from them by index.

:func:`load_dataset` reads MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 from
the files their publishers distribute (the folder layout of
``torchvision.datasets``), checks them against SHA-256 sums of the decoded
content (CIFAR-10's file bytes first: a pickle is never loaded before its bytes
are known, and then only through an unpickler that builds nothing but numpy
arrays), and returns ``x`` as uint8 of shape (N, C, H, W) with ``y`` as int64.
Files that are missing are downloaded through torchvision when possible; there
is never a fallback to other or synthetic data.

:func:`train_batches` and :func:`eval_batches` keep the images uint8 and turn
each batch into floats on the fly with :func:`to_float` (and
:func:`augment_batch` for random crops and flips), so a whole dataset can stay
on the GPU.

Example:
    >>> from bnlib.data import load_dataset, dataset_stats, train_batches
    >>> x, y = load_dataset("mnist", "test")
    >>> mean, std = dataset_stats("mnist")
    >>> xb, yb = next(train_batches(x, y, batch_size=128, mean=mean, std=std))
    >>> xb.shape, xb.dtype, yb.dtype
    (torch.Size([128, 1, 28, 28]), torch.float32, torch.int64)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATASET_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100")
_SPLITS = ("train", "test")

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
Stats = Sequence[float] | torch.Tensor | None

# SHA-256 of the decompressed idx files (header included), from the data README (../shared/data/README.md).
_IDX_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
# SHA-256 of the CIFAR-10 `data` (uint8, batches concatenated in order) and of the labels as uint8.
_CIFAR10_SHA256 = {
    "train": (
        "9d5c2eddadb0deff02c14c350c0385aab7b1d5ff1edfeb4997c8dc8644960111",
        "2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253",
    ),
    "test": (
        "177777c33ba79825320efa646ad04a94bdc3c80e4ebe3bd21724f8cdfd4b9d56",
        "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5",
    ),
}
# The accepted bytes of each CIFAR-10 batch file, checked BEFORE it is unpickled (a pickle can run any code on load).
# The official release is known only by the md5 its publisher and torchvision give (torchvision's CIFAR10 lists them),
# so md5 it is: here it is a known-file list and a guard against accidents (a truncated download, a flipped bit, a file
# from another dataset), not a signature; a file forged to an official md5 would need an md5 second preimage, which no
# known attack gives. The offline copies (same pixels and labels, no `filenames` entry, so other bytes; md5s in the data
# README's MD5SUMS) get SHA-256, computed here from the files, as the module's other sums are. The real guard against
# code in a file is the second layer, _CifarUnpickler, which every CIFAR file (CIFAR-100 has no published sum) goes
# through. sha256 comes first: for the offline copies the check costs one hash.
_CIFAR10_FILE_DIGESTS = {
    "data_batch_1": {
        "sha256": "809454c645931070f431fe22cee2ad522195e7c6738cb92d5271fb4b1fe31693",
        "md5": "c99cafc152244af753f735de768cd75f",
    },
    "data_batch_2": {
        "sha256": "ba06209dc3259f68afef594fdb8c8976aa18b1b99f63d38ad1f2f58307b0a1ed",
        "md5": "d4bba439e000b95fd0a9bffe97cbabec",
    },
    "data_batch_3": {
        "sha256": "8c73626cc8cf3757533f8603634762d6ec3a59dee7331014892c4310e08eb1c9",
        "md5": "54ebc095f3ab1f0389bbae665268c751",
    },
    "data_batch_4": {
        "sha256": "31541e73614619fc3096e64e259efbb4fb96f5aeac2178ceb5c7672b395dbf3c",
        "md5": "634d18415352ddfa80567beed471001a",
    },
    "data_batch_5": {
        "sha256": "b7ac0a09c1f0dd4ee23e48a8d4662579d99e3e9aaddc21e3498b7c80f9fa26c0",
        "md5": "482c414d41f54cd18b22e5b47cb7c3cb",
    },
    "test_batch": {
        "sha256": "a9e13ff060b2d2236500a8b2bbce481495ea37fb05531d0ab5d3a94229c4bea9",
        "md5": "40351d587109b95175f43aff81a1287e",
    },
}
_DIGEST_SOURCES = {"sha256": "the known offline copy", "md5": "the official release"}
# The only globals a CIFAR batch (a dict of numpy arrays, lists, strings and numbers) needs, as found with
# pickletools.dis: the official files (Python 2, protocol 2) name numpy.core.multiarray._reconstruct, numpy.ndarray and
# numpy.dtype; pickle.dump under numpy 2 writes numpy._core..., plus _codecs.encode for bytes in protocols 0-2 and
# numpy._core.numeric._frombuffer in protocol 5.
_CIFAR_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)
_IDX_MAGIC_IMAGES = 2051
_IDX_MAGIC_LABELS = 2049
_IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
# Per-channel train mean and std in [0, 1] pixel units (README table; CIFAR-100: commonly used values).
_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_STATS_CHUNK_ELEMENTS = 1 << 22


AUGMENT_SEED_OFFSET = 1_000_003  # the augmentation generator's seed is the run's seed plus this


# ---------------------------------------------------------------- datasets on disk

class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are missing and could not be downloaded."""


def default_root(root: str | os.PathLike | None = None) -> Path:
    """Data folder: ``root`` if given, else ``$BNLIB_DATA`` if set and non-empty, else ``<repo>/data``.

    Example:
        >>> default_root("/tmp/my-data")
        PosixPath('/tmp/my-data')
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("BNLIB_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "data"


def dataset_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images, in [0, 1] pixel units.

    MNIST, Fashion-MNIST and CIFAR-10 are the values measured on the real files
    (the data README, ``../shared/data/README.md`` in the development setup); CIFAR-100 uses the commonly published values.

    Example:
        >>> dataset_stats("mnist")
        ((0.1307,), (0.3081,))
    """
    _check_choice("dataset name", name, DATASET_NAMES)
    return _STATS[name]


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``x`` (uint8, (N, C, H, W)) and labels ``y`` (int64, (N,)) of one split.

    ``name`` is one of :data:`DATASET_NAMES`, ``split`` ``"train"`` or ``"test"``;
    ``root`` defaults to :func:`default_root`. Files read under ``root``:

    - ``mnist``: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, uncompressed
      if present, else the ``.gz``; ``fashion_mnist``: the same names under ``FashionMNIST/raw/``.
      x is (N, 1, 28, 28). The SHA-256 of each decompressed file must match the published sum.
    - ``cifar10``: ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5`` (train, in order)
      or ``test_batch``; x is (N, 3, 32, 32) from the R, G, B planes. Before a file is
      unpickled, its bytes must be the official release (torchvision's md5) or the known
      offline copy (SHA-256); after decoding, the SHA-256 of the pixels and of the labels
      (as uint8) must match the published sums.
    - ``cifar100``: ``cifar-100-python/{train,test}``, fine labels. No checksum is published
      for it, so none is checked.

    Every CIFAR file is unpickled by an unpickler that builds only numpy arrays, lists, strings
    and numbers and refuses any other global (a pickle can otherwise run code on load).

    Missing files are downloaded into ``root`` with torchvision's dataset classes when
    ``download`` is true. If that fails or ``download`` is false, :class:`DatasetNotFoundError`
    says which files were expected where. A file that is truncated, corrupt (a failed gzip CRC,
    a broken pickle, a pickle that names a refused global), of the wrong size or shape, whose
    checksum does not match, or a CIFAR-10 file of unknown bytes raises one ``ValueError`` that
    names the file, says what is wrong and how to replace the file.

    Example:
        >>> x, y = load_dataset("mnist", "test")
        >>> x.shape, x.dtype, y.shape, y.dtype
        (torch.Size([10000, 1, 28, 28]), torch.uint8, torch.Size([10000]), torch.int64)
    """
    _check_choice("dataset name", name, DATASET_NAMES)
    _check_choice("split", split, _SPLITS)
    base = default_root(root).absolute()
    expected = _expected_files(name, split, base)
    found = _find_files(expected)
    error: Exception | None = None
    if found is None and download:
        try:
            _download(name, split, base)
        except Exception as e:  # any torchvision or network failure ends in the same clear error
            error = e
        found = _find_files(expected)
    if found is None:
        raise DatasetNotFoundError(_not_found_message(name, split, base, expected, download, error)) from error
    if name in _IDX_FOLDERS:
        return _load_idx(name, found[0], found[1])
    if name == "cifar10":
        return _load_cifar(found, "labels", _CIFAR10_SHA256[split], _CIFAR10_FILE_DIGESTS)
    return _load_cifar(found, "fine_labels", None)


# ---------------------------------------------------------------- validation splits and subsets

VALIDATION_SIZES = {"mnist": 10_000, "fashion_mnist": 10_000, "cifar10": 5_000, "cifar100": 5_000}


def validation_split(
    data: tuple[torch.Tensor, torch.Tensor], size: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Split a training set into (train, validation): the validation set is its **last** ``size`` examples.

    Hyperparameters are chosen on the validation split, never on the test set. The split is fixed (no shuffle),
    so every notebook and seed holds out the same images; :data:`VALIDATION_SIZES` gives the series' sizes.

    Example:
        >>> x, y = torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10)
        >>> (tx, ty), (vx, vy) = validation_split((x, y), 3)
        >>> ty.tolist(), vy.tolist()
        ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9])
    """
    x, y = data
    n = _check_pair(x, y)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size < n:
        raise ValueError(f"validation size must be an integer in [1, {n - 1}] for {n} training examples, got {size!r}")
    return (x[: n - size], y[: n - size]), (x[n - size :], y[n - size :])


def fixed_subset(
    data: tuple[torch.Tensor, torch.Tensor], n: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples of a fixed shuffle (by ``seed``); the whole set when ``n`` is None or too large.

    The subset depends only on ``n`` and ``seed``, not on the runs' seeds: every run sees the same examples.

    Example:
        >>> x, y = torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10)
        >>> fixed_subset((x, y), 3, seed=0)[1].tolist() == fixed_subset((x, y), 3, seed=0)[1].tolist()
        True
        >>> len(fixed_subset((x, y), None, seed=0)[1])
        10
    """
    x, y = data
    total = _check_pair(x, y)
    if n is None or n >= total:
        return x, y
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"subset size must be a positive integer or None, got {n!r}")
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


# ---------------------------------------------------------------- pixels to floats, augmentation

def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population std (float64, [0, 1] units) of uint8 images (N, C, H, W).

    Works through the images in chunks with float64 sums, so no float copy of
    the whole set is made.

    Example:
        >>> x = torch.tensor([0, 255], dtype=torch.uint8).reshape(2, 1, 1, 1)
        >>> channel_stats(x)
        (tensor([0.5000], dtype=torch.float64), tensor([0.5000], dtype=torch.float64))
    """
    if x.dtype != torch.uint8 or x.ndim != 4 or len(x) == 0:
        raise ValueError(f"expected a non-empty uint8 tensor of shape (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    total_sq = torch.zeros_like(total)
    rows = max(1, _STATS_CHUNK_ELEMENTS // x[0].numel())
    for chunk in x.split(rows):
        c = chunk.to(torch.float64)
        total += c.sum(dim=(0, 2, 3))
        total_sq += c.square().sum(dim=(0, 2, 3))
    n = x.numel() // x.shape[1]
    mean = total / n
    std = (total_sq / n - mean.square()).clamp_min(0).sqrt()
    return mean / 255, std / 255


def to_float(x: torch.Tensor, mean: Stats = None, std: Stats = None, scale: float = 1 / 255) -> torch.Tensor:
    """``(x * scale - mean) / std`` as float32, per channel (dim -3); ``None`` means 0 and 1.

    The input is never modified. ``scale=1.0`` with no mean/std gives raw 0-255 pixels.

    Example:
        >>> to_float(torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 1, 2), mean=[0.5], std=[0.5])
        tensor([[[[-1.,  1.]]]])
    """
    out = x.to(torch.float32) * scale
    if mean is not None:
        out -= torch.as_tensor(mean, dtype=out.dtype, device=out.device).reshape(-1, 1, 1)
    if std is not None:
        out /= torch.as_tensor(std, dtype=out.dtype, device=out.device).reshape(-1, 1, 1)
    return out


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding by ``padding`` and random horizontal flip (p=0.5), per sample.

    ``x`` is a float batch (N, C, H, W); each sample gets its own offsets in
    ``[0, 2 * padding]`` and its own flip, drawn from ``generator`` (on ``x.device``).
    Vectorized: one padded copy and one gather, no loop over samples.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> augment_batch(torch.ones(8, 3, 32, 32), g).shape
        torch.Size([8, 3, 32, 32])
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n, 1), generator=generator, device=x.device)
    rows = offsets[0] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[1] + torch.arange(w, device=x.device)  # (N, W)
    if flip:
        flipped = torch.rand(n, 1, generator=generator, device=x.device) < 0.5
        cols = torch.where(flipped, cols.flip(1), cols)
    samples = torch.arange(n, device=x.device).reshape(n, 1, 1, 1)
    channels = torch.arange(c, device=x.device).reshape(1, c, 1, 1)
    return padded[samples, channels, rows.reshape(n, 1, h, 1), cols.reshape(n, 1, 1, w)]


# ---------------------------------------------------------------- batches

def train_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    seed: int = 0,
    mean: Stats = None,
    std: Stats = None,
    scale: float = 1 / 255,
    augment: bool = False,
    device: str | torch.device | None = None,
) -> Batches:
    """Endless float batches ``(to_float(x[idx]), y[idx])`` for a training loop, reshuffled every epoch.

    ``x`` and ``y`` are moved to ``device`` (default ``x.device``) once and ``x`` keeps
    its dtype there. Each epoch is ``torch.randperm`` from one ``torch.Generator`` on
    that device seeded with ``seed``, cut into full batches (the incomplete last batch
    of an epoch is dropped). With ``augment``, :func:`augment_batch` draws from a second
    generator (seeded with ``seed + AUGMENT_SEED_OFFSET``), so runs with and without
    augmentation see the same batches in the same order.

    Example:
        >>> x = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
        >>> xb, yb = next(train_batches(x, torch.arange(10), batch_size=4))
        >>> xb.shape, xb.dtype, yb.shape
        (torch.Size([4, 1, 2, 2]), torch.float32, torch.Size([4]))
    """
    n = _check_pair(x, y)
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and N={n} (the number of samples), got batch_size={batch_size}")
    dev = x.device if device is None else torch.device(device)
    return _train_batches(
        x.to(dev), y.to(dev), batch_size, seed, _stat_tensor(mean, dev), _stat_tensor(std, dev), scale, augment
    )


def eval_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    *,
    mean: Stats = None,
    std: Stats = None,
    scale: float = 1 / 255,
    device: str | torch.device | None = None,
) -> Batches:
    """One ordered pass of float batches over ``(x, y)``; the last, smaller batch is kept.

    Each batch is moved to ``device`` (default ``x.device``) before :func:`to_float`.

    Example:
        >>> x = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
        >>> [len(yb) for _, yb in eval_batches(x, torch.arange(10), batch_size=4)]
        [4, 4, 2]
    """
    _check_pair(x, y)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got batch_size={batch_size}")
    dev = x.device if device is None else torch.device(device)
    return _eval_batches(x, y, batch_size, _stat_tensor(mean, dev), _stat_tensor(std, dev), scale, dev)


def _train_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    seed: int,
    mean: torch.Tensor | None,
    std: torch.Tensor | None,
    scale: float,
    augment: bool,
) -> Batches:
    generator = torch.Generator(device=x.device)
    generator.manual_seed(seed)
    augment_generator = torch.Generator(device=x.device)
    augment_generator.manual_seed(seed + AUGMENT_SEED_OFFSET)
    n = len(x)
    while True:
        order = torch.randperm(n, generator=generator, device=x.device)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            xb = to_float(x.index_select(0, idx), mean, std, scale)  # index_select: far faster than x[idx] on CPU
            yield (augment_batch(xb, augment_generator) if augment else xb), y.index_select(0, idx)


def _eval_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    mean: torch.Tensor | None,
    std: torch.Tensor | None,
    scale: float,
    device: torch.device,
) -> Batches:
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        yield to_float(xb, mean, std, scale), y[start : start + batch_size].to(device)


def seed_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    seeds: Sequence[int],
    *,
    mean: Stats = None,
    std: Stats = None,
    scale: float = 1 / 255,
    device: str | torch.device | None = None,
) -> Batches:
    """Endless batches for S models trained together: ``(S, B, C, H, W)`` floats and ``(S, B)`` labels.

    Model ``s`` gets exactly the batches ``train_batches(x, y, batch_size, seed=seeds[s])``
    would give it (same generator calls), so training S seeds together sees the same
    data as S separate runs.

    Example:
        >>> x = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1, 1)
        >>> xb, yb = next(seed_batches(x, torch.arange(10), 4, seeds=[0, 1]))
        >>> xb.shape, yb.shape
        (torch.Size([2, 4, 1, 1, 1]), torch.Size([2, 4]))
        >>> torch.equal(yb[1], next(train_batches(x, torch.arange(10), 4, seed=1))[1])
        True
    """
    n = _check_pair(x, y)
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and N={n} (the number of samples), got batch_size={batch_size}")
    if len(seeds) == 0:
        raise ValueError("seeds must name at least one seed, got an empty sequence")
    dev = x.device if device is None else torch.device(device)
    return _seed_batches(x.to(dev), y.to(dev), batch_size, list(seeds), _stat_tensor(mean, dev), _stat_tensor(std, dev), scale)


def _seed_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    seeds: list[int],
    mean: torch.Tensor | None,
    std: torch.Tensor | None,
    scale: float,
) -> Batches:
    generators = []
    for seed in seeds:
        g = torch.Generator(device=x.device)
        g.manual_seed(seed)
        generators.append(g)
    n = len(x)
    while True:
        orders = torch.stack([torch.randperm(n, generator=g, device=x.device) for g in generators])
        for start in range(0, n - batch_size + 1, batch_size):
            idx = orders[:, start : start + batch_size].reshape(-1)
            xb = x.index_select(0, idx).view(len(seeds), batch_size, *x.shape[1:])  # far faster than x[idx] on CPU
            yield to_float(xb, mean, std, scale), y.index_select(0, idx).view(len(seeds), batch_size)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> int:
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    return len(x)


def _stat_tensor(values: Stats, device: torch.device) -> torch.Tensor | None:
    return None if values is None else torch.as_tensor(values, dtype=torch.float32, device=device)


# ---------------------------------------------------------------- finding, downloading and checking the files

def _check_choice(kind: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid values: {', '.join(valid)}")


def _expected_files(name: str, split: str, base: Path) -> list[list[Path]]:
    """For each file a split needs, the accepted paths in order of preference."""
    if name in _IDX_FOLDERS:
        raw = base / _IDX_FOLDERS[name] / "raw"
        prefix = "train" if split == "train" else "t10k"
        stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
        return [[raw / stem, raw / f"{stem}.gz"] for stem in stems]
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return [[base / "cifar-10-batches-py" / f] for f in files]
    return [[base / "cifar-100-python" / split]]


def _find_files(expected: list[list[Path]]) -> list[Path] | None:
    found = [next((p for p in options if p.is_file()), None) for options in expected]
    return None if None in found else found


def _download(name: str, split: str, base: Path) -> None:
    import torchvision.datasets as tvd

    classes = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}
    classes[name](str(base), train=split == "train", download=True)


def _not_found_message(
    name: str, split: str, base: Path, expected: list[list[Path]], download: bool, error: Exception | None
) -> str:
    files = "\n".join("  " + " or ".join(str(p) for p in options) for options in expected)
    if not download:
        attempt = "No download was tried (download=False)."
    elif error is not None:
        attempt = f"Downloading it through torchvision failed: {type(error).__name__}: {error}"
    else:
        attempt = "Downloading it through torchvision did not produce these files."
    return (
        f"dataset {name!r} ({split} split) not found under the data root {base}.\n"
        f"Expected files:\n{files}\n{attempt}\n"
        f"Fix: set BNLIB_DATA=/path/to/data or pass root=... pointing at a folder that holds "
        f"these files (they can also be placed there manually)."
    )


_REPLACE_FIX = (
    "Fix: delete the file and call load_dataset(..., download=True) to download it again, "
    "or restore it from the publisher's archive into the data root (BNLIB_DATA or root=...)."
)


def _corrupt(path: Path, problem: str) -> ValueError:
    """The error for a dataset file that cannot be used: its path, what is wrong, and the fix.

    Example:
        >>> print(_corrupt(Path("/data/MNIST/raw/t10k-labels-idx1-ubyte"), "expected 10,008 bytes of labels, got 8"))
        corrupt dataset file /data/MNIST/raw/t10k-labels-idx1-ubyte: expected 10,008 bytes of labels, got 8. Fix: ...
    """
    return ValueError(f"corrupt dataset file {path}: {problem}. {_REPLACE_FIX}")


@contextmanager
def _decoding(path: Path, fmt: str) -> Iterator[None]:
    """Turns any error raised while decoding ``path`` (as ``fmt``, e.g. "gzip stream") into :func:`_corrupt`'s error.

    The original exception is chained. Reading the file stays outside, so a permission
    error is not reported as a corrupt file.

    Example:
        >>> with _decoding(Path("/data/labels.gz"), "gzip stream"):
        ...     gzip.decompress(gzip.compress(b"idx")[:-1])
        Traceback (most recent call last):
        ValueError: corrupt dataset file /data/labels.gz: truncated gzip stream (...). Fix: ...
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, KeyError):
            problem = f"{fmt} without the key {exc}"
        else:
            problem = f"{'truncated' if isinstance(exc, EOFError) else 'corrupt'} {fmt} ({exc})"
        raise _corrupt(path, problem) from exc


def _load_idx(name: str, images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    # Both checksums pass only for the published files, whose image and label counts agree.
    images = _read_idx(images_path, _IDX_MAGIC_IMAGES, _IDX_SHA256[name])
    labels = _read_idx(labels_path, _IDX_MAGIC_LABELS, _IDX_SHA256[name])
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def _read_idx(path: Path, magic: int, sha256: dict[str, str]) -> np.ndarray:
    """Decoded uint8 array of an idx file (``.gz`` or not), after checking magic, size and checksum."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        with _decoding(path, "gzip stream"):
            raw = gzip.decompress(raw)
    kind = "images" if magic == _IDX_MAGIC_IMAGES else "labels"
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _corrupt(path, f"not an idx file of {kind}: magic number {found}, expected {magic}")
    if len(raw) < header:
        raise _corrupt(path, f"expected an idx header of {header} bytes, got {len(raw):,} bytes")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) != header + math.prod(dims):
        raise _corrupt(path, f"expected {header + math.prod(dims):,} bytes of {kind} (shape {dims}), got {len(raw):,}")
    _verify_sha256(raw, sha256[path.name.removesuffix(".gz")], str(path))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_cifar(
    paths: list[Path],
    label_key: str,
    sha256: tuple[str, str] | None,
    known_files: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR python-version batches, concatenated in order, as (x, y) tensors.

    With ``known_files`` (file name -> {hash algorithm: hex digest}), each file's bytes must
    match one of its digests before it is unpickled (:func:`_check_known_file`). Every file is
    unpickled by :class:`_CifarUnpickler`. With ``sha256`` (of the data, of the labels as uint8),
    the decoded content of all files together is checked too.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "train"
        >>> _ = path.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [3, 7]}))
        >>> x, y = _load_cifar([path], "fine_labels", None)
        >>> x.shape, y.tolist()
        (torch.Size([2, 3, 32, 32]), [3, 7])
    """
    data, labels = [], []
    for path in paths:
        raw = path.read_bytes()
        if known_files is not None:
            _check_known_file(path, raw, known_files[path.name])
        with _decoding(path, "CIFAR batch (a pickled dict)"):
            batch = _CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()
            batch_data, batch_labels = np.asarray(batch["data"]), np.asarray(batch[label_key], dtype=np.uint8)
        if batch_data.dtype != np.uint8 or batch_data.shape != (len(batch_labels), 3 * 32 * 32):
            raise _corrupt(
                path,
                f"expected uint8 'data' of shape ({len(batch_labels):,}, 3072) for its {len(batch_labels):,} "
                f"labels, got {batch_data.dtype} {batch_data.shape}",
            )
        data.append(batch_data)
        labels.append(batch_labels)
    x, y = np.concatenate(data), np.concatenate(labels)
    if sha256 is not None:
        names = ", ".join(str(p) for p in paths)
        _verify_sha256(x, sha256[0], f"the pixel data of {names}")
        _verify_sha256(y, sha256[1], f"the labels of {names}")
    return torch.from_numpy(x).reshape(-1, 3, 32, 32), torch.from_numpy(y.astype(np.int64))


def _check_known_file(path: Path, raw: bytes, digests: Mapping[str, str]) -> None:
    """Refuses ``raw`` (the bytes of ``path``) unless one of ``digests`` ({algorithm: hex digest}) matches it.

    Called before a pickle is loaded, so an unknown file is never unpickled. The digests are
    tried in order and each is computed only if the ones before it did not match.

    Example:
        >>> _check_known_file(Path("/data/test_batch"), b"pickle", {"sha256": hashlib.sha256(b"pickle").hexdigest()})
        >>> known = {"sha256": hashlib.sha256(b"pickle").hexdigest(), "md5": "40351d587109b95175f43aff81a1287e"}
        >>> _check_known_file(Path("/data/test_batch"), b"pickled code", known)
        Traceback (most recent call last):
        ValueError: corrupt dataset file /data/test_batch: unknown file (sha256 ..., md5 ...): neither the known offline copy ...
    """
    found = {}
    for algorithm, expected in digests.items():
        found[algorithm] = _hexdigest(algorithm, raw)
        if found[algorithm] == expected:
            return
    actual = ", ".join(f"{algorithm} {digest}" for algorithm, digest in found.items())
    known = " nor ".join(f"{_DIGEST_SOURCES.get(a, 'the known file')} ({a} {d})" for a, d in digests.items())
    lead = "neither" if len(digests) > 1 else "not"
    raise _corrupt(
        path,
        f"unknown file ({actual}): {lead} {known} of {path.name}; "
        f"it was not unpickled, since loading a pickle can run code",
    )


def _hexdigest(algorithm: str, raw: bytes) -> str:
    """Hex digest of ``raw``; md5 is accepted for a known-file check, so FIPS builds may compute it too.

    Example:
        >>> _hexdigest("md5", b"")
        'd41d8cd98f00b204e9800998ecf8427e'
    """
    return hashlib.new(algorithm, raw, usedforsecurity=False).hexdigest()


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as a pickle of bytes calls it (protocols 0-2), with no codec but latin-1."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with the codec {encoding!r}: only latin1 is allowed")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what a CIFAR batch holds: numpy arrays, lists, dicts, strings and numbers.

    ``find_class`` allows the globals in ``_CIFAR_PICKLE_GLOBALS`` (numpy array and dtype
    reconstruction, latin-1 bytes) and raises ``pickle.UnpicklingError`` naming any other, so a
    file that would call code on load (``os.system``, ``builtins.eval``, ...) is refused before
    anything is called.

    Example:
        >>> _CifarUnpickler(io.BytesIO(pickle.dumps({"data": np.arange(3, dtype=np.uint8)})), encoding="latin1").load()
        {'data': array([0, 1, 2], dtype=uint8)}
        >>> _CifarUnpickler(io.BytesIO(pickle.dumps(print)), encoding="latin1").load()
        Traceback (most recent call last):
        _pickle.UnpicklingError: refused global 'builtins.print' (neither imported nor called): ...
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused global '{module}.{name}' (neither imported nor called): "
                f"a CIFAR batch needs only numpy arrays, lists, strings and numbers"
            )
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        return super().find_class(module, name)


def _verify_sha256(buffer: bytes | np.ndarray, expected: str, what: str) -> None:
    actual = hashlib.sha256(buffer).hexdigest()
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}; "
            f"the file is corrupt or not the official release. {_REPLACE_FIX}"
        )


