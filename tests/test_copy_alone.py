"""Textbook modules that copy alone (issue 36): each file, copied into an empty folder where `bnlib` cannot be imported,
imports and works with torch, numpy, pandas and scipy only. The others (models, probes, inference with norms; plots with
verdicts; train and batched with the machinery) do not copy alone yet."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BNLIB = Path(__file__).resolve().parents[1] / "bnlib"
BLOCK = "import sys; sys.modules['bnlib'] = None\n"  # any `import bnlib...` raises ImportError, as without the package

USE = {
    "data": "import os, data\n"
            "x, y = data.load_dataset('mnist', 'test', os.environ['BNLIB_DATA']); print('ok', tuple(x.shape), len(y))",
    "distributed": "import distributed, torch\n"
                   "print('ok', issubclass(distributed.CrossProcessBatchNorm, torch.nn.modules.batchnorm._BatchNorm))",
    "norms": "import norms, torch\n"
             "y = norms.BatchNorm(3)(torch.randn(8, 3)); print('ok', tuple(y.shape))",
    "verdicts": "import json, pathlib, tempfile, verdicts as V\n"
                "r = V.Results(tempfile.mkdtemp(), notebook='copy')\n"
                "r.verdict(V.Claim('x is higher', 'test', predicts='higher', min_effect=0.01),\n"
                "          V.paired([0.9, 0.92, 0.91], [0.8, 0.83, 0.81]))\n"
                "m = json.loads(r.save().read_text()); print('ok', m['verdicts'][0]['outcome'], m['machine'])",
}
EXPECTED = {"data": "ok (10000, ", "distributed": "ok True", "norms": "ok (8, 3)", "verdicts": "ok supported {}"}


@pytest.mark.parametrize("module", sorted(USE))
def test_module_copies_alone(module, tmp_path):
    shutil.copy(BNLIB / f"{module}.py", tmp_path / f"{module}.py")
    result = subprocess.run([sys.executable, "-c", BLOCK + USE[module]], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1].startswith(EXPECTED.get(module, "ok")), result.stdout


def test_the_block_makes_bnlib_unimportable(tmp_path):
    """The check can fail: a copied module that imports bnlib is caught."""
    (tmp_path / "leans.py").write_text("from bnlib.files import atomic_write_text\n")
    result = subprocess.run([sys.executable, "-c", BLOCK + "import leans"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=60)
    assert result.returncode != 0 and "No module named 'bnlib.files'" in result.stderr
