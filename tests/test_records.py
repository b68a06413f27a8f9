"""bnlib.lab.records: expected times from executions.json, else the typical table."""

import json
from pathlib import Path


def test_expected_seconds_from_the_last_good_run_else_the_typical_table(tmp_path):
    from bnlib.lab.presets import TYPICAL_SECONDS
    from bnlib.lab.records import expected_seconds
    from bnlib.lab.runner import longest_first

    stem = "01_internal_covariate_shift"
    assert expected_seconds(tmp_path, stem, "quick") == (TYPICAL_SECONDS["quick"][stem], "typical at quick:")
    assert expected_seconds(tmp_path, stem, "smoke") == (TYPICAL_SECONDS["smoke"][stem], "typical at smoke:")
    assert expected_seconds(tmp_path, stem, "full") is None
    (tmp_path / "executions.json").write_text(json.dumps({stem: {"status": "ok", "preset": "full", "wall_s": 1077.0}}))
    assert expected_seconds(tmp_path, stem, "full") == (1077.0, "last execution")
    assert expected_seconds(tmp_path, stem, "quick") == (TYPICAL_SECONDS["quick"][stem], "typical at quick:")  # another preset
    # the order of --jobs follows the preset asked for: a full run's 1077 s does not make 01 the longest at smoke
    paths = [Path(stem), Path("04_failed_variants"), Path("99_unknown")]
    assert [p.name[:2] for p in longest_first(paths, tmp_path, "smoke")] == ["99", "04", "01"]
    assert [p.name[:2] for p in longest_first(paths, tmp_path, "full")] == ["04", "99", "01"]  # unknown at full: first
    (tmp_path / "executions.json").write_text(json.dumps({stem: {"status": "failed", "preset": "full", "wall_s": 5.0}}))
    assert expected_seconds(tmp_path, stem, "full") is None  # a failed run says nothing of the time
