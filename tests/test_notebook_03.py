"""Notebook 03 (BN on CIFAR-10) at the smoke preset: its numbers and files (the run is the fixture `smoke_run`)."""

import math

import pandas as pd
from smoke import assert_ends_with_summary, read_metrics, smoke_ran

HIGH_LR = "BN allows much higher learning rates (x5, x30): there it does as well as the plain network at its rate"
REG = "BN regularizes: a better test accuracy, with or without dropout and augmentation"
ADAM = "Switching SGD to Adam raises CIFAR-10 accuracy by about 10 points"
DROPOUT = "BN can replace dropout"
FASTER_STILL = "BN-x5 (the paper's recipe) reaches the plain network's accuracy faster than BN-Baseline"
SCALE = "Scaling every convolution's weights by a = 10, their rate and BN's ε by a², retraces the BN network's run"
CLAIMS = {  # claim: (predicts, min_effect, parts or None)
    "BN trains faster at the same learning rate": ("lower", 0.1, None),
    HIGH_LR: ("higher", 0.0, None),  # one part per multiplier; smoke has only x5, so the record is that part's effect
    FASTER_STILL: ("lower", 0.1, None),
    "BN makes a sigmoid network trainable": ("higher", 0.05, None),
    REG: ("higher", 0.01, ["dropout, augment", "no dropout", "no augment"]),
    DROPOUT: ("higher", 0.01, None),
    ADAM: ("higher", 0.05, ["plain", "BN"]),
    "BN lowers the sensitivity to the initial weight scale": ("lower", 0.02, None),
}


def test_notebook_03_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "03")
    nb_out = out / "03_cifar10_experiments"
    m = read_metrics(nb_out)
    n, info = m["numbers"], m["info"]
    assert info["dataset"] == "cifar10" and info["first_seed"] == 0 and info["epochs"] == 2
    assert (info["train_size"], info["validation_size"], info["test_size"]) == (512, 5000, 500)  # validation: held out
    assert n["base_lr"] in (0.03, 0.1)  # one of the smoke preset's lrs, best on validation for the plain network
    assert n["own_lr"]["plain"] == n["base_lr"] and n["own_lr"]["BN"] in (n["base_lr"], 5 * n["base_lr"])
    assert n["adam_lr"] == {"plain": 0.001, "BN": 0.001}
    assert 0 < n["target_acc"] < 1
    assert all(len(v) == 2 and all(-1 < x < 1 for x in v) for v in n["init_accuracy_lost"].values())
    # scale invariance, BN(aWu; a^2 eps) = BN(Wu; eps): the rescaled run is the same run (float64), and not with eps kept
    gaps = n["rescaled_run_max_loss_difference"]
    assert gaps["eps scaled"] < 1e-9 < gaps["eps kept"]
    assert n["effective_lr_ratio_x5"] > 0

    verdicts = {v["claim"]: v for v in m["verdicts"]}
    assert sorted(verdicts) == sorted([*CLAIMS, SCALE])
    for claim, (predicts, min_effect, parts) in CLAIMS.items():
        v = verdicts[claim]
        assert (v["predicts"], v["min_effect"]) == (predicts, min_effect), claim
        if parts:
            assert [p["part"] for p in v["parts"]] == parts, claim
            assert all(p["test"] == "paired t" and p["n"] == 2 for p in v["parts"]), claim
        else:
            assert v["test"] == "paired t" and v["n"] == 2, claim
    assert "BN ×5 − plain ×1 test accuracy" in verdicts[HIGH_LR]["evidence"]
    assert verdicts[HIGH_LR]["reference"] == -0.01  # non-inferiority: at most 1 point below the plain network
    assert "does dropout help the plain network?" in verdicts[DROPOUT]["evidence"]
    assert "at matched training loss" in verdicts[REG]["evidence"]

    sweep = pd.read_csv(nb_out / "lr_sweep.csv")
    assert sweep["val acc"].between(0, 1).all() and sorted(sweep["lr"]) == [0.03, 0.1] and set(sweep["seed"]) == {0}
    table = pd.read_csv(nb_out / "lr_table.csv", index_col=0)
    assert list(table.index) == ["Plain (Inception)", "BN-Baseline", "Plain ×5", "BN ×5, lr alone", "BN-x5", "Plain sigmoid",
                                 "BN-x5-Sigmoid"]
    assert "±" not in (nb_out / "lr_table.csv").read_text()
    per_seed = pd.read_csv(nb_out / "lr_table_per_seed.csv")
    assert len(per_seed) == 7 * 2 and per_seed["steps to target"].between(1, 16).all()  # 2 epochs of 8 steps
    curves = pd.read_csv(nb_out / "lr_table_curves.csv")
    ends = curves.groupby(["row", "seed"])["step"].max()
    assert len(ends) == 7 * 2 and {0, 8, 16} <= set(curves["step"]) and ends.max() == 16  # evaluated every epoch (8 steps)
    trained = curves.groupby(["row", "seed"])["diverged"].any().eq(False).sum()
    assert curves["val_acc"].notna().sum() == trained  # validated once, at the end of every run that did not diverge
    paper = curves[curves["row"] == "BN-x5"].iloc[0]
    assert (paper["dropout"], paper["weight_decay"], paper["lr"]) == (0.0, 1e-4, 5 * n["base_lr"])  # the paper's changes
    for name in ["lr_sweep", "lr_table_curves", "regularization", "init_sweep", "weight_norms", "scale_invariance"]:
        assert (nb_out / f"{name}.png").stat().st_size > 10_000, name


