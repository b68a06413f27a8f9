"""Notebook 02 (MNIST reproduction) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`).

That batched and separate runs give the same numbers is checked on the runs themselves (tests/test_batched.py,
tests/test_experiment.py), and that a rerun reads the finished runs back on the run cache (tests/test_sweep.py).
"""

import ast
import json
import math

import pandas as pd
import pytest
from smoke import assert_ends_with_summary, read_metrics, smoke_ran

from bnlib.lab import report
from bnlib.verdicts import gated

NAME = "02_mnist_reproduction"

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
    assert faster["outcome"] == "untestable here" and "neither network reached 97%" in faster["note"]


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


def _preconditions(v: dict, kind: str) -> list[dict]:
    return [p for p in v["preconditions"] if p["kind"] == kind]


def test_notebook_02_findings_list_measured_preconditions(smoke_run):
    """Every finding lists its preconditions with finite measured values, and is untestable here exactly when one failed;
    each claim measures the ones its rule needs (issue 35)."""
    out, _ = smoke_run
    smoke_ran(out, "02")
    m = read_metrics(out / NAME)
    n, verdicts = m["numbers"], {v["claim"]: v for v in m["verdicts"]}
    for claim, v in verdicts.items():
        assert v["kind"] == "finding" and v["preconditions"], claim  # no exact computations here: every verdict is a finding
        assert all(isinstance(p["value"], (int, float)) and math.isfinite(p["value"]) for p in v["preconditions"]), claim
        assert (v["outcome"] == "untestable here") == gated(v), claim
    # the smoke preset sweeps two learning rates: the chosen one is at an edge of the grid, so nothing tuned there decides
    for claim in ("BN trains faster", "BN reaches a higher test accuracy",
                  "With BN the sigmoid-input distribution is stable; without BN it shifts"):
        [inside] = _preconditions(verdicts[claim], "interior optimum")
        assert inside["value"] == n["chosen_lr"] and not inside["passed"], claim
    # sensitivity: each network's worst setting above chance and inside the grid; on two settings it is always an edge
    for claim, knob in [("BN lowers the sensitivity to the learning rate", "lr"),
                        ("BN lowers the sensitivity to weight initialization", "init_std")]:
        v = verdicts[claim]
        worst = {p["name"].split(":")[0]: p for p in _preconditions(v, "in range")}
        assert sorted(worst) == ["with BN", "without BN"], claim
        for label, p in worst.items():
            assert p["value"] == pytest.approx(sum(n[f"worst_{knob}_acc"][label]) / 2), (claim, label)
            assert p["passed"] == (0.15 < p["value"] < 0.99), (claim, label)
        edges = _preconditions(v, "interior optimum")
        assert len(edges) == 2 and not any(p["passed"] for p in edges) and v["outcome"] == "untestable here", claim
    # faster: steps to the target must lie inside the run; none is reached at smoke, so every run is censored at 200
    steps_in = {p["name"].split(":")[0]: p for p in _preconditions(verdicts["BN trains faster"], "in range")}
    assert sorted(steps_in) == ["with BN", "without BN"]
    assert all(p["value"] == 200 and not p["passed"] for p in steps_in.values())
    # higher: the last quarter's change, recomputed from the recorded curves
    curves = pd.read_csv(out / NAME / "fig1a_curves.csv")
    mean = curves.groupby(["network", "step"])["test_acc"].mean()
    for p in _preconditions(verdicts["BN reaches a higher test accuracy"], "plateau"):
        label = p["name"].split(":")[0]
        assert p["value"] == pytest.approx(mean[label, 200] - mean[label, 150]) and "150 → 200" in p["name"]
        assert p["passed"] == (abs(p["value"]) <= 0.0015)
    # stable: the drift's denominators (each network's spread at step 0) must be comparable
    spread = n["start_spread_last_layer"]
    stable = verdicts["With BN the sigmoid-input distribution is stable; without BN it shifts"]
    ratios = [p["value"] for p in _preconditions(stable, "in range")]
    assert ratios == pytest.approx([s["without BN"] / s["with BN"] for s in spread.values()])
    assert all(r < 0.8 for r in ratios)  # N(0, 0.1²) weights: the plain network's last-layer inputs are far narrower than BN's
    # variants: per dataset, nonlinearity and network an interior condition gating both its parts, a plateau gating the
    # final part (one rate at smoke: always at the edge, so every part is untestable)
    picture = verdicts["The Figure 1 picture (BN faster and higher) holds on Fashion-MNIST and with ReLU"]
    inside = _preconditions(picture, "interior optimum")
    assert len(inside) == 8 and not any(p["passed"] for p in inside)
    assert {name for p in inside for name in p["parts"]} == {q["part"] for q in picture["parts"]}
    assert {name.split(", ")[1] for p in _preconditions(picture, "plateau") for name in p["parts"]} == {"final"}
    assert all(q["outcome"] == "untestable here" for q in picture["parts"]) and picture["outcome"] == "untestable here"
    # public setting: a plateau and an in-range condition per network; the note says how long the plain network sat at chance
    public = verdicts["In a public reproduction's setting BN beats the plain network by about 3 points (98.15% vs 94.92%)"]
    assert len(_preconditions(public, "plateau")) == 2 and len(_preconditions(public, "in range")) == 2
    assert "within 5 points of chance" in public["note"]
    assert sorted(n["public_setting_last_quarter_change"]) == ["with BN", "without BN"]


def test_notebook_02_ends_with_the_generated_summary(smoke_run):
    """The executed notebook's last output is the summary generated from metrics.json, and no text names another outcome."""
    out, _ = smoke_run
    smoke_ran(out, "02")
    assert_ends_with_summary(out / f"{NAME}.ipynb", read_metrics(out / NAME)["verdicts"])


def test_notebook_02_bands_of_bounded_measures_name_their_range():
    """seed_band clips a band to [0, 1] on its own only when the y column's name says accuracy: every other y
    (e.g. "value", a final accuracy with diverged runs at chance) must pass limits=."""
    nb = json.loads((report.REPO / "notebooks" / f"{NAME}.ipynb").read_text())
    calls = [node for c in nb["cells"] if c["cell_type"] == "code" for node in ast.walk(ast.parse("".join(c["source"])))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "seed_band"]
    assert len(calls) >= 6
    for call in calls:
        y = call.args[2].value  # seed_band(df, x, y, ...)
        limits = [k.value for k in call.keywords if k.arg == "limits"]
        assert "acc" in y.lower() or (limits and ast.literal_eval(limits[0]) == (0, 1)), ast.unparse(call)
