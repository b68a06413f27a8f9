"""Notebook 04 (failed variants) at the smoke preset: its numbers, verdicts and files
(the run is the session fixture `smoke_run`)."""

import math

from smoke import assert_ends_with_summary, find_verdict, read_metrics, smoke_ran

from bnlib.verdicts import EXACT_PAIRED, FINDINGS, gated

NAME = "04_failed_variants"

CLAIMS = {  # claim (start of its text) -> (predicts, min_effect, number of parts at smoke: 0 for a single effect)
    # mnist x {rigid, rigid_mv, rigid_clip} and cifar10 x rigid (cifar_variants), in units of |BN − none|
    "Rigid BN does no better than BN": ("same", 0.5, 4),
    "The KL regularizer without normalization falls short of BN": ("lower", 0.01, 2),
    "A regularizer that is not stable makes training explode": ("higher", 0.5, 3),  # each against its own control, binary
    "Outliers are rare": ("same", 0.05, 2),  # 0.5 / sqrt(batch_size 100)
    "The rigid penalty is not stable": ("higher", 0.0, 2),  # mnist at bound 2 (the smoke sweep's biting bound), cifar10 at 3
    "The clip and the penalty limit": ("higher", 0.05, 3),  # mnist bound 2 x {clip, reg}, cifar10 x rigid_reg
    "The pre-activations are not normal": ("higher", 0.0, 4),
    "The KL term stops decreasing at some floor": ("higher", 1.0, 2),  # the level over its sampling floor, > 2x
    "The KL variant needs an initialization": ("higher", 0.01, 2),  # against BN and against the plain network
    "Without normalization there is no gamma-like term": ("higher", 0.1, 0),  # BN without γ against BN
    "The KL formula slip makes training collapse": ("higher", 0.5, 0),  # mnist (cifar_variants has no original expression)
    "The KL formula slip explains part of the failure": ("higher", 0.01, 0),  # mnist at the author's rate
}


def test_notebook_04_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "04")
    nb_out = out / "04_failed_variants"
    m = read_metrics(nb_out)
    n = m["numbers"]
    assert len(m["verdicts"]) == 13 and m["info"]["datasets"] == ["mnist", "cifar10"]
    assert m["info"]["cifar_seeds"] == 2 and m["info"]["cifar_optimizer"] == "adam" and m["info"]["cifar_lr"] == 0.001
    assert m["info"]["first_seed"] == 0 and m["info"]["seeds"] == 2
    assert m["info"]["bounds"] == {"mnist": 5.0, "cifar10": 3.0} and m["info"]["reg_cfs"] == {"mnist": 1.0, "cifar10": 0.001}
    assert n["demo_inlier_mean_error"] < 1e-12  # rigid BN's inlier mean ignores the planted outlier exactly
    for d in ("mnist", "cifar10"):
        assert 0 <= n["outlier_fraction_max"][d] <= 1 / 3**2  # never above Chebyshev's bound for bound >= 3
        assert len(n["rigid_reg_largest_pull"][d]) == 2 and all(r > 0 for r in n["rigid_reg_largest_pull"][d])  # per seed
        assert n["ks_after_relu"][d] > n["ks_pre_activation"][d] > 0  # rectified values are further from a normal
    assert set(n["largest_usable_lr"]) == {"none", "bn", "rigid", "rigid_clip", "rigid_reg", "kl_bn", "kl_only"}
    assert set(n["largest_usable_lr"].values()) <= {0.1, 3.0}  # the smoke preset's sweep_lrs
    assert all(len(per_seed) == 2 for per_seed in n["grad_cv"].values())
    assert set(n["gradient_spread"]) == {"none", "bn", "bn_no_gamma", "kl_only", "kl_only_no_gamma"}
    assert all(len(v) == 2 and all(0 < x < 5 for x in v) for v in n["gradient_spread"].values())  # SD of a log norm, per seed
    assert set(n["accuracy_lost_away_from_xavier"]) == {"none", "bn", "kl_only"}  # Xavier against the fixed scales N(0, σ²)
    assert set(n["departure_bound"]) == {"rigid", "rigid_mv", "rigid_clip", "rigid_reg"}
    # CIFAR-10 trains cifar_variants only; each variant's reading against BN at claim 1's margin
    assert set(n["failure_reading"]["cifar10"]) == {"none", "rigid", "rigid_reg", "kl_bn", "kl_only"}
    assert len(n["failure_reading"]["mnist"]) == 9
    readings = {"fails against BN", "matches BN", "beats BN", "undecided", "cannot show (BN − none not beyond its margin)"}
    assert {r for d in n["failure_reading"].values() for r in d.values()} <= readings
    assert all(b is None or b in (2.0, 5.0) for b in n["departure_bound"].values())  # one of the smoke preset's bounds
    bound_sweep = (nb_out / "bound_sweep.csv").read_text()
    assert "rigid_mv" in bound_sweep and "paired t, n=2" in bound_sweep
    table = (nb_out / "comparison_table.csv").read_text()
    assert all(v in table for v in ["rigid_clip", "rigid_mv", "kl_only_original"]) and "nan" not in table and "(SD " in table
    assert "not run" in table  # rigid_mv on CIFAR-10 (not in cifar_variants)
    assert "rigid_reg" in (nb_out / "failure_reproduced.csv").read_text()
    layer_stats = (nb_out / "layer_stats.csv").read_text()
    assert "conv1.norm" in layer_stats and "stem.norm" in layer_stats and "grad_spread" in layer_stats


