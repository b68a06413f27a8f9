"""Notebook 03 (BN on CIFAR-10) at the smoke preset: its numbers and files (the run is the fixture `smoke_run`)."""

import json
import math

import pandas as pd
from smoke import assert_ends_with_summary, read_metrics, smoke_ran

FASTER = "BN trains faster at the same learning rate"
HIGH_LR = "BN allows much higher learning rates: the largest rate at which it trains is at least 5 times the plain network's"
EFFECTIVE = "With BN a higher learning rate raises the effective rate lr/‖W‖² less than the nominal one"
FINAL = "BN reaches a higher final accuracy, each network with its own validated recipe"
FASTER_STILL = "BN-x5 (the paper's recipe) reaches the plain network's accuracy faster than BN-Baseline"
SIGMOID = "BN makes a sigmoid network trainable"
REG = "BN regularizes: where networks memorize their training images, BN's test accuracy is higher"
DROPOUT = "BN can replace dropout"
ADAM = "Switching SGD to Adam raises CIFAR-10 accuracy by about 10 points"
INIT = "BN lowers the sensitivity to the initial weight scale (early training)"
SCALE = "Scaling every convolution's weights by a = 10, their rate and BN's ε by a², retraces the BN network's run"
CLAIMS = {  # claim: (predicts, min_effect, parts or None, test)
    FASTER: ("lower", 0.1, None, "paired t"),
    HIGH_LR: ("higher", math.log2(5), ["without warm-up", "with warm-up", "BN: conv weights only"], "paired t"),
    EFFECTIVE: ("lower", 0.1, None, "one-sample t"),
    FINAL: ("higher", 0.01, None, "paired t"),
    FASTER_STILL: ("lower", 0.1, None, "paired t"),
    SIGMOID: ("higher", 0.05, None, "paired t"),
    REG: ("higher", 0.01, None, "paired t"),
    DROPOUT: ("higher", 0.01, None, "paired t"),
    ADAM: ("higher", 0.05, ["plain", "BN"], "paired t"),
    INIT: ("lower", 0.02, None, "paired t"),
}
SERIES = ["plain", "plain, warm-up", "BN", "BN, warm-up", "BN, conv weights only"]
NAME = "03_cifar10_experiments"


def test_notebook_03_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "03")
    nb_out = out / NAME
    m = read_metrics(nb_out)
    n, info = m["numbers"], m["info"]
    assert info["dataset"] == "cifar10" and info["first_seed"] == 0 and info["epochs"] == 2 and info["grid_seeds"] == 1
    assert info["final_epochs"] == 4
    assert (info["train_size"], info["validation_size"], info["test_size"]) == (512, 5000, 500)  # validation: held out
    # the plain network's recipe: rate, schedule and dropout, each chosen on validation
    assert n["base_lr"] in (0.03, 0.1) and n["recipe"]["lr"] == n["base_lr"]
    assert n["recipe"]["schedule"] in ("exponential", "cosine") and n["recipe"]["dropout"] in (0.0, 0.4)
    assert set(n["lr_sweep_val_acc"]) == {"exponential", "cosine"} and set(n["dropout_val_acc"]) == {"0", "0.4"}
    best = max(((s, float(lr)) for s, accs in n["lr_sweep_val_acc"].items() for lr in accs),
               key=lambda k: n["lr_sweep_val_acc"][k[0]][f"{k[1]:g}"])
    assert best == (n["recipe"]["schedule"], n["base_lr"])
    assert n["dropout_val_acc"][f"{n['recipe']['dropout']:g}"] == max(n["dropout_val_acc"].values())
    # BN's own rate: one of its grid rows, at x1 or x5
    assert n["own_lr"]["plain"] == n["base_lr"] and n["own_lr"]["BN"] in (n["base_lr"], 5 * n["base_lr"])
    assert n["bn_own_recipe"] in ("BN ×1", "BN ×5", "BN ×5, warm-up")
    assert set(n["largest_trainable_multiplier"]) == set(SERIES)
    assert all(len(v) == 1 and v[0] in (1.0, 5.0) for v in n["largest_trainable_multiplier"].values())
    assert all(o in ("adam", "adamw") and c["lr"] == 0.001 for c in n["adam_choice"].values() for o in [c["optimizer"]])
    assert 0 < n["target_acc"] < 1 and n["sigmoid_lr"] == 0.3
    assert all(len(v) == 2 and all(-1 < x < 1 for x in v) for v in n["init_accuracy_lost"].values())
    own = n["final_test_acc_own_recipe"]  # per network and length (L/2, L, final_epochs): the seeds' accuracies
    assert set(own) == {"plain", "BN"} and all(set(v) == {"1", "2", "4"} and all(len(x) == 2 for x in v.values())
                                               for v in own.values())
    diff = n["bn_minus_plain_by_length"]
    assert all(abs(diff[k] - (sum(own["BN"][k]) - sum(own["plain"][k])) / 2) < 1e-9 for k in diff)
    assert all(0 <= v <= 1 for v in n["memorization_train_acc"].values()) and len(n["memorization_train_acc"]) == 5
    # scale invariance, BN(aWu; a^2 eps) = BN(Wu; eps): the rescaled run is the same run (float64), and not with eps kept
    gaps = n["rescaled_run_max_loss_difference"]
    assert gaps["eps scaled"] < 1e-9 < gaps["eps kept"]

    verdicts = {v["claim"]: v for v in m["verdicts"]}
    assert sorted(verdicts) == sorted([*CLAIMS, SCALE])
    for claim, (predicts, min_effect, parts, test) in CLAIMS.items():
        v = verdicts[claim]
        assert (v["predicts"], v["min_effect"]) == (predicts, min_effect), claim
        if parts:
            assert [p["part"] for p in v["parts"]] == parts, claim
            assert all(p["test"] == test for p in v["parts"]), claim
        else:
            assert v["test"] == test, claim
    assert verdicts[EFFECTIVE]["reference"] == 1.0  # the exponent is measured from "as much as the nominal rate"
    assert "does dropout help the plain network?" in verdicts[DROPOUT]["evidence"]
    assert "weight decay with BN" in verdicts[REG]["evidence"]

    sweep = pd.read_csv(nb_out / "lr_sweep.csv")
    assert sweep["val acc"].between(0, 1).all() and set(sweep["seed"]) == {0}
    assert sorted(zip(sweep["schedule name"], sweep["lr"])) == [("cosine", 0.03), ("cosine", 0.1), ("exponential", 0.03),
                                                                ("exponential", 0.1)]
    grid = pd.read_csv(nb_out / "lr_multipliers.csv", index_col=0)
    assert list(grid.index) == SERIES and list(grid.columns) == ["×1", "×5", "largest trainable (per seed)"]
    curves = pd.read_csv(nb_out / "lr_table_curves.csv")
    ends = curves.groupby("row")["step"].max()
    assert ends.to_dict() == {"Plain (Inception)": 16, "BN-Baseline": 16, "Plain (Inception), L/2": 8, "BN-Baseline, L/2": 8}
    assert {0, 8, 16} <= set(curves["step"])  # evaluated every epoch (8 steps)
    trained = curves.groupby(["row", "seed"])["diverged"].any().eq(False).sum()
    assert curves["val_acc"].notna().sum() == trained  # validated once, at the end of every run that did not diverge
    recipe = pd.read_csv(nb_out / "paper_recipe.csv", index_col=0)
    parts = ["BN-Baseline", "BN-x5", "BN ×5, rate alone", "BN ×5 + L2 ÷ 5", "BN ×5 + faster decay"]
    assert list(recipe.index) == parts + (["BN ×5 + no dropout"] if n["recipe"]["dropout"] > 0 else [])
    paper = pd.read_csv(nb_out / "paper_recipe_curves.csv").query("row == 'BN-x5'").iloc[0]
    assert (paper["dropout"], paper["weight_decay"], paper["lr"]) == (0.0, 1e-4, 5 * n["base_lr"])  # the paper's changes
    assert json.loads(paper["schedule_args"])["decay"] == 0.2  # its faster decay: to 1/5 over the run, translated
    mem = pd.read_csv(nb_out / "regularization_curves.csv")
    assert set(mem["train_size"]) == {256} and not mem["augment"].any() and mem["train_eval_acc"].notna().any()
    assert set(mem["row"]) == {"plain", "BN", "plain, dropout", "BN, dropout", "BN, no weight decay"}
    for name in ["lr_sweep", "lr_table_curves", "lr_multipliers", "weight_norms", "final_accuracy_by_length", "regularization",
                 "init_sweep", "scale_invariance"]:
        assert (nb_out / f"{name}.png").stat().st_size > 10_000, name


