"""Each benchmark script runs once at a tiny size, so it cannot rot (timings are not asserted)."""

import csv

import pytest

from benchmarks import cifar_vgg_epoch, mnist_fig1, probe_overhead


def test_mnist_fig1_benchmark_runs(data_root, tmp_path):
    results = tmp_path / "results.csv"
    results.write_text("date,benchmark,old_column\n2026-01-01,older,x\n")  # a row written with other columns stays
    rows = mnist_fig1.main(["--seeds", "2", "--steps", "20", "--plain-steps", "10", "--eval-every", "10",
                            "--repeats", "1", "--results", str(results)])
    assert rows[0]["speedup"] > 0 and rows[0]["fast_gflops"] > 0
    saved = list(csv.DictReader(results.open()))
    assert [r["benchmark"] for r in saved] == ["older", "mnist_fig1"]
    assert saved[0]["old_column"] == "x" and saved[1]["seeds"] == "2" and saved[1]["old_column"] == ""


def test_cifar_vgg_epoch_benchmark_runs(data_root, tmp_path):
    results = tmp_path / "results.csv"
    rows = cifar_vgg_epoch.main(["--width", "0.0625", "--steps", "2", "--batch-size", "16", "--repeats", "1",
                                 "--workers", "0", "--results", str(results)])
    assert rows[0]["speedup_vs_0_workers"] > 0 and rows[0]["fast_epoch_s"] > 0
    saved = list(csv.DictReader(results.open()))
    assert len(saved) == 1 and saved[0]["benchmark"] == "cifar_vgg_epoch" and saved[0]["model"] == "vgg11 x0.0625"


def test_probe_overhead_benchmark_runs(data_root, tmp_path):
    results = tmp_path / "results.csv"
    rows = probe_overhead.main(["--width", "0.0625", "--batch-size", "8", "--probe-size", "8", "--hessian-iters", "2",
                                "--repeats", "1", "--probe-every", "10", "--results", str(results)])
    assert [r["model"] for r in rows] == ["vgg11 x0.0625 torch_bn", "vgg11 x0.0625 none"]
    assert all(r["step_ms"] > 0 and r["ics_steps"] > 0 and r["probe_overhead"] > 0 for r in rows)
    saved = list(csv.DictReader(results.open()))
    assert [r["benchmark"] for r in saved] == ["probe_overhead"] * 2 and saved[0]["hessian_iters"] == "2"


@pytest.mark.slow
def test_sweep_executor_benchmark_runs(data_root, tmp_path):
    from benchmarks import sweep_executor

    results = tmp_path / "results.csv"
    rows = sweep_executor.main(["--runs", "2", "--steps", "3", "--width", "0.0625", "--batch-size", "16", "--workers", "2",
                                "--results", str(results)])
    assert rows[0]["executor_speedup"] > 0 and rows[0]["workers"] == 2
    saved = list(csv.DictReader(results.open()))
    assert saved[0]["benchmark"] == "sweep_executor" and saved[0]["runs"] == "2"



@pytest.mark.slow
def test_concurrent_runs_benchmark_runs(tmp_path):
    import nbformat

    from benchmarks import concurrent_runs

    cells = [nbformat.v4.new_code_cell('preset = "quick"\nout_dir = "out"'), nbformat.v4.new_code_cell("x = 1")]
    cells[0].metadata["tags"] = ["parameters"]
    toy = tmp_path / "toy.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), toy)
    results = tmp_path / "results.csv"
    rows = concurrent_runs.main(["--notebook", str(toy), "--preset", "quick", "--results", str(results)])
    assert rows[0]["alone_s"] > 0 and rows[0]["together_ratio"] > 0
    assert list(csv.DictReader(results.open()))[0]["benchmark"] == "concurrent_runs"


def test_results_rows_are_dated_and_named():
    """Every row of benchmarks/results.csv (the timing history; no dated timings in the README's prose) has an ISO date,
    a machine and a benchmark name, and its columns parse."""
    import re

    from benchmarks.common import RESULTS

    with RESULTS.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert rows and all(None not in r for r in rows), "a row with more cells than the header"
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date"]) and r["machine"] and r["benchmark"] for r in rows)
    assert {"make_reproduce", "notebook_wall", "ci_run"} <= {r["benchmark"] for r in rows}
