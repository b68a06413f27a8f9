"""bnlib.verdicts: the statistics against scipy, each outcome on constructed data, and the figure bands."""

import json
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from bnlib import verdicts as V  # noqa: E402
from bnlib.plots import band_table, seed_band, t_interval  # noqa: E402

A = [0.912, 0.905, 0.921, 0.899, 0.917]
B = [0.901, 0.899, 0.905, 0.893, 0.902]


def test_paired_matches_scipy_ttest_rel():
    e = V.paired(A, B)
    ref = stats.ttest_rel(A, B).confidence_interval(0.95)
    assert e.test == "paired t" and e.n == 5 and e.dof == 4
    assert e.estimate == pytest.approx(np.mean(np.subtract(A, B)))
    assert (e.low, e.high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert e.sd == pytest.approx(np.std(np.subtract(A, B), ddof=1))


def test_welch_matches_scipy_ttest_ind():
    b = B[:3] + [0.95]
    e = V.welch(A, b)
    ref = stats.ttest_ind(A, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert e.test == "Welch t" and (e.n, e.n_b) == (5, 4) and e.n_text() == "n=5+4"
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert e.dof == pytest.approx(ref.df, rel=1e-12)


def test_one_sample_and_t_quantiles_match_scipy():
    e = V.one_sample(A)
    ci = stats.ttest_1samp(A, 0).confidence_interval(0.95)
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    for dof in (1, 2, 4, 9, 30):
        assert V.t_quantile(dof) == pytest.approx(stats.t.ppf(0.975, dof), rel=1e-12)
    assert V.t_quantile(4, level=0.9) == pytest.approx(stats.t.ppf(0.95, 4))


def test_difference_pairs_by_seed_not_by_position():
    a = pd.Series([1.0, 2.0, 3.0], index=[10, 11, 12])
    b = pd.Series([2.5, 1.5, 0.5], index=[12, 11, 10])  # same seeds, other order
    e = V.difference(a, b)
    assert e.test == "paired t" and e.values == pytest.approx((0.5, 0.5, 0.5))
    assert V.difference(a, pd.Series([1.0, 2.0], index=[0, 1])).test == "Welch t"
    with pytest.raises(ValueError, match="only in a: \\[12\\]"):
        V.paired(a, pd.Series([1.0, 2.0], index=[10, 11]))


def test_relative_paired_difference_is_ratio_minus_one():
    e = V.paired([50.0, 90.0], [100.0, 100.0], relative=True)
    assert e.values == pytest.approx((-0.5, -0.1)) and e.estimate == pytest.approx(-0.3)


def test_nan_is_refused_with_advice():
    with pytest.raises(ValueError, match="give diverged or never-learning runs a value first"):
        V.paired([1.0, math.nan], [1.0, 2.0])


CLAIM = V.Claim("BN is better", "test", predicts="higher", min_effect=0.01, unit="accuracy difference")


def test_clear_effect_is_supported():
    e = V.paired([0.95, 0.96, 0.955, 0.952, 0.958], [0.90, 0.91, 0.905, 0.899, 0.907])
    assert CLAIM.decide(e) == "supported"
    assert V.Claim("x", "t", predicts="lower", min_effect=0.01).decide(e) == "not supported"


def test_tight_interval_around_zero_is_not_supported():
    e = V.paired([0.900, 0.910, 0.905, 0.903], [0.901, 0.909, 0.905, 0.902])
    assert e.low < 0 < e.high and CLAIM.decide(e) == "not supported"
    assert "smallest effect that would matter" in CLAIM.explain(e)


def test_real_but_negligible_effect_is_not_supported():
    e = V.paired([0.903, 0.904, 0.9035], [0.900, 0.901, 0.9005])  # +0.003, well determined, below min_effect 0.01
    assert e.low > 0 and CLAIM.decide(e) == "not supported"


def test_n2_with_wide_interval_is_inconclusive_and_says_how_many_seeds():
    e = V.paired([0.95, 0.80], [0.90, 0.90])
    assert CLAIM.decide(e) == "inconclusive"
    text = CLAIM.explain(e)
    n = int(text.split("about ")[1].split(" seeds")[0])
    assert n > 2 and V.t_quantile(n - 1) * e.sd / math.sqrt(n) < abs(e.estimate - 0.01) + 0.01
    assert CLAIM.decide(V.one_sample([0.5])) == "inconclusive"  # one seed never decides


def test_estimate_short_of_min_effect_with_ci_above_zero_is_inconclusive():
    e = V.one_sample([0.003, 0.013, 0.005, 0.011, 0.008, 0.008, 0.006, 0.010])  # CI above 0, estimate 0.008, CI reaches 0.01
    assert e.low > 0 and e.estimate < 0.01 < e.high and CLAIM.decide(e) == "inconclusive"


def test_reference_and_tolerance_claims():
    tol = V.Claim("error below 1e-6", "t", predicts="lower", min_effect=0, reference=1e-6)
    assert tol.decide(V.exact(1e-9)) == "supported" and tol.decide(V.exact(1e-3)) == "not supported"


def test_same_claims_use_an_equivalence_band():
    same = V.Claim("no effect", "t", predicts="same", min_effect=0.01)
    assert same.decide(V.paired([0.90, 0.91, 0.905, 0.902], [0.901, 0.909, 0.905, 0.902])) == "supported"
    assert same.decide(V.paired([0.95, 0.96, 0.955], [0.90, 0.91, 0.905])) == "not supported"
    assert same.decide(V.paired([0.95, 0.85], [0.90, 0.90])) == "inconclusive"
    with pytest.raises(ValueError, match="needs min_effect > 0"):
        V.Claim("no effect", "t", predicts="same", min_effect=0)


def test_parts_that_disagree_are_mixed_and_undecided_parts_inconclusive():
    clear = V.paired([0.95, 0.96, 0.955], [0.90, 0.91, 0.905])
    none = V.paired([0.900, 0.910, 0.905, 0.903], [0.901, 0.909, 0.905, 0.902])
    wide = V.paired([0.95, 0.80], [0.90, 0.90])
    assert V.judge(CLAIM, {"MNIST": clear, "CIFAR": none}).outcome == "mixed"
    assert V.judge(CLAIM, {"MNIST": clear, "CIFAR": clear}).outcome == "supported"
    assert V.judge(CLAIM, {"MNIST": clear, "CIFAR": wide}).outcome == "inconclusive"
    assert V.judge(CLAIM, {"MNIST": clear, "CIFAR": none}).combination() == (
        "parts: 1 supported, 1 not supported → mixed (decisive parts disagree)")
    assert "not every part is decided" in str(V.judge(CLAIM, {"MNIST": clear, "CIFAR": wide}))
    with pytest.raises(ValueError, match="no evidence"):
        V.judge(CLAIM, {})


def test_claim_input_errors():
    with pytest.raises(ValueError, match="predicts must be"):
        V.Claim("x", "t", predicts="up", min_effect=0.1)
    with pytest.raises(ValueError, match="min_effect must be a number >= 0"):
        V.Claim("x", "t", predicts="higher", min_effect=-1)


def test_sign_test_matches_scipy_and_ignores_ties():
    wins, n, p = V.sign_test([0.1, 0.2, 0.3, 0.4, -0.1, 0.0])
    assert (wins, n) == (4, 5) and p == pytest.approx(stats.binomtest(4, 5).pvalue)


def test_steps_to_target_interpolates_on_a_hand_made_curve():
    steps, acc = [0, 500, 1000, 1500], [0.10, 0.90, 0.95, 0.99]
    assert V.steps_to_target(steps, acc, 0.96) == pytest.approx(1000 + 0.01 / 0.04 * 500)  # 1125
    assert V.steps_to_target(steps, acc, 0.90) == 500  # reached exactly at an evaluation
    assert V.steps_to_target(steps, acc, 0.05) == 0
    assert math.isnan(V.steps_to_target(steps, acc, 0.995))
    # two runs that cross between the same evaluations are no longer a tie at the resolution
    assert V.steps_to_target(steps, [0.1, 0.9, 0.97, 0.99], 0.96) < V.steps_to_target(steps, acc, 0.96)


def test_final_rows_keep_diverged_runs_at_the_given_value():
    df = pd.DataFrame({"net": ["a"] * 4 + ["b"] * 2, "seed": [0, 0, 1, 1, 0, 0], "step": [0, 10, 0, 3, 0, 10],
                       "test_acc": [0.1, 0.8, 0.1, np.nan, 0.1, 0.7], "diverged": [False, False, False, True, False, False]})
    f = V.final_rows(df, ["net"], diverged_value=0.1)
    assert f[["net", "seed", "value", "diverged"]].values.tolist() == [["a", 0, 0.8, False], ["a", 1, 0.1, True],
                                                                      ["b", 0, 0.7, False]]
    assert V.per_seed(f, {"net": "a"}).to_dict() == {0: 0.8, 1: 0.1}


def test_results_record_every_field_and_print_the_verdict(tmp_path, capsys):
    r = V.Results(tmp_path, notebook="x", first_seed=0)
    e = V.paired([0.95, 0.96, 0.955], [0.90, 0.905, 0.906], label="BN − plain")
    r.verdict(CLAIM, e, note="3 seeds")
    r.verdict(CLAIM, e, note="again")  # replaces
    printed = capsys.readouterr().out
    assert "SUPPORTED: BN is better (test)" in printed and "paired t, n=3" in printed and "95% CI" in printed
    data = json.loads(r.save().read_text())
    (v,) = data["verdicts"]
    assert v["outcome"] == "supported" and v["note"] == "again" and v["test"] == "paired t" and v["n"] == 3
    assert v["min_effect"] == 0.01 and v["predicts"] == "higher" and v["ci"][0] < v["estimate"] < v["ci"][1]
    assert "paired t, n=3" in v["evidence"] and v["source"] == "test"
    r.verdict(V.Claim("parts", "t", predicts="higher", min_effect=0.01), {"A": e, "B": V.exact(0.0)})
    parts = json.loads(r.save().read_text())["verdicts"][1]
    assert parts["outcome"] == "mixed" and [p["outcome"] for p in parts["parts"]] == ["supported", "not supported"]
    assert r.outcome("parts") == "mixed"


def test_text_always_says_what_the_interval_is():
    assert V.paired(A, B, label="d").text().startswith("d: +0.0") and "[95% CI " in V.paired(A, B).text()
    assert V.mean_sd([1.0, 2.0, 3.0]) == "2.0 (SD 1.0, n=3)"
    assert "(no interval: one-sample t, n=1)" in V.one_sample([1.0]).text()


def test_seed_band_draws_the_verdicts_interval():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"step": np.repeat([0, 1, 2], 5), "acc": rng.normal(0.5, 0.05, 15), "seed": np.tile(range(5), 3)})
    table = band_table(df, "step", "acc")
    for _, row in table.iterrows():
        e = V.one_sample(df[df["step"] == row["step"]]["acc"])
        assert (row["low"], row["high"]) == pytest.approx((e.low, e.high), rel=1e-12)
        assert t_interval(df[df["step"] == row["step"]]["acc"]) == pytest.approx((e.low, e.high), rel=1e-12)
    ax = seed_band(df, "step", "acc")
    band = ax.collections[0].get_paths()[0].vertices  # fill_between polygon: low and high edges
    assert band[:, 1].min() == pytest.approx(table["low"].min()) and band[:, 1].max() == pytest.approx(table["high"].max())


