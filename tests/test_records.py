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


def test_summary_warns_when_the_cache_holds_runs_made_by_other_code(tmp_path):
    from bnlib.lab.experiment import Run
    from bnlib.lab.records import Execution, write_summary
    from bnlib.lab.sweep import RunCache, cache_code

    runs = tmp_path / "nb" / "runs"
    cache = RunCache(runs)
    made = [Run(dataset="mnist", model="mlp", steps=1, batch_size=2, lr=lr) for lr in (0.1, 0.2, 0.3)]
    for run in made:
        cache.save(run, 0, "step\n0\n")
    assert {k: v for k, v in cache_code(runs).items() if k != "code"} == {"runs": 3, "other": 0, "unrecorded": 0}
    summary = write_summary(tmp_path, [Execution("nb", "ok", 1.0, "smoke", {}, code=cache_code(runs))]).read_text()
    assert "other code" not in summary  # every run carries this code

    for run, code in zip(made[:2], ("0123456789ab", None)):  # one by other code, one stored before code was recorded
        meta_path = cache.paths(run.key(0))["meta"]
        meta = json.loads(meta_path.read_text())
        meta["code"] = code
        meta_path.write_text(json.dumps(meta))
    assert cache.load(made[0], 0) is not None  # still a valid run: the code is not part of its key
    summary = write_summary(tmp_path, [Execution("nb", "ok", 1.0, "smoke", {}, code=cache_code(runs))]).read_text()
    assert ("**Cached runs from other code**: 1 of the 3 runs in its cache were made by other code than this execution's "
            f"(code {cache_code(runs)['code']}), 1 were stored before runs recorded their code.") in summary


def test_summary_labels_smoke_and_quick_notebooks_and_not_full_ones(tmp_path):
    """A notebook below ``full`` opens its SUMMARY.md section with the preset's note (preset as metrics.json records it,
    else as executions.json does), so its verdicts do not read as results."""
    from bnlib.lab.records import Execution, write_summary
    from bnlib.verdicts import preset_note

    (tmp_path / "nb_quick").mkdir()
    (tmp_path / "nb_quick" / "metrics.json").write_text(json.dumps({"info": {"preset": "quick"}, "verdicts": []}))
    executions = [Execution("nb_smoke", "ok", 1.0, "smoke", {}), Execution("nb_quick", "ok", 1.0, "full", {}),
                  Execution("nb_full", "ok", 1.0, "full", {})]
    sections = write_summary(tmp_path, executions).read_text().split("\n## ")[1:]
    by_name = {s.split("\n", 1)[0]: s for s in sections}
    assert by_name["nb_smoke"].split("\n")[2] == preset_note("smoke")
    assert by_name["nb_quick"].split("\n")[2] == preset_note("quick")  # metrics.json's preset wins
    assert by_name["nb_full"].split("\n")[2].startswith("Machine:")
    assert "Preset" not in by_name["nb_full"]


def test_summary_names_where_each_notebooks_runs_trained(tmp_path):
    """SUMMARY.md gives each notebook a "Runs trained on" line from the executor its metrics.json records (else the
    execution record's), and the machine line no longer repeats it."""
    from bnlib.lab.records import Execution, executor_text, write_summary

    machine = {"cpu": "CPU", "cpu_capability": "AVX2", "cores": 2, "executor": "local"}
    for name, executor in [("nb_dask", "dask"), ("nb_remote", "dask://10.0.0.5:8786"), ("nb_kernel", "kernel")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"info": {"executor": executor}, "verdicts": []}))
    names = ["nb_dask", "nb_remote", "nb_kernel", "nb_local", "nb_none"]
    executions = [Execution(n, "ok", 1.0, "full", {}, machine=None if n == "nb_none" else machine) for n in names]
    text = write_summary(tmp_path, executions).read_text()
    lines = {s.split("\n", 1)[0]: s for s in text.split("\n## ")[1:]}
    expected = {"nb_dask": "a Dask LocalCluster on the machine above", "nb_remote": "scheduler at tcp://10.0.0.5:8786",
                "nb_kernel": "the notebook's kernel", "nb_local": "local worker processes", "nb_none": "not recorded"}
    for name, words in expected.items():
        assert f"\nRuns trained on: {executor_text(None) if name == 'nb_none' else ''}" in lines[name]
        assert words in lines[name].split("Runs trained on: ", 1)[1].split("\n", 1)[0], name
    assert "runs on:" not in text
