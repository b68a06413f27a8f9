"""bnlib.lab.experiment: a Run is data (JSON, stable key, validation), and train_run gives the same table in any process."""

import dataclasses
import re

import pandas as pd
import pytest
import torch

from bnlib.lab import experiment
from bnlib.lab.experiment import GROUPING_TOLERANCE, Run, train_run

BASE = Run(dataset="mnist", model="mlp", norm="bn", steps=12, batch_size=32, lr=0.1, eval_every=6, test_size=300)
CNN = BASE.replace(model="small_cnn")
CHANGES = {  # one changed value per field: every field is part of the key
    "dataset": "fashion_mnist", "model": "small_cnn", "steps": 13, "batch_size": 33, "lr": 0.2, "norm": "none",
    "activation": "relu", "width": 0.5, "hidden": (50,), "dropout": 0.1, "init_scale": 2.0, "init_std": 0.01,
    "train_size": 1000, "test_size": 301, "evaluate_test": False, "validate": True, "augment": True, "optimizer": "adam",
    "momentum": 0.9,
    "weight_decay": 1e-4, "reg_cf": 0.5, "eval_every": 3, "eval_train": True, "channels_last": True, "autocast": True,
    "keep_weights": True, "tags": ("section 2",), "norm_args": {"eps": 1e-3}, "init": "xavier", "probes": ("hessian",),
    "probe_args": {"etas": (1.0,)}, "probe_size": 128, "schedule": "cosine", "schedule_args": {"gamma": 0.5}, "batched": True,
    "inputs": "unit", "other_lr": 0.05,
}


def test_every_field_is_covered_by_the_key_test():
    assert set(CHANGES) == {f.name for f in dataclasses.fields(Run)}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_changing_any_field_changes_the_key(name):
    base = CNN if name in ("width", "dropout", "init_scale") else BASE  # the MLP builder takes none of these
    base = base.replace(probes=("landscape",)) if name == "probe_args" else base
    base = base.replace(schedule="exponential") if name == "schedule_args" else base
    changed = base.replace(**{name: CHANGES[name]})
    assert base.key(0) != changed.key(0)


def test_json_round_trip_and_a_pinned_key():
    run = BASE.replace(hidden=[64, 32], tags=["a"], norm_args={"momentum": None, "eps": 1e-3}, probes=["landscape"],
                       probe_args={"etas": [0.5, 2]})
    assert run.hidden == (64, 32) and Run.from_json(run.to_json()) == run and hash(run) == hash(Run.from_json(run.to_json()))
    assert run.norm_args == (("eps", 1e-3), ("momentum", None)) and run.probe_args == (("etas", (0.5, 2)),)
    assert BASE.key(0) == BASE.replace().key(0) != BASE.key(1)
    assert BASE.key(0) == "6db34b2de2c9c524"  # a changed key silently orphans every cached run: bump CACHE_VERSION instead


def test_cache_version_is_part_of_the_key(monkeypatch):
    before = BASE.key(0)
    monkeypatch.setattr(experiment, "CACHE_VERSION", experiment.CACHE_VERSION + 1)
    assert BASE.key(0) != before


def test_a_probe_version_changes_only_the_keys_of_runs_that_list_the_probe(monkeypatch):
    hessian, landscape = BASE.replace(probes=["hessian"]), BASE.replace(probes=["landscape"])
    before = hessian.key(0), landscape.key(0), BASE.key(0)
    monkeypatch.setitem(experiment.PROBE_VERSIONS, "hessian", experiment.PROBE_VERSIONS["hessian"] + 1)
    after = hessian.key(0), landscape.key(0), BASE.key(0)
    assert after[0] != before[0] and after[1:] == before[1:]


def test_a_norm_version_changes_only_the_keys_of_runs_with_that_norm(monkeypatch):
    """NORM_VERSIONS (noisy_bn 2: noise per activation) moves the noisy runs' keys, never another norm's: other notebooks'
    cached runs stay valid."""
    noisy, bn = BASE.replace(norm="noisy_bn"), BASE
    assert experiment.NORM_VERSIONS["noisy_bn"] == 2 and bn.key(0) == "6db34b2de2c9c524"
    before = noisy.key(0), bn.key(0)
    monkeypatch.setitem(experiment.NORM_VERSIONS, "noisy_bn", 1)  # the first version: absent from the key
    assert noisy.key(0) != before[0] and bn.key(0) == before[1]
    monkeypatch.setitem(experiment.NORM_VERSIONS, "bn", 2)
    assert bn.key(0) != before[1]


