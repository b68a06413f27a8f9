"""Textbook modules that copy alone (issue 36): each file, copied into an empty folder where `bnlib` cannot be imported,
imports and works with torch, numpy, pandas and scipy only. Models, probes and inference travel with norms.py, plots with
verdicts.py, train with data.py and norms.py: copied into an empty `bnlib/` folder of another project, they work without
the rest of the package. Every textbook module is listed (the machinery lives in bnlib/lab and is not meant to copy)."""
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
    (tmp_path / "leans.py").write_text("from bnlib.lab.files import atomic_write_text\n")
    result = subprocess.run([sys.executable, "-c", BLOCK + "import leans"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=60)
    assert result.returncode != 0 and "No module named 'bnlib" in result.stderr


PAIRS = {
    "train": (("data", "norms"), "import torch, bnlib.train as t\n"
                                 "net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))\n"
                                 "x, y = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8), torch.randint(0, 3, (40,))\n"
                                 "df = t.fit(net, (x, y), (x, y), steps=4, batch_size=10, lr=0.1, eval_every=2, device='cpu')\n"
                                 "print('ok', df['step'].tolist())"),
    "models": ("norms", "import torch, bnlib.models as m\n"
                        "net = m.build_model('small_cnn', in_channels=1, image_size=28, norm='bn')\n"
                        "print('ok', tuple(net(torch.randn(2, 1, 28, 28)).shape))"),
    "probes": ("norms", "import torch, bnlib.probes as p, bnlib.norms as n\n"
                        "net = torch.nn.Sequential(torch.nn.Linear(4, 3), n.BatchNorm(3))\n"
                        "out = p.layer_outputs(net, {'bn': net[1]}, torch.randn(8, 4))\n"
                        "print('ok', tuple(out['bn'].shape))"),
    "inference": ("norms", "import torch, bnlib.inference as i\n"
                           "net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).eval()\n"
                           "x = torch.randn(2, 1, 5, 5)\n"
                           "print('ok', torch.allclose(i.fold_batch_norm(net)(x), net(x), atol=1e-5))"),
    "plots": ("verdicts", "import matplotlib; matplotlib.use('Agg')\n"
                          "import pandas as pd, bnlib.plots as p\n"
                          "df = pd.DataFrame({'step': [0, 0, 1, 1], 'test_acc': [0.5, 0.6, 0.7, 0.8], 'seed': [0, 1, 0, 1]})\n"
                          "ax = p.seed_band(df, 'step', 'test_acc'); print('ok', ax.get_ylabel())"),
}
PAIR_EXPECTED = {"train": "ok [0, 2, 4]", "models": "ok (2, 10)",
                 "probes": "ok (1, 8, 3)", "inference": "ok True", "plots": "ok test_acc"}


@pytest.mark.parametrize("module", sorted(PAIRS))
def test_module_copies_with_its_companion(module, tmp_path):
    companions, use = PAIRS[module]
    package = tmp_path / "bnlib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in (module, *([companions] if isinstance(companions, str) else companions)):
        shutil.copy(BNLIB / f"{name}.py", package / f"{name}.py")
    check = f"import bnlib; assert bnlib.__file__.startswith({str(tmp_path)!r}), bnlib.__file__\n"
    result = subprocess.run([sys.executable, "-c", check + use], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1].startswith(PAIR_EXPECTED[module]), result.stdout


def test_every_textbook_module_is_checked():
    from test_imports import TEXTBOOK

    assert set(USE) | set(PAIRS) == set(TEXTBOOK)
