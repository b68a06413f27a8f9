"""bnlib.lab.report: the verdict tables of README.md and FINDINGS.md are generated from the reference metrics.json files and
kept up to date; the links of both stay inside the repository."""

import json
import re
import shutil

import pytest

from bnlib.lab import report

GENERATED = ["README.md", "FINDINGS.md"]  # the files whose verdict tables bnlib.lab.report writes
READER_FILES = [*GENERATED, *sorted(f"docs/{p.name}" for p in (report.REPO / "docs").glob("*.md"))]  # what a reader opens


def test_readme_and_findings_verdict_tables_are_up_to_date():
    """Fails when a reference metrics.json changed and `python -m bnlib.lab.report` was not run."""
    assert report.main(["--check"]) == 0, "README.md or FINDINGS.md is out of date: run `python -m bnlib.lab.report`"


def copies(tmp_path):
    """The reference's metrics files and the two generated files, copied into ``tmp_path``; the arguments naming them."""
    ref = tmp_path / "reference"
    shutil.copytree(report.REPO / "outputs" / "reference", ref, ignore=shutil.ignore_patterns("*.ipynb", "*.png", "runs"))
    for name in GENERATED:
        (tmp_path / name).write_text((report.REPO / name).read_text())
    return ["--readme", str(tmp_path / "README.md"), "--findings", str(tmp_path / "FINDINGS.md"), "--reference", str(ref)]


def test_check_fails_when_a_metrics_file_changes(tmp_path):
    args = copies(tmp_path)
    assert report.main(args) == 0
    assert report.main(["--check", *args]) == 0
    path = sorted((tmp_path / "reference").glob("[0-9][0-9]_*/metrics.json"))[0]
    metrics = json.loads(path.read_text())
    finding = next(v for v in metrics["verdicts"] if v["kind"] == "finding")
    finding["outcome"] = "inconclusive" if finding["outcome"] != "inconclusive" else "supported"
    path.write_text(json.dumps(metrics))
    before = {name: (tmp_path / name).read_text() for name in GENERATED}
    assert report.main(["--check", *args]) == 1
    assert report.main(args) == 0  # regenerate: both files change (the overview's counts, the notebook's table)
    assert all((tmp_path / name).read_text() != before[name] for name in GENERATED)
    assert report.main(["--check", *args]) == 0


def test_check_fails_when_only_findings_is_stale(tmp_path):
    args = copies(tmp_path)
    findings = tmp_path / "FINDINGS.md"
    findings.write_text(findings.read_text().replace("| **supported** |", "| **not supported** |", 1))
    assert report.main(["--check", *args]) == 1
    assert report.main(args) == 0 and findings.read_text() == (report.REPO / "FINDINGS.md").read_text()


def test_hand_written_text_between_the_tables_is_kept(tmp_path):
    args = copies(tmp_path)
    findings = tmp_path / "FINDINGS.md"
    findings.write_text(findings.read_text().replace("### 04 ·", "A paragraph someone added.\n\n### 04 ·", 1))
    assert report.main(["--check", *args]) == 0
    assert report.main(args) == 0 and "A paragraph someone added." in findings.read_text()


def test_missing_marker_is_named(tmp_path):
    with pytest.raises(ValueError, match="README.md has no block for 'overview'"):
        report.render("no markers here", {})
    args = copies(tmp_path)
    findings = tmp_path / "FINDINGS.md"
    findings.write_text(findings.read_text().replace("<!-- bnlib.lab.report:begin 02_mnist_reproduction -->", ""))
    assert report.main(["--check", *args]) == 2
    assert report.main(args) == 2  # nothing written


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
    for name in READER_FILES:
        text = (report.REPO / name).read_text()
        assert broken_tables(text) == [], f"{name}: blank lines inside a table at lines {broken_tables(text)}"
    assert broken_tables((report.REPO / "outputs" / "reference" / "SUMMARY.md").read_text()) == []


def test_broken_tables_finds_a_split_and_spares_code_and_new_tables():
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert broken_tables(table + "\n| 3 | 4 |\n") == [4]
    assert broken_tables(table + "\n| c | d |\n| :-- | --: |\n| 3 | 4 |\n") == []
    assert broken_tables("```\n" + table + "\n| 3 | 4 |\n```\n") == []
    assert broken_tables(table + "\ntext\n") == []


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # an inline Markdown link's target


def markdown_links(text: str) -> list[str]:
    r"""The targets of the inline links of ``text``, fenced and inline code left out.

    >>> markdown_links("[a](docs/x.md) `[b](no.md)` [c](#top)\n```\n[d](no.md)\n```\n")
    ['docs/x.md', '#top']
    """
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return LINK.findall(re.sub(r"`[^`\n]*`", "", text))


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading.

    >>> anchor("## How to read a verdict")
    'how-to-read-a-verdict'
    >>> anchor("### 01 · Internal covariate shift")
    '01--internal-covariate-shift'
    """
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def bad_links(path, repo=report.REPO) -> list[str]:
    """The links of the Markdown file ``path`` that leave the repository (a URL, an absolute path, ``../`` above the
    repository: any ``../`` in README.md or FINDINGS.md) or point to a file, or a heading of a Markdown file, that does not
    exist."""
    bad = []
    for target in markdown_links(path.read_text()):
        file, _, frag = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path.resolve()
        if re.match(r"[a-z][a-z+.-]*:", target) or target.startswith("/") or not resolved.is_relative_to(repo):
            bad.append(f"{target} (leaves the repository)")
        elif not resolved.exists():
            bad.append(f"{target} (no such file)")
        elif frag and resolved.suffix == ".md":
            headings = {anchor(line) for line in resolved.read_text().splitlines() if line.startswith("#")}
            if frag not in headings:
                bad.append(f"{target} (no such heading)")
    return bad


@pytest.mark.parametrize("name", READER_FILES)
def test_every_link_points_into_the_repository(name):
    """Every relative link of the reader's Markdown files names a file (and heading) of the repository; none leaves it."""
    path = report.REPO / name
    assert bad_links(path) == [], f"{name}: {bad_links(path)}"


def test_bad_links_are_found(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "more.md").write_text("[back](../there.md) [out](../../x.md)\n")
    assert bad_links(tmp_path / "docs" / "more.md", tmp_path) == ["../../x.md (leaves the repository)"]
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading) [gone](missing.md) [up](../shared/DESIGN.md) [web](https://example.org)"
                    " [head](there.md#nothing) [self](#nowhere)\n")
    assert bad_links(page, tmp_path) == ["missing.md (no such file)", "../shared/DESIGN.md (leaves the repository)",
                                         "https://example.org (leaves the repository)", "there.md#nothing (no such heading)",
                                         "#nowhere (no such heading)"]
