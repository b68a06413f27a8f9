"""The exactness checks (marker ``exact``) once more with other vector kernels, so one kind of CPU also covers the other.

PyTorch picks its vector kernels when it starts, from the CPU (``torch.backends.cpu.get_cpu_capability()``: AVX512 on
an Intel Xeon with AVX-512 and AMX, AVX2 on many AMD EPYC machines), and oneDNN and MKL pick theirs likewise. The
project promises bit-identical numbers for the same computation on the same kind of CPU (kernel, worker process, Dask,
a rerun) and only float32 rounding across kinds (docs/reproducibility.md). The tests that compare code paths bit for
bit must therefore hold with every kind of kernel: here they run in a fresh pytest process with all three libraries
capped one level below this machine's (AVX-512 -> AVX2; AVX2 -> the baseline, SSE4).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# this machine's torch capability -> (the capability the capped process must report, the caps)
LOWER = {
    "AVX512": ("AVX2", {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}),
    "AVX2": ("DEFAULT", {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}),
}


@pytest.mark.slow
def test_the_exactness_checks_hold_with_the_next_lower_instruction_set(data_root):
    here = torch.backends.cpu.get_cpu_capability()
    if here not in LOWER:
        pytest.skip(f"no lower instruction set below {here} to try")
    expected, caps = LOWER[here]
    script = ("import sys, pytest, torch\n"
              "print('capability', torch.backends.cpu.get_cpu_capability(), flush=True)\n"
              "sys.exit(pytest.main(sys.argv[1:]))")
    files = [str(p.relative_to(REPO)) for p in sorted((REPO / "tests").glob("test_*.py")) if "mark.exact" in p.read_text()]
    proc = subprocess.run([sys.executable, "-c", script, *files, "-m", "exact", "-q", "--no-header", "-p", "no:cacheprovider",
                           "-o", "addopts=-ra"], cwd=REPO, env={**os.environ, **caps}, capture_output=True, text=True,
                          timeout=900)
    assert f"capability {expected}\n" in proc.stdout, proc.stdout[-2000:]  # the caps took effect
    assert proc.returncode == 0, f"with {caps}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 6 and "skipped" not in proc.stdout, proc.stdout[-2000:]
