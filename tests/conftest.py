"""Shared fixtures on the real datasets (``data_root`` and the gate that skips without them: the root conftest.py)."""

import os

import pytest

from bnlib import cores

cores.session()  # the runners, kernels and workers the tests start join this process's session: no rivals for the cores


@pytest.fixture(scope="session")
def mnist(data_root):
    from bnlib.data import load_dataset

    return load_dataset("mnist", "train", data_root), load_dataset("mnist", "test", data_root)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, data_root):
    """The notebooks executed once at the smoke preset into a temporary folder, two at a time (``--jobs 2``, one
    thread each, the longest first): (folder, completed process).

    ``BNLIB_SMOKE_ONLY=03`` (numbers separated by commas) runs only those notebooks, for work on one of them; the
    tests of the others are skipped then.
    """
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("smoke")
    only = [n for n in os.environ.get("BNLIB_SMOKE_ONLY", "").split(",") if n]
    proc = subprocess.run(
        [sys.executable, "-m", "bnlib.run", *only, "--preset", "smoke", "--out", str(out), "--jobs", "2"],
        capture_output=True, text=True, timeout=1800,
    )
    return out, proc
