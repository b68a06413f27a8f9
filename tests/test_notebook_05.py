"""Notebook 05 (loss landscape) at the smoke preset: its numbers, verdicts and files
(the run is the session fixture `smoke_run`)."""

import math

import numpy as np
import pandas as pd
import pytest
from smoke import find_verdict, read_metrics, smoke_ran

CLAIMS = {  # claim text start -> (predicts, min_effect, reference, parts)
    "BN trains faster": ("higher", 0.02, 0.0, ["lr 0.1", "lr 0.5"]),
    "Noisy BN makes the norm layers' outputs drift": ("higher", 0.5, 0.0, ["conv2.norm", "conv7.norm"]),
    "Noisy BN, with unstable distributions, trains about as well as BN": ("higher", 0.0, -0.02, None),
    "With BN, internal covariate shift": ("higher", 0.0, -0.1, "per lr probed after step 0"),
    "BN makes the loss change less": ("higher", 0.223, 0.0, None),
    "BN makes the gradient more predictive": ("higher", 0.223, 0.0, ["gradient change", "β-smoothness"]),
    "BN lowers the top Hessian eigenvalue": ("higher", 0.223, 0.0, None),
    "l_p normalizations train about as well as BN": ("higher", 0.0, -0.02, ["l1 norm", "l2 norm", "l∞ norm"]),
    "l_p normalizations smooth the landscape too": ("higher", 0.223, 0.0, ["l1 norm", "l2 norm", "l∞ norm"]),
    "In the deep linear network, BN's ICS is not lower": ("higher", 0.0, -0.1, None),
    "In the deep linear network, BN smooths the landscape": ("higher", 0.223, 0.0, ["β-smoothness", "loss range"]),
}


def test_notebook_05_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "05")
    nb_out = out / "05_loss_landscape"
    m = read_metrics(nb_out)
    n = m["numbers"]
    assert m["info"]["lrs"] == [0.1, 0.5] and m["info"]["first_seed"] == 0 and m["info"]["seeds"] == 2
    assert n["probe_overhead"] > 0
    # VGG-11 has 8 convolutions and 1 linear layer; the first has nothing before it and is left out of the ICS figure and verdict
    assert len(n["ics_layers"]) == 8 and n["ics_layers"][0] == "conv2.conv"
    # seeds where a network diverged or stayed at chance are left out of the ICS comparison, and recorded
    kept = 2 - len(n["ics_excluded_seeds"]["0.1"])
    assert len(n["ics_bn_minus_plain"].get("0.1", [])) == kept
    assert sorted(n["plain_over_bn_first_probe"]) == ["beta_smoothness", "grad_change", "loss_range", "top"]
    assert all(v > 0 for v in n["plain_over_bn_first_probe"].values())
    dead = set(n["landscape_excluded_seeds"]["BN"]) | set(n["landscape_excluded_seeds"]["no BN"])
    assert all(len(v) == 2 - len(dead) for v in n["log_plain_over_bn"].values())
    for key, accs in n["final_acc"].items():  # diverged runs count at chance, never dropped
        assert len(accs) == 2 and all(0 <= a <= 1 for a in accs), key
    assert len(n["noisy_bn_final_acc"]) == 2
    assert sorted(n["final_train_acc"]) == ["BN", "no BN", "noisy BN"] and all(len(v) == 2 for v in n["final_train_acc"].values())
    assert all(len(v) == 2 and all(d > 0 for d in v) for v in n["drift"].values())
    assert all(v >= 1 for v in n["slice_max_over_center"].values())  # the trained weights lie on the slice (alpha = 0)
    for name in ["vgg_curves", "noisy_bn_training", "ics_vgg", "ics_over_training", "landscape", "loss_range_band"]:
        assert (nb_out / f"{name}.png").stat().st_size > 10_000, name  # the paper's Fig. 1-4, drawn as it draws them
    probes = pd.read_csv(nb_out / "probes.csv")
    ends = probes[probes["stat"].isin(["loss_min", "loss_max", "loss_range"])].pivot_table(
        index=["network", "seed", "step"], columns="stat", values="value").dropna()
    assert len(ends) and ((ends["loss_max"] - ends["loss_min"] - ends["loss_range"]).abs() < 1e-9).all()
    dln = (nb_out / "dln.csv").read_text()
    assert "ics_relative" in dln and "beta_smoothness" in dln