def test_notebook_04_verdicts(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "04")
    m = read_metrics(out / "04_failed_variants")
    for start, (predicts, min_effect, n_parts) in CLAIMS.items():
        v = find_verdict(m["verdicts"], start)
        assert v["predicts"] == predicts and math.isclose(v["min_effect"], min_effect), start
        assert len(v.get("parts", [])) == n_parts, start
    # comparisons of variants share seeds: paired over the 2 smoke seeds, never Welch
    for start in ("Rigid BN does no better", "The KL regularizer without", "The clip and the penalty", "The KL variant needs"):
        for part in find_verdict(m["verdicts"], start)["parts"]:
            assert part["test"] == "paired t" and part["n"] == 2, (start, part["part"])
    for start in ("The KL formula slip explains", "Without normalization"):
        assert find_verdict(m["verdicts"], start)["test"] == "paired t" and find_verdict(m["verdicts"], start)["n"] == 2, start
    assert "BN without γ / BN − 1" in find_verdict(m["verdicts"], "Without normalization")["evidence"]
    # the original KL expression diverges within the first steps on MNIST at lr 0.05: a collapse in both seeds, the correct
    # KL in none, so the exact paired interval's estimate is 1
    collapse = find_verdict(m["verdicts"], "The KL formula slip makes training collapse")
    assert collapse["test"] == EXACT_PAIRED and collapse["estimate"] == 1.0
    assert "kl_only_original on mnist 2/2 (at step" in collapse["evidence"]
    assert "at the author's lr 0.001" in find_verdict(m["verdicts"], "The KL formula slip explains")["evidence"]
    check = find_verdict(m["verdicts"], "The KL penalty sees only each channel's")
    assert check["kind"] == "check" and check["outcome"] == "passes" and check["estimate"] < 1e-9  # the two-moment argument
    explode = find_verdict(m["verdicts"], "A regularizer that is not stable")
    assert [p["part"] for p in explode["parts"]] == ["rigid_reg", "kl_bn", "kl_only"]
    # a binary outcome per run at the large rates (smoke: 2 seeds x lr 3), paired with BN's run: an exact paired interval
    for part in explode["parts"]:
        assert part["test"] == EXACT_PAIRED and part["n"] == 2 and -1 <= part["ci"][0] <= part["estimate"] <= part["ci"][1] <= 1
        assert part["ci"][0] < part["ci"][1], part  # never a zero-width interval, even when every run agrees
    assert [p["label"] for p in explode["parts"]] == ["rigid_reg − rigid", "kl_bn − bn", "kl_only − none"]
    assert "against BN: " in explode["evidence"]
    shares = read_metrics(out / "04_failed_variants")["numbers"]["diverged_share_at_large_lrs"]
    assert all(len(v) == 2 and all(0 <= x <= 1 for x in v) for v in shares.values())


# the precondition kinds each finding must list (at least these), by the start of its claim
PRECONDITIONS = {
    "Rigid BN does no better than BN": {"positive control", "manipulation check", "plateau", "in range"},
    "The KL regularizer without normalization falls short of BN": {"positive control", "plateau", "in range"},
    "A regularizer that is not stable makes training explode": {"in range", "manipulation check"},
    "Outliers are rare": {"positive control"},
    "The rigid penalty is not stable": {"manipulation check"},
    "The clip and the penalty limit": {"manipulation check"},
    "The pre-activations are not normal": {"in range"},
    "The KL term stops decreasing": {"plateau"},
    "The KL variant needs an initialization": {"in range", "plateau"},
    "Without normalization there is no gamma-like term": {"manipulation check"},
    "The KL formula slip makes training collapse": {"in range"},
    "The KL formula slip explains part of the failure": {"plateau", "in range"},
}


