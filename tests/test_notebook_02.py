"""Notebook 02 (MNIST reproduction) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`)."""

import json
import shutil
import subprocess
import sys

import pytest

from smoke import smoke_ran


def test_notebook_02_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "02")
    m = json.loads((out / "02_mnist_reproduction" / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 6 and m["info"]["batched"] is True
    assert n["chosen_lr"] in (0.1, 1.0)  # one of the smoke preset's sweep_lrs
    assert len(n["final_acc_bn"]) == len(n["final_acc_plain"]) == 2
    assert all(0.5 < a <= 1 for a in n["final_acc_bn"])  # 200 steps on real MNIST learn something
    moves = n["percentile_moves_per_seed"]  # layer -> measure -> network -> one value per seed
    assert sorted(moves) == ["hidden 1", "hidden 2", "hidden 3"]
    for by_measure in moves.values():
        assert sorted(by_measure) == ["early", "moved", "wandered"]
        assert all(len(per_seed) == 2 for by_network in by_measure.values() for per_seed in by_network.values())
    assert sorted(n["lr_sweep_early_bn_vs_plain"]) == ["0.1", "1"]  # one comparison per swept learning rate
    assert set(n["lr_sweep_early_bn_vs_plain"].values()) <= {"higher", "lower", "no clear difference"}
    table = (out / "02_mnist_reproduction" / "fig1a_table.csv").read_text()
    assert "steps to 95%" in table and "with BN" in table and "nan" not in table


def test_notebook_02_separate_runs_give_the_batched_numbers(smoke_run, tmp_path):
    """batched=False trains the seeds one after another with bnlib.train.fit: the same numbers as the batched smoke run."""
    out, _ = smoke_run
    proc = subprocess.run(
        [sys.executable, "-m", "bnlib.run", "02", "--preset", "smoke", "-p", "batched", "false", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    batched = json.loads((out / "02_mnist_reproduction" / "metrics.json").read_text())
    separate = json.loads((tmp_path / "02_mnist_reproduction" / "metrics.json").read_text())
    assert batched["info"]["batched"] is True and separate["info"]["batched"] is False
    a, b = batched["numbers"], separate["numbers"]
    assert a["chosen_lr"] == b["chosen_lr"]
    for key in ("final_acc_bn", "final_acc_plain"):
        assert a[key] == pytest.approx(b[key], abs=2e-4), key


def test_notebook_02_rerun_loads_the_finished_runs(smoke_run, tmp_path):
    """The trained groups saved under runs/ are loaded, not retrained, when the notebook runs again into the same folder."""
    out, _ = smoke_run
    runs = tmp_path / "02_mnist_reproduction" / "runs"
    shutil.copytree(out / "02_mnist_reproduction" / "runs", runs)
    saved = {p.name: p.stat().st_mtime_ns for p in runs.iterdir()}
    assert len([n for n in saved if n.endswith("_quantiles.csv")]) == 2 and len(saved) == 16  # 7 groups x 2 networks, 2 percentile files
    proc = subprocess.run(
        [sys.executable, "-m", "bnlib.run", "02", "--preset", "smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in runs.iterdir()} == saved  # nothing retrained, nothing added
    first = json.loads((out / "02_mnist_reproduction" / "metrics.json").read_text())["numbers"]
    again = json.loads((tmp_path / "02_mnist_reproduction" / "metrics.json").read_text())["numbers"]
    assert again == first