def test_notebook_05_verdicts_follow_their_rules(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "05")
    nb_out = out / "05_loss_landscape"
    verdicts = read_metrics(nb_out)["verdicts"]
    assert len(verdicts) == len(CLAIMS)
    for start, (predicts, min_effect, reference, parts) in CLAIMS.items():
        v = find_verdict(verdicts, start)
        assert (v["predicts"], v["reference"]) == (predicts, reference), start
        assert math.isclose(v["min_effect"], min_effect, abs_tol=1e-3), start
        if parts is None:
            assert "parts" not in v, start
        elif parts == "per lr probed after step 0":  # a learning rate at which every plain run diverged at once has no part
            assert "parts" not in v or [p["part"] for p in v["parts"]] == ["lr 0.1", "lr 0.5"], start
            assert "parts" in v or "seeds left out (a network diverged or stayed at chance) [0, 1]" in v["evidence"], start
        else:
            assert [p["part"] for p in v["parts"]] == parts, start
    # claim 1 is paired by seed: its per-seed differences are BN − plain of the recorded final accuracies
    n = read_metrics(nb_out)["numbers"]
    lr01 = find_verdict(verdicts, "BN trains faster")["parts"][0]
    assert lr01["test"] == "paired t" and lr01["n"] == 2
    expected = [a - b for a, b in zip(n["final_acc"]["BN lr 0.1"], n["final_acc"]["no BN lr 0.1"])]
    assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(lr01["values"], expected))
    # the landscape verdicts' per-seed values are the recorded median log ratios
    loss_range = find_verdict(verdicts, "BN makes the loss change less")
    assert loss_range["test"] == "one-sample t"
    assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(loss_range["values"], n["log_plain_over_bn"]["loss_range"]))


def test_notebook_05_tables(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "05")
    nb_out = out / "05_loss_landscape"
    fin = pd.read_csv(nb_out / "final_acc.csv")
    assert len(fin) == 2 * (2 * 2 + 4)  # seeds x (BN and no BN at two rates + noisy BN and three l_p at lr 0.1)
    assert (fin.loc[fin["diverged"], "value"] == 0.1).all()  # a diverged run counts at chance
    ics = pd.read_csv(nb_out / "ics_per_seed.csv")
    assert {"lr", "seed", "BN", "no BN"} <= set(ics.columns) and (ics[["BN", "no BN"]] >= 0).all().all()


def test_notebook_05_end_of_training(smoke_run):
    """The last-probe table: one row per measure, and its landscape effect recomputed from probes.csv."""
    out, _ = smoke_run
    smoke_ran(out, "05")
    nb_out = out / "05_loss_landscape"
    table = pd.read_csv(nb_out / "end_of_training.csv", index_col="measure")
    assert len(table) == 2 + 2 + 4  # relative ICS and cosine at two rates, three landscape measures and the Hessian at lr 0.1
    numbers = read_metrics(nb_out)["numbers"]
    probes = pd.read_csv(nb_out / "probes.csv")
    last = probes[(probes["lr"] == 0.1) & (probes["stat"] == "loss_range") & (probes["step"] == probes["step"].max())]
    dead = numbers["landscape_excluded_seeds"]
    value = {n: last[(last["network"] == n) & ~last["seed"].isin(dead[n])].set_index("seed")["value"] for n in ("BN", "no BN")}
    shared = [s for s in value["BN"].index if s in value["no BN"].index and value["BN"][s] > 0 and value["no BN"][s] > 0]
    name = "loss range, lr 0.1"
    if shared:
        expected = np.mean([np.log(value["no BN"][s] / value["BN"][s]) for s in shared])
        assert numbers["end_of_training"][name]["estimate"] == pytest.approx(expected, rel=1e-9)
        assert numbers["end_of_training"][name]["n"] == len(shared)
    else:
        assert name not in numbers["end_of_training"]
        assert table.loc[name].iloc[-1] == "no seed with both networks probed"


def test_notebook_05_weighing_follows_the_verdicts(smoke_run):
    """Section 7's closing sentence is chosen from this run's outcomes, not written by hand."""
    out, _ = smoke_run
    smoke_ran(out, "05")
    m = read_metrics(out / "05_loss_landscape")
    said = {v["claim"]: v["outcome"] for v in m["verdicts"]}

    def outcome(start):
        return next(o for c, o in said.items() if c.startswith(start))

    smoothing = any(outcome(s) == "supported" for s in ("BN makes the loss change less", "BN makes the gradient more predictive",
                                                        "BN lowers the top Hessian eigenvalue"))
    ics_lower = outcome("With BN, internal covariate shift") == "not supported"
    noisy_hurts = (outcome("Noisy BN makes the norm layers' outputs drift") == "supported"
                   and outcome("Noisy BN, with unstable distributions") == "not supported")
    sentence = m["numbers"]["weighing"]
    assert sentence.startswith("Weighing: ")
    assert ("move together" in sentence) == (smoothing and (ics_lower or noisy_hurts))