# claims about final accuracy, which need a plateau; the kinds of precondition each finding must list at least
PLATEAU = {FINAL, REG, DROPOUT}
KINDS = {
    FASTER: {"in range", "interior optimum"},
    HIGH_LR: {"in range", "interior optimum"},
    EFFECTIVE: {"manipulation check"},
    FINAL: {"in range", "interior optimum", "plateau"},
    FASTER_STILL: {"manipulation check", "in range"},
    SIGMOID: {"interior optimum"},
    REG: {"manipulation check", "plateau", "interior optimum"},
    DROPOUT: {"manipulation check", "plateau", "interior optimum"},
    ADAM: {"interior optimum"},
    INIT: {"in range", "interior optimum"},
}


def test_notebook_03_preconditions_checks_and_summary(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "03")
    m = read_metrics(out / NAME)
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
    assert share["value"] == 1.0 and share["passed"]  # the translated decay keeps BN-x5's rate above BN-Baseline's
    helps = next(p for p in verdicts[DROPOUT]["preconditions"] if p["kind"] == "manipulation check" and "dropout" in p["name"])
    assert helps["passed"] == (helps["value"] > 0)
    memorized = [p for c in (REG, DROPOUT) for p in verdicts[c]["preconditions"] if "training accuracy" in p["name"]]
    assert len(memorized) == 2 and all(p["requirement"] == "> 0.99" for p in memorized)
    diff = m["numbers"]["bn_minus_plain_by_length"]
    plateau = next(p for p in verdicts[FINAL]["preconditions"] if p["kind"] == "plateau")
    assert "from 2 to 4 epochs" in plateau["name"] and plateau["requirement"] == "|change| ≤ 0.005"
    assert abs(plateau["value"] - (diff["4"] - diff["2"])) < 1e-9  # the comparison's change when the budget doubles
    # smoke's Adam grid has one rate: always its edge, so the claim cannot be decided
    adam = [p for p in verdicts[ADAM]["preconditions"] if p["kind"] == "interior optimum" and "rate (validation, grid 0.001)"
            in p["name"]]
    assert len(adam) == 2 and not any(p["passed"] for p in adam) and verdicts[ADAM]["outcome"] == "untestable here"
    # the scale-invariance demonstration is a check, never a finding
    check = verdicts[SCALE]
    assert check["kind"] == "check" and check["outcome"] == "passes" and check["preconditions"] == []
    assert check["test"] == "exact" and check["estimate"] < 1e-9
    # the notebook ends with the summary generated from metrics.json, and states no other outcome anywhere
    assert_ends_with_summary(out / f"{NAME}.ipynb", m["verdicts"])
