"""bnlib.run: parameter checks before running, failures naming notebook and cell, SUMMARY.md."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bnlib.lab.kernels import ipc_kernel_manager
from bnlib.lab.runner import main, run_notebooks
from bnlib.lab.series import check_parameters, parse_value, resolve_notebooks


def write_notebook(path, code_cells):
    cells = [nbformat.v4.new_code_cell(src) for src in code_cells]
    cells[0].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


PARAMS = 'preset = "quick"\nout_dir = "out"\nlr = 0.1'
VALIDATE = 'if not lr > 0:\n    raise ValueError(f"lr must be > 0, got {lr}")'
VERDICT = (
    "from bnlib.lab.machine import machine_info\n"
    "from bnlib.verdicts import Claim, Results, exact\n"
    "r = Results(out_dir, machine=machine_info())\n"
    "r.verdict(Claim('lr is positive', 'toy', predicts='higher', min_effect=0), exact(lr, label='lr'), note=f'lr = {lr}')\n"
    "r.save()"
)


@pytest.fixture()
def toy(tmp_path):
    return write_notebook(tmp_path / "99_toy.ipynb", [PARAMS, VALIDATE, VERDICT])


def test_resolve_by_number_and_unknown_name():
    assert resolve_notebooks(["01"])[0].name == "01_internal_covariate_shift.ipynb"
    assert [p.stem[:2] for p in resolve_notebooks()] == sorted(p.stem[:2] for p in resolve_notebooks())
    with pytest.raises(ValueError, match="no notebook matches 'xx'; the series: 01_internal_covariate_shift"):
        resolve_notebooks(["xx"])


def test_parse_value():
    assert [parse_value(v) for v in ["3", "0.5", "[1, 2]", "true", "None", "relu"]] == [3, 0.5, [1, 2], True, None, "relu"]


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


@pytest.mark.skipif(sys.platform == "win32", reason="IPC kernels are POSIX only")
def test_ipc_kernel_manager_interrupts_a_kernel_unless_it_is_shutting_down():
    import asyncio

    manager = ipc_kernel_manager()(kernel_name="python3")
    with pytest.raises(RuntimeError, match="No kernel is running"):  # reaches jupyter_client's interrupt
        asyncio.run(manager._async_interrupt_kernel())
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())  # skipped: no SIGINT before the shutdown request
    assert manager.transport == "ipc" and "bnlib-kernel-" in manager.ip


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


def check_cell_error(notebook: str, name: str, value: str) -> str:
    """The message of the ValueError the notebook's check cell raises for ``-p name value``, found in this process: the
    parameters cell runs, the value is set as ``bnlib.run`` would inject it, then the check cell runs (no kernel)."""
    path = resolve_notebooks([notebook])[0]
    injected = check_parameters(path, {name: parse_value(value)})[name]
    cells = nbformat.read(path, as_version=4).cells
    i = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cells[i].source, namespace)
    namespace[name] = injected
    with pytest.raises(ValueError) as info:
        exec(cells[i + 1].source, namespace)
    return str(info.value)


def test_cuda_without_a_gpu_is_refused_in_the_check_cell():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    message = check_cell_error("01", "device", "cuda")
    assert message.startswith("device='cuda' but torch") and "use -p device cpu or -p device auto" in message


@pytest.mark.parametrize("notebook, name, value, message", [
    ("01", "seeds", "0", "seeds must be an integer >= 1, got 0"),
    ("01", "kappas", "[1, 2]", "kappas must be a non-empty list, each a finite number >= 1 with at least two >= 2"),
    ("01", "eps_values", "[1e-8, 1e-5]", "eps_values must be a non-empty list, each a finite number > 0 with at least two in"),
    ("02", "steps", "0", "steps must be an integer >= 1, got 0"),
    ("02", "activation", "swish", "activation must be one of 'sigmoid', 'relu', 'tanh', got 'swish'"),
    ("03", "model", "vgg12", "model must be one of 'small_cnn', 'small_resnet', 'vgg11', 'vgg13', 'vgg16', 'vgg19', got 'vgg12'"),
    ("03", "lr_multipliers", "[1, 5]",
     "lr_multipliers must be a non-empty list, each a finite number > 1, got [1, 5] (bad entry 1)"),
    ("03", "init_scales", "[0.1, 10.0]", "init_scales must be a non-empty list, each a finite number > 0 containing 1.0"),
    ("03", "lr_decay", "0", "lr_decay must be a finite number in (0, 1], got 0"),
    ("04", "bound", "0", "bound must be a finite number > 0 or None, got 0"),
    ("04", "bound", "none", "bound must be a finite number > 0 or None, got 'none'"),
    ("04", "datasets", "[]", "datasets must be a non-empty list, each one of 'mnist', 'fashion_mnist', 'cifar10', got []"),
    ("05", "slice_points", "2", "slice_points must be an integer >= 3, got 2"),
    ("06", "dist_batch", "5", "dist_batch must be an integer >= 4 and even (two processes get at least 2 images each), got 5"),
    ("06", "small_batch_sizes", "[1, 8]", "small_batch_sizes must be a non-empty list, each an integer in [2, 512], got [1, 8] "
                                          "(bad entry 1)"),
    ("06", "bn_momenta", "[0.99, 1.5]", "bn_momenta must be a non-empty list, each a finite number in (0, 1], got [0.99, 1.5] "
                                        "(bad entry 1.5)"),
    ("06", "search_lr_range", "[1.0, 0.1]",
     "search_lr_range must be [low, high] with low < high, each a finite number > 0, got [1.0, 0.1]"),
    ("06", "search_train_size", "3", "search_train_size must be an integer >= 4, got 3"),
])
def test_notebook_bad_values_name_the_parameter(notebook, name, value, message):
    assert check_cell_error(notebook, name, value).startswith(message)


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


def test_jobs_must_be_a_positive_integer(tmp_path):
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        run_notebooks(["01"], jobs=0, out=tmp_path)
    assert main(["01", "--jobs", "0", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())  # nothing ran


def test_progress_lines_and_text_bars(tmp_path):
    """The runner's progress line counts the cells papermill completed; a bar in a runner's kernel prints one line."""
    import os

    from bnlib.lab.progress import TEXT_ENV, NotebookWatch, cells_done, progress_bar

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1") for _ in range(4)])
    for cell, status in zip(nb.cells, ["completed", "completed", "running", "pending"]):
        cell.metadata["papermill"] = {"status": status}
    path = tmp_path / "x.running.ipynb"
    nbformat.write(nb, path)
    assert cells_done(path) == (2, 4)
    path.write_text('{"cells": [')  # caught mid-write
    assert cells_done(path) is None
    watch = NotebookWatch(path, "x", expected_s=None)
    assert watch.line(2, 4, elapsed=75) == "[bnlib.run] x: 2/4 cells, 1 min 15 s elapsed"
    assert NotebookWatch(path, "x", expected_s=60).line(2, 4, elapsed=75).endswith(
        ", over the expected time (last execution 1 min 0 s)")
    assert NotebookWatch(path, "x", 100, expected_from="typical at quick:").line(2, 4, elapsed=40).endswith(
        ", about 1 min 0 s left (typical at quick: 1 min 40 s)")
    os.environ[TEXT_ENV] = "text"
    try:
        bar = progress_bar(total=5, initial=2, desc="base networks", unit="run")
        bar.update(3)
        bar.set_postfix(failed=0)
        import contextlib
        import io

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            bar.close()
            progress_bar(total=9, desc="steps", leave=False).close()  # a transient bar leaves nothing
    finally:
        del os.environ[TEXT_ENV]
    assert printed.getvalue() == "base networks: 5/5 runs in 0 s (2 from the cache, failed 0)\n"


@pytest.mark.slow
def test_progress_lines_survive_papermill_changing_directory(tmp_path, monkeypatch):
    """papermill executes with the process in the notebook's folder: a watch given a relative path still finds the copy."""
    import io
    import time

    from bnlib.lab.progress import NotebookWatch

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1") for _ in range(3)])
    nb.cells[0].metadata["papermill"] = {"status": "completed"}
    (tmp_path / "out").mkdir()
    nbformat.write(nb, tmp_path / "out" / "x.running.ipynb")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with NotebookWatch(Path("out") / "x.running.ipynb", "x", expected_s=None, every=0.5, stream=printed):
        monkeypatch.chdir(tmp_path / "notebooks")  # what papermill's execute_notebook(cwd=...) does
        time.sleep(7)  # the watch looks every 5 s
    assert "[bnlib.run] x: 1/3 cells" in printed.getvalue()
