"""Root pytest configuration: the one gate of the tests (and doctests) that need the real datasets."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


def data_folder() -> Path:
    """Where the real datasets are: ``$BNLIB_DATA``, else ``<repo>/data``."""
    return Path(os.environ.get("BNLIB_DATA") or REPO / "data")


def have_data() -> bool:
    """The one gate of every test that needs the real datasets: MNIST's files are in :func:`data_folder`."""
    return any((data_folder() / "MNIST" / "raw").glob("t10k-labels-idx1-ubyte*"))


def pytest_configure(config):
    config.addinivalue_line("markers", "data: needs the real datasets (skipped without them, like every test using data_root)")
    config.addinivalue_line("markers", "slow: starts kernels, worker pools, Dask or runner processes (not in make test-fast)")
    config.addinivalue_line("markers", "notebook: reads the smoke notebooks (the smoke_run fixture; marked automatically)")
    config.addinivalue_line("markers", "exact: asserts bit-identical numbers across code paths on one CPU; "
                                       "tests/test_instruction_sets.py runs these again with other vector kernels")


DATA_DOCTESTS = ("bnlib.data", "bnlib.lab.experiment", "bnlib.lab.sweep")  # doctests that read the real datasets


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.notebook)
    if have_data():
        return
    skip = pytest.mark.skip(reason="needs the real datasets: set BNLIB_DATA (CI uses ../shared/data)")
    for item in items:
        doctest = isinstance(item, pytest.DoctestItem) and item.name.startswith(DATA_DOCTESTS)
        if doctest or item.get_closest_marker("data") or "data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The datasets' folder (tests that use it are skipped without the data)."""
    return data_folder()