# claims about final accuracy, which need a plateau; the kinds of precondition each finding must list at least
PLATEAU = {HIGH_LR, "BN makes a sigmoid network trainable", REG, DROPOUT, ADAM}
KINDS = {
    "BN trains faster at the same learning rate": {"in range", "interior optimum"},
    HIGH_LR: {"in range", "interior optimum", "plateau"},
    FASTER_STILL: {"manipulation check", "in range"},
    "BN makes a sigmoid network trainable": {"plateau"},
    REG: {"in range", "plateau", "interior optimum"},
    DROPOUT: {"manipulation check", "plateau", "interior optimum"},
    ADAM: {"interior optimum", "plateau"},
    "BN lowers the sensitivity to the initial weight scale": {"in range", "interior optimum"},
}


def test_notebook_03_preconditions_checks_and_summary(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "03")
    m = read_metrics(out / "03_cifar10_experiments")
    verdicts = {v["claim"]: v for v in m["verdicts"]}
    for claim, kinds in KINDS.items():
        v = verdicts[claim]
        assert v["kind"] == "finding", claim
        pre = v["preconditions"]
        assert pre and kinds <= {p["kind"] for p in pre}, (claim, [p["kind"] for p in pre])
        assert all(isinstance(p["value"], (int, float)) and math.isfinite(p["value"]) and p["requirement"] for p in pre), claim
        assert (v["outcome"] == "untestable here") == (not all(p["passed"] for p in pre)), claim
        assert any(p["kind"] == "plateau" for p in pre) == (claim in PLATEAU), claim
    # the manipulation checks measure what their claims need
    share = next(p for p in verdicts[FASTER_STILL]["preconditions"] if p["kind"] == "manipulation check")
    assert share["value"] == 0.5 and not share["passed"]  # 2 epochs: BN-x5's rate is above BN-Baseline's in the first only
    helps = next(p for p in verdicts[DROPOUT]["preconditions"] if p["kind"] == "manipulation check")
    assert "dropout's gain for the plain network" in helps["name"] and helps["passed"] == (helps["value"] > 0)
    # smoke's Adam grid has one rate: always its edge, so the claim cannot be decided
    adam = [p for p in verdicts[ADAM]["preconditions"] if p["kind"] == "interior optimum" and "Adam" in p["name"]]
    assert len(adam) == 2 and not any(p["passed"] for p in adam) and verdicts[ADAM]["outcome"] == "untestable here"
    gaps = [p for p in verdicts[REG]["preconditions"] if p["kind"] == "in range"]
    assert len(gaps) == 3 and all("generalization gap" in p["name"] and p["requirement"] == "inside (0.01, 1)" for p in gaps)
    assert [p["name"].endswith(s) for p, s in zip(gaps, ["dropout, augment", "no dropout", "no augment"])] == [True] * 3
    # the scale-invariance demonstration is a check, never a finding
    check = verdicts[SCALE]
    assert check["kind"] == "check" and check["outcome"] == "passes" and check["preconditions"] == []
    assert check["test"] == "exact" and check["estimate"] < 1e-9
    # the notebook ends with the summary generated from metrics.json, and states no other outcome anywhere
    assert_ends_with_summary(out / "03_cifar10_experiments.ipynb", m["verdicts"])
