"""Notebook 06 (BN in practice) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`)."""

import csv
import math

import pytest
from smoke import assert_ends_with_summary, find_verdict, flat, read_metrics, rerun_changed, smoke_ran

# deterministic checks (float32 round-off against a tolerance): their outcome does not depend on the training runs
EXACT_CLAIMS = [
    "Keras's momentum 0.99 is PyTorch's momentum 0.01",
    "LayerNorm, InstanceNorm and GroupNorm give an image the same output whatever its batch",
    "BN across processes with synchronized statistics equals BN on the full batch",
    "BN computed per process differs from BN on the full batch",
    "At inference BN folds into the convolution before it: the folded network gives the same outputs",
    "InstanceNorm is invariant to a per-image, per-channel contrast and brightness change (x → ax + b)",
]
# demonstrations by construction and a single timing: checks too, whose outcome at the smoke preset may go either way
DEMONSTRATIONS = [
    "Evaluating in train mode gives batch-dependent, worse predictions than eval mode",
    "A checkpoint of the trainable parameters alone loses BN's running statistics",
    "Porting Keras's momentum 0.99 literally into PyTorch breaks the running statistics",
    "A folded network runs inference faster than one with BN layers",
]
SMALL_BATCH_CLAIMS = [
    "BN loses its advantage over no normalization when the batch shrinks",
    "At the smallest batch, a batch-independent norm (LayerNorm, GroupNorm) beats BN",
    "Batch renormalization beats BN at the smallest batch",
    "BN's accuracy falls as its groups shrink inside a fixed SGD batch (ghost BN)",
]


def test_notebook_06_verdicts_preconditions_checks_and_summary(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "06")
    m = read_metrics(out / "06_batchnorm_in_practice")
    verdicts, n = m["verdicts"], m["numbers"]
    kinds = {v["claim"]: v["kind"] for v in verdicts}
    assert all(kinds[c] == "check" for c in EXACT_CLAIMS + DEMONSTRATIONS), kinds
    assert sum(k == "check" for k in kinds.values()) == len(EXACT_CLAIMS + DEMONSTRATIONS)
    # every finding lists measured preconditions; untestable here exactly when one failed
    for v in verdicts:
        if v["kind"] == "check":
            assert v["outcome"] in ("passes", "fails") and not v["preconditions"], v["claim"]
            continue
        assert v["preconditions"], f"{v['claim']!r} lists no precondition"
        for p in v["preconditions"]:
            assert isinstance(p["value"], (int, float)) and math.isfinite(p["value"]), (v["claim"], p)
        assert (v["outcome"] == "untestable here") == any(not p["passed"] for p in v["preconditions"]), v["claim"]
    # small batches: every verdict states the three preconditions over the cells it compares, each measured
    for claim in SMALL_BATCH_CLAIMS:
        v = find_verdict(verdicts, claim)
        kinds_ = [p["kind"] for p in v["preconditions"]]
        assert kinds_[:3] == ["interior optimum", "plateau", "in range"], (claim, kinds_)
        edge, flat_ = v["preconditions"][0], v["preconditions"][1]
        assert edge["passed"] == (edge["value"] == 0) and flat_["passed"] == (flat_["value"] <= 0.005), v
    # the smoke grids start at [1, 4]: a cell at an edge gets one more factor past it (x4 or /4), once (small_batch_widen 1)
    grids, chosen = n["small_batch_rate_grids"], n["small_batch_chosen_factor"]
    assert len(grids) == 6 * 2 + 2 and set(grids) == set(chosen)  # 6 kinds x 2 batch sizes, ghost BN with 2 group sizes
    for cell, grid in grids.items():
        assert grid == sorted(grid) and {1.0, 4.0} <= set(grid) <= {0.25, 1.0, 4.0, 16.0} and len(grid) in (2, 3), (cell, grid)
        assert chosen[cell] in grid
    at_edge = sum(chosen[c] in (g[0], g[-1]) for c, g in grids.items())
    assert n["small_batch_cells_at_edge"] == {"at an edge": at_edge, "cells": len(grids)}
    assert all(0 <= v <= 1 for v in n["small_batch_plateau_change"].values())
    # GroupNorm as Wu & He define it: 4 channels per group in every layer at the smoke width (x1/16)
    per_group = n["groupnorm_channels_per_group"]
    assert per_group == [4] * 8
    gn_shift = find_verdict(verdicts, "A batch-independent norm (GroupNorm) loses less accuracy")
    gn_check = [p for p in gn_shift["preconditions"] if p["name"].startswith("share of GroupNorm layers")]
    assert len(gn_check) == 1 and gn_check[0]["passed"] and gn_check[0]["value"] == 1.0
    gn_rate = [p for p in gn_shift["preconditions"] if p["kind"] == "interior optimum"]
    assert len(gn_rate) == 1 and n["groupnorm_validated_lr_factor"] in (1.0, 2.0)
    assert not gn_rate[0]["passed"] and gn_shift["outcome"] == "untestable here"  # a grid of 2 factors has no interior
    # CS231n's small weights: He x0.01 meets the precondition of the initial-loss claim (He alone, the contrast, would not)
    init = find_verdict(verdicts, "A freshly initialized network starts at the loss")
    assert init["preconditions"][0]["passed"] and init["outcome"] != "untestable here"
    he_sd = max(max(v) for v in n["initial_classifier_weight_sd"].values())
    assert init["preconditions"][0]["value"] == pytest.approx(0.01 * he_sd) and he_sd > 0.01
    # fine-tuning: adapted-then-frozen − updating, shifted and clean; fine-tuning must act beyond the statistics
    frozen = find_verdict(verdicts, "Fine-tuning on a small set with small batches")
    assert [p["kind"] for p in frozen["preconditions"]] == ["manipulation check", "in range"]
    assert sorted(p["part"] for p in frozen["parts"]) == ["clean", "shifted"]
    # random vs grid: does CV order the chosen settings as the final test does; continuous draws try as many rates as trials
    search = find_verdict(verdicts, "Random search beats grid search")
    assert [p["kind"] for p in search["preconditions"]] == ["manipulation check"] * 2
    assert all("order alike" in p["name"] for p in search["preconditions"])
    assert n["search_distinct_rates_per_random_search"] == 4  # 4 trials per search, no lattice to cap them
    assert set(n["search_cv_test_pair_agreement"]) == {"with BN", "without BN"}
    # the executed notebook ends with the summary generated from metrics.json, and no text names another outcome
    assert_ends_with_summary(out / "06_batchnorm_in_practice.ipynb", verdicts)


