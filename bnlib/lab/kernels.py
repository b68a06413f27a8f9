"""Kernels and processes: a kernelspec for the running Python, kernels over local sockets, one notebook executed
under papermill with its progress watched, failures described (the cell, or the write that failed), stop signals
turned into :class:`Stopped`, and every process the runner started stopped with it.

Example:
    >>> import errno
    >>> is_write_error(OSError(errno.ENOSPC, "No space left on device")), is_write_error(ValueError("x"))
    (True, False)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from bnlib.lab.records import Execution, expected_seconds, finish, result_files, set_aside_previous

KERNEL_NAME = "bnlib-current-python"
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The runner received a stop signal; the notebooks in progress were stopped and recorded."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ---------------------------------------------------------------- the kernel


@contextlib.contextmanager
def current_python_kernel() -> Iterator[str]:
    """A temporary kernelspec that starts ``sys.executable``, first on ``JUPYTER_PATH``; yields its name."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp, "kernels", KERNEL_NAME)
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec.joinpath("kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "Python 3 (bnlib)", "language": "python"})
        )
        with environ(JUPYTER_PATH=tmp + (os.pathsep + os.environ["JUPYTER_PATH"] if "JUPYTER_PATH" in os.environ else "")):
            yield KERNEL_NAME


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    old = {n: os.environ.get(n) for n in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for n, value in old.items():
            if value is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = value


def ipc_kernel_manager():
    """A kernel manager class whose kernels talk over local sockets (IPC) instead of TCP on POSIX systems: ipykernel
    warns at every start of a TCP kernel without encryption. Its kernels are not sent SIGINT as they are shut down
    (jupyter_client does so before every shutdown request; one that lands while the kernel still handles a message
    prints "KeyboardInterrupt caught in kernel." under the runner's lines); the shutdown request, then SIGTERM and
    SIGKILL still stop a busy kernel. None elsewhere (papermill's default manager)."""
    if os.name != "posix":
        return None
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:  # the sockets' path prefix: one per kernel (the default, "kernel-ipc", is shared)
            return os.path.join(tempfile.gettempdir(), f"bnlib-kernel-{uuid.uuid4().hex}")

        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return IPCKernelManager


# ---------------------------------------------------------------- executing one notebook


def is_write_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error a kernel reported) is a failure to write: full disk, quota, read-only, denied.

    Example:
        >>> is_write_error(OSError(errno.ENOSPC, "No space left on device")), is_write_error(ValueError("x"))
        (True, False)
    """
    if isinstance(exc, OSError):
        return exc.errno in WRITE_ERRNOS
    found = re.search(r"\[Errno (\d+)\]", str(getattr(exc, "evalue", "")))
    return bool(found) and int(found.group(1)) in WRITE_ERRNOS


def describe_failure(exc: BaseException, output: Path) -> str:
    """A one-line description of a failed execution: the cell and the error, or the write that failed."""
    import papermill

    if isinstance(exc, papermill.PapermillExecutionError):
        text = f"cell {exc.cell_index} (execution count {exc.exec_count}): {exc.ename}: {exc.evalue} (see {output})"
        return f"write error in the notebook's {text}; free space or choose another --out" if is_write_error(exc) else text
    if is_write_error(exc):
        return f"write error: {exc.strerror} ({exc.filename or output}); free space or choose another --out"
    return f"{type(exc).__name__}: {exc}"


def execute_notebook(path: Path, out: Path, params: dict, kernel: str, live: bool = False, revision: str = "",
            machine: dict | None = None) -> Execution:
    """Execute one notebook into ``out`` with ``params`` (everything papermill injects, ``preset`` and ``out_dir``
    included), reporting its progress (:class:`bnlib.lab.progress.NotebookWatch`; ``live``: one line rewritten on a
    terminal); never raises for a failing notebook (the result says so)."""
    import papermill

    from bnlib.lab.progress import NotebookWatch

    expected_s, expected_from = expected_seconds(out, path.stem, params["preset"]) or (None, "")
    previous = set_aside_previous(out, path.stem)
    running = result_files(out, path.stem)["running"]
    print(f"[bnlib.run] {path.stem} (preset {params['preset']}) started", flush=True)
    start = time.perf_counter()
    error, write_failed = "", False
    manager = ipc_kernel_manager()
    try:
        with NotebookWatch(running, path.stem, expected_s, live=live, expected_from=expected_from):
            papermill.execute_notebook(
                str(path), str(running), parameters=params, kernel_name=kernel, language="python", cwd=str(path.parent),
                progress_bar=False, **({"kernel_manager_class": manager} if manager else {}),
            )
    except Exception as exc:  # noqa: BLE001 - any failure is reported, the other notebooks still run
        error, write_failed = describe_failure(exc, out / path.name), isinstance(exc, OSError) and is_write_error(exc)
    return finish(path, out, "failed" if error else "ok", error, time.perf_counter() - start, params, previous,
                  write_failed, revision, machine)


# ---------------------------------------------------------------- stopping


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Inside the block, SIGINT, SIGTERM and SIGHUP raise :class:`Stopped` (signals the caller ignores, as under
    ``nohup``, stay ignored); outside the main thread, nothing changes."""
    def handler(signum, frame):
        raise Stopped(signum)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:
                old[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def stop_descendants(since: float, timeout: float = 10.0) -> int:
    """Terminate every process this one started at or after time ``since`` (the runner's kernels, pool workers and
    their sweep workers; not, in a JupyterLab kernel that called the runner, its earlier children), killing those
    still alive after ``timeout`` seconds; returns how many there were (resource trackers aside: they end with their
    owner)."""
    import psutil

    def tracker(p: psutil.Process) -> bool:  # multiprocessing's resource trackers ignore SIGTERM; they end with their owner
        with contextlib.suppress(psutil.Error):
            return "multiprocessing.resource_tracker" in " ".join(p.cmdline())
        return False

    def started_here(p: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error):
            return p.create_time() >= since - 1.0  # create_time has a clock tick's resolution
        return False

    # listed before any dies: an orphan leaves the tree
    procs = [p for p in psutil.Process().children(recursive=True) if started_here(p) and not tracker(p)]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return len(procs)
