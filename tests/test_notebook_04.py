"""Notebook 04 (failed variants) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`)."""

import json

from smoke import smoke_ran


def test_notebook_04_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "04")
    nb_out = out / "04_failed_variants"
    m = json.loads((nb_out / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 11 and m["info"]["datasets"] == ["mnist", "cifar10"]
    assert m["info"]["bounds"] == {"mnist": 5.0, "cifar10": 3.0} and m["info"]["reg_cfs"] == {"mnist": 1.0, "cifar10": 0.001}
    assert n["demo_inlier_mean_error"] < 1e-12  # rigid BN's inlier mean ignores the planted outlier exactly
    for d in ("mnist", "cifar10"):
        assert 0 <= n["outlier_fraction_max"][d] <= 1 / 3**2  # never above Chebyshev's bound for bound >= 3
        assert len(n["rigid_reg_early_penalty_over_ce"][d]) == 2  # one ratio per seed
        assert n["ks_after_relu"][d] > n["ks_pre_activation"][d] > 0  # rectified values are further from a normal
    assert set(n["largest_usable_lr"]) == {"none", "bn", "rigid", "rigid_clip", "rigid_reg", "kl_bn", "kl_only"}
    assert set(n["largest_usable_lr"].values()) <= {0.1, 3.0}  # the smoke preset's sweep_lrs
    table = (nb_out / "comparison_table.csv").read_text()
    assert all(v in table for v in ["rigid_clip", "kl_only_original"]) and "nan" not in table
    layer_stats = (nb_out / "layer_stats.csv").read_text()
    assert "conv1.norm" in layer_stats and "stem.norm" in layer_stats and "grad" in layer_stats
