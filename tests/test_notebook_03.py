"""Notebook 03 (CIFAR-10 experiments) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`)."""

import json

from smoke import smoke_ran


def test_notebook_03_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "03")
    nb_out = out / "03_cifar10_experiments"
    m = json.loads((nb_out / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 9 and m["info"]["dataset"] == "cifar10" and m["info"]["test_size"] == 500
    assert n["base_lr"] in (0.02, 0.1)  # one of the smoke preset's lrs, best for the network without BN
    assert 0.1 < n["target_acc"] < 1  # every plain seed's maximum: above chance after 60 steps on real CIFAR-10
    assert len(n["steps_to_target_bn_x1"]) == len(n["steps_to_target_plain_x1"]) == 2
    assert all(s in (20, 40, 60) for s in n["steps_to_target_plain_x1"])  # every plain seed reaches its own target
    assert sorted(n["batch_size_bn_minus_plain"], key=int) == ["2", "16", "64"]
    table = (nb_out / "lr_table.csv").read_text()
    for row in ["without BN, lr ×1", "with BN, lr ×5", "without BN, sigmoid, lr ×1", "with BN, sigmoid, lr ×5"]:
        assert row in table
    gap_diff, gap_half = n["gap_bn_minus_plain"]
    assert -1 <= gap_diff <= 1 and gap_half >= 0
    runs = list((nb_out / "runs").glob("*.csv"))
    # 2 seeds (smoke: seeds = sweep_seeds = 2) x (sweep 2x3 + table 6 + init 2x3 + regularization 8 + batch sizes 2x3)
    assert len(runs) == 2 * (6 + 6 + 6 + 8 + 6)
