"""bnlib.lab.report: the README's verdict tables are generated from the reference metrics.json files and kept up to date."""

import json
import re
import shutil

import pytest

from bnlib.lab import report


def test_readme_verdict_tables_are_up_to_date():
    """Fails when a reference metrics.json changed and `python -m bnlib.lab.report` was not run."""
    assert report.main(["--check"]) == 0, "README.md is out of date: run `python -m bnlib.lab.report`"


def test_check_fails_when_a_metrics_file_changes(tmp_path):
    ref = tmp_path / "reference"
    shutil.copytree(report.REPO / "outputs" / "reference", ref, ignore=shutil.ignore_patterns("*.ipynb", "*.png", "runs"))
    readme = tmp_path / "README.md"
    readme.write_text((report.REPO / "README.md").read_text())
    assert report.main(["--readme", str(readme), "--reference", str(ref)]) == 0
    assert report.main(["--check", "--readme", str(readme), "--reference", str(ref)]) == 0
    path = sorted(ref.glob("[0-9][0-9]_*/metrics.json"))[0]
    metrics = json.loads(path.read_text())
    finding = next(v for v in metrics["verdicts"] if v["kind"] == "finding")
    finding["outcome"] = "inconclusive" if finding["outcome"] != "inconclusive" else "supported"
    path.write_text(json.dumps(metrics))
    assert report.main(["--check", "--readme", str(readme), "--reference", str(ref)]) == 1
    assert report.main(["--readme", str(readme), "--reference", str(ref)]) == 0  # regenerate
    assert report.main(["--check", "--readme", str(readme), "--reference", str(ref)]) == 0


def test_missing_marker_is_named(tmp_path):
    with pytest.raises(ValueError, match="README has no block for 'overview'"):
        report.render("no markers here", {})


DELIMITER = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")  # a table's |---|---| line


def broken_tables(text: str) -> list[int]:
    """1-based numbers of the blank lines that split a Markdown table: a ``|`` row before and after, and the rows after
    it no new table (no header with its ``|---|`` line), so they render as plain text. Fenced code is skipped.

    >>> broken_tables("| a |\\n|---|\\n| 1 |\\n\\n| 2 |\\n")
    [4]
    >>> broken_tables("| a |\\n|---|\\n| 1 |\\n\\n| b |\\n|---|\\n")
    []
    """
    lines, fenced, found = text.splitlines(), False, []
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or line.strip() or i == 0 or i + 1 >= len(lines):
            continue
        before, after = lines[i - 1].lstrip(), lines[i + 1].lstrip()
        header = i + 2 < len(lines) and DELIMITER.match(lines[i + 2].strip())
        if before.startswith("|") and after.startswith("|") and not header:
            found.append(i + 1)
    return found


def test_no_readme_table_is_split_by_a_blank_line():
    """A blank line inside a table ends it: the rows after it render as raw text (the Speed table did, issue 42)."""
    readme = (report.REPO / "README.md").read_text()
    assert broken_tables(readme) == [], "README.md: blank lines inside a table at lines " + str(broken_tables(readme))
    assert broken_tables((report.REPO / "outputs" / "reference" / "SUMMARY.md").read_text()) == []


def test_broken_tables_finds_a_split_and_spares_code_and_new_tables():
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert broken_tables(table + "\n| 3 | 4 |\n") == [4]
    assert broken_tables(table + "\n| c | d |\n| :-- | --: |\n| 3 | 4 |\n") == []
    assert broken_tables("```\n" + table + "\n| 3 | 4 |\n```\n") == []
    assert broken_tables(table + "\ntext\n") == []
