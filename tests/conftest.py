"""Shared fixtures on the real datasets (``data_root`` and the gate that skips without them: the root conftest.py)."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bnlib.lab import cores


def pytest_configure(config):
    """The runners, kernels and workers the tests start join this process's session (:mod:`bnlib.lab.cores`): no rivals
    for the cores. Only collecting (``--collect-only``) computes nothing, so it founds no session that would halve
    other bnlib processes' threads."""
    if not config.option.collectonly:
        cores.session()


@pytest.fixture(scope="session")
def mnist(data_root):
    from bnlib.data import load_dataset

    return load_dataset("mnist", "train", data_root), load_dataset("mnist", "test", data_root)


def _smoke_command(out: Path) -> list[str]:
    only = [n for n in os.environ.get("BNLIB_SMOKE_ONLY", "").split(",") if n]
    return [sys.executable, "-m", "bnlib.run", *only, "--preset", "smoke", "--out", str(out), "--jobs", "2"]


_SMOKE: dict = {}  # the smoke run in the background: its folder, process and log files


def _start_smoke() -> None:
    """Start the smoke run as a session of its own (:mod:`bnlib.lab.cores`): while it computes, it and the rest of the
    suite each get half the cores (one thread per notebook there, one thread here), instead of spinning threads that
    outnumber the cores."""
    import torch

    out = Path(tempfile.mkdtemp(prefix="bnlib-smoke-"))
    logs = {name: (out / f"runner.{name}").open("w") for name in ("stdout", "stderr")}
    env = {k: v for k, v in os.environ.items() if k != cores.SESSION_ENV}
    _SMOKE.update(out=out, logs=logs, proc=subprocess.Popen(_smoke_command(out), **logs, text=True, env=env))
    torch.set_num_threads(max(1, cores.usable_cores() // 2))


def _uses_smoke(item) -> bool:
    return "smoke_run" in getattr(item, "fixturenames", ()) and item.get_closest_marker("skip") is None


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what will not run
def pytest_collection_modifyitems(config, items):
    """The tests of the smoke notebooks go last, so that the rest of the suite runs beside the smoke run."""
    items.sort(key=_uses_smoke)  # stable: each group keeps its order


def pytest_collection_finish(session):
    """Start the smoke run as soon as the tests are known, if one of them reads it: the notebooks execute in the
    background (two at a time) while the other tests run, and the first smoke test waits for them."""
    if not session.config.option.collectonly and any(_uses_smoke(item) for item in session.items):
        _start_smoke()


def pytest_sessionfinish(session):
    """Stop a smoke run still going; delete its folder, or keep it for a look when a test failed."""
    proc = _SMOKE.get("proc")
    if proc is not None and proc.poll() is None:  # the suite stopped early: the runner stops its kernels on SIGTERM
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
    if "out" not in _SMOKE:
        return
    if session.testsfailed:
        print(f"\nthe smoke notebooks, executed, are kept in {_SMOKE['out']}", file=sys.stderr)
    else:
        shutil.rmtree(_SMOKE["out"], ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_run(data_root):
    """The notebooks executed once at the smoke preset into a temporary folder, two at a time (``--jobs 2``, one
    thread each, the longest first), started in the background when collection ends: (folder, completed process).

    ``BNLIB_SMOKE_ONLY=03`` (numbers separated by commas) runs only those notebooks, for work on one of them; the
    tests of the others are skipped then.
    """
    if "proc" not in _SMOKE:
        _start_smoke()
    proc, out = _SMOKE["proc"], _SMOKE["out"]
    returncode = proc.wait(timeout=1800)
    for log in _SMOKE["logs"].values():
        log.close()
    stdout, stderr = ((out / f"runner.{name}").read_text() for name in ("stdout", "stderr"))
    return out, subprocess.CompletedProcess(proc.args, returncode, stdout, stderr)
