"""The machine a result came from: library versions, the CPU and the vector kernels torch dispatches to.

The same computation gives bit-identical numbers on the same kind of CPU; on another kind (other vector kernels:
AVX2, AVX-512, AMX) only the same numbers to float32 rounding. :func:`machine_info` records what a reader needs to
tell a code change from a machine change; ``bnlib.run`` writes it into ``executions.json`` and ``SUMMARY.md``, and
:class:`bnlib.verdicts.Results` into each ``metrics.json``. Standard library only (torch, numpy and pandas are
asked for their versions when installed).

Example:
    >>> info = machine_info()
    >>> sorted(info)
    ['cores', 'cpu', 'cpu_capability', 'numpy', 'pandas', 'platform', 'python', 'torch']
    >>> machine_text(info).startswith(info["cpu"])
    True
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from functools import cache
from pathlib import Path


@cache
def cpu_model() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Processor", "AMD EPYC 7B13"), or the architecture when unknown.

    Example:
        >>> isinstance(cpu_model(), str) and cpu_model() != ""
        True
    """
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=10).stdout.strip() or platform.machine()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return None


def machine_info() -> dict:
    """Python, torch, numpy and pandas versions, the CPU model, its cores and the instruction set torch dispatches to
    (``torch.backends.cpu.get_cpu_capability()``: "AVX512", "AVX2", "DEFAULT"; set by ``ATEN_CPU_CAPABILITY``).

    Example:
        >>> machine_info()["python"] == platform.python_version()
        True
    """
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        capability = None
    return {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "platform": platform.platform(terse=True),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_capability": capability,
    }


def machine_text(info: dict | None) -> str:
    """One line for a reader: CPU, torch's instruction set, cores, versions (and where runs trained, when recorded).

    Example:
        >>> machine_text({"cpu": "AMD EPYC 7B13", "cpu_capability": "AVX2", "cores": 2, "python": "3.11.7",
        ...               "torch": "2.14.1", "numpy": "2.3.1", "pandas": "2.3.0", "executor": "local"})
        'AMD EPYC 7B13 (torch kernels AVX2), 2 cores; Python 3.11.7, torch 2.14.1, numpy 2.3.1, pandas 2.3.0; runs on: local'
        >>> machine_text(None)
        '?'
    """
    if not info:
        return "?"
    text = (f"{info.get('cpu', '?')} (torch kernels {info.get('cpu_capability') or '?'}), {info.get('cores', '?')} cores; "
            f"Python {info.get('python', '?')}, torch {info.get('torch') or '?'}, numpy {info.get('numpy') or '?'}, "
            f"pandas {info.get('pandas') or '?'}")
    return text + (f"; runs on: {info['executor']}" if info.get("executor") else "")
