"""Every notebook runs end to end through papermill at the smoke preset."""

import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from bnlib.run import resolve_notebooks

NOTEBOOKS = [p.stem for p in resolve_notebooks()]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("smoke")
    proc = subprocess.run(
        [sys.executable, "-m", "bnlib.run", "--preset", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=1800,
    )
    return out, proc


def test_all_notebooks_run_at_smoke(smoke_run):
    out, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((out / "runs.json").read_text())
    assert sorted(runs) == sorted(NOTEBOOKS)
    assert all(r["status"] == "ok" for r in runs.values())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_outputs(smoke_run, name):
    out, _ = smoke_run
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    pngs = sorted(p.name for p in (out / name).glob("*.png"))
    assert len(images) >= len(pngs) >= 1  # every saved figure is also shown
    metrics = json.loads((out / name / "metrics.json").read_text())
    assert metrics["info"]["preset"] == "smoke"
    assert metrics["verdicts"], "a notebook must record verdicts"
    for v in metrics["verdicts"]:
        assert v["verdict"] in {"supported", "not supported", "mixed"} and v["evidence"]
    summary = (out / "SUMMARY.md").read_text()
    assert all(v["claim"] in summary for v in metrics["verdicts"])


def test_notebook_01_numbers(smoke_run):
    out, _ = smoke_run
    m = json.loads((out / "01_internal_covariate_shift" / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 8
    assert n["gd_steps_h1"] > n["gd_steps_h2"] > 0
    assert n["manual_backward_max_abs_error_float64"] < 1e-10
    assert n["torch_agreement_max_abs_diff_float32"] < 1e-4
    assert n["bn_bias_grad_max_abs"] < 1e-6 and n["bias_loss_change"] < 1e-4 and n["bias_norm_final"] > 0.1
    assert n["constant_pixels"] == 67 and n["covariance_rank_full_train"] < 784
    assert n["keras099_vs_torch001_max_diff"] < 1e-12


def test_notebook_02_numbers(smoke_run):
    out, _ = smoke_run
    m = json.loads((out / "02_mnist_reproduction" / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 6 and m["info"]["batched"] is True
    assert n["chosen_lr"] in (0.1, 1.0)  # one of the smoke preset's sweep_lrs
    assert len(n["final_acc_bn"]) == len(n["final_acc_plain"]) == 2
    assert all(0.5 < a <= 1 for a in n["final_acc_bn"])  # 200 steps on real MNIST learn something
    moves = n["percentile_moves_per_seed"]  # layer -> measure -> network -> one value per seed
    assert sorted(moves) == ["hidden 1", "hidden 2", "hidden 3"]
    for by_measure in moves.values():
        assert sorted(by_measure) == ["early", "moved", "wandered"]
        assert all(len(per_seed) == 2 for by_network in by_measure.values() for per_seed in by_network.values())
    assert sorted(n["lr_sweep_early_bn_vs_plain"]) == ["0.1", "1"]  # one comparison per swept learning rate
    assert set(n["lr_sweep_early_bn_vs_plain"].values()) <= {"higher", "lower", "no clear difference"}
    table = (out / "02_mnist_reproduction" / "fig1a_table.csv").read_text()
    assert "steps to 95%" in table and "with BN" in table and "nan" not in table


def test_notebook_02_separate_runs_give_the_batched_numbers(smoke_run, tmp_path):
    """batched=False trains the seeds one after another with bnlib.train.fit: the same numbers as the batched smoke run."""
    out, _ = smoke_run
    proc = subprocess.run(
        [sys.executable, "-m", "bnlib.run", "02", "--preset", "smoke", "-p", "batched", "false", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    batched = json.loads((out / "02_mnist_reproduction" / "metrics.json").read_text())
    separate = json.loads((tmp_path / "02_mnist_reproduction" / "metrics.json").read_text())
    assert batched["info"]["batched"] is True and separate["info"]["batched"] is False
    a, b = batched["numbers"], separate["numbers"]
    assert a["chosen_lr"] == b["chosen_lr"]
    for key in ("final_acc_bn", "final_acc_plain"):
        assert a[key] == pytest.approx(b[key], abs=2e-4), key


def test_notebook_02_rerun_loads_the_finished_runs(smoke_run, tmp_path):
    """The trained groups saved under runs/ are loaded, not retrained, when the notebook runs again into the same folder."""
    out, _ = smoke_run
    runs = tmp_path / "02_mnist_reproduction" / "runs"
    shutil.copytree(out / "02_mnist_reproduction" / "runs", runs)
    saved = {p.name: p.stat().st_mtime_ns for p in runs.iterdir()}
    assert len([n for n in saved if n.endswith("_quantiles.csv")]) == 2 and len(saved) == 16  # 7 groups x 2 networks, 2 percentile files
    proc = subprocess.run(
        [sys.executable, "-m", "bnlib.run", "02", "--preset", "smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in runs.iterdir()} == saved  # nothing retrained, nothing added
    first = json.loads((out / "02_mnist_reproduction" / "metrics.json").read_text())["numbers"]
    again = json.loads((tmp_path / "02_mnist_reproduction" / "metrics.json").read_text())["numbers"]
    assert again == first


def test_notebook_03_numbers(smoke_run):
    out, _ = smoke_run
    nb_out = out / "03_cifar10_experiments"
    m = json.loads((nb_out / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 9 and m["info"]["dataset"] == "cifar10" and m["info"]["test_size"] == 500
    assert n["base_lr"] in (0.02, 0.1)  # one of the smoke preset's lrs, best for the network without BN
    assert 0.1 < n["target_acc"] < 1  # every plain seed's maximum: above chance after 60 steps on real CIFAR-10
    assert len(n["steps_to_target_bn_x1"]) == len(n["steps_to_target_plain_x1"]) == 2
    assert all(s in (20, 40, 60) for s in n["steps_to_target_plain_x1"])  # every plain seed reaches its own target
    assert sorted(n["batch_size_bn_minus_plain"], key=int) == ["2", "16", "64"]
    table = (nb_out / "lr_table.csv").read_text()
    for row in ["without BN, lr ×1", "with BN, lr ×5", "without BN, sigmoid, lr ×1", "with BN, sigmoid, lr ×5"]:
        assert row in table
    gap_diff, gap_half = n["gap_bn_minus_plain"]
    assert -1 <= gap_diff <= 1 and gap_half >= 0
    runs = list((nb_out / "runs").glob("*.csv"))
    # 2 seeds (smoke: seeds = sweep_seeds = 2) x (sweep 2x3 + table 6 + init 2x3 + regularization 8 + batch sizes 2x3)
    assert len(runs) == 2 * (6 + 6 + 6 + 8 + 6)


def test_notebook_04_numbers(smoke_run):
    out, _ = smoke_run
    nb_out = out / "04_failed_variants"
    m = json.loads((nb_out / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 11 and m["info"]["datasets"] == ["mnist", "cifar10"]
    assert m["info"]["bounds"] == {"mnist": 5.0, "cifar10": 3.0} and m["info"]["reg_cfs"] == {"mnist": 1.0, "cifar10": 0.001}
    assert n["demo_inlier_mean_error"] < 1e-12  # rigid BN's inlier mean ignores the planted outlier exactly
    for d in ("mnist", "cifar10"):
        assert 0 <= n["outlier_fraction_max"][d] <= 1 / 3**2  # never above Chebyshev's bound for bound >= 3
        assert len(n["rigid_reg_early_penalty_over_ce"][d]) == 2  # one ratio per seed
        assert n["ks_after_relu"][d] > n["ks_pre_activation"][d] > 0  # rectified values are further from a normal
    assert set(n["largest_usable_lr"]) == {"none", "bn", "rigid", "rigid_clip", "rigid_reg", "kl_bn", "kl_only"}
    assert set(n["largest_usable_lr"].values()) <= {0.1, 3.0}  # the smoke preset's sweep_lrs
    table = (nb_out / "comparison_table.csv").read_text()
    assert all(v in table for v in ["rigid_clip", "kl_only_original"]) and "nan" not in table
    layer_stats = (nb_out / "layer_stats.csv").read_text()
    assert "conv1.norm" in layer_stats and "stem.norm" in layer_stats and "grad" in layer_stats


def test_notebook_05_numbers(smoke_run):
    out, _ = smoke_run
    nb_out = out / "05_loss_landscape"
    m = json.loads((nb_out / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 9 and m["info"]["lrs"] == [0.1, 0.5]
    assert n["probe_overhead"] > 0
    for lr in ("0.1", "0.5"):
        lower, layers = n["ics_layers_bn_lower"][lr]
        assert layers == 9 and 0 <= lower <= 9  # VGG-11 has 8 convolutions and 1 linear layer
    assert sorted(n["plain_over_bn_first_probe"]) == ["beta_smoothness", "grad_change", "loss_range", "top"]
    assert all(v > 0 for v in n["plain_over_bn_first_probe"].values())
    assert len(n["noisy_bn_final_acc"]) == 2
    assert all(v >= 1 for v in n["slice_max_over_center"].values())  # the trained weights lie on the slice (alpha = 0)
    dln = (nb_out / "dln.csv").read_text()
    assert "ics_relative" in dln and "beta_smoothness" in dln


def test_notebook_06_numbers(smoke_run):
    out, _ = smoke_run
    nb_out = out / "06_batchnorm_in_practice"
    m = json.loads((nb_out / "metrics.json").read_text())
    n = m["numbers"]
    assert len(m["verdicts"]) == 11 and m["info"]["test_size"] == 200 and m["info"]["seeds"] == 2
    # 2 gloo processes on CPU: synchronized statistics equal single-process BN on the full batch; per-process BN does not
    synced, local = n["distributed_synced_max_abs_diff"], n["distributed_local_max_abs_diff"]
    assert set(synced) == {"output", "input gradient", "γ gradient", "β gradient", "batch mean", "batch variance", "running mean",
                           "running variance"}
    assert max(synced.values()) < 1e-5
    assert min(v for k, v in local.items() if k != "β gradient") > 1e-3
    assert n["state_dict_acc"] == n["trained_acc"]  # the state_dict round trip restores the network exactly
    assert n["keras_099_vs_torch_001_max_abs_diff"] < 1e-6
    assert max(n["fold_max_abs_logit_diff"]) < 1e-4 and n["fold_speedup_median"]["0.125"] > 0
    independent = n["batch_of_1_vs_64_max_abs_diff"]
    assert independent["gn"] < 1e-5 < 1e-2 < independent["torch_bn"]
    assert sorted(n["train_minus_eval_mode_acc"], key=int) == ["1", "2", "64"]  # batch size 1 runs: VGG's last BN sees 2x2 maps
    assert all(2.0 < v < 10 for losses in n["initial_loss"].values() for v in losses)
    assert sorted(n["babysitting_checks"]) == ["with BN", "without BN"]
    assert set(n["good_lrs"]["with BN"]) <= {0.001, 1.0}  # the smoke preset's sweep_lrs
    trials = (nb_out / "search_trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 2 * 2 * 4  # header + 2 networks x 2 searches x 2x2 trials
    for name in ["train_vs_eval_mode.csv", "checkpoints.csv", "lag_runs.csv", "momentum_ports.csv", "eps_port.csv",
                 "small_batches.csv", "distributed_bn.csv", "fold_timing.csv", "initial_loss.csv", "lr_curves.csv",
                 "search_results.csv"]:
        assert (nb_out / name).stat().st_size > 0, name
