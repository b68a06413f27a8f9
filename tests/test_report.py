"""bnlib.lab.report: the README's verdict tables are generated from the reference metrics.json files and kept up to date."""

import json
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
