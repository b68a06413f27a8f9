"""bnlib.lab.runner (``python -m bnlib.run``) when things go wrong: stop signals, runners sharing a folder, failed
reruns, full disks, renamed copies."""

import json
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time

import nbformat
import psutil
import pytest
from toy import PARAMS, VALIDATE, VERDICT, write_notebook

import bnlib.lab.series as series_module
from bnlib.lab.records import Execution, write_summary
from bnlib.lab.runner import main, run_notebooks
from bnlib.lab.series import resolve_notebooks

SLEEP = "import time\ntime.sleep(120)"


def _runner(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "bnlib.run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _wait_for(predicate, timeout=120.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.5)
    return False


@pytest.mark.slow
def test_sigterm_stops_kernels_and_workers_and_records_what_finished(tmp_path):
    """With --jobs 2 (a pool of runner processes, each with its kernel): SIGTERM reaches every one of them. The stop
    path of --jobs 1 is the same (stop_signals_raise, stop_descendants) without the pool."""
    quick = write_notebook(tmp_path / "97_quick.ipynb", [PARAMS, VALIDATE, VERDICT])
    slow = [write_notebook(tmp_path / f"{n}.ipynb", [PARAMS, SLEEP]) for n in ("98_slow", "99_slow")]
    out = tmp_path / "out"
    proc = _runner(str(quick), *map(str, slow), "--out", str(out), "--jobs", "2")
    runner = psutil.Process(proc.pid)
    # the quick one finished and the slow ones are executing (their kernels started and the sleep cell began)
    assert _wait_for(lambda: (out / "97_quick.ipynb").exists() and len(list(out.glob("*.running.ipynb"))) == 2
                     and sum("ipykernel" in " ".join(p.cmdline()) for p in runner.children(recursive=True)) >= 2)
    time.sleep(3)
    descendants = runner.children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, [p.cmdline() for p in alive]  # no kernel, pool worker or sweep worker left behind
    runs = json.loads((out / "executions.json").read_text())
    assert runs["97_quick"]["status"] == "ok"
    interrupted = sorted(name for name, r in runs.items() if r["status"] == "interrupted")
    assert interrupted == ["98_slow", "99_slow"]
    assert "stopped by SIGTERM" in runs[interrupted[0]]["error"]
    assert "| 97_quick | ok |" in (out / "SUMMARY.md").read_text()
    assert not list(out.glob("*.running.ipynb")) and (out / f"{interrupted[0]}.ipynb").exists()


SWEEP_WORKER_THEN_SLEEP = ("import os, time\nfrom bnlib.lab.sweep import _local_pool\n"
                           "_local_pool(1).submit(os.getpid).result()  # a sweep worker, as a notebook's runs start one\n"
                           "time.sleep(120)")


@pytest.mark.slow
def test_sigkill_of_the_runner_under_jobs_2_leaves_no_process(tmp_path):
    """SIGKILL cannot be caught: the runner's notebook workers die with it (PR_SET_PDEATHSIG), their kernels notice
    that their parent died (ipykernel polls for that each second) and the kernels' sweep workers die with them."""
    slow = [write_notebook(tmp_path / f"{n}.ipynb", [PARAMS, SWEEP_WORKER_THEN_SLEEP]) for n in ("98_slow", "99_slow")]
    proc = _runner(*map(str, slow), "--out", str(tmp_path / "out"), "--jobs", "2")
    runner = psutil.Process(proc.pid)

    def sweep_workers() -> int:
        kernels = [p for p in runner.children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
        return sum("spawn_main" in " ".join(w.cmdline()) for k in kernels for w in k.children())

    assert _wait_for(lambda: sweep_workers() >= 2), [p.cmdline() for p in runner.children(recursive=True)]
    descendants = runner.children(recursive=True)
    assert len(descendants) >= 6  # 2 notebook workers, 2 kernels, 2 sweep workers (and resource trackers)
    proc.kill()
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    left = [" ".join(p.cmdline())[:80] for p in alive]
    for p in alive:  # not left behind by this test when it fails
        p.kill()
    assert not left, left


def _write_many(args):
    out, worker = args
    for i in range(40):
        write_summary(out, [Execution(f"nb_{worker}_{i}", "ok", 1.0, "smoke", {})])


def test_concurrent_bookkeeping_keeps_every_record_and_valid_json(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_write_many, [(tmp_path, w) for w in range(4)])
    runs = json.loads((tmp_path / "executions.json").read_text())
    assert len(runs) == 160  # 4 processes x 40 writes, none lost, none half-written
    assert (tmp_path / "SUMMARY.md").read_text().count("| ok | smoke |") == 160


@pytest.mark.slow
def test_damaged_runs_json_is_named_set_aside_and_rebuilt(tmp_path, capsys):
    toy = write_notebook(tmp_path / "99_toy.ipynb", [PARAMS, VALIDATE, VERDICT])
    other = write_notebook(tmp_path / "98_other.ipynb", [PARAMS, VALIDATE, VERDICT])
    out = tmp_path / "out"
    run_notebooks([str(other)], out=out)
    text = (out / "executions.json").read_text()
    (out / "executions.json").write_text(text[: len(text) // 2])  # truncated, as a crash half-way through a write left it
    assert run_notebooks([str(toy)], out=out)[0].status == "ok"  # not a reason to stop
    err = capsys.readouterr().err
    assert f"{out / 'executions.json'} was damaged" in err and "rebuilt from the executed notebooks" in err
    assert len(list(out.glob("executions.json.damaged-*"))) == 1
    runs = json.loads((out / "executions.json").read_text())
    assert sorted(runs) == ["98_other", "99_toy"] and runs["98_other"]["status"] == "ok"  # rebuilt from 98_other.ipynb


@pytest.mark.slow
def test_failed_rerun_keeps_the_good_result_aside_and_says_it_is_stale(tmp_path):
    toy = write_notebook(tmp_path / "99_toy.ipynb", [PARAMS, VALIDATE, VERDICT])
    out = tmp_path / "out"
    good = run_notebooks([str(toy)], parameters={"lr": 0.5}, out=out)[0]
    result = run_notebooks([str(toy)], parameters={"lr": -1}, out=out)[0]
    assert result.status == "failed" and result.previous["finished"] == good.finished
    assert not (out / "99_toy" / "metrics.json").exists()  # the old verdicts are not presented as this run's
    kept = json.loads((out / "99_toy" / "metrics.previous.json").read_text())
    assert kept["verdicts"][0]["note"] == "lr = 0.5"
    failed = nbformat.read(out / "99_toy.ipynb", as_version=4)
    assert failed.metadata["papermill"]["parameters"]["lr"] == -1  # the executed copy is this run's
    assert nbformat.read(out / "99_toy.previous.ipynb", as_version=4).metadata["papermill"]["parameters"]["lr"] == 0.5
    summary = (out / "SUMMARY.md").read_text()
    assert "| 99_toy | failed | quick |" in summary and "**Stale result kept**" in summary
    assert "`99_toy.previous.ipynb` with `99_toy/metrics.previous.json`" in summary
    assert "No verdicts recorded." in summary and "lr = 0.5" not in summary
    # a second failure keeps the same good result; a success deletes it
    assert run_notebooks([str(toy)], parameters={"lr": -2}, out=out)[0].previous["finished"] == good.finished
    assert (out / "99_toy.previous.ipynb").exists()
    assert run_notebooks([str(toy)], parameters={"lr": 2.0}, out=out)[0].status == "ok"
    assert not (out / "99_toy.previous.ipynb").exists() and not (out / "99_toy" / "metrics.previous.json").exists()
    assert "Stale" not in (out / "SUMMARY.md").read_text()


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))  # a "disk" that takes no file above 40 kB


@pytest.mark.slow
def test_write_error_is_reported_as_such_and_leaves_no_truncated_notebook(tmp_path):
    big = "print('x' * 100_000)"  # the executed notebook outgrows the limit
    toy = write_notebook(tmp_path / "99_toy.ipynb", [PARAMS, VALIDATE, big])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bnlib.run", str(toy), "--out", str(out)], capture_output=True,
                          text=True, timeout=300, preexec_fn=_limit_file_size)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "write error: File too large" in proc.stderr and "free space or choose another --out" in proc.stderr
    assert "does not appear to be JSON" not in proc.stderr
    assert not (out / "99_toy.ipynb").exists() and not (out / "99_toy.running.ipynb").exists()
    assert json.loads((out / "executions.json").read_text())["99_toy"]["error"].startswith("write error")


@pytest.mark.parametrize("bad, message", [
    ("file", "is a file, not a folder"),
    ("file/sub", "cannot be written (Not a directory); choose a folder you can write to"),
    ("readonly/sub", "cannot be written (Permission denied)"),
])
def test_out_that_cannot_be_written_is_refused_before_work(tmp_path, capsys, bad, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "readonly").mkdir(mode=0o500)
    if bad.startswith("readonly") and os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    assert main(["01", "--out", str(tmp_path / bad)]) == 2
    assert message in capsys.readouterr().err


def test_values_of_the_wrong_kind_or_not_finite_are_refused_naming_the_parameter(tmp_path, capsys):
    for args, message in [
        (["-p", "ics_lr", "Infinity"], "01_internal_covariate_shift: parameter 'ics_lr' must be finite, got inf"),
        (["-p", "ics_steps", "2.5"], "parameter 'ics_steps' takes an integer (its default is 3000), got 2.5"),
        (["-p", "lin_lrs", "0.1"], "parameter 'lin_lrs' takes a list (its default is [1e-07, "),
        (["-p", "seeds", "none"], "got 'none'; for None write None or null"),
    ]:
        assert main(["01", *args, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing ran


@pytest.mark.slow
def test_relative_paths_resolve_against_the_directory_run_from(tmp_path, monkeypatch):
    cell = "from bnlib.verdicts import Results\nr = Results(out_dir)\nr.number('data_root', data_root)\nr.save()"
    toy = write_notebook(tmp_path / "99_toy.ipynb", ['preset = "quick"\nout_dir = "out"\ndata_root = None', cell])
    monkeypatch.chdir(tmp_path)
    run_notebooks([str(toy)], parameters={"data_root": "mydata"}, out="out")
    assert json.loads((tmp_path / "out" / "99_toy" / "metrics.json").read_text())["numbers"]["data_root"] == str(
        tmp_path / "mydata")


def _series_dir(tmp_path, monkeypatch):
    """A notebooks/ folder with a two-notebook series, a JupyterLab copy and a renamed copy of 01."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    record = "from bnlib.verdicts import Results\nr = Results(out_dir)\nr.number('seeds', seeds)\nr.save()"
    for stem, identity in [("01_first", "01_first"), ("02_second", "02_second"), ("01_first-Copy1", "01_first"),
                           ("my_experiment", "01_first"), ("no_identity", None)]:
        path = write_notebook(folder / f"{stem}.ipynb", ['preset = "quick"\nout_dir = "out"\nseeds = 3', record])
        if identity:
            nb = nbformat.read(path, as_version=4)
            nb.metadata["bnlib"] = {"notebook": identity}
            nbformat.write(nb, path)
    monkeypatch.setattr(series_module, "NOTEBOOK_DIR", folder)
    monkeypatch.setattr(series_module, "SERIES", ("01_first", "02_second"))
    monkeypatch.setitem(series_module.PRESETS, "01_first", {"smoke": {"seeds": 2}, "quick": {}, "full": {}})
    monkeypatch.setitem(series_module.PRESETS, "02_second", {"smoke": {}, "quick": {}, "full": {}})
    return folder


@pytest.mark.slow
def test_notebooks_are_named_by_identity_and_copies_stay_out_of_the_series(tmp_path, monkeypatch):
    folder = _series_dir(tmp_path, monkeypatch)
    assert [p.stem for p in resolve_notebooks()] == ["01_first", "02_second"]  # the copy does not join "all"
    assert [p.stem for p in resolve_notebooks(["01", "01_first-Copy1", "my"])] == ["01_first", "01_first-Copy1",
                                                                                  "my_experiment"]
    with pytest.raises(ValueError, match="'0' matches several notebooks: 01_first, 02_second; name one"):
        resolve_notebooks(["0"])
    out = tmp_path / "out"
    result = run_notebooks([str(folder / "my_experiment.ipynb")], preset="smoke", out=out)[0]
    assert result.identity == "01_first" and result.parameters["seeds"] == 2  # the renamed copy got 01's smoke preset
    assert json.loads((out / "my_experiment" / "metrics.json").read_text())["numbers"]["seeds"] == 2
    with pytest.raises(ValueError, match="no_identity.ipynb is not a notebook of the series .* run it with --preset quick"):
        run_notebooks([str(folder / "no_identity.ipynb")], preset="smoke", out=out)
    assert run_notebooks([str(folder / "no_identity.ipynb")], out=out)[0].status == "ok"  # its own defaults


_STOP_SINCE = """
import subprocess, sys, time
from bnlib.lab.kernels import stop_descendants

sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
earlier = subprocess.Popen(sleeper)  # e.g. a JupyterLab kernel's own worker, started before it called the runner
time.sleep(1.5)
since = time.time()
later = subprocess.Popen(sleeper)
try:
    stopped = stop_descendants(since=since, timeout=5)
    print(stopped, later.wait(timeout=5) is not None, earlier.poll() is None)
finally:
    earlier.kill(), later.kill()
    earlier.wait(), later.wait()
"""


@pytest.mark.slow
def test_a_stop_ends_only_the_processes_started_since_the_run_began():
    # in a process of its own: here, stop_descendants would also stop the background smoke run's workers (a CI failure)
    done = subprocess.run([sys.executable, "-c", _STOP_SINCE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True", "True"]  # one stopped (the later one), and the earlier one still runs
