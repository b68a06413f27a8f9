"""Each benchmark script runs once at a tiny size, so it cannot rot (timings are not asserted)."""

import csv

from benchmarks import mnist_fig1


def test_mnist_fig1_benchmark_runs(data_root, tmp_path):
    results = tmp_path / "results.csv"
    rows = mnist_fig1.main(["--seeds", "2", "--steps", "20", "--plain-steps", "10", "--eval-every", "10",
                            "--results", str(results)])
    assert rows[0]["speedup"] > 0 and rows[0]["fast_gflops"] > 0
    saved = list(csv.DictReader(results.open()))
    assert len(saved) == 1 and saved[0]["benchmark"] == "mnist_fig1"