@pytest.mark.parametrize(
    "changes, message",
    [(dict(model="vgg12"), "Run.model: unknown model 'vgg12'; valid models: mlp"),
     (dict(norm="batchnorm"), "Run.norm: unknown norm kind 'batchnorm'"),
     (dict(dataset="imagenet"), "Run.dataset: unknown dataset 'imagenet'"),
     (dict(optimizer="lbfgs"), "Run.optimizer: unknown optimizer 'lbfgs'"),
     (dict(width=0.5), "Run.width: the mlp builder takes no 'width'; leave it None"),
     (dict(steps=0), "Run.steps: must be an integer >= 1, got 0"),
     (dict(lr=-1), "Run.lr: the learning rate must be a finite number > 0, got -1"),
     (dict(test_size=0), "Run.test_size: must be None or an integer >= 1, got 0"),
     (dict(momentum=-0.1), "Run.momentum: must be a number >= 0"),
     (dict(model="small_cnn", dropout=1.0), r"Run.dropout: must be in \[0, 1\)"),
     (dict(norm_args={"bound": 3.0}), "Run.norm_args: the 'bn' layer takes no 'bound'; it takes eps, momentum"),
     (dict(norm="none", norm_args={"eps": 1e-3}), "Run.norm_args: norm 'none' takes no arguments"),
     (dict(norm_args={"eps": [object()]}), "Run.norm_args: eps=.* is not a number, string or list of them"),
     (dict(init="orthogonal"), "Run.init: unknown initialization 'orthogonal'; valid: None, 'xavier'"),
     (dict(probes=("ics", "curvature")), r"Run.probes: unknown probes \['curvature'\]; valid probes: layer_stats, ics"),
     (dict(probes=("ics",), probe_args={"etas": [1]}), "Run.probe_args: 'etas' is an argument of none of the probes"),
     (dict(probe_size=0), "Run.probe_size: must be an integer >= 1, got 0"),
     (dict(schedule="linear"), "Run.schedule: unknown schedule 'linear'; valid schedules: constant, cosine"),
     (dict(schedule="cosine", schedule_args={"gamma": 0.5}), r"Run.schedule_args: schedule 'cosine' takes no \['gamma'\]"),
     (dict(batched=True, model="small_cnn"),
      "Run.batched: a batched run .* needs model='mlp', got 'small_cnn'; set batched=False"),
     (dict(batched=True, optimizer="adam"), "Run.batched: a batched run .* needs optimizer='sgd'"),
     (dict(batched=True, norm="ln"), r"Run.batched: a batched run takes norm in \('none', 'bn', 'torch_bn'\)"),
     (dict(batched=True, probes=("ics",)), r"Run.batched: a batched run takes .* probes in \('unit_quantiles',\)")],
)
def test_a_bad_field_fails_before_any_work_naming_it(changes, message):
    with pytest.raises(ValueError, match=message):
        BASE.replace(**changes)


@pytest.mark.parametrize("value", [0, -0.1, float("nan"), float("inf"), None, True, "0.1"])
def test_lr_and_other_lr_are_checked_apart_each_named(value):
    """lr must be a finite number > 0; other_lr None (lr) or the same; a bad one is named alone, the other left out."""
    shown = re.escape(repr(value))
    with pytest.raises(ValueError, match=rf"^Run\.lr: the learning rate must be a finite number > 0, got {shown}$"):
        BASE.replace(lr=value)
    if value is None:
        assert BASE.replace(other_lr=None).other_lr is None  # None: every parameter at lr
        return
    with pytest.raises(ValueError, match=rf"^Run\.other_lr: the rate of every parameter but the convolutions' weights "
                                         rf"must be None \(they train at lr\) or a finite number > 0, got {shown}$"):
        BASE.replace(other_lr=value)


def test_valid_rates_pass_unchanged():
    for lr, other_lr in [(1, None), (0.05, 0.5), (1e-12, 3)]:
        run = BASE.replace(lr=lr, other_lr=other_lr)
        assert (run.lr, run.other_lr) == (lr, other_lr)


def test_unknown_json_fields_are_named():
    with pytest.raises(ValueError, match=r"unknown Run fields \['learning_rate'\]"):
        Run.from_json('{"dataset": "mnist", "model": "mlp", "steps": 1, "batch_size": 2, "lr": 0.1, "learning_rate": 1}')


def _numbers(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["elapsed_s"])