def test_seed_band_draws_each_seed_when_n_is_small():
    df = pd.DataFrame({"step": [0, 1, 0, 1], "acc": [0.1, 0.5, 0.2, 0.6], "seed": [0, 0, 1, 1]})
    ax = seed_band(df, "step", "acc")
    assert len(ax.lines) == 3 and not ax.collections  # the mean and one thin line per seed, no band


# --------------------------------------------------------------------------- preconditions, checks, exact intervals

HIGHER = V.Claim("BN is higher", "test", predicts="higher", min_effect=0.01)
SAME = V.Claim("rigid BN does no better than BN", "test", predicts="same", min_effect=0.01)
PRECONDITIONS = {  # each kind, on a constructed case where it fails
    "positive control": V.positive_control("BN − none", V.paired([0.981, 0.978, 0.980], [0.979, 0.977, 0.981]), 0.01),
    "manipulation check": V.manipulation_check("share of values clipped", 0.00045, 0.01),
    "interior optimum": V.interior_optimum("chosen lr", 0.01, [0.01, 0.1, 1.0]),
    "plateau": V.plateau("test accuracy, last quarter of training", 0.01, 0.003),
    "in range": V.in_range("plain network's final accuracy", 0.1, 0.12, 0.99),
}


@pytest.mark.parametrize("kind", sorted(PRECONDITIONS))
def test_a_failed_precondition_makes_the_claim_untestable_never_not_supported(kind):
    failed = PRECONDITIONS[kind]
    assert failed.kind == kind and not failed.passed
    for claim, effect in ((HIGHER, V.paired(B, A)), (SAME, V.paired([a + 0.05 for a in A], B))):  # not supported
        assert claim.decide(effect) == "not supported"
        v = V.judge(claim, effect, preconditions=[failed])
        assert v.outcome == "untestable here"
        rec = v.record()
        assert rec["preconditions"][0] == failed.record() and rec["preconditions"][0]["passed"] is False
        assert rec["evidence"].startswith(f"untestable here: {kind}: ") and failed.remedy in rec["evidence"]
        assert "untestable here, because a precondition failed" in str(v)