def test_notebook_06_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "06")
    nb_out = out / "06_batchnorm_in_practice"
    m = read_metrics(nb_out)
    n, info = m["numbers"], m["info"]
    assert len(m["verdicts"]) == 25 and len({v["claim"] for v in m["verdicts"]}) == 25
    assert info["test_size"] == 200 and info["seeds"] == 2 and info["first_seed"] == 0
    assert info["train_size"] == 45_000 and info["validation_size"] == 5_000  # the last 5,000 training images are held out
    outcomes = {v["claim"]: v["outcome"] for v in m["verdicts"]}
    assert all(outcomes[c] == "passes" for c in EXACT_CLAIMS), {c: outcomes.get(c) for c in EXACT_CLAIMS}
    exact = [v for v in m["verdicts"] if v["claim"] in EXACT_CLAIMS]
    assert all(p["test"] == "exact" for v in exact for p in v.get("parts", [v]))
    # 2 gloo processes on CPU: synchronized statistics equal single-process BN on the full batch; per-process BN does not
    synced, local = n["distributed_synced_max_abs_diff"], n["distributed_local_max_abs_diff"]
    assert set(synced) == {"output", "input gradient", "γ gradient", "β gradient", "batch mean", "batch variance", "running mean",
                           "running variance"}
    assert max(synced.values()) < 1e-5
    assert min(v for k, v in local.items() if k != "β gradient") > 1e-3
    assert n["state_dict_acc"] == n["trained_acc"] and len(n["trained_acc"]) == 2  # the state_dict round trip is exact
    assert n["keras_099_vs_torch_001_max_abs_diff"] < 1e-6
    assert max(n["fold_max_abs_logit_diff"]) < 1e-4 and n["fold_speedup_median"]["0.125"] > 0
    independent = n["batch_of_1_vs_64_max_abs_diff"]
    assert independent["gn"] < 1e-5 < 1e-2 < independent["torch_bn"]
    assert max(n["batch_of_1_vs_64_relative_diff"][k] for k in ("ln", "in", "gn")) < 1e-4
    assert sorted(n["train_minus_eval_mode_acc"], key=int) == ["1", "2", "64"]  # batch size 1 runs: VGG's last BN sees 2x2 maps
    assert all(2.0 < v < 10 for losses in n["initial_loss"].values() for v in losses)
    # good learning rates are read per seed on the validation split, from the smoke preset's sweep_lrs
    good = n["good_lrs"]
    assert sorted(good) == ["with BN", "without BN"] and all(sorted(by_seed) == ["0", "1"] for by_seed in good.values())
    assert all(set(rates) <= {0.001, 1.0} and rates for by_seed in good.values() for rates in by_seed.values())
    with open(nb_out / "lr_curves.csv") as f:
        header = next(csv.reader(f))
    assert "val_acc" in header and "test_acc" not in header  # the sweep that chooses rates never sees the test set
    with open(nb_out / "search_trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 2 * (4 + 2 * 4)  # 2 networks x (a 2x2 grid + 2 random searches of as many trials)
    assert sum(r["in grid"] == "True" for r in trials) == 2 * 4
    random_lrs = [float(r["lr"]) for r in trials if r["in grid"] == "False"]
    assert len(set(random_lrs)) == 8 and all(0.001 <= a <= 0.3 for a in random_lrs)  # continuous draws inside the range
    with open(nb_out / "search_draws.csv") as f:
        draws = list(csv.DictReader(f))
    assert len(draws) == 2 * 3 and sorted({r["search"] for r in draws}) == ["grid", "random 1", "random 2"]
    # eps: the networks as trained barely notice a port to 1e-3; with every conv weight before BN x0.01 (variances x1e-4) they do
    eps_changed = {a: sum(v) / len(v) for a, v in n["eps_port_predictions_changed"].items()}
    assert sorted(eps_changed) == ["0.01", "0.1", "1"] and eps_changed["0.01"] > eps_changed["1"] + 0.05, eps_changed
    eps_verdict = next(v for v in m["verdicts"] if v["claim"].startswith("A mismatch of eps"))
    assert len(eps_verdict["parts"]) == 4 and eps_verdict["parts"][-1]["part"].startswith("trained with weight decay 0.0005")
    assert len(n["eps_weight_decay_smallest_running_variance"]) == 2
    # the variance convention: the smallest m of a batch statistic is VGG-11's last 2x2 feature map times the batch size
    with open(nb_out / "variance_convention.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({int(r["batch size"]) for r in rows}) == [2, 8, 64] and len(rows) == 2 * 3
    assert all(int(r["smallest m"]) == 4 * int(r["batch size"]) for r in rows)
    assert set(n["convention_predictions_changed"]) == {"2", "8", "64"}
    # PreciseBN two ways agree; removing the moving average's start brings it much closer to a recompute early in training
    assert n["recompute_vs_update_bn_max_abs_diff"] < 1e-4
    with open(nb_out / "lag_runs.csv") as f:
        lag = [r for r in csv.DictReader(f) if float(r["bn_momentum"]) == 0.01 and int(r["step"]) > 0]
    first = min(int(r["step"]) for r in lag)
    for r in (r for r in lag if int(r["step"]) == first):
        assert float(r["mean_error_debiased"]) < 0.5 * float(r["mean_error_running"]), r
    # small batches: every (kind, batch) and ghost BN group size, the same epochs, at its rate chosen on validation
    with open(nb_out / "small_batches.csv") as f:
        small = list(csv.DictReader(f))
    cells = {(r["norm"], int(r["batch"]), int(r["group"])) for r in small}
    assert len(cells) == 6 * 2 + 2 and len(small) == 2 * len(cells)
    assert {(k, g) for k, b, g in cells if k == "ghost_bn"} == {("ghost_bn", 2), ("ghost_bn", 16)}
    assert all(int(r["steps"]) == 2 * (64 // int(r["batch"])) for r in small)  # 2 epochs of 64 images at every batch size
    assert all(abs(float(r["lr"]) - 0.05 * int(r["batch"]) / 64 * float(r["factor"])) < 1e-12 for r in small)
    lag_aug = [r for r in lag if r["test_acc_recomputed_augmented"]]
    assert lag_aug and all(0 <= float(r["test_acc_recomputed_augmented"]) <= 1 for r in lag_aug)
    # shifted inputs: 3 shifts per network; a frozen BN's running statistics do not move while fine-tuning, an updating one's do
    with open(nb_out / "distribution_shift.csv") as f:
        assert sorted(r["shift"] for r in csv.DictReader(f)) == ["brightness"] * 2 + ["contrast"] * 2 + ["noise"] * 2
    drift = n["fine_tune_drift"]
    for domain in ("shifted", "clean"):
        assert drift[f"frozen, {domain}"] == drift[f"adapted, then frozen, {domain}"] == [0.0, 0.0], drift
        assert min(drift[f"updating, {domain}"]) > 1e-4, drift
    assert len(n["fine_tune_acc"]) == 6
    for name in ["train_vs_eval_mode.csv", "checkpoints.csv", "lag_runs.csv", "momentum_ports.csv", "eps_port.csv",
                 "small_batches.csv", "distributed_bn.csv", "fold_timing.csv", "initial_loss.csv", "lr_curves.csv",
                 "search_results.csv", "lr_validation.png", "eps_port_weight_decay.csv", "fine_tuning.csv"]:
        assert (nb_out / name).stat().st_size > 0, name


@pytest.mark.slow
def test_a_changed_base_lr_in_a_used_folder_gives_the_fine_tuning_of_a_fresh_folder(smoke_run, tmp_path):
    """Fine-tuning loads the base networks (a Run read as a notebook global): with another lr they retrain, and the
    fine-tuning cache must follow (issue 37: it once reported the fine-tuning of the lr 0.05 networks, exit 0)."""
    out, _ = smoke_run
    smoke_ran(out, "06")
    used, fresh = rerun_changed(out, "06_batchnorm_in_practice", tmp_path, "lr", "0.1")
    for name in ("base_test_acc", "fine_tune_acc", "fine_tune_drift"):
        assert flat(used[name]) == pytest.approx(flat(fresh[name]), rel=1e-6), name
    default = read_metrics(out / "06_batchnorm_in_practice")["numbers"]
    assert flat(used["fine_tune_acc"]) != pytest.approx(flat(default["fine_tune_acc"]))  # the lr made a difference