def test_execute_evaluates_on_its_schedule_and_the_seed_matters(data_root):
    """(The same table in a worker process and on Dask: tests/test_sweep.py, with this run among its runs.)"""
    run = Run(dataset="mnist", model="small_cnn", width=0.25, norm="bn", steps=8, batch_size=32, lr=0.05, eval_every=4,
              test_size=200, train_size=2000, augment=True, validate=True)
    here = train_run(run, seed=3)
    assert list(here["step"]) == [0, 4, 8] and here["val_acc"].notna().tolist() == [False, False, True]
    assert not _numbers(train_run(run, seed=4)).equals(_numbers(here))  # the seed matters


def test_execute_restores_the_thread_count(data_root):
    import torch

    before = torch.get_num_threads()
    train_run(BASE.replace(steps=1, eval_every=1), seed=0)
    assert torch.get_num_threads() == before


def test_what_a_run_evaluates(data_root):
    run = BASE.replace(steps=6, eval_every=3, train_size=500, eval_train=True, evaluate_test=False)
    table = train_run(run, seed=0)
    assert "test_acc" not in table and table["train_eval_acc"].between(0, 1).all() and len(table) == 3


def test_norm_args_init_and_probes_reach_the_network(data_root):
    import torch

    from bnlib.norms import RigidBatchNorm

    run = CNN.replace(norm="rigid", norm_args={"bound": 2.5, "eps": 1e-3}, init="xavier", steps=4, eval_every=2,
                      probes=("layer_stats", "landscape", "hessian"), probe_args={"bound": 2.5, "hessian_iters": 2},
                      probe_size=32)
    net = experiment.build_run_model(run, 0)
    rigid = [m for m in net.modules() if isinstance(m, RigidBatchNorm)]
    assert rigid and all(m.bound == 2.5 and m.eps == 1e-3 for m in rigid)
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.abs().max() <= (6 / (conv.weight[0].numel() + conv.weight[:, 0].numel())) ** 0.5  # Glorot uniform
    table = train_run(run, seed=0)
    assert table["all|hessian|top"].notna().all() and table["probe_s"].gt(0).all()
    assert table.filter(like="|in|beyond").notna().all().all() and len(table) == 3


def test_a_schedule_changes_the_run_and_a_step_schedule_is_the_constant_run_until_its_milestone(data_root):
    run = BASE.replace(steps=8, eval_every=4, momentum=0.9)
    constant = train_run(run, 0)
    dropped = train_run(run.replace(schedule="step", schedule_args={"milestones": [4], "gamma": 0.1}), 0)
    assert constant.loc[1, "train_loss"] == dropped.loc[1, "train_loss"]  # steps 1-4 at the full rate in both
    assert constant.loc[2, "train_loss"] != dropped.loc[2, "train_loss"]


def test_warm_up_and_extra_decay_change_the_rate_where_they_act(data_root):
    run = BASE.replace(steps=8, eval_every=4, momentum=0.9, schedule="cosine")
    plain, warm = train_run(run, 0), train_run(run.replace(schedule_args={"warmup": 4}), 0)
    assert plain.loc[1, "train_loss"] != warm.loc[1, "train_loss"]
    decayed = train_run(run.replace(schedule_args={"decay": 0.2}), 0)
    assert decayed.loc[0, "test_acc"] == plain.loc[0, "test_acc"] and decayed.loc[2, "train_loss"] != plain.loc[2, "train_loss"]
    with pytest.raises(ValueError, match=r"Run.schedule_args: schedule 'cosine': decay must be in \(0, 1\]"):
        run.replace(schedule_args={"decay": 5})
    with pytest.raises(ValueError, match="warmup must be an integer >= 0"):
        run.replace(schedule_args={"warmup": 1.5})


def test_other_lr_trains_the_convolutions_alone_at_lr(data_root):
    """other_lr: the convolutions' weights at lr, every other parameter at other_lr; equal to lr, the plain run."""
    run = CNN.replace(steps=4, eval_every=2)
    same = train_run(run.replace(other_lr=run.lr), 0)
    pd.testing.assert_frame_equal(same.drop(columns="elapsed_s"), train_run(run, 0).drop(columns="elapsed_s"))
    frozen_rest = train_run(run.replace(other_lr=1e-12), 0)
    assert frozen_rest.loc[2, "train_loss"] != same.loc[2, "train_loss"]
    with pytest.raises(ValueError, match="Run.other_lr: .* must be None .* or a finite number > 0, got -1"):
        run.replace(other_lr=-1)
    assert run.key(0) == Run.from_json(run.to_json()).key(0)