def test_preconditions_that_hold_are_recorded_with_their_values_and_leave_the_outcome():
    held = [V.positive_control("BN − none", V.paired(A, B), 0.001), V.interior_optimum("lr", 0.1, [0.01, 0.1, 1.0]),
            V.plateau("last quarter", 0.001, 0.003), V.in_range("accuracy", 0.9, 0.12, 0.99),
            V.manipulation_check("drift, noisy − plain", 0.5, 0.0)]
    assert all(p.passed for p in held)
    v = V.judge(HIGHER, V.paired(A, B), preconditions=held)
    assert v.outcome == V.judge(HIGHER, V.paired(A, B)).outcome == "supported"
    assert [p["value"] for p in v.record()["preconditions"]][1:] == [0.1, 0.001, 0.9, 0.5]
    assert "preconditions: positive control: BN − none = 0.0108" in v.evidence()
    with pytest.raises(ValueError, match="unknown precondition kind 'control'"):
        V.Precondition("control", "x", 1.0, "> 0", True)


def test_an_identity_recorded_as_a_check_passes_or_fails_and_is_never_counted_as_supported(tmp_path, capsys):
    from bnlib.lab.markdown import overview

    identity = V.Claim("the manual backward equals autograd", "paper Sec. 3", predicts="lower", min_effect=0,
                       reference=1e-4, unit="largest relative error")
    r = V.Results(tmp_path)
    r.check(identity, V.exact(3.6e-15, label="float64"))
    r.check(V.Claim("the rank bound holds", "note", predicts="lower", min_effect=0, reference=784), V.exact(900.0))
    r.verdict(HIGHER, V.paired(A, B))
    assert capsys.readouterr().out.startswith("PASSES: the manual backward equals autograd")
    kinds = [(v["kind"], v["outcome"]) for v in json.loads(r.save().read_text())["verdicts"]]
    assert kinds == [("check", "passes"), ("check", "fails"), ("finding", "supported")]
    table = overview({"01_x": {"info": {"preset": "full"}, "verdicts": r.verdicts}})
    assert table.splitlines()[-1] == "| 01_x | full | 1 | 0 | 0 | 0 | 0 | 1 passed, 1 failed |"  # 1 supported: the finding
    with pytest.raises(ValueError, match="outcome 'supported' does not fit kind 'check'"):
        V.tally([{"claim": "an identity", "kind": "check", "outcome": "supported"}])


