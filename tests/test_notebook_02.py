"""Notebook 02 (MNIST reproduction) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`).

That batched and separate runs give the same numbers is checked on the runs themselves (tests/test_batched.py,
tests/test_experiment.py), and that a rerun reads the finished runs back on the run cache (tests/test_sweep.py).
"""

import pandas as pd
import pytest
from smoke import read_metrics, smoke_ran

CLAIMS = {  # claim -> (predicts, min_effect, test of its effect or of every part)
    "BN lowers the sensitivity to the learning rate": ("higher", 0.02, "paired t"),
    "BN lowers the sensitivity to weight initialization": ("higher", 0.02, "paired t"),
    "BN trains faster": ("lower", 0.1, "paired t"),
    "BN reaches a higher test accuracy": ("higher", 0.003, "paired t"),
    "With BN the sigmoid-input distribution is stable; without BN it shifts": ("lower", 0.2, "paired t"),
    "The Figure 1 picture (BN faster and higher) holds on Fashion-MNIST and with ReLU": ("higher", 0.005, "paired t"),
    "In a public reproduction's setting BN beats the plain network by about 3 points (98.15% vs 94.92%)":
        ("higher", 0.016, "paired t"),
}


def test_notebook_02_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "02")
    m = read_metrics(out / "02_mnist_reproduction")
    n = m["numbers"]
    assert m["info"]["batched"] is True and m["info"]["first_seed"] == 0 and m["info"]["seeds"] == 2
    assert n["chosen_lr"] in (0.1, 1.0)  # one of the smoke preset's sweep_lrs
    assert len(n["final_acc_bn"]) == len(n["final_acc_plain"]) == 2
    assert all(0.5 < a <= 1 for a in n["final_acc_bn"])  # 200 steps on real MNIST learn something
    assert len(n["steps_to_target_bn"]) == len(n["steps_to_target_plain"]) == 2
    assert all(0 < s <= 200 for s in n["steps_to_target_bn"] + n["steps_to_target_plain"])  # censored at the run's length
    drift = n["relative_drift_bn_over_plain"]  # lr -> "layer, measure" -> BN / plain − 1 of the drift relative to the spread
    assert sorted(drift) == sorted([f"lr {n['chosen_lr']:g}", "lr 0.03"])
    for by_part in drift.values():
        assert sorted(by_part) == sorted(f"hidden {i}, {m}" for i in (1, 2, 3) for m in ("moved", "early", "wandered"))
        assert all(v > -1 for v in by_part.values())  # a ratio of two positive drifts, minus 1
    early = n["lr_sweep_early_bn_minus_plain"]  # one paired mean difference per swept learning rate
    assert sorted(early) == ["0.1", "1"] and all(-1 <= v <= 1 for v in early.values())
    for knob in ("lr", "init_std"):
        assert sorted(n[f"worst_{knob}_acc"]) == ["with BN", "without BN"]
        assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in n[f"worst_{knob}_acc"].values())
    assert sorted(n["public_setting_final_acc"]) == ["with BN", "without BN"]
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in n["public_setting_final_acc"].values())
    table = (out / "02_mnist_reproduction" / "fig1a_table.csv").read_text()
    assert "steps to 97%" in table and "with BN" in table and "nan" not in table


def test_notebook_02_verdicts_follow_their_declared_rules(smoke_run):
    """Every claim is declared with its direction and minimum effect, judged on paired per-seed effects."""
    out, _ = smoke_run
    smoke_ran(out, "02")
    verdicts = {v["claim"]: v for v in read_metrics(out / "02_mnist_reproduction")["verdicts"]}
    assert sorted(verdicts) == sorted(CLAIMS)
    for claim, (predicts, min_effect, test) in CLAIMS.items():
        v = verdicts[claim]
        assert (v["predicts"], v["min_effect"]) == (predicts, min_effect), claim
        effects = v.get("parts", [v])
        assert all(e["test"] == test for e in effects), claim
    stable = verdicts["With BN the sigmoid-input distribution is stable; without BN it shifts"]
    n_chosen = read_metrics(out / "02_mnist_reproduction")["numbers"]["chosen_lr"]
    assert [p["part"] for p in stable["parts"]] == [f"lr {n_chosen:g}", "lr 0.03"]  # the last hidden layer at two rates
    picture = verdicts["The Figure 1 picture (BN faster and higher) holds on Fashion-MNIST and with ReLU"]
    assert len(picture["parts"]) == 8 and all(p["n"] == 2 for p in picture["parts"])
    higher = verdicts["BN reaches a higher test accuracy"]
    n = read_metrics(out / "02_mnist_reproduction")["numbers"]
    diffs = [a - b for a, b in zip(n["final_acc_bn"], n["final_acc_plain"])]
    assert higher["values"] == pytest.approx(diffs) and higher["estimate"] == pytest.approx(sum(diffs) / 2)
    # the worst setting is named for each network, seed by seed
    for claim, name in [("BN lowers the sensitivity to the learning rate", "lr ="),
                        ("BN lowers the sensitivity to weight initialization", "σ =")]:
        note = verdicts[claim]["note"]
        assert f"with BN {name}" in note and f"without BN {name}" in note, note
    # at 200 steps no run reaches 97% test accuracy: "faster" cannot be decided, and says why
    faster = verdicts["BN trains faster"]
    assert faster["outcome"] == "inconclusive" and "neither network reached 97%" in faster["note"]


def test_notebook_02_learning_rate_is_chosen_on_the_validation_split(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "02")
    m = read_metrics(out / "02_mnist_reproduction")
    sweep = pd.read_csv(out / "02_mnist_reproduction" / "lr_sweep.csv")
    plain = sweep[sweep["network"] == "without BN"]
    assert {"val_acc", "val_value", "value"} <= set(sweep.columns) and len(plain) == 4  # 2 learning rates x 2 seeds
    by_lr = plain.groupby("lr")["val_value"].mean()
    assert m["numbers"]["chosen_lr"] == by_lr.idxmax()
    assert m["numbers"]["lr_sweep_validation_plain"] == pytest.approx({f"{k:g}": v for k, v in by_lr.items()})
    assert not (plain["val_acc"] == plain["test_acc"]).all()  # two different image sets