def test_scale_conv_scales_the_convolutions_and_keeps_the_classifier_at_he_scale():
    run = CNN.replace(init_scale=10.0)
    every, conv = (experiment.build_run_model(run.replace(init=i), 0) for i in (None, "scale_conv"))
    assert torch.equal(every.conv1.conv.weight, conv.conv1.conv.weight)  # the same draws
    assert torch.allclose(every.out.weight / 10, conv.out.weight) and torch.allclose(every.fc.weight / 10, conv.fc.weight)
    with pytest.raises(ValueError, match="Run.init: 'scale_conv' scales He initialization"):
        run.replace(init="scale_conv", init_std=0.1)


def test_adamw_decouples_the_weight_decay(data_root):
    run = BASE.replace(steps=4, eval_every=2, optimizer="adam", weight_decay=0.1, lr=0.01)
    adam, adamw = train_run(run, 0), train_run(run.replace(optimizer="adamw"), 0)
    assert adam.loc[2, "train_loss"] != adamw.loc[2, "train_loss"]


def test_a_batched_run_gives_the_same_numbers_to_rounding_whichever_runs_share_its_batch(data_root):
    """train_runs_batched trains jobs as one BatchedMLP; a job's table is the one it gets alone to float32 rounding (the
    evaluation on a shared batch is one matmul over the models, whose last bits depend on its width on AVX-512), so
    run_sweep caches batched runs per run and seed, and worker counts that split groups differently change nothing
    beyond rounding."""
    run = Run(dataset="mnist", model="mlp", norm="bn", activation="sigmoid", init_std=0.1, steps=60, batch_size=30, lr=0.1,
              eval_every=20, test_size=300, validate=True, batched=True, probes=("unit_quantiles",), probe_size=64,
              probe_args={"quantile_layers": ["norm3"], "quantiles": [0.5]})
    alone = experiment.train_runs_batched([(run, 1)])[0]
    crowd = experiment.train_runs_batched([(run.replace(lr=0.5), 0), (run, 1), (run.replace(init_std=0.3), 1), (run, 2)])
    numbers = lambda t: t.drop(columns=["elapsed_s", "probe_s"])  # noqa: E731
    pd.testing.assert_frame_equal(numbers(alone), numbers(crowd[1]), **GROUPING_TOLERANCE)
    pd.testing.assert_frame_equal(numbers(train_run(run, 1)), numbers(alone), check_exact=True)  # train_run delegates
    assert not numbers(crowd[3]).equals(numbers(alone))  # another seed
    assert list(alone.columns[:7]) == ["step", "seed", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    assert alone["val_acc"].notna().tolist() == [False, False, False, True] and alone["norm3|unit0|q50"].notna().all()
    plain = train_run(run.replace(batched=False), 1)  # the same run trained on its own by fit: the same computation, to rounding
    assert plain["test_acc"].to_numpy() == pytest.approx(alone["test_acc"].to_numpy(), abs=0.01)
    assert plain["norm3|unit5|q50"].to_numpy() == pytest.approx(alone["norm3|unit5|q50"].to_numpy(), abs=0.05)


def test_batched_jobs_must_share_everything_but_lr_init_std_and_seed():
    run = BASE.replace(batched=True)
    with pytest.raises(ValueError, match="differ in more than lr, init_std and the seed"):
        experiment.train_runs_batched([(run, 0), (run.replace(steps=13), 0)])
    with pytest.raises(ValueError, match="every run needs batched=True"):
        experiment.train_runs_batched([(BASE, 0)])
    with pytest.raises(ValueError, match="a batched run returns no model"):
        train_run(run, 0, return_model=True)


def test_a_later_field_enters_the_key_only_when_set():
    """Fields added after runs were cached (LATER_FIELDS) leave the keys of runs at their default as they were."""
    import hashlib
    import json

    from bnlib.lab.experiment import CACHE_VERSION, LATER_FIELDS

    run = Run(dataset="mnist", model="mlp", steps=1, batch_size=2, lr=0.1)
    config = {k: v for k, v in json.loads(run.to_json()).items() if k not in LATER_FIELDS}
    payload = json.dumps({"run": config, "seed": 0, "version": CACHE_VERSION}, sort_keys=True)
    assert run.key(0) == hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert run.replace(inputs="unit").key(0) != run.key(0)
    with pytest.raises(ValueError, match="Run.inputs: must be one of 'standardized', 'unit', got 'raw'"):
        run.replace(inputs="raw")


@pytest.mark.data
def test_unit_inputs_train_on_pixels_in_0_1(data_root):
    run = Run(dataset="mnist", model="mlp", norm="none", steps=3, batch_size=20, lr=0.1, eval_every=3, test_size=100)
    standardized, unit = train_run(run, 0, data_root=data_root), train_run(run.replace(inputs="unit"), 0, data_root=data_root)
    assert standardized["train_loss"].iloc[-1] != unit["train_loss"].iloc[-1]
