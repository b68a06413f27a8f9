"""Tests for bnlib.data: real files (via BNLIB_DATA), checksums, download and batching.

Run with the real datasets: ``BNLIB_DATA=/work/shared/data pytest tests/test_data.py``.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import shutil
import urllib.error
import urllib.request
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from bnlib.data import (
    _CIFAR10_FILE_DIGESTS,
    _CIFAR10_SHA256,
    DATASET_NAMES,
    DatasetNotFoundError,
    _CifarUnpickler,
    _load_cifar,
    augment_batch,
    channel_stats,
    dataset_stats,
    default_root,
    eval_batches,
    load_dataset,
    to_float,
    train_batches,
)

DATA = os.environ.get("BNLIB_DATA")
needs_data = pytest.mark.data  # skipped without the real datasets (the root conftest.py's gate)

# From /work/shared/data/README.md
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
SIZES = {"train": {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000}, "test": dict.fromkeys(SHAPES, 10000)}


@pytest.fixture(scope="module")
def real():
    """Loads each (name, split) of the real data at most once per test module."""
    loaded: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def get(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if (name, split) not in loaded:
            loaded[name, split] = load_dataset(name, split, DATA, download=False)
        return loaded[name, split]

    return get


@pytest.fixture
def offline(monkeypatch):
    """Every network request made through urllib (torchvision's downloader) fails."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in this test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _mnist_raw(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    return raw


def _decompressed(name: str) -> bytes:
    return gzip.decompress((Path(DATA) / "MNIST" / "raw" / f"{name}.gz").read_bytes())


# ---------------------------------------------------------------- real data


@needs_data
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_real_shapes_dtypes_ranges(real, name, split):
    x, y = real(name, split)
    n = SIZES[split][name]
    assert x.shape == (n, *SHAPES[name]) and x.dtype == torch.uint8
    assert y.shape == (n,) and y.dtype == torch.int64
    assert int(x.min()) == 0 and int(x.max()) == 255
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert x.is_contiguous()


@needs_data
@pytest.mark.parametrize(
    "name, split, counts",
    [
        ("mnist", "test", MNIST_TEST_COUNTS),
        ("mnist", "train", MNIST_TRAIN_COUNTS),
        ("fashion_mnist", "train", [6000] * 10),
        ("cifar10", "train", [5000] * 10),
        ("cifar10", "test", [1000] * 10),
    ],
)
def test_real_class_counts(real, name, split, counts):
    assert torch.bincount(real(name, split)[1]).tolist() == counts


@needs_data
def test_mnist_train_channel_stats(real):
    mean, std = channel_stats(real("mnist", "train")[0])
    assert mean.tolist() == pytest.approx([0.1307], abs=1e-3)
    assert std.tolist() == pytest.approx([0.3081], abs=1e-3)


@needs_data
def test_cifar10_train_channel_stats_match_readme_in_rgb_order(real):
    mean, std = channel_stats(real("cifar10", "train")[0])
    assert mean.tolist() == pytest.approx([0.4914, 0.4822, 0.4465], abs=1e-3)
    assert std.tolist() == pytest.approx([0.2470, 0.2435, 0.2616], abs=1e-3)
    ref_mean, ref_std = dataset_stats("cifar10")
    assert mean.tolist() + std.tolist() == pytest.approx(ref_mean + ref_std, abs=1e-3)


@needs_data
def test_uncompressed_idx_gives_same_tensors_as_gz(real, tmp_path):
    raw = _mnist_raw(tmp_path)
    for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (raw / name).write_bytes(_decompressed(name))
    x, y = load_dataset("mnist", "test", tmp_path, download=False)
    x_gz, y_gz = real("mnist", "test")
    assert torch.equal(x, x_gz) and torch.equal(y, y_gz)


@needs_data
def test_checksum_mismatch_names_the_file(tmp_path):
    raw = _mnist_raw(tmp_path)
    shutil.copy(Path(DATA) / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", raw)
    labels = bytearray(_decompressed("t10k-labels-idx1-ubyte"))
    labels[-1] ^= 1  # still a valid digit, so only the checksum can notice
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    message = str(info.value)
    assert str(raw / "t10k-labels-idx1-ubyte") in message
    assert "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" in message  # the expected sum
    assert "download=True" in message and "publisher's archive" in message


@needs_data
def test_wrong_idx_magic_names_the_file(tmp_path):
    raw = _mnist_raw(tmp_path)
    (raw / "t10k-images-idx3-ubyte").write_bytes(_decompressed("t10k-images-idx3-ubyte"))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_decompressed("t10k-images-idx3-ubyte"))  # images as labels
    with pytest.raises(ValueError, match="magic number 2051, expected 2049") as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    assert str(raw / "t10k-labels-idx1-ubyte") in str(info.value)


def _assert_corrupt_file_error(info: pytest.ExceptionInfo, path: Path, problem: str) -> None:
    """The error names the file's full path, what is wrong and both fixes."""
    message = str(info.value)
    assert f"corrupt dataset file {path}: {problem}" in message
    assert "load_dataset(..., download=True) to download it again" in message
    assert "publisher's archive" in message and "BNLIB_DATA" in message


def _mnist_test_copy(root: Path) -> Path:
    """The MNIST test files (.gz) copied into ``root``'s MNIST/raw; returns that folder."""
    raw = _mnist_raw(root)
    for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        shutil.copy(Path(DATA) / "MNIST" / "raw" / name, raw)
    return raw


@needs_data
def test_truncated_mnist_gz_names_the_file_and_the_fix(tmp_path):
    path = _mnist_test_copy(tmp_path) / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(ValueError) as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    _assert_corrupt_file_error(info, path, "truncated gzip stream (Compressed file ended before")
    assert isinstance(info.value.__cause__, EOFError)


@needs_data
@pytest.mark.parametrize(
    "where, problem, cause",
    [
        ("middle", "corrupt gzip stream (CRC check failed", gzip.BadGzipFile),
        (100, "corrupt gzip stream (Error -3 while decompressing data", zlib.error),
    ],
    ids=["crc", "deflate"],
)
def test_bit_flipped_mnist_gz_names_the_file_and_the_fix(tmp_path, where, problem, cause):
    path = _mnist_test_copy(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if where == "middle" else where] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    _assert_corrupt_file_error(info, path, problem)
    assert isinstance(info.value.__cause__, cause)


@needs_data
def test_wrong_size_idx_names_the_file_and_the_fix(tmp_path):
    raw = _mnist_test_copy(tmp_path)
    path = raw / "t10k-images-idx3-ubyte"  # preferred over the .gz
    path.write_bytes(_decompressed("t10k-images-idx3-ubyte")[:1000])
    with pytest.raises(ValueError) as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    _assert_corrupt_file_error(info, path, "expected 7,840,016 bytes of images (shape (10000, 28, 28)), got 1,000")


@needs_data
def test_truncated_cifar10_batch_is_refused_before_unpickling(tmp_path, unpickling):
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.parent.mkdir()
    with (Path(DATA) / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        path.write_bytes(f.read(1_000_000))
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10", "test", tmp_path, download=False)
    _assert_corrupt_file_error(info, path, f"unknown file (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}, md5 ")
    assert unpickling == [] and info.value.__cause__ is None


def _write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], label_key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump({"data": data, label_key: labels}, f)


class _TouchOnLoad:
    """Unpickling this calls ``Path.touch(marker)``: the shape of a malicious pickle, with a harmless payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _write_malicious_batch(path: Path, marker: Path) -> None:
    """A CIFAR-like batch whose 'data' entry runs code when the file is unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"batch_label": "evil", "labels": [0], "data": _TouchOnLoad(marker)}))


