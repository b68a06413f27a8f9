"""Notebook 01 (internal covariate shift) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`)."""

import json

from smoke import smoke_ran


def test_notebook_01_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "01")
    m = json.loads((out / "01_internal_covariate_shift" / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 8
    assert n["gd_steps_h1"] > n["gd_steps_h2"] > 0
    assert n["manual_backward_max_abs_error_float64"] < 1e-10
    assert n["torch_agreement_max_abs_diff_float32"] < 1e-4
    assert n["bn_bias_grad_max_abs"] < 1e-6 and n["bias_loss_change"] < 1e-4 and n["bias_norm_final"] > 0.1
    assert n["constant_pixels"] == 67 and n["covariance_rank_full_train"] < 784
    assert n["keras099_vs_torch001_max_diff"] < 1e-12
