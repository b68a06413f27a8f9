"""Verdict records (as in ``metrics.json``) rendered to Markdown, one way for ``SUMMARY.md`` (:mod:`bnlib.lab.records`)
and the README (:mod:`bnlib.lab.report`): a table of claims with outcome, effect and interval, rule and note; the
outcome counts in one line; the overview of every notebook's counts. Cells escape ``|`` as ``&#124;``.

Example:
    >>> table = verdict_table([{"claim": "c", "source": "s", "outcome": "supported", "estimate": 0.05,
    ...     "ci": [0.02, 0.08], "n": 5, "test": "paired t", "min_effect": 0.01, "predicts": "higher",
    ...     "unit": "accuracy", "note": "", "label": "BN − plain"}])
    >>> table.splitlines()[2]
    '| c (s) | **supported** | BN − plain: +0.050 [95% CI +0.020, +0.080], paired t, n=5 | higher by ≥ 0.01 (accuracy) |  |'
"""

from __future__ import annotations

from collections.abc import Sequence

from bnlib.verdicts import FINDINGS, Effect, tally


def _cell(text: str) -> str:
    return str(text).replace("|", "&#124;").replace("\n", " ")


def _effect_text(rec: dict) -> str:
    return Effect.from_record(rec).text()  # "all n seeds equal" where the record's SD is 0


def _rule_text(rec: dict) -> str:
    unit = f" ({rec['unit']})" if rec.get("unit") else ""
    ref = rec.get("reference", 0) or 0
    if rec["predicts"] == "same":
        return f"within {ref:g} ± {rec['min_effect']:g}{unit}"
    if not rec["min_effect"]:
        return f"{'above' if rec['predicts'] == 'higher' else 'below'} {ref:g}{unit}"
    base = f" from {ref:g}" if ref else ""
    return f"{rec['predicts']} by ≥ {rec['min_effect']:g}{base}{unit}"


def verdict_table(verdicts: Sequence[dict]) -> str:
    """A markdown table of verdict records (as in ``metrics.json``): claim, outcome, effect with its interval, rule, note."""
    lines = ["| claim | outcome | effect [95% CI], test, n | predicted | note |", "|---|---|---|---|---|"]
    for v in verdicts:
        if "parts" in v:
            effect = "<br>".join(f"{p['part']}: {_effect_text(p)} → {p['outcome']}" for p in v["parts"])
        else:
            effect = _effect_text(v)
        claim = f"{v['claim']} ({v['source']})" if v.get("source") else v["claim"]
        lines.append("| " + " | ".join(_cell(c) for c in [claim, f"**{v['outcome']}**", effect, _rule_text(v),
                                                              v.get("note", "")]) + " |")
    return "\n".join(lines)


def overview(all_metrics: dict[str, dict]) -> str:
    """Outcome counts per notebook: findings by outcome, and checks (exact computations) apart.

    Example:
        >>> print(overview({"01_x": {"info": {"preset": "full"}, "verdicts": [{"outcome": "supported"},
        ...     {"outcome": "passes", "kind": "check"}, {"outcome": "untestable here"}]}}))
        | notebook | preset | supported | not supported | inconclusive | mixed | untestable here | checks |
        |---|---|---|---|---|---|---|---|
        | 01_x | full | 1 | 0 | 0 | 0 | 1 | 1 passed, 0 failed |
    """
    lines = ["| notebook | preset | " + " | ".join(FINDINGS) + " | checks |", "|---|---|" + "---|" * (len(FINDINGS) + 1)]
    for stem, m in all_metrics.items():
        n = tally(m.get("verdicts", []))
        lines.append(f"| {stem} | {m.get('info', {}).get('preset', '?')} | " + " | ".join(str(n[o]) for o in FINDINGS)
                     + f" | {n['passes']} passed, {n['fails']} failed |")
    return "\n".join(lines)


def verdict_counts(verdicts: Sequence[dict]) -> str:
    """Findings by outcome and checks apart, in one line (a check never counts as a finding).

    Example:
        >>> verdict_counts([{"outcome": "supported"}, {"outcome": "passes", "kind": "check"}])
        'Findings: 1 supported, 0 not supported, 0 inconclusive, 0 mixed, 0 untestable here; checks: 1 passed, 0 failed.'
    """
    n = tally(verdicts)
    return f"Findings: {', '.join(f'{n[o]} {o}' for o in FINDINGS)}; checks: {n['passes']} passed, {n['fails']} failed."