@pytest.fixture
def unpickling(monkeypatch) -> list[str]:
    """Records every pickle bnlib.data loads during the test (its restricted unpickler, or plain pickle.load/loads)."""
    calls: list[str] = []

    class Spy(_CifarUnpickler):
        def load(self):
            calls.append("_CifarUnpickler.load")
            return super().load()

    def spy(name, original):
        def wrapper(*args, **kwargs):
            calls.append(f"pickle.{name}")
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr("bnlib.data._CifarUnpickler", Spy)
    monkeypatch.setattr(pickle, "load", spy("load", pickle.load))
    monkeypatch.setattr(pickle, "loads", spy("loads", pickle.loads))
    return calls


def test_the_malicious_payload_runs_code_under_plain_pickle(tmp_path):
    """The payload of the two tests below is real: a plain pickle.loads of the file creates the marker."""
    path, marker = tmp_path / "test_batch", tmp_path / "MARKER"
    _write_malicious_batch(path, marker)
    pickle.loads(path.read_bytes(), encoding="latin1")
    assert marker.is_file()


def test_malicious_cifar10_batch_is_refused_before_unpickling(tmp_path, unpickling):
    path, marker = tmp_path / "cifar-10-batches-py" / "test_batch", tmp_path / "MARKER"
    _write_malicious_batch(path, marker)
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10", "test", tmp_path, download=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _assert_corrupt_file_error(info, path, f"unknown file (sha256 {digest}, md5 ")
    message = str(info.value)
    assert "neither the known offline copy (sha256 a9e13ff060b2d2236500a8b2bbce481495ea37fb05531d0ab5d3a94229c4bea9)" in message
    assert "nor the official release (md5 40351d587109b95175f43aff81a1287e) of test_batch" in message
    assert "it was not unpickled" in message
    assert unpickling == [] and not marker.exists()


def test_malicious_cifar100_batch_is_refused_by_the_restricted_unpickler(tmp_path, unpickling):
    path, marker = tmp_path / "cifar-100-python" / "train", tmp_path / "MARKER"
    _write_malicious_batch(path, marker)
    with pytest.raises(ValueError) as info:
        load_dataset("cifar100", "train", tmp_path, download=False)
    _assert_corrupt_file_error(
        info, path, "corrupt CIFAR batch (a pickled dict) (refused global 'pathlib.Path.touch' (neither imported nor called)"
    )
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert unpickling == ["_CifarUnpickler.load"] and not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_restricted_unpickler_reads_numpy_batches_of_every_protocol(protocol):
    batch = {"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2], "name": "b", "raw": b"\x00\xff"}
    loaded = _CifarUnpickler(io.BytesIO(pickle.dumps(batch, protocol=protocol)), encoding="latin1").load()
    assert loaded.keys() == batch.keys() and loaded["raw"] == b"\x00\xff" and loaded["labels"] == [1, 2]
    assert loaded["data"].dtype == np.uint8 and np.array_equal(loaded["data"], batch["data"])


class _Rot13:
    def __reduce__(self):
        return codecs.encode, ("payload", "rot13")  # codecs.encode is _codecs.encode, an allowed global


def test_restricted_unpickler_allows_codecs_encode_only_for_latin1():
    with pytest.raises(pickle.UnpicklingError, match="refused _codecs.encode with the codec 'rot13'"):
        _CifarUnpickler(io.BytesIO(pickle.dumps(_Rot13())), encoding="latin1").load()


def test_cifar10_fake_batch_is_an_unknown_file(tmp_path, unpickling):
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    _write_cifar_batch(path, np.zeros((4, 3072), dtype=np.uint8), [0, 1, 2, 3], "labels")
    with pytest.raises(ValueError, match="unknown file .*neither the known offline copy .* nor the official release") as info:
        load_dataset("cifar10", "test", tmp_path, download=False)
    assert str(path) in str(info.value) and unpickling == []


def test_cifar10_batch_with_the_official_md5_is_unpickled_then_content_checked(tmp_path, monkeypatch, unpickling):
    # The official files are not available offline: a fake file stands in, with its md5 as the "official" one.
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    _write_cifar_batch(path, np.zeros((4, 3072), dtype=np.uint8), [0, 1, 2, 3], "labels")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(_CIFAR10_FILE_DIGESTS, "test_batch", {"sha256": "0" * 64, "md5": md5})
    with pytest.raises(ValueError, match=r"checksum mismatch for the pixel data of .*test_batch"):
        load_dataset("cifar10", "test", tmp_path, download=False)
    assert unpickling == ["_CifarUnpickler.load"]


def test_cifar10_content_checksum_mismatch_names_the_file(tmp_path):
    # The content check after decoding, without the byte check (which refuses any file but the known ones).
    path = tmp_path / "test_batch"
    _write_cifar_batch(path, np.zeros((4, 3072), dtype=np.uint8), [0, 1, 2, 3], "labels")
    with pytest.raises(ValueError, match="checksum mismatch.*test_batch") as info:
        _load_cifar([path], "labels", _CIFAR10_SHA256["test"])
    assert "177777c33ba79825320efa646ad04a94bdc3c80e4ebe3bd21724f8cdfd4b9d56" in str(info.value)


@needs_data
def test_real_cifar10_batch_with_one_byte_changed_is_refused_before_unpickling(tmp_path, unpickling):
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.parent.mkdir()
    raw = bytearray((Path(DATA) / "cifar-10-batches-py" / "test_batch").read_bytes())
    raw[len(raw) // 2] ^= 1  # one pixel of one image: still a valid pickle of a valid batch
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10", "test", tmp_path, download=False)
    _assert_corrupt_file_error(info, path, f"unknown file (sha256 {hashlib.sha256(raw).hexdigest()}, md5 ")
    assert unpickling == []
    # Without the byte check the file would be unpickled, and only the content checksum would notice.
    with pytest.raises(ValueError, match="checksum mismatch for the pixel data"):
        _load_cifar([path], "labels", _CIFAR10_SHA256["test"])
    assert unpickling == ["_CifarUnpickler.load"]


def test_cifar10_file_digests_list_torchvision_md5s():
    import torchvision.datasets as tvd

    official = dict(tvd.CIFAR10.train_list + tvd.CIFAR10.test_list)
    assert {name: digests["md5"] for name, digests in _CIFAR10_FILE_DIGESTS.items()} == official
    assert all(len(digests["sha256"]) == 64 for digests in _CIFAR10_FILE_DIGESTS.values())


def test_truncated_cifar100_batch_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "cifar-100-python" / "test"
    _write_cifar_batch(path, np.zeros((4, 3072), dtype=np.uint8), [0, 1, 2, 3], "fine_labels")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError) as info:
        load_dataset("cifar100", "test", tmp_path, download=False)
    _assert_corrupt_file_error(info, path, "corrupt CIFAR batch (a pickled dict) (pickle data was truncated)")
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


@pytest.mark.parametrize(
    "label_key, labels, problem",
    [
        ("fine_labels", [0, 1, 2], "expected uint8 'data' of shape (3, 3072) for its 3 labels, got uint8 (4, 3072)"),
        ("labels", [0, 1, 2, 3], "CIFAR batch (a pickled dict) without the key 'fine_labels'"),
    ],
    ids=["shape", "key"],
)
def test_cifar100_batch_of_wrong_shape_or_keys_names_the_file_and_the_fix(tmp_path, label_key, labels, problem):
    path = tmp_path / "cifar-100-python" / "train"
    _write_cifar_batch(path, np.zeros((4, 3072), dtype=np.uint8), labels, label_key)
    with pytest.raises(ValueError) as info:
        load_dataset("cifar100", "train", tmp_path, download=False)
    _assert_corrupt_file_error(info, path, problem)


def test_cifar10_reader_wants_the_labels_key(tmp_path):
    # CIFAR-10's parser (the same as CIFAR-100's, with "labels"), without the byte check.
    path = tmp_path / "test_batch"
    _write_cifar_batch(path, np.zeros((4, 3072), dtype=np.uint8), [0, 1, 2, 3], "fine_labels")
    with pytest.raises(ValueError, match="without the key 'labels'"):
        _load_cifar([path], "labels", None)


def test_cifar100_reader_uses_rgb_planes_and_fine_labels(tmp_path):
    # A tiny file in the CIFAR-100 format (the real files are not available offline).
    data = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    _write_cifar_batch(tmp_path / "cifar-100-python" / "train", data, [7, 99], "fine_labels")
    x, y = load_dataset("cifar100", "train", tmp_path, download=False)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [7, 99] and y.dtype == torch.int64
    assert x[1, 2, 0, 1].item() == data[1, 2 * 1024 + 1]  # blue plane, row 0, column 1


# ---------------------------------------------------------------- missing files and download


def test_missing_cifar10_offline_names_root_files_and_fix(tmp_path, offline):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path) in message
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in message
    assert "data_batch_5" in message
    assert "network disabled in this test" in message  # the download error is reported
    assert "BNLIB_DATA=/path/to/data or pass root=..." in message


def test_missing_without_download_says_so(tmp_path, offline):
    with pytest.raises(DatasetNotFoundError, match=r"download=False") as info:
        load_dataset("cifar10", "test", tmp_path, download=False)
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in str(info.value)
    assert "BNLIB_DATA" in str(info.value)
    assert not (tmp_path / "cifar-10-batches-py").exists()


@pytest.mark.parametrize("download", [True, False])
def test_missing_cifar100_offline(tmp_path, offline, download):
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python") as info:
        load_dataset("cifar100", "test", tmp_path, download=download)
    assert str(tmp_path / "cifar-100-python" / "test") in str(info.value)


class _FakeResponse(io.BytesIO):
    """What torchvision reads from ``urlopen``: ``.url``, ``.length`` and ``.read``."""

    def __init__(self, body: bytes, url: str):
        super().__init__(body)
        self.url = url
        self.length = len(body)


@needs_data
def test_download_through_torchvision_with_mocked_network(real, tmp_path, monkeypatch):
    # torchvision's download_url -> _get_redirect_url and _urlretrieve both call
    # urllib.request.urlopen; serving the official .gz bytes there exercises the whole
    # torchvision download + md5 check + extraction path without a network.
    requested = []

    def fake_urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        path = Path(DATA) / "MNIST" / "raw" / url.rsplit("/", 1)[-1]
        if not path.is_file():
            raise urllib.error.URLError(f"no such file in the test server: {url}")
        requested.append(path.name)
        return _FakeResponse(path.read_bytes(), url)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    x, y = load_dataset("mnist", "test", root=tmp_path)
    x_real, y_real = real("mnist", "test")
    assert torch.equal(x, x_real) and torch.equal(y, y_real)
    assert "t10k-images-idx3-ubyte.gz" in requested and "t10k-labels-idx1-ubyte.gz" in requested
    assert (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_unknown_name_and_split_list_valid_values():
    with pytest.raises(ValueError, match="mnist, fashion_mnist, cifar10, cifar100"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="train, test"):
        load_dataset("mnist", "valid")
    with pytest.raises(ValueError, match="cifar100"):
        dataset_stats("imagenet")


def test_default_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BNLIB_DATA", str(tmp_path / "env"))
    assert default_root(tmp_path / "arg") == tmp_path / "arg"
    assert default_root() == tmp_path / "env"
    monkeypatch.delenv("BNLIB_DATA")
    repo = Path(__file__).resolve().parents[1]
    assert default_root() == repo / "data"


def test_dataset_stats_values():
    assert DATASET_NAMES == ("mnist", "fashion_mnist", "cifar10", "cifar100")
    assert dataset_stats("mnist") == ((0.1307,), (0.3081,))
    assert dataset_stats("fashion_mnist") == ((0.2860,), (0.3530,))
    mean, std = dataset_stats("cifar100")
    assert len(mean) == len(std) == 3


# ---------------------------------------------------------------- tensors


def test_channel_stats_matches_direct_computation_across_chunks():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1500, 3, 32, 32), generator=g, dtype=torch.uint8)  # > 1 chunk
    x[:, 1] //= 2
    mean, std = channel_stats(x)
    ref = x.double().div(255).transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(mean, ref.mean(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(std, ref.std(1, correction=0), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="uint8"):
        channel_stats(x.float())


def test_to_float_scale_mean_std():
    x = torch.tensor([[0, 255], [51, 102]], dtype=torch.uint8).reshape(1, 2, 1, 2)  # C=2
    torch.testing.assert_close(to_float(x), torch.tensor([[0.0, 1.0], [0.2, 0.4]]).reshape(1, 2, 1, 2))
    raw = to_float(x, scale=1.0)
    assert raw.dtype == torch.float32 and raw.flatten().tolist() == [0.0, 255.0, 51.0, 102.0]
    out = to_float(x, mean=[0.5, 0.1], std=torch.tensor([0.5, 0.1]))
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, 1.0, 1.0, 3.0]))
    xf = torch.ones(1, 2, 1, 2)
    to_float(xf, mean=[1.0, 1.0], scale=1.0)
    assert torch.equal(xf, torch.ones(1, 2, 1, 2))  # input untouched


