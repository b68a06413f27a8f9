"""Root pytest configuration: the doctests of bnlib.data and bnlib.experiment need the real datasets."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


def _have_data() -> bool:
    root = Path(os.environ.get("BNLIB_DATA") or REPO / "data")
    raw = root / "MNIST" / "raw"
    return any(raw.glob("t10k-labels-idx1-ubyte*"))


def pytest_collection_modifyitems(config, items):
    if _have_data():
        return
    skip = pytest.mark.skip(reason="needs the real MNIST files: set BNLIB_DATA (CI uses ../shared/data)")
    for item in items:
        if isinstance(item, pytest.DoctestItem) and item.name.startswith(("bnlib.data", "bnlib.experiment")):
            item.add_marker(skip)
