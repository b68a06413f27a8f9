"""bnlib.lab.kernels: kernels over local sockets, interrupted only when not shutting down."""

import sys

import pytest

from bnlib.lab.kernels import ipc_kernel_manager


@pytest.mark.skipif(sys.platform == "win32", reason="IPC kernels are POSIX only")
def test_ipc_kernel_manager_interrupts_a_kernel_unless_it_is_shutting_down():
    import asyncio

    manager = ipc_kernel_manager()(kernel_name="python3")
    with pytest.raises(RuntimeError, match="No kernel is running"):  # reaches jupyter_client's interrupt
        asyncio.run(manager._async_interrupt_kernel())
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())  # skipped: no SIGINT before the shutdown request
    assert manager.transport == "ipc" and "bnlib-kernel-" in manager.ip
