"""Shared fixtures: the real datasets under $BNLIB_DATA (CI sets it to ../shared/data)."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("BNLIB_DATA")
    if not root or not any(Path(root, "MNIST", "raw").glob("t10k-labels-idx1-ubyte*")):
        pytest.skip("set BNLIB_DATA to a folder holding the real MNIST files (CI uses ../shared/data)")
    return Path(root)


@pytest.fixture(scope="session")
def mnist(data_root):
    from bnlib.data import load_dataset

    return load_dataset("mnist", "train", data_root), load_dataset("mnist", "test", data_root)
