"""Notebook 05 (loss landscape) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`)."""

import json

from smoke import smoke_ran


def test_notebook_05_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "05")
    nb_out = out / "05_loss_landscape"
    m = json.loads((nb_out / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 9 and m["info"]["lrs"] == [0.1, 0.5]
    assert n["probe_overhead"] > 0
    for lr in ("0.1", "0.5"):
        lower, layers = n["ics_layers_bn_lower"][lr]
        assert layers == 9 and 0 <= lower <= 9  # VGG-11 has 8 convolutions and 1 linear layer
    assert sorted(n["plain_over_bn_first_probe"]) == ["beta_smoothness", "grad_change", "loss_range", "top"]
    assert all(v > 0 for v in n["plain_over_bn_first_probe"].values())
    assert len(n["noisy_bn_final_acc"]) == 2
    assert all(v >= 1 for v in n["slice_max_over_center"].values())  # the trained weights lie on the slice (alpha = 0)
    dln = (nb_out / "dln.csv").read_text()
    assert "ics_relative" in dln and "beta_smoothness" in dln