@pytest.mark.parametrize("k, n", [(0, 5), (1, 5), (3, 5), (5, 5), (7, 10)])
def test_clopper_pearson_matches_scipy(k, n):
    e = V.proportion([True] * k + [False] * (n - k))
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert (e.estimate, e.low, e.high, e.n, e.test) == (k / n, pytest.approx(ci.low), pytest.approx(ci.high), n,
                                                          V.CLOPPER_PEARSON)
    assert e.high - e.low > 0.3  # never zero-wide, also when every seed agrees
    with pytest.raises(ValueError, match="one binary outcome per seed"):
        V.proportion([0.5, 1.0])


def test_the_exact_paired_interval_maps_the_discordant_seeds_clopper_pearson_interval():
    a, b = [1, 1, 1, 1, 0, 1, 0, 0], [0, 0, 0, 1, 0, 1, 1, 0]  # 3 seeds favour a, 1 favours b, 4 agree
    e = V.paired_binary(a, b)
    ci = stats.binomtest(3, 4).proportion_ci(confidence_level=0.95, method="exact")
    assert e.estimate == pytest.approx(2 / 8) and e.test == V.EXACT_PAIRED
    assert (e.low, e.high) == (pytest.approx(4 / 8 * (2 * ci.low - 1)), pytest.approx(4 / 8 * (2 * ci.high - 1)))
    agree = V.paired_binary([1, 0, 1, 1, 1], [1, 0, 1, 1, 1])  # no discordant seed: bounded by the discordant share
    bound = stats.binomtest(0, 5).proportion_ci(confidence_level=0.95, method="exact").high
    assert (agree.estimate, agree.low, agree.high) == (0.0, pytest.approx(-bound), pytest.approx(bound))
    assert V.Claim("A diverges more", "t", predicts="higher", min_effect=0.5).decide(V.paired_binary([1] * 5, [0] * 5)) \
        == "inconclusive"  # 5 of 5 discordant seeds one way: McNemar's exact p = 0.06


