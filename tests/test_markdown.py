"""bnlib.lab.markdown: one renderer of verdict records for SUMMARY.md and the README."""

from bnlib.lab.markdown import overview, verdict_counts, verdict_table

RECORD = {"claim": "BN | plain", "source": "§4.1", "outcome": "inconclusive", "estimate": 0.004, "ci": [-0.01, 0.018],
          "n": 5, "test": "paired t", "min_effect": 0.01, "predicts": "higher", "unit": "accuracy",
          "note": "line one\nline two", "label": "BN − plain"}


def test_a_table_row_per_record_with_pipes_and_newlines_escaped():
    lines = verdict_table([RECORD, RECORD | {"predicts": "same", "reference": 1.0, "source": ""}]).splitlines()
    assert lines[0] == "| claim | outcome | effect [95% CI], test, n | predicted | note |" and len(lines) == 4
    assert lines[2].startswith("| BN &#124; plain (§4.1) | **inconclusive** | BN − plain: +0.004 [95% CI -0.010, +0.018]")
    assert lines[2].endswith("| higher by ≥ 0.01 (accuracy) | line one line two |")
    assert "| BN &#124; plain | **inconclusive** |" in lines[3] and "| within 1 ± 0.01 (accuracy) |" in lines[3]


def test_a_record_with_parts_shows_each_part_and_its_outcome():
    parts = [RECORD | {"part": "MNIST", "outcome": "supported", "estimate": 0.05, "ci": [0.02, 0.08]},
             RECORD | {"part": "CIFAR-10"}]
    row = verdict_table([RECORD | {"outcome": "mixed", "parts": parts}]).splitlines()[2]
    assert "MNIST: BN − plain: +0.050 [95% CI +0.020, +0.080], paired t, n=5 → supported<br>CIFAR-10: " in row
    assert "→ inconclusive |" in row and "**mixed**" in row


def test_counts_keep_checks_apart_from_findings():
    verdicts = [RECORD, {"outcome": "fails", "kind": "check"}, {"outcome": "supported"}]
    assert verdict_counts(verdicts) == ("Findings: 1 supported, 0 not supported, 1 inconclusive, 0 mixed, 0 untestable here; "
                                        "checks: 0 passed, 1 failed.")
    assert overview({"03_x": {"verdicts": verdicts}}).splitlines()[2] == "| 03_x | ? | 1 | 0 | 1 | 0 | 0 | 0 passed, 1 failed |"
