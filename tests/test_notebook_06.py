"""Notebook 06 (BN in practice) at the smoke preset: its numbers and files (the run is the session fixture `smoke_run`)."""

import json

from smoke import smoke_ran


def test_notebook_06_numbers(smoke_run):
    out, _ = smoke_run
    smoke_ran(out, "06")
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