def test_equal_seeds_are_said_to_be_equal_not_given_a_zero_width_interval():
    e = V.paired([3.0, 3.0, 3.0, 3.0, 3.0], [0.0] * 5, label="decades")
    assert e.all_equal and e.text() == "decades: +3.00 (all 5 seeds equal: no spread, no interval; paired t)"
    assert "CI" not in V.judge(V.Claim("x", "t", predicts="higher", min_effect=1), e).evidence()
    assert not V.paired(A, B).all_equal and not V.exact(1.0).all_equal


def test_a_margin_measured_in_the_run_is_printed_with_the_rule():
    reference = V.paired(A, B)  # a known difference, e.g. BN − none
    claim = SAME.margin_from(reference, 0.5, "BN − none")
    assert claim.min_effect == pytest.approx(0.5 * abs(reference.estimate))
    assert claim.rule().endswith(f"(margin: 0.5 × |BN − none| = 0.5 × {V.fmt(abs(reference.estimate))})")
    with pytest.raises(ValueError, match="needs a finite, nonzero estimate"):
        SAME.margin_from(V.exact(0.0), 0.5, "BN − none")


# --------------------------------------------------------------------------- bands that fit the data

def test_a_bimodal_sample_is_drawn_seed_by_seed_and_no_band_leaves_0_1():
    """5 seeds, 2 at chance and 3 learning: the mean describes no seed, and its t-band would reach above 1."""
    final = [0.10, 0.10, 0.97, 0.98, 0.97]
    df = pd.DataFrame({"step": np.repeat([0, 100], 5), "test_acc": [0.1] * 5 + final, "seed": np.tile(range(5), 2)})
    assert V.one_sample(final).high > 1  # what a band would have drawn
    ax = seed_band(df, "step", "test_acc")
    assert len(ax.lines) == 1 + 5 and not ax.collections  # the mean and each seed, no band
    assert all(0 <= y <= 1 for line in ax.lines for y in line.get_ydata())
    assert [t.get_text() for t in ax.texts] == ["thin lines: each seed, where the seeds split into groups"]


