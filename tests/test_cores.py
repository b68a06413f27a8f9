"""bnlib.lab.cores: processes computing at once split the cores; idle or dead sessions do not count."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bnlib.lab import cores


@pytest.fixture()
def sessions(tmp_path, monkeypatch):
    """A private sessions folder with this process as the only session; yields a function adding a rival session."""
    monkeypatch.setenv(cores.FOLDER_ENV, str(tmp_path))
    monkeypatch.delenv(cores.SESSION_ENV, raising=False)
    monkeypatch.delenv(cores.JOBS_ENV, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: 8)
    rivals = []

    def add(age_s: float = 0.0, alive: bool = True) -> int:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        rivals.append(proc)
        if not alive:
            proc.kill()
            proc.wait()
        path = tmp_path / str(proc.pid)
        path.touch()
        os.utime(path, (time.time() - age_s, time.time() - age_s))
        return proc.pid

    yield add
    for proc in rivals:
        proc.kill()


def test_active_sessions_split_the_cores(sessions):
    assert cores.share() == 8  # alone
    sessions()
    assert cores.share() == 4  # beside one computing rival
    sessions()
    sessions()
    assert cores.share() == 2


def test_idle_and_dead_sessions_leave_the_cores(sessions, tmp_path):
    sessions(age_s=cores.ACTIVE_SECONDS + 5)  # has not computed for a while
    dead = sessions(alive=False)
    assert cores.share() == 8
    assert not (tmp_path / str(dead)).exists()  # a dead process's file is removed


def test_jobs_split_a_session_share(sessions, monkeypatch):
    sessions()
    monkeypatch.setenv(cores.JOBS_ENV, "2")
    assert cores.share() == 2  # 8 cores, 2 sessions, 2 notebooks at a time in this one
    monkeypatch.setenv(cores.JOBS_ENV, "x")
    with pytest.raises(ValueError, match=r"\$BNLIB_JOBS must be an integer >= 1, got 'x'"):
        cores.share()


@pytest.mark.slow
def test_children_join_the_session_of_the_process_that_started_them(sessions, tmp_path):
    leader = cores.session()
    assert leader.name == str(os.getpid()) and os.environ[cores.SESSION_ENV] == leader.name
    child = subprocess.run([sys.executable, "-c", "from bnlib.lab import cores; print(cores.session().name)"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == leader.name
    assert [p.name for p in tmp_path.iterdir()] == [leader.name]  # the child founded no session of its own


def test_use_share_sets_torch_threads_unless_pinned(sessions, monkeypatch):
    monkeypatch.setattr(cores, "_torch_default", 8)
    before = torch.get_num_threads()
    try:
        sessions()
        sessions()
        sessions()
        assert cores.use_share() == 2 and torch.get_num_threads() == 2
        with cores.intra_op_threads(1):
            assert cores.use_share() == 1 and torch.get_num_threads() == 1  # pinned: a worker keeps its one thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_collecting_the_tests_founds_no_session(tmp_path):
    """`pytest --collect-only` computes nothing, so it must not found a session (other bnlib processes would count it
    as a rival and halve their threads); running a test does."""
    script = ("import os, sys, pytest\n"
              "test = 'tests/test_verdicts.py::test_paired_matches_scipy_ttest_rel'\n"
              "args = [*sys.argv[1:], '-q', '-p', 'no:cacheprovider', test]\n"
              "pytest.main(args)\n"
              "print('SESSION', os.environ.get('BNLIB_SESSION', 'none'), sorted(os.listdir(os.environ['BNLIB_SESSIONS_DIR'])))")
    env = {k: v for k, v in os.environ.items() if k != cores.SESSION_ENV}
    env[cores.FOLDER_ENV] = str(tmp_path)
    repo = Path(__file__).resolve().parents[1]

    def session_after(*args):
        out = subprocess.run([sys.executable, "-c", script, *args], cwd=repo, env=env, capture_output=True, text=True,
                             timeout=300).stdout
        return next(line for line in out.splitlines() if line.startswith("SESSION"))

    assert session_after("--collect-only") == "SESSION none []"
    pid, files = session_after().split(" ", 2)[1:]
    assert pid.isdigit() and files == f"['{pid}']"
