"""Notebook 03 (CIFAR-10 experiments) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`)."""

import pandas as pd
from smoke import read_metrics, smoke_ran

HIGH_LR = "BN allows much higher learning rates (x5, x30): there it does as well as the network without BN at the base rate"
CLAIMS = {
    "Switching SGD to Adam raises CIFAR-10 accuracy by about 10 points": ("higher", 0.05, "parts"),
    "BN trains faster at the same learning rate": ("lower", 0.1, "paired t"),
    # one part per multiplier above 1: smoke has only x5, so the record is that part's effect (no "parts")
    HIGH_LR: ("higher", 0.0, "paired t"),
    "With BN a higher learning rate trains faster still": ("lower", 0.1, "paired t"),
    "BN makes a sigmoid network trainable": ("higher", 0.05, "paired t"),
    "BN lowers the sensitivity to the initial weight scale": ("lower", 0.02, "paired t"),
    "BN regularizes: a smaller gap between training and test accuracy": ("lower", 0.02, "paired t"),
    "BN can replace dropout": ("higher", 0.02, "paired t"),
    "BN's accuracy suffers when the batch is small": ("lower", 0.02, "paired t"),
}


def test_notebook_03_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "03")
    nb_out = out / "03_cifar10_experiments"
    m = read_metrics(nb_out)
    n, info = m["numbers"], m["info"]
    assert info["dataset"] == "cifar10" and info["test_size"] == 500 and info["first_seed"] == 0
    assert info["validation_size"] == 5000 and info["train_size"] == 45000  # the last 5,000 training images are held out
    assert n["base_lr"] in (0.02, 0.1)  # one of the smoke preset's lrs, best on validation for the network without BN
    assert 0.1 < n["target_acc"] < 1  # every plain seed's maximum: above chance after 60 steps on real CIFAR-10
    assert len(n["steps_to_target_bn_x1"]) == len(n["steps_to_target_plain_x1"]) == 2
    # interpolated between evaluations every 20 steps; every plain seed reaches its own target; BN is censored at 60
    assert all(0 < s <= 60 for s in n["steps_to_target_plain_x1"] + n["steps_to_target_bn_x1"])
    assert sorted(n["batch_size_bn_minus_plain"], key=int) == ["2", "16", "64"]
    assert -1 <= n["gap_bn_minus_plain"] <= 1
    # test accuracy at He initialization minus the mean over the other two scales, per seed
    assert all(len(v) == 2 and all(-1 < x < 1 for x in v) for v in n["init_accuracy_lost"].values())

    verdicts = {v["claim"]: v for v in m["verdicts"]}
    assert sorted(verdicts) == sorted(CLAIMS)
    for claim, (predicts, min_effect, test) in CLAIMS.items():
        v = verdicts[claim]
        assert (v["predicts"], v["min_effect"]) == (predicts, min_effect), claim
        if test == "parts":
            assert all(p["test"] == "paired t" and p["n"] == 2 for p in v["parts"]), claim
        else:
            assert v["test"] == test and v["n"] == 2, claim
    assert "BN ×5 − plain ×1 test accuracy" in verdicts[HIGH_LR]["evidence"]
    assert verdicts[HIGH_LR]["reference"] == -0.02  # non-inferiority: at most 2 points below the plain network at x1
    assert [p["part"] for p in verdicts["Switching SGD to Adam raises CIFAR-10 accuracy by about 10 points"]["parts"]] == [
        "without BN", "with BN"]

    sweep = pd.read_csv(nb_out / "optimizer_sweep.csv")
    assert sweep["val acc"].between(0, 1).all() and sweep["test acc"].between(0, 1).all()
    assert sorted(sweep["seed"].unique()) == [0, 1]
    table = (nb_out / "lr_table.csv").read_text()
    for row in ["without BN, lr ×1", "with BN, lr ×5", "without BN, sigmoid, lr ×1", "with BN, sigmoid, lr ×5"]:
        assert row in table
    assert "±" not in table
    runs = list((nb_out / "runs").glob("*.csv.gz"))
    # 2 seeds (smoke: seeds = sweep_seeds = 2) x (sweep 2x3 + table 6 + init 2x3 + regularization 8 + batch sizes 2x3)
    assert len(runs) == 2 * (6 + 6 + 6 + 8 + 6)
