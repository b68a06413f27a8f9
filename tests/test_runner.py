"""bnlib.lab.runner (``python -m bnlib.run``): parameters refused before anything runs, failures naming notebook and cell,
``SUMMARY.md``, ``--jobs``. When things go wrong: ``test_runner_reliability.py``."""

import json
import subprocess
import sys

import nbformat
import pytest
from toy import PARAMS, VALIDATE, VERDICT, write_notebook

from bnlib.lab.runner import main, run_notebooks


@pytest.fixture()
def toy(tmp_path):
    return write_notebook(tmp_path / "99_toy.ipynb", [PARAMS, VALIDATE, VERDICT])


def test_unknown_parameter_refused_before_running(tmp_path, capsys):
    status = main(["01", "-p", "no_such_param", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "unknown parameter 'no_such_param' for 01_internal_covariate_shift" in err
    assert "valid parameters:" in err and "seeds" in err and "lin_lrs" in err
    assert not list(tmp_path.iterdir())  # nothing ran


def test_runner_owned_parameters_refused(tmp_path):
    with pytest.raises(ValueError, match="'out_dir' is set by the runner"):
        run_notebooks(["01"], parameters={"out_dir": "x"}, out=tmp_path)


@pytest.mark.slow
def test_good_run_writes_notebook_metrics_and_summary(toy, tmp_path):
    out = tmp_path / "out"
    results = run_notebooks([str(toy)], parameters={"lr": 0.5}, out=out)
    assert [r.status for r in results] == ["ok"]
    executed = nbformat.read(out / "99_toy.ipynb", as_version=4)
    assert executed.metadata["kernelspec"]["name"] == "python3"  # the reader's kernel, not the temporary one
    metrics = json.loads((out / "99_toy" / "metrics.json").read_text())
    assert metrics["verdicts"][0]["note"] == "lr = 0.5" and metrics["verdicts"][0]["estimate"] == 0.5
    summary = (out / "SUMMARY.md").read_text()
    assert "| 99_toy | ok | quick |" in summary and "lr is positive" in summary and "**supported**" in summary
    # the machine it came from: in executions.json (with where its runs trained), SUMMARY.md and metrics.json
    import platform

    import torch

    machine = json.loads((out / "executions.json").read_text())["99_toy"]["machine"]
    assert machine["executor"] == "kernel" and machine["python"] == platform.python_version()
    assert machine["torch"] == torch.__version__ and machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert f"Machine: {machine['cpu']} (torch kernels {machine['cpu_capability']}), {machine['cores']} cores" in summary
    assert metrics["machine"] == {k: v for k, v in machine.items() if k != "executor"}


@pytest.mark.slow
def test_bad_value_fails_naming_parameter_and_cell(toy, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bnlib.run", str(toy), "-p", "lr", "-1", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert "without encryption" not in proc.stderr  # IPC kernels: no transport warning at each start
    assert "KeyboardInterrupt" not in proc.stderr  # nor an interrupt as the kernel is shut down
    assert "[bnlib.run] 99_toy (preset quick) started" in proc.stdout and "[bnlib.run] 99_toy: failed in " in proc.stdout
    assert "notebook 99_toy failed in cell 2" in proc.stderr  # cell 0 is papermill's injected parameters
    assert "ValueError: lr must be > 0, got -1" in proc.stderr
    summary = (out / "SUMMARY.md").read_text()
    assert "| 99_toy | failed |" in summary and "lr must be > 0, got -1" in summary


@pytest.mark.slow
def test_jobs_run_notebooks_side_by_side_with_fewer_threads(tmp_path, capsys, monkeypatch):
    from bnlib.lab import cores

    monkeypatch.setenv(cores.FOLDER_ENV, str(tmp_path / "sessions"))  # no other session (the smoke run) takes a share
    record = (
        "import os, time, torch\n"
        "from bnlib.lab.cores import use_share\n"
        "from bnlib.verdicts import Claim, Results, exact\n"
        "use_share()  # as every notebook's setup does first: torch then uses this kernel's share of the cores\n"
        "start = time.time()\n"
        "time.sleep(3)\n"
        "r = Results(out_dir)\n"
        "r.number('threads', torch.get_num_threads())\n"
        "r.number('interval', [start, time.time()])\n"
        "r.verdict(Claim('ran', 'toy', predicts='higher', min_effect=0), exact(1.0), note='yes')\n"
        "r.save()"
    )
    paths = [write_notebook(tmp_path / f"{n}.ipynb", [PARAMS, record]) for n in ("98_first", "99_second")]
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"99_second": {"status": "ok", "preset": "quick", "wall_s": 500}, "98_first": {"status": "ok", "preset": "quick",
                                                                                         "wall_s": 5}}
    (out / "executions.json").write_text(json.dumps(earlier))  # an older run's log
    results = run_notebooks([str(p) for p in paths], out=out, jobs=2)
    assert "in this order: 99_second, 98_first" in capsys.readouterr().out  # the longest earlier run starts first
    assert [(r.notebook, r.status) for r in results] == [("98_first", "ok"), ("99_second", "ok")]  # in the order asked
    numbers = [json.loads((out / n / "metrics.json").read_text())["numbers"] for n in ("98_first", "99_second")]
    assert [n["threads"] for n in numbers] == [max(1, cores.usable_cores() // 2)] * 2
    (s1, e1), (s2, e2) = (n["interval"] for n in numbers)
    assert max(s1, s2) < min(e1, e2)  # the two kernels ran at the same time
    runs = json.loads((out / "executions.json").read_text())
    assert sorted(runs) == ["98_first", "99_second"]


def test_jobs_must_be_a_positive_integer(tmp_path):
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        run_notebooks(["01"], jobs=0, out=tmp_path)
    assert main(["01", "--jobs", "0", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())  # nothing ran