def test_a_band_is_clipped_to_the_measures_range_and_says_so():
    df = pd.DataFrame({"step": np.repeat([0, 1], 4), "acc": [0.95, 0.99, 0.97, 0.999, 0.96, 0.995, 0.98, 0.99],
                       "seed": np.tile(range(4), 2)})
    assert band_table(df, "step", "acc")["high"].max() > 1  # unclipped, the t-interval passes 1
    ax = seed_band(df, "step", "acc")
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() <= 1.0 and [t.get_text() for t in ax.texts] == ["band clipped to [0, 1]"]
    loss = seed_band(df.rename(columns={"acc": "loss"}), "step", "loss", limits=(0, math.inf))
    assert not loss.texts  # a loss has no upper bound: nothing clipped


def test_a_log_axis_band_is_computed_on_the_log_values():
    df = pd.DataFrame({"x": [0] * 4, "ratio": [1.0, 10.0, 100.0, 1000.0], "seed": range(4)})
    table = band_table(df, "x", "ratio", log=True)
    e = V.one_sample(np.log10([1.0, 10.0, 100.0, 1000.0]))
    assert table["mean"].iloc[0] == pytest.approx(10**1.5)  # the geometric mean
    assert (table["low"].iloc[0], table["high"].iloc[0]) == pytest.approx((10**e.low, 10**e.high))
    assert table["low"].iloc[0] > 0  # on the log scale the band stays positive
    assert seed_band(df, "x", "ratio", logy=True).get_yscale() == "log"


def test_summary_states_each_recorded_outcome_and_counts_checks_apart():
    claim = V.Claim("BN is higher", "demo", predicts="higher", min_effect=0.01)
    records = [V.judge(claim, V.paired([0.9, 0.92, 0.91], [0.8, 0.83, 0.81])).record(),
               V.judge(V.Claim("BN is lower", "demo", predicts="lower", min_effect=0.01), V.exact(0.5),
                     preconditions=[V.in_range("plain accuracy", 0.1, 0.15, 0.99)]).record(),
               V.check(V.Claim("an identity", "demo", predicts="lower", min_effect=0, reference=1e-6), V.exact(1e-9)).record()]
    text = V.summary(records)
    assert text.splitlines()[0] == ("**Findings** (1 supported, 0 not supported, 0 inconclusive, 0 mixed, "
                                    "1 untestable here):")
    assert "- BN is lower: **untestable here**. in range failed: plain accuracy = 0.1, inside (0.15, 0.99)" in text
    assert "**Checks**, exact computations that cannot support a claim (1 passed, 0 failed):" in text
    assert "- an identity: **passes**." in text
    assert V.summary_mismatches(text, records) == []


def test_preset_note_labels_smoke_and_quick_and_leaves_full_alone():
    smoke, quick = V.preset_note("smoke"), V.preset_note("quick")
    assert "only check that the code runs" in smoke and "`outputs/reference/`" in smoke and "not results" in smoke
    assert "reduced sizes" in quick and "`full` references" in quick
    assert V.preset_note("full") == ""
    assert "\n" not in smoke + quick  # one paragraph each
    with pytest.raises(ValueError, match="unknown preset 'tiny'"):
        V.preset_note("tiny")


def test_summary_opens_with_the_preset_note_below_full(tmp_path):
    records = [V.judge(V.Claim("BN is higher", "demo", predicts="higher", min_effect=0.01), V.exact(0.5)).record()]
    full = V.summary(records)
    assert full == V.summary(records, preset="full") and full.startswith("**Findings**")
    for preset in ("smoke", "quick"):
        assert V.summary(records, preset=preset) == V.preset_note(preset) + "\n\n" + full
    r = V.Results(tmp_path, notebook="demo", preset="smoke")
    r.verdict(V.Claim("BN is higher", "demo", predicts="higher", min_effect=0.01), V.exact(0.5))
    assert r.summary().startswith(V.preset_note("smoke")) and r.summary().endswith(full)
    assert V.Results(tmp_path, notebook="demo").summary() == V.summary([])  # no preset recorded: no note
    assert V.summary_mismatches(V.summary(records, preset="quick"), records) == []


