"""Notebook 05 (loss landscape) at the smoke preset: its numbers, verdicts and files
(the run is the session fixture `smoke_run`)."""

import math

import numpy as np
import pandas as pd
import pytest
from smoke import assert_ends_with_summary, find_verdict, flat, read_metrics, rerun_changed, smoke_ran

from bnlib.verdicts import gated, paired

CLAIMS = {  # claim text start -> (predicts, min_effect, reference, parts)
    "BN trains faster": ("higher", 0.02, 0.0, ["lr 0.1", "lr 0.5"]),
    "Noisy BN makes the norm layers' outputs drift": ("higher", 0.5, 0.0, ["conv2.norm", "conv7.norm"]),
    "Noisy BN, with unstable distributions, trains about as well as BN": ("higher", 0.0, -0.02, None),
    "With BN, internal covariate shift": ("higher", 0.0, -0.1, "per lr probed after step 0"),
    "BN makes the loss change less": ("higher", 0.223, 0.0, "per lr with a seed where both trained"),
    "BN makes the gradient more predictive": ("higher", 0.223, 0.0, "per measure and lr with a seed where both trained"),
    "BN lowers the top Hessian eigenvalue": ("higher", 0.223, 0.0, "per lr with a seed where both trained"),
    "l_p normalizations train about as well as BN": ("higher", 0.0, -0.02, ["l1 norm", "l2 norm", "l∞ norm"]),
    "l_p normalizations smooth the landscape too": ("higher", 0.223, 0.0, ["l1 norm", "l2 norm", "l∞ norm"]),
    "In the deep linear network, BN's ICS is higher": ("higher", 0.1, 0.0, None),
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
    assert all(len(v) == 2 for v in n["final_train_acc_vgg"].values()) and len(n["final_train_acc_vgg"]) == 4
    assert all(len(v) == 2 and all(d > 0 for d in v) for v in n["drift"].values())
    # the noise-off training accuracy is beside the noisy one, both accuracies on the probe batch
    probe_acc = n["noisy_bn_probe_acc"]
    assert sorted(probe_acc) == ["off", "on"] and all(0 <= a <= 1 for v in probe_acc.values() for a in v)
    # the drift is the per-channel one of bnlib.probes.channel_drift, recomputed here from the probes' per-channel statistics
    from bnlib.probes import channel_drift

    probes = pd.read_csv(nb_out / "probes.csv")
    chan = probes[(probes["where"] == "channel") & (probes["network"] == "noisy BN") & (probes["seed"] == 0)
                  & (probes["layer"] == "conv7.norm")]
    t = chan.assign(what=chan["stat"].str[:-3], c=chan["stat"].str[-3:].astype(int)).pivot_table(
        index="step", columns=["what", "c"], values="value").sort_index().dropna()
    assert n["drift"]["noisy BN conv7.norm"][0] == pytest.approx(channel_drift(t["mean"].to_numpy(), t["std"].to_numpy()))
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
        elif parts in ("per lr with a seed where both trained", "per measure and lr with a seed where both trained"):
            names = [p["part"] for p in v["parts"]] if "parts" in v else ["lr 0.1"]  # one rate: a claim of one part
            per_lr = ["lr 0.1", "lr 0.5"] if parts.startswith("per lr") else [
                f"{m}, lr {lr}" for lr in ("0.1", "0.5") for m in ("gradient change", "β-smoothness")]
            assert names == per_lr[:len(names)] and len(names) in (len(per_lr) // 2, len(per_lr)), start
        elif parts == "per lr probed after step 0":  # a learning rate at which every plain run diverged at once has no part
            assert "parts" not in v or [p["part"] for p in v["parts"]] == ["lr 0.1", "lr 0.5"], start
            assert "parts" in v or "seeds left out (a network diverged or stayed at chance) [0, 1]" in v["evidence"], start
        else:
            assert [p["part"] for p in v["parts"]] == parts, start
    # claim 1 is paired by seed: its per-seed differences are BN − plain of the recorded final accuracies
    n = read_metrics(nb_out)["numbers"]
    lr01 = find_verdict(verdicts, "BN trains faster")["parts"][0]
    assert lr01["test"] == "paired t" and lr01["n"] == 2
    expected = [a - b for a, b in zip(n["final_train_acc_vgg"]["BN lr 0.1"], n["final_train_acc_vgg"]["no BN lr 0.1"])]
    assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(lr01["values"], expected))
    # the landscape verdicts' per-seed values are the recorded median log ratios
    loss_range = find_verdict(verdicts, "BN makes the loss change less")
    loss_range = loss_range["parts"][0] if "parts" in loss_range else loss_range  # one part per rate with a seed that trained
    assert loss_range.get("part", "lr 0.1") == "lr 0.1" and loss_range["test"] == "one-sample t"
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
    numbers = read_metrics(nb_out)["numbers"]
    rates = [lr for lr, dead in numbers["landscape_excluded_seeds_by_lr"].items()
             if len(set(dead.get("BN", [])) | set(dead.get("no BN", []))) < 2]
    # relative, absolute ICS and cosine at two rates; three landscape measures and the Hessian at each rate with a seed
    assert len(table) == 2 + 2 + 2 + 4 * len(rates) and "absolute ICS ‖G − G′‖, lr 0.1" in table.index
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


def test_notebook_05_findings_state_their_preconditions(smoke_run):
    """Every finding lists measured preconditions, and a failed one (only a failed one) makes it untestable here; the
    noisy-BN claims are gated by noisy BN drifting more than the plain network, the ICS claims by the measure in range, and
    6a by a positive control (BN − no BN beyond the margin)."""
    out, _ = smoke_run
    smoke_ran(out, "05")
    nb_out = out / "05_loss_landscape"
    m = read_metrics(nb_out)
    verdicts, n = m["verdicts"], m["numbers"]
    assert all(v["kind"] == "finding" for v in verdicts)  # no exact computation here: every verdict rests on seeds
    for v in verdicts:
        pre = v["preconditions"]
        assert any(isinstance(p["value"], (int, float)) and math.isfinite(p["value"]) for p in pre), v["claim"]
        assert (v["outcome"] == "untestable here") == gated(v), v["claim"]
    # 2a and 2b: noisy BN / no BN drift per tracked layer, > 1, recomputed from the recorded drift
    for start in ("Noisy BN makes the norm layers' outputs drift", "Noisy BN, with unstable distributions"):
        checks = [p for p in find_verdict(verdicts, start)["preconditions"] if p["kind"] == "manipulation check"]
        assert [p["name"].split(" at ")[1].split(" ")[0] for p in checks] == ["conv2.norm", "conv7.norm"], start
        for p in checks:
            layer = p["name"].split(" at ")[1].split(" ")[0]
            ratio = np.mean(n["drift"][f"noisy BN {layer}"]) / np.mean(n["drift"][f"no BN {layer}"])
            assert p["value"] == pytest.approx(ratio, rel=1e-9) and p["requirement"] == "> 1" and p["passed"] == (ratio > 1)
    # 3 and 8a: the relative ICS of both networks inside (0.1, 0.9), the claim's margin away from 0 and from 1
    for start in ("With BN, internal covariate shift",):
        ranges = [p for p in find_verdict(verdicts, start)["preconditions"]
                  if p["kind"] == "in range" and "survival" not in p["name"]]
        assert ranges and all(p["requirement"] == "inside (0.1, 0.9)" and "relative ICS" in p["name"] for p in ranges), start
        assert all(p["passed"] == (0.1 < p["value"] < 0.9) for p in ranges), start
    dln = pd.read_csv(nb_out / "dln.csv")
    dln_ics = (dln[dln["step"] > 0].pivot_table(index=["seed", "step"], columns="network", values="ics_relative").dropna()
               .groupby(level="seed").mean())
    # 8a: the plain DLN's ICS small (the paper's regime), inside (0, 0.1)
    dln_range = find_verdict(verdicts, "In the deep linear network, BN's ICS")["preconditions"]
    assert [p["value"] for p in dln_range] == pytest.approx([dln_ics["no BN"].mean()], rel=1e-9)
    assert dln_range[0]["requirement"] == "inside (0, 0.1)" and dln_range[0]["passed"] == (0 < dln_ics["no BN"].mean() < 0.1)
    # survival: the ICS and landscape parts at each rate keep at least 80% of the seeds, recomputed from the exclusions
    for start in ("With BN, internal covariate shift", "BN makes the loss change less", "BN lowers the top Hessian"):
        for p in [p for p in find_verdict(verdicts, start)["preconditions"] if "survival" in p["name"]]:
            lr = p["name"].split("lr ")[-1]
            by_lr = n["landscape_excluded_seeds_by_lr"]
            lost = (n["ics_excluded_seeds"][lr] if start.startswith("With") else
                    sorted(set(by_lr[lr]["BN"]) | set(by_lr[lr]["no BN"])))
            assert p["value"] == pytest.approx(1 - len(lost) / 2) and p["passed"] == (p["value"] >= 0.8), start
    # 6a: the positive control is BN − no BN final training accuracy at lr 0.1, beyond the claim's margin of 0.02
    control = [p for p in find_verdict(verdicts, "l_p normalizations train about as well")["preconditions"]
               if p["kind"] == "positive control"]
    assert len(control) == 1 and control[0]["value"] == pytest.approx(
        np.mean(n["final_train_acc_vgg"]["BN lr 0.1"]) - np.mean(n["final_train_acc_vgg"]["no BN lr 0.1"]), abs=1e-9)
    assert "beyond ±0.02" in control[0]["requirement"]


def test_notebook_05_ends_with_the_generated_summary(smoke_run):
    """The last output is the summary generated from metrics.json, and no text of the notebook names another outcome."""
    out, _ = smoke_run
    smoke_ran(out, "05")
    assert_ends_with_summary(out / "05_loss_landscape.ipynb", read_metrics(out / "05_loss_landscape")["verdicts"])


def test_notebook_05_weighing_uses_every_network(smoke_run):
    """Section 7's weighing is computed from every network's per-seed numbers (plain, BN, noisy BN and the three l_p
    networks): each pair's ordering is recomputed here, and the sentence names the ordering the counts give."""
    out, _ = smoke_run
    smoke_ran(out, "05")
    n = read_metrics(out / "05_loss_landscape")["numbers"]
    arms = ["no BN", "BN", "noisy BN", "l1 norm", "l2 norm", "l∞ norm"]
    values = n["weighing_arms"]
    assert all(list(values[m]) == arms for m in ("relative ICS", "β-smoothness", "training accuracy"))
    assert all(len(values["training accuracy"][a]) == 2 for a in arms)  # a diverged run counts at chance, never dropped

    def direction(measure, a, b):
        va, vb = (pd.Series(values[measure][x]) for x in (a, b))
        shared = va.index.intersection(vb.index)
        if len(shared) < 2:
            return 0
        e = paired(va[shared], vb[shared])
        return 1 if e.low > 0 else -1 if e.high < 0 else 0

    counts = {}
    for explanation, measure in (("ICS", "relative ICS"), ("smoothing", "β-smoothness")):
        pairs = {"as predicted": [], "against": [], "undecided": []}
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                dm, dt = direction(measure, a, b), direction("training accuracy", a, b)
                pairs["undecided" if 0 in (dm, dt) else "as predicted" if dm == -dt else "against"].append([a, b])
        assert n["weighing_pairs"][explanation] == pairs, explanation
        counts[explanation] = (len(pairs["as predicted"]), len(pairs["against"]))
        assert (f"The {explanation} explanation ({measure}) orders {counts[explanation][0]} pairs as predicted and "
                f"{counts[explanation][1]} against it") in n["weighing"]
    sentence = n["weighing"]
    assert sentence.startswith("Weighing: ") and all(a in sentence for a in arms)
    assert ("follow neither" in sentence) == all(against > 0 for _, against in counts.values())
    assert ("orderings are undecided" in sentence) == (sum(sum(c) for c in counts.values()) == 0)
    assert "as the ICS explanation predicts" not in sentence  # the old hand-written ending


@pytest.mark.slow
def test_a_changed_etas_in_a_used_folder_gives_the_numbers_of_a_fresh_folder(smoke_run, tmp_path):
    """The deep linear network's function reads `etas` as a notebook global, outside its call's config: its cache key
    holds what it reads (bnlib.lab.reads), so the used folder recomputes it (issue 37: it once returned the old etas')."""
    out, _ = smoke_run
    smoke_ran(out, "05")
    used, fresh = rerun_changed(out, "05_loss_landscape", tmp_path, "etas", "[1.0, 8.0]")
    for name in ("dln_log_plain_over_bn", "dln_medians", "dln_ics_bn_minus_plain", "dln_loss_last_over_first"):
        assert flat(used[name]) == pytest.approx(flat(fresh[name]), rel=1e-6), name
    default = read_metrics(out / "05_loss_landscape")["numbers"]
    assert flat(used["dln_log_plain_over_bn"]) != pytest.approx(flat(default["dln_log_plain_over_bn"]))  # etas made a difference


def test_notebook_05_full_preset_is_the_papers_length_and_quick_the_papers_dln_regime():
    """full: VGG-11 x1/16 at the paper's length (about 15,000 steps), 5 seeds; the DLN at lr 1e-3 in every preset."""
    from bnlib.lab.presets import PRESETS
    from bnlib.lab.series import notebook_parameters, resolve_notebooks

    defaults = notebook_parameters(resolve_notebooks(["05_loss_landscape"])[0])
    full = {**defaults, **PRESETS["05_loss_landscape"]["full"]}
    assert full["steps"] >= 15000 and full["width"] == 0.0625 and full["seeds"] >= 5
    assert full["steps"] % full["probe_every"] == 0  # a probe at the last step (the end-of-training table)
    assert float(defaults["dln_lr"]) == 0.001 and "dln_lr" not in PRESETS["05_loss_landscape"]["full"]