def _distinct_images(n: int = 64, c: int = 2, h: int = 6, w: int = 7) -> torch.Tensor:
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).reshape(n, c, h, w)


def test_augment_identity_without_padding_or_flip():
    x = _distinct_images()
    out = augment_batch(x, torch.Generator().manual_seed(0), padding=0, flip=False)
    assert torch.equal(out, x)


def test_augment_flip_only_mirrors_about_half_of_the_samples():
    x = _distinct_images(n=2000)
    out = augment_batch(x, torch.Generator().manual_seed(1), padding=0, flip=True)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())  # each sample is exactly one of the two
    assert 900 < int(mirrored.sum()) < 1100


def test_augment_crop_is_a_shift_with_zero_fill():
    x, p = _distinct_images(), 2
    out = augment_batch(x, torch.Generator().manual_seed(2), padding=p, flip=False)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    h, w = x.shape[2:]
    offsets = []
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert len(matches) == 1, f"sample {i} is not a shifted crop"
        offsets.append(matches[0])
    assert len(set(offsets)) > 10  # offsets vary per sample (25 possible)


def test_augment_is_deterministic_for_a_seed():
    x = _distinct_images()
    a = augment_batch(x, torch.Generator().manual_seed(3))
    b = augment_batch(x, torch.Generator().manual_seed(3))
    c = augment_batch(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _toy(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return x, torch.arange(n) % 7


def test_train_batches_epochs_are_permutations_and_drop_last():
    x, y = _toy()
    batches = train_batches(x, y, batch_size=20, scale=1.0)
    first_epoch = [next(batches) for _ in range(3)]
    assert all(xb.shape == (20, 1, 2, 2) and xb.dtype == torch.float32 for xb, _ in first_epoch)
    ids = torch.cat([xb[:, 0, 0, 0] for xb, _ in first_epoch]).long()
    assert sorted(ids.tolist()) == list(range(60))  # an epoch visits each index once
    labels = torch.cat([yb for _, yb in first_epoch])
    assert Counter(labels.tolist()) == Counter(y.tolist())
    assert torch.equal(labels, y[ids])  # images and labels stay paired
    second_epoch = torch.cat([next(batches)[0][:, 0, 0, 0] for _ in range(3)]).long()
    assert sorted(second_epoch.tolist()) == list(range(60)) and not torch.equal(second_epoch, ids)

    uneven = train_batches(x, y, batch_size=25, scale=1.0)  # 60 = 2 * 25 + 10 dropped
    seen = [next(uneven)[0][:, 0, 0, 0] for _ in range(4)]
    assert all(len(s) == 25 for s in seen)
    assert len(set(torch.cat(seen[:2]).tolist())) == 50  # no repeats inside an epoch


def test_train_batches_seeded_and_normalized():
    x, y = _toy()

    def first(seed: int, **kwargs) -> torch.Tensor:
        batches = train_batches(x, y, batch_size=10, seed=seed, **kwargs)
        return torch.cat([next(batches)[0] for _ in range(8)])

    assert torch.equal(first(0), first(0))
    assert not torch.equal(first(0), first(1))
    plain = first(0, scale=1.0)
    assert torch.equal(first(0, scale=1.0, mean=[10.0], std=[2.0]), (plain - 10) / 2)
    augmented = first(0, augment=True)
    assert augmented.shape == (80, 1, 2, 2) and torch.equal(augmented, first(0, augment=True))


def test_train_batches_bad_batch_size():
    x, y = _toy()
    for bad in (0, 61):
        with pytest.raises(ValueError, match=r"batch_size.*N=60"):
            train_batches(x, y, batch_size=bad)
    with pytest.raises(ValueError, match="same length"):
        train_batches(x, y[:-1], batch_size=10)


def test_eval_batches_ordered_and_complete():
    x, y = _toy()
    batches = list(eval_batches(x, y, batch_size=25, scale=1.0, mean=[1.0]))
    assert [len(yb) for _, yb in batches] == [25, 25, 10]
    xs = torch.cat([xb for xb, _ in batches])
    assert torch.equal(xs[:, 0, 0, 0], torch.arange(60, dtype=torch.float32) - 1)
    assert torch.equal(torch.cat([yb for _, yb in batches]), y)
    with pytest.raises(ValueError, match="batch_size"):
        eval_batches(x, y, batch_size=0)


def test_augmentation_does_not_change_the_batch_order():
    x, y = _toy()
    plain = train_batches(x, y, batch_size=10, seed=3)
    augmented = train_batches(x, y, batch_size=10, seed=3, augment=True)
    labels_plain = torch.cat([next(plain)[1] for _ in range(20)])  # over three epochs
    labels_aug = torch.cat([next(augmented)[1] for _ in range(20)])
    assert torch.equal(labels_plain, labels_aug)