def test_summary_mismatches_reads_the_outcome_next_to_the_whole_claim():
    records = [{"claim": "BN trains faster", "outcome": "inconclusive"}]
    assert V.summary_mismatches("| BN trains faster (paper) | **supported** |", records) == [
        "'BN trains faster' is stated as 'supported', but metrics.json holds 'inconclusive'"]
    assert V.summary_mismatches("BN trains faster at the same rate: **supported**", records) == []  # another claim
    assert V.summary_mismatches("NOT SUPPORTED: BN trains faster (paper)", records) == [
        "'BN trains faster' is stated as 'not supported', but metrics.json holds 'inconclusive'"]
    assert V.summary_mismatches("BN trains faster: inconclusive, not supported elsewhere", records) == []


def test_a_part_precondition_gates_only_its_part():
    claim = V.Claim("BN's ICS is not lower", "demo", predicts="higher", min_effect=0.1)
    effects = {"lr 0.1": V.paired([0.5, 0.52, 0.51], [0.8, 0.83, 0.81]),
               "lr 0.5": V.paired([0.5, 0.52, 0.51], [0.9, 0.93, 0.91])}
    gate = V.in_range("plain ICS", 0.92, 0.1, 0.9).for_parts("lr 0.5")
    v = V.judge(claim, effects, preconditions=[gate])
    assert (v.outcome, v.parts) == ("not supported", {"lr 0.1": "not supported", "lr 0.5": "untestable here"})
    assert "the untestable parts left out" in v.evidence() and v.record()["preconditions"][0]["parts"] == ["lr 0.5"]
    assert not V.gated(v.record())
    # testable parts that support the claim cannot stand for the untestable ones: a claim is supported by all its parts
    upside = {"lr 0.1": V.paired([0.8, 0.83, 0.81], [0.5, 0.52, 0.51]), "lr 0.5": effects["lr 0.5"]}
    held = V.judge(claim, upside, preconditions=[gate])
    assert held.parts["lr 0.1"] == "supported" and held.outcome == "untestable here" and V.gated(held.record())
    assert "a claim is supported only by all of its parts" in held.evidence()
    both = V.judge(claim, effects, preconditions=[gate, V.in_range("plain ICS", 0.95, 0.1, 0.9).for_parts("lr 0.1")])
    assert both.outcome == "untestable here"
    with pytest.raises(ValueError, match=r"preconditions for parts \['lr 1'\] that the claim does not have"):
        V.judge(claim, effects, preconditions=[gate.for_parts("lr 1")])


def test_values_that_barely_leave_a_bound_do_not_split():
    """A share at 0 in four seeds and 0.001 in the fifth is one group on a [0, 1] measure, not a split."""
    df = pd.DataFrame({"x": [0] * 5, "y": [0.0, 0.0, 0.0, 0.0, 0.001]})
    assert not band_table(df, "x", "y", limits=(0, 1))["split"].item()
    assert band_table(df, "x", "y")["split"].item()  # without a range there is no scale to judge the gap by
    bimodal = pd.DataFrame({"x": [0] * 5, "y": [0.10, 0.11, 0.90, 0.91, 0.92]})
    assert band_table(bimodal, "x", "y", limits=(0, 1))["split"].item()


def test_seed_band_leaves_an_axis_unlabelled_when_asked():
    df = pd.DataFrame({"step": [0, 0, 1, 1], "share": [0.1, 0.2, 0.3, 0.4], "seed": [0, 1, 0, 1]})
    ax = seed_band(df, "step", "share", ylabel="")
    assert ax.get_ylabel() == "" and ax.get_xlabel() == "step"
