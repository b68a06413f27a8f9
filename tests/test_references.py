"""The committed `full` references (outputs/reference/): every finding lists its preconditions with measured values, checks
are counted apart, no interval has zero width, and no text (the executed notebook's cells and outputs, README.md and
FINDINGS.md) names an outcome that the notebook's metrics.json does not hold."""
import json
import math
import re

import pytest
from smoke import notebook_text

from bnlib.lab import report
from bnlib.verdicts import CHECKS, FINDINGS, gated, summary, summary_mismatches

REFERENCE = report.REPO / "outputs" / "reference"
METRICS = sorted(REFERENCE.glob("*/metrics.json"))
STEMS = [p.parent.name for p in METRICS]


def _records(stem: str) -> list[dict]:
    return json.loads((REFERENCE / stem / "metrics.json").read_text())["verdicts"]


def test_every_notebook_has_a_reference():
    assert STEMS == sorted(p.stem for p in (report.REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("stem", STEMS)
def test_every_finding_lists_measured_preconditions_and_checks_are_apart(stem):
    for r in _records(stem):
        kind = r.get("kind")
        assert kind in ("finding", "check"), f"{stem}: {r['claim']!r} has no kind"
        assert r["outcome"] in (FINDINGS if kind == "finding" else CHECKS), f"{stem}: {r['claim']!r}: {r['outcome']!r}"
        if kind == "finding":
            pre = r.get("preconditions") or []
            assert pre, f"{stem}: the finding {r['claim']!r} lists no precondition"
            for p in pre:
                assert isinstance(p["value"], (int, float)) and math.isfinite(p["value"]), (stem, r["claim"], p)
            assert (r["outcome"] == "untestable here") == gated(r), (stem, r["claim"], r["outcome"])
            parts = {p["part"]: p["outcome"] for p in r.get("parts") or ()}
            for p in pre:
                for name in p.get("parts") or () if not p["passed"] else ():
                    assert parts[name] == "untestable here", (stem, r["claim"], p)


@pytest.mark.parametrize("stem", STEMS)
def test_no_zero_width_interval(stem):
    """A t-interval of zero width is only ever shown as "all n seeds equal"; exact tests never print a [x, x] interval."""
    for r in _records(stem):
        for e in r.get("parts") or [r]:
            low, high = e.get("ci") or (None, None)
            if low is not None and high is not None and low == high and e["test"].endswith(" t"):
                assert e.get("sd") == 0, (stem, r["claim"], e)
    same = re.compile(r"\[95% CI ([+-]?[\d.e+-]+), \1\]")
    texts = [REFERENCE / "SUMMARY.md", report.REPO / "README.md", report.REPO / "FINDINGS.md"]
    text = "".join(path.read_text() for path in texts)
    assert not same.findall(text), same.findall(text)[:3]


@pytest.mark.parametrize("stem", STEMS)
def test_executed_notebook_states_only_recorded_outcomes_and_ends_with_the_generated_summary(stem):
    records = _records(stem)
    text = notebook_text(json.loads((REFERENCE / f"{stem}.ipynb").read_text()))
    assert summary_mismatches(text, records) == []
    assert summary(records) in text, f"{stem}: the executed reference does not show the summary generated from metrics.json"


def test_readme_and_findings_state_only_recorded_outcomes():
    readme = (report.REPO / "README.md").read_text() + (report.REPO / "FINDINGS.md").read_text()
    for stem in STEMS:
        assert summary_mismatches(readme, _records(stem)) == [], stem


def test_a_summary_naming_another_outcome_is_caught():
    records = _records(STEMS[0])
    text = summary(records)
    r = records[0]
    wrong = "inconclusive" if r["outcome"] != "inconclusive" else "mixed"
    if r["kind"] == "check":
        wrong = "fails" if r["outcome"] == "passes" else "passes"
    tampered = text.replace(f"{r['claim']}: **{r['outcome']}**", f"{r['claim']}: **{wrong}**")
    assert tampered != text
    assert summary_mismatches(text, records) == []
    assert summary_mismatches(tampered, records) == [
        f"{r['claim']!r} is stated as {wrong!r}, but metrics.json holds {r['outcome']!r}"]
