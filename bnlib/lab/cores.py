"""Share the CPU cores between the bnlib processes that compute at the same time.

Two notebooks run at once, or a JupyterLab kernel beside ``make test``: each process would use every core, and
PyTorch's threads, spinning while they wait for one another, slow both runs tenfold. So every process belongs
to a *session*: the first process of a process tree that uses bnlib founds one (a file named by its pid in
:func:`folder`), and the processes it starts (``bnlib.run``'s kernels, sweep workers) join it through
``$BNLIB_SESSION``. A session is *active* while one of its processes computes (each touches the file at least
every :data:`ACTIVE_SECONDS`). Every active session gets an equal share of the usable cores, split between the
notebooks that one ``bnlib.run --jobs N`` executes at a time (``$BNLIB_JOBS``): :func:`share`.
:func:`use_share` sets PyTorch's threads to it (:func:`bnlib.lab.notebook.setup` calls it as a notebook starts,
``bnlib.lab.experiment.train_run(threads=None)`` as a run starts; the textbook loop ``bnlib.train.fit`` never
touches threads) and ``bnlib.lab.sweep.run_sweep`` keeps that many single-threaded workers busy.

Example:
    >>> share() >= 1
    True
    >>> with intra_op_threads(1):  # pinned: use_share leaves the count alone inside
    ...     use_share()
    1
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SESSION_ENV = "BNLIB_SESSION"  # pid of the process that founded this process's session
JOBS_ENV = "BNLIB_JOBS"  # notebooks the session's ``bnlib.run`` executes at a time
FOLDER_ENV = "BNLIB_SESSIONS_DIR"  # where session files live (default: a per-user folder in the temporary directory)
ACTIVE_SECONDS = 30.0  # a session whose processes have not computed for this long leaves the cores to the others

_pinned = 0  # depth of intra_op_threads blocks: inside one, use_share does not change the thread count
_torch_default: int | None = None  # torch's own thread count before bnlib changed it (respects OMP_NUM_THREADS)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``).

    Example:
        >>> usable_cores() >= 1
        True
    """
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def folder() -> Path:
    """The folder of session files: ``$BNLIB_SESSIONS_DIR``, else ``<tmp>/bnlib-sessions-<uid>``."""
    path = Path(os.environ.get(FOLDER_ENV) or Path(tempfile.gettempdir(), f"bnlib-sessions-{os.getuid()}"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def session() -> Path:
    """This process's session file: the one named in ``$BNLIB_SESSION`` if that process lives, else a new one
    founded by this process (removed when it exits). Sets ``$BNLIB_SESSION`` so that child processes join it.

    Example:
        >>> session().name == os.environ[SESSION_ENV]
        True
    """
    leader = os.environ.get(SESSION_ENV, "")
    if not (leader.isdigit() and _alive(int(leader))):
        leader = str(os.getpid())
        os.environ[SESSION_ENV] = leader
        path = folder() / leader
        path.touch()
        atexit.register(lambda: path.unlink(missing_ok=True))
    return folder() / leader


def mark_active() -> None:
    """Record that this process's session computes now (it counts in :func:`active_sessions` for
    :data:`ACTIVE_SECONDS`)."""
    session().touch()


def active_sessions() -> int:
    """Sessions that computed in the last :data:`ACTIVE_SECONDS` (at least 1: this one); files of processes that
    died are removed.

    Example:
        >>> mark_active(); active_sessions() >= 1
        True
    """
    now, count = time.time(), 0
    for path in folder().iterdir():
        if not path.name.isdigit():
            continue
        if not _alive(int(path.name)):
            path.unlink(missing_ok=True)
            continue
        with contextlib.suppress(FileNotFoundError):
            count += now - path.stat().st_mtime <= ACTIVE_SECONDS
    return max(1, count)


def jobs() -> int:
    """Notebooks this session's ``bnlib.run`` executes at a time (``$BNLIB_JOBS``, default 1).

    Example:
        >>> jobs() >= 1
        True
    """
    value = os.environ.get(JOBS_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"${JOBS_ENV} must be an integer >= 1, got {value!r}; unset it")
    return int(value)


def share() -> int:
    """Cores this process may keep busy now: the usable cores split between the active sessions, then between the
    notebooks its session runs at a time; at least 1. Marks the session active.

    Example:
        >>> 1 <= share() <= usable_cores()
        True
    """
    mark_active()
    return max(1, usable_cores() // active_sessions() // jobs())


def use_share() -> int:
    """Set PyTorch's intra-op threads to :func:`share` (never above torch's own default, which honours
    ``OMP_NUM_THREADS``), unless inside :func:`intra_op_threads`; returns the thread count in use.

    Example:
        >>> use_share() >= 1
        True
    """
    global _torch_default
    import torch

    if _torch_default is None:
        _torch_default = torch.get_num_threads()
    if _pinned:
        mark_active()
        return torch.get_num_threads()
    threads = min(share(), _torch_default)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op thread count set to ``threads`` inside the block (None: :func:`use_share`'s), kept there
    (``use_share`` leaves it alone) and restored after.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with intra_op_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    global _pinned
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads if threads is not None else use_share())
    _pinned += 1
    try:
        yield
    finally:
        _pinned -= 1
        torch.set_num_threads(before)


# ---------------------------------------------------------------- processes that die with their parent


def die_with_parent(parent: int) -> None:
    """Initializer of a worker process started by process ``parent``: on Linux, the kernel sends this worker SIGTERM
    when its parent dies, even by SIGKILL (``PR_SET_PDEATHSIG``); it exits at once if the parent died while it started.

    ``bnlib.run --jobs N``'s notebook workers use it (a killed runner then leaves no notebook running: a kernel exits
    when its parent does, ipykernel polls for that), and so do the sweep workers of a notebook (a killed kernel leaves
    no run training). Ctrl-C (SIGINT to the whole process group, also sent when Jupyter stops a kernel) is ignored:
    the parent stops its workers itself, and an idle worker would otherwise die with a traceback.

    Example:
        >>> import concurrent.futures as cf, multiprocessing, os
        >>> with cf.ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=die_with_parent,
        ...                             initargs=(os.getpid(),)) as pool:
        ...     pool.submit(os.getppid).result() == os.getpid()
        True
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