def test_notebook_04_findings_list_their_preconditions(smoke_run):
    """Every verdict is a finding with measured preconditions, and a failed one (only a failed one) makes it untestable here."""
    out, _ = smoke_run
    smoke_ran(out, "04")
    m = read_metrics(out / NAME)
    assert [v["kind"] for v in m["verdicts"]].count("check") == 1  # the two-moment argument; every other one is per seed
    for v in (v for v in m["verdicts"] if v["kind"] == "finding"):
        assert v["outcome"] in FINDINGS, v["claim"]
        pre = v["preconditions"]
        assert pre and all(isinstance(p["value"], (int, float)) and math.isfinite(p["value"]) for p in pre), v["claim"]
        assert all(p["name"] and p["requirement"] for p in pre), v["claim"]
        assert (v["outcome"] == "untestable here") == gated(v), (v["claim"], v["outcome"])
        gated_parts = {name for p in pre if not p["passed"] for name in p["parts"]}
        assert all(q["outcome"] == "untestable here" for q in v.get("parts", []) if q["part"] in gated_parts), v["claim"]
    for start, kinds in PRECONDITIONS.items():
        assert kinds <= {p["kind"] for p in find_verdict(m["verdicts"], start)["preconditions"]}, start
    rigid = find_verdict(m["verdicts"], "Rigid BN does no better")
    controls = [p for p in rigid["preconditions"] if p["kind"] == "positive control"]
    assert [p["name"].split(":")[0] for p in controls] == ["mnist", "cifar10"] and all("BN − none" in p["name"] for p in controls)
    # the claim's own margin, ½ × |BN − none| on each dataset, in accuracy
    bn_none = m["numbers"]["bn_minus_none"]
    for p, d in zip(controls, ["mnist", "cifar10"]):
        assert math.isclose(float(p["requirement"].split("±")[1]), 0.5 * abs(bn_none[d]), rel_tol=1e-3), p["requirement"]
    assert "margin in accuracy, ½ × |BN − none|: mnist " in rigid["evidence"]
    # the mechanisms: a share of values beyond the bound against 1%, the penalty's pull against the claim's 5%
    checks = [p for p in find_verdict(m["verdicts"], "The clip and the penalty")["preconditions"]]
    assert [p["requirement"] for p in checks] == ["> 0.01", "> 0.05", "> 0.05"]
    assert [p["parts"] for p in checks] == [["mnist, bound 2, rigid_clip"], ["mnist, bound 2, rigid_reg"],
                                            ["cifar10, bound 3, rigid_reg"]]
    assert 0 <= checks[0]["value"] <= 1 and "beyond ±2" in checks[0]["name"]  # measured in the bound sweep at its bound
    explode = find_verdict(m["verdicts"], "A regularizer that is not stable")
    gates = {p["parts"][0] for p in explode["preconditions"] if p["kind"] == "in range"}
    assert gates == {"rigid_reg", "kl_bn", "kl_only"} and any(p["name"].startswith("none's") for p in explode["preconditions"])
    n = m["numbers"]
    assert all(0 < n["ks_sampling_floor"][d] < 0.3 for d in ("mnist", "cifar10"))
    # the KL of a batch from exactly N(0, 1): about 1/m per channel, so at least the fully connected layer's 1/batch_size (mnist)
    assert 0.005 < n["kl_sampling_floor"]["mnist"] < 0.02 and n["kl_sampling_floor"]["cifar10"] > 0
    floor = find_verdict(m["verdicts"], "The KL term stops decreasing")
    assert all(p["estimate"] > 0 for p in floor["parts"]) and "sampling floor (sum over layers): mnist " in floor["evidence"]


def test_notebook_04_closes_with_the_generated_summary(smoke_run):
    """The last output is the summary generated from metrics.json, and no text names another outcome than it holds."""
    out, _ = smoke_run
    smoke_ran(out, "04")
    assert_ends_with_summary(out / f"{NAME}.ipynb", read_metrics(out / NAME)["verdicts"])
