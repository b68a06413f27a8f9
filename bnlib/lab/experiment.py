"""A training run as data: ``Run`` (a frozen, JSON-serializable config) and ``train_run(run, seed)``.

A ``Run`` holds everything that defines a training run by name and number: the
data, the model, the optimizer and the schedule of evaluations. ``train_run``
builds all of it from the config inside whatever process calls it (datasets are
loaded once per process), with one intra-op thread, so the same run and seed
give the same table bit for bit in the notebook's kernel, in a worker process or
on a cluster, on the same kind of CPU (on another kind, with other vector
kernels: the same to float32 rounding). ``Run.key(seed)`` is a stable hash of
the whole config, the seed and :data:`CACHE_VERSION` (bumped whenever what a run
computes changes), so a cache keyed by it never returns a run made under other
settings.

Data: the training images are the dataset's training set minus its validation
split (the last :data:`bnlib.data.VALIDATION_SIZES` images), optionally the
first ``train_size`` of a fixed shuffle; ``test_size`` takes the first images of
a fixed shuffle of the test set (all when None). With ``validate=True`` the last
row also has ``val_loss``/``val_acc`` of the trained network on the validation
split, which is where hyperparameters are chosen.

Example:
    >>> run = Run(dataset="mnist", model="mlp", norm="bn", steps=20, batch_size=60, lr=0.1, eval_every=10, test_size=500)
    >>> Run.from_json(run.to_json()) == run
    True
    >>> run.key(0) == run.replace(lr=0.1).key(0), run.key(0) == run.replace(lr=0.2).key(0)
    (True, False)
    >>> table = train_run(run, seed=0)
    >>> table[["step", "diverged"]].values.tolist()
    [[0, False], [10, False], [20, False]]
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial

import pandas as pd
import torch

from bnlib.data import DATASET_NAMES, VALIDATION_SIZES, dataset_stats, fixed_subset, load_dataset, to_float, validation_split
from bnlib.lab.batched import BatchedMLP, evaluate_batched, fit_batched
from bnlib.lab.cores import intra_op_threads
from bnlib.models import MODELS, build_model, xavier_init_
from bnlib.norms import NORM_KINDS, NORM_VERSIONS
from bnlib.probes import PROBE_ARGS, PROBE_VERSIONS, PROBES, named_probes
from bnlib.train import SCHEDULES, evaluate, fit, lr_schedule, resolve_device

CACHE_VERSION = 1  # bump when a change alters what a run computes for the same config and seed
# how close a batched run's numbers are when other runs share its batch (train_runs_batched): float32 rounding (eps 1.2e-7)
# accumulated over the evaluation's matrix products, relative and absolute, as pandas.testing.assert_frame_equal takes it
GROUPING_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
BATCHED_NORMS = ("none", "bn", "torch_bn")  # what a batched run (bnlib.lab.batched.BatchedMLP) can hold
BATCHED_PROBES = ("unit_quantiles",)
OPTIMIZERS = ("sgd", "adam", "adamw")
INITS = (None, "xavier", "scale_conv")
TRAIN_SUBSET_SEED, TEST_SUBSET_SEED, PROBE_SUBSET_SEED = 1, 2, 3  # the fixed shuffles behind train_size, test_size, probe_size


# ---------------------------------------------------------------- the run config

@dataclass(frozen=True)
class Run:
    """Everything that defines one training run (the seed comes separately).

    Model fields left at ``None`` use the builder's default; a field the model's builder does not take
    (``hidden`` for a VGG, ``width`` for the MLP) must stay ``None``.

    Example:
        >>> Run(dataset="cifar10", model="vgg11", width=0.125, steps=10, batch_size=64, lr=0.01).norm
        'bn'
        >>> Run(dataset="cifar10", model="vgg12", steps=10, batch_size=64, lr=0.01)
        Traceback (most recent call last):
        ...
        ValueError: Run.model: unknown model 'vgg12'; valid models: mlp, small_cnn, small_resnet, vgg11, vgg13, vgg16, vgg19
    """

    dataset: str
    model: str
    steps: int
    batch_size: int
    lr: float
    # model
    norm: str = "bn"
    norm_args: tuple = ()  # keyword arguments of the norm layer (a dict is accepted), e.g. {"bound": 3.0, "eps": 1e-3}
    # None: the builder's initialization; "xavier": Glorot uniform, zero biases (bnlib.models.xavier_init_);
    # "scale_conv": init_scale multiplies the convolutions' weights only (linear layers keep He initialization)
    init: str | None = None
    activation: str | None = None
    width: float | None = None
    hidden: tuple[int, ...] | None = None
    dropout: float | None = None
    init_scale: float | None = None
    init_std: float | None = None
    # data
    train_size: int | None = None
    test_size: int | None = None
    evaluate_test: bool = True  # test_loss/test_acc at every evaluation row
    validate: bool = False  # val_loss/val_acc of the trained network (last row only): where hyperparameters are chosen
    augment: bool = False
    # optimization
    optimizer: str = "sgd"
    schedule: str = "constant"  # learning-rate schedule of bnlib.train.lr_schedule: constant, cosine, step, exponential
    schedule_args: tuple = ()  # its arguments (a dict is accepted), e.g. {"milestones": [500], "gamma": 0.1}; every
    # schedule also takes "warmup" (steps of linear warm-up) and "decay" (an extra exponential decay to this factor)
    other_lr: float | None = None  # the rate of every parameter but the convolutions' weights (None: lr)
    momentum: float = 0.0
    weight_decay: float = 0.0
    reg_cf: float = 0.0
    eval_every: int | None = None
    eval_train: bool = False  # also evaluate on the run's training images (eval mode): train_eval_loss/_acc
    probes: tuple[str, ...] = ()  # named probes of bnlib.probes.PROBES, at every evaluation row
    probe_args: tuple = ()  # their arguments (a dict is accepted), e.g. {"etas": [0.5, 1, 2, 4], "hessian_iters": 10}
    probe_size: int = 256  # images of the fixed probe batch (the first of a fixed shuffle of the training images)
    channels_last: bool = False
    autocast: bool = False  # bfloat16 autocast of the forward pass (meant for GPUs)
    keep_weights: bool = False  # run_sweep stores the final weights (bnlib.lab.sweep.trained_model loads them)
    batched: bool = False  # train as one model with the sweep's batched runs that differ only in lr, init_std, seed
    tags: tuple[str, ...] = field(default=())  # free labels (e.g. the section of a notebook); part of the key
    inputs: str = "standardized"  # "standardized": pixels minus the dataset's mean, over its std; "unit": pixels in [0, 1]

    def __post_init__(self) -> None:
        if self.hidden is not None:
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        for name in ("tags", "probes"):
            object.__setattr__(self, name, tuple(str(t) for t in getattr(self, name)))
        for name in ("norm_args", "probe_args", "schedule_args"):
            object.__setattr__(self, name, _frozen_args(name, getattr(self, name)))
        _validate(self)

    def to_json(self) -> str:
        """The config as JSON (sorted keys)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Run:
        """The ``Run`` of :meth:`to_json`'s text; unknown fields are refused by name."""
        data = json.loads(text)
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown Run fields {unknown}; valid fields: {', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**data)

    def replace(self, **changes) -> Run:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def key(self, seed: int) -> str:
        """A stable 16-hex-digit key of the whole config, the seed, :data:`CACHE_VERSION` and the versions of the
        run's probes and norm that changed (:data:`bnlib.probes.PROBE_VERSIONS`, :data:`bnlib.norms.NORM_VERSIONS`)."""
        config = json.loads(self.to_json())
        for name, default in LATER_FIELDS.items():  # absent at their default: the keys of runs that do not use them stay
            if config[name] == default:
                del config[name]
        payload = {"run": config, "seed": int(seed), "version": CACHE_VERSION}
        probes = {p: PROBE_VERSIONS[p] for p in self.probes if PROBE_VERSIONS.get(p, 1) != 1}
        if probes:  # absent otherwise, so the keys of runs without such probes stay as they were
            payload["probe_versions"] = probes
        if NORM_VERSIONS.get(self.norm, 1) != 1:  # absent otherwise: only the runs of a changed norm get new keys
            payload["norm_version"] = NORM_VERSIONS[self.norm]
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


RUN_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Run))  # the columns run_sweep adds to a table
# fields added after runs were cached, with their defaults: a run enters them into its key only when it sets another value
LATER_FIELDS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(Run) if f.name in ("inputs", "other_lr")}
INPUTS = ("standardized", "unit")


# ---------------------------------------------------------------- checking a config

def _freeze(value):
    """Lists (from JSON) as tuples, so that a Run stays hashable."""
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def _frozen_args(name: str, args) -> tuple:
    """Keyword arguments as a sorted tuple of (name, value) pairs; values JSON scalars or lists of them."""
    pairs = args.items() if isinstance(args, Mapping) else args
    try:
        frozen = tuple(sorted((str(k), _freeze(v)) for k, v in pairs))
    except (TypeError, ValueError):
        raise ValueError(f"Run.{name}: must be a dict of keyword arguments, got {args!r}") from None
    for key, value in frozen:
        flat = value if isinstance(value, tuple) else (value,)
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in flat):
            raise ValueError(f"Run.{name}: {key}={value!r} is not a number, string or list of them")
    return frozen


def _model_fields(run: Run) -> dict:
    names = ("norm", "activation", "width", "hidden", "dropout", "init_scale", "init_std")
    return {n: getattr(run, n) for n in names if n == "norm" or getattr(run, n) is not None}


def _is_rate(value: object) -> bool:
    """Whether ``value`` can be a learning rate: a finite int or float > 0 (not a bool).

    Example:
        >>> _is_rate(0.1), _is_rate(0), _is_rate(float("inf")), _is_rate(True), _is_rate("0.1")
        (True, False, False, False, False)
    """
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _validate(run: Run) -> None:
    def bad(name: str, message: str) -> ValueError:
        return ValueError(f"Run.{name}: {message}")

    if run.dataset not in DATASET_NAMES:
        raise bad("dataset", f"unknown dataset {run.dataset!r}; valid datasets: {', '.join(DATASET_NAMES)}")
    if run.inputs not in INPUTS:
        raise bad("inputs", f"must be one of {', '.join(map(repr, INPUTS))}, got {run.inputs!r}")
    if run.model not in MODELS:
        raise bad("model", f"unknown model {run.model!r}; valid models: {', '.join(MODELS)}")
    if run.norm not in NORM_KINDS:
        raise bad("norm", f"unknown norm kind {run.norm!r}; valid kinds: {', '.join(NORM_KINDS)}")
    if run.optimizer not in OPTIMIZERS:
        raise bad("optimizer", f"unknown optimizer {run.optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    accepted = inspect.signature(MODELS[run.model]).parameters
    for name in _model_fields(run):
        if name not in accepted:
            raise bad(name, f"the {run.model} builder takes no {name!r}; leave it None")
    for name in ("steps", "batch_size"):
        value = getattr(run, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(name, f"must be an integer >= 1, got {value!r}")
    for name in ("train_size", "test_size", "eval_every"):
        value = getattr(run, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise bad(name, f"must be None or an integer >= 1, got {value!r}")
    if not _is_rate(run.lr):
        raise bad("lr", f"the learning rate must be a finite number > 0, got {run.lr!r}")
    if run.other_lr is not None and not _is_rate(run.other_lr):
        raise bad("other_lr", "the rate of every parameter but the convolutions' weights must be None (they train at lr) "
                              f"or a finite number > 0, got {run.other_lr!r}")
    for name in ("momentum", "weight_decay", "reg_cf"):
        value = getattr(run, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise bad(name, f"must be a number >= 0, got {value!r}")
    if run.dropout is not None and not 0 <= run.dropout < 1:
        raise bad("dropout", f"must be in [0, 1), got {run.dropout!r}")
    if run.norm_args:
        if run.norm == "none":
            raise bad("norm_args", f"norm 'none' takes no arguments, got {dict(run.norm_args)}")
        takes = inspect.signature(NORM_KINDS[run.norm]).parameters
        for key, _ in run.norm_args:
            if key not in takes or key == "num_features":
                raise bad("norm_args", f"the {run.norm!r} layer takes no {key!r}; it takes "
                                       f"{', '.join(k for k in takes if k != 'num_features')}")
    try:
        lr_schedule(run.schedule, run.steps, **dict(run.schedule_args))
    except (ValueError, TypeError) as e:
        raise bad("schedule" if run.schedule not in SCHEDULES else "schedule_args", str(e)) from None
    if run.init not in INITS:
        raise bad("init", f"unknown initialization {run.init!r}; valid: {', '.join(map(repr, INITS))}")
    if run.init == "scale_conv" and run.init_std is not None:
        raise bad("init", "'scale_conv' scales He initialization by init_scale; with init_std set there is none to scale")
    unknown = [p for p in run.probes if p not in PROBES]
    if unknown:
        raise bad("probes", f"unknown probes {unknown}; valid probes: {', '.join(PROBES)}")
    allowed = set().union(*(PROBE_ARGS[p] for p in run.probes)) if run.probes else set()
    for key, _ in run.probe_args:
        if key not in allowed:
            raise bad("probe_args", f"{key!r} is an argument of none of the probes {list(run.probes)}; they take "
                                    f"{', '.join(sorted(allowed)) or 'nothing'}")
    if isinstance(run.probe_size, bool) or not isinstance(run.probe_size, int) or run.probe_size < 1:
        raise bad("probe_size", f"must be an integer >= 1, got {run.probe_size!r}")
    if run.batched:
        limits = {"model": "mlp", "optimizer": "sgd", "schedule": "constant", "norm_args": (), "init": None, "weight_decay": 0,
                  "reg_cf": 0, "dropout": None, "augment": False, "eval_train": False, "channels_last": False,
                  "autocast": False, "keep_weights": False, "other_lr": None}
        for name, allowed in limits.items():
            if getattr(run, name) != allowed:
                raise bad("batched", f"a batched run (the MLP fast path) needs {name}={allowed!r}, got "
                                     f"{getattr(run, name)!r}; set batched=False to train it on its own")
        if run.norm not in BATCHED_NORMS or not set(run.probes) <= set(BATCHED_PROBES):
            raise bad("batched", f"a batched run takes norm in {BATCHED_NORMS} and probes in {BATCHED_PROBES}, got "
                                 f"norm={run.norm!r}, probes={run.probes}; set batched=False to train it on its own")


# ---------------------------------------------------------------- a run's data and model

def input_stats(run: Run) -> tuple:
    """(mean, std) that :func:`bnlib.data.to_float` applies to the run's images: the dataset's, or (None, None) for pixels in
    [0, 1] (``inputs="unit"``).

    Example:
        >>> input_stats(Run(dataset="mnist", model="mlp", steps=1, batch_size=2, lr=0.1, inputs="unit"))
        (None, None)
    """
    return dataset_stats(run.dataset) if run.inputs == "standardized" else (None, None)


@lru_cache(maxsize=8)
def _split(dataset: str, split: str, data_root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset split, loaded once per process (``data_root``, else ``$BNLIB_DATA``, else ``./data``)."""
    return load_dataset(dataset, split, data_root)


def run_data(run: Run, data_root: str | os.PathLike | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The run's ``train``, ``val``, ``test`` and ``probe`` sets (uint8 images, labels), as :func:`train_run` uses them.

    Example:
        >>> sets = run_data(Run(dataset="mnist", model="mlp", steps=1, batch_size=2, lr=0.1, test_size=100))
        >>> {k: len(v[1]) for k, v in sets.items()}
        {'train': 50000, 'val': 10000, 'test': 100, 'probe': 256}
    """
    root = None if data_root is None else str(data_root)
    train, val = validation_split(_split(run.dataset, "train", root), VALIDATION_SIZES[run.dataset])
    train = fixed_subset(train, run.train_size, TRAIN_SUBSET_SEED)
    return {
        "train": train,
        "val": val,
        "test": fixed_subset(_split(run.dataset, "test", root), run.test_size, TEST_SUBSET_SEED),
        "probe": fixed_subset(train, run.probe_size, PROBE_SUBSET_SEED),
    }


def build_run_model(run: Run, seed: int, data_root: str | os.PathLike | None = None) -> torch.nn.Module:
    """The run's network with the initial weights of ``seed``.

    Example:
        >>> run = Run(dataset="mnist", model="mlp", norm="none", steps=1, batch_size=2, lr=0.1)
        >>> a, b = build_run_model(run, 0), build_run_model(run, 0)
        >>> torch.equal(a.fc1.weight, b.fc1.weight)
        True
    """
    x = _split(run.dataset, "test", None if data_root is None else str(data_root))[0]
    kwargs = _model_fields(run)
    accepted = inspect.signature(MODELS[run.model]).parameters
    if "in_channels" in accepted:
        kwargs["in_channels"] = x.shape[1]
    if "image_size" in accepted:
        kwargs["image_size"] = x.shape[-1]
    if "in_features" in accepted:
        kwargs["in_features"] = x[0].numel()
    if run.norm_args:
        kwargs["norm"] = partial(NORM_KINDS[run.norm], **dict(run.norm_args))
    torch.manual_seed(seed)
    model = build_model(run.model, **kwargs)
    if run.init == "scale_conv":  # the same draws as init=None, the linear layers' brought back to He's scale
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.div_(run.init_scale if run.init_scale is not None else 1.0)
    return xavier_init_(model) if run.init == "xavier" else model


# ---------------------------------------------------------------- training a run

def train_run(
    run: Run,
    seed: int,
    device: str = "cpu",
    threads: int | None = 1,
    data_root: str | os.PathLike | None = None,
    return_model: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, torch.nn.Module]:
    """Train ``run`` with ``seed`` and return its table (one row per evaluation, as :func:`bnlib.train.fit`).

    Everything is built from the config here, so any process can call it. ``threads`` sets torch's intra-op
    threads for the call (1 by default: the same numbers whatever machine or executor runs it; None: this process's
    share of the cores, :func:`bnlib.lab.cores.use_share`). The seed fixes the initial weights, the data order, augmentation and
    dropout. Columns beyond :func:`~bnlib.train.fit`'s: ``val_loss``/``val_acc`` with ``validate`` (on the last row, NaN on
    the others and on a diverged run), ``train_eval_loss``/``train_eval_acc`` with ``eval_train``; no ``test_*`` columns when
    ``evaluate_test`` is False. ``elapsed_s`` is wall time (the one column that differs between executions).
    ``return_model=True`` returns ``(table, trained model)``. A batched run trains alone through :func:`train_runs_batched`.

    Example:
        >>> run = Run(dataset="mnist", model="mlp", norm="none", steps=4, batch_size=60, lr=0.1, eval_every=2,
        ...           test_size=200, validate=True)
        >>> sorted(c for c in train_run(run, 0).columns if c.endswith("_acc"))
        ['test_acc', 'train_acc', 'val_acc']
    """
    if run.batched:
        if return_model:
            raise ValueError("train_run: a batched run returns no model; set batched=False to get one")
        return train_runs_batched([(run, seed)], device=device, threads=threads, data_root=data_root)[0]
    with intra_op_threads(threads):
        dev = resolve_device(device)
        sets = run_data(run, data_root)
        mean, std = input_stats(run)

        def metrics(name: str, data, last_only: bool):
            def callback(step: int, model: torch.nn.Module) -> dict:
                if last_only and step < run.steps:
                    return {}
                loss, acc = evaluate(model, data, mean=mean, std=std, device=dev, autocast=run.autocast)
                return {f"{name}_loss": loss, f"{name}_acc": acc}

            return callback

        callbacks = ([metrics("val", sets["val"], last_only=True)] if run.validate else []) + (
            [metrics("train_eval", sets["train"], last_only=False)] if run.eval_train else [])
        model = build_run_model(run, seed, data_root)
        if run.probes:
            x, y = sets["probe"]
            batch = (to_float(x, mean, std).to(dev), y.to(dev))
            callbacks += named_probes(run.probes, model, batch, dict(run.probe_args), run.lr)
        table = fit(model, sets["train"], sets["test"] if run.evaluate_test else None,
                    steps=run.steps, batch_size=run.batch_size, lr=run.lr,
                    optimizer=run.optimizer, momentum=run.momentum, weight_decay=run.weight_decay, seed=seed, device=dev,
                    eval_every=run.eval_every, mean=mean, std=std, augment=run.augment, channels_last=run.channels_last,
                    autocast=run.autocast, reg_cf=run.reg_cf, other_lr=run.other_lr, callbacks=callbacks, progress=False,
                    lr_factor=lr_schedule(run.schedule, run.steps, **dict(run.schedule_args)))
        return (table, model) if return_model else table


# ---------------------------------------------------------------- batched runs

def batch_group(run: Run) -> Run:
    """What runs trained together as one batched model share: the run with ``lr`` and ``init_std`` set aside.

    Example:
        >>> a = Run(dataset="mnist", model="mlp", steps=10, batch_size=60, lr=0.1, init_std=0.1, batched=True)
        >>> batch_group(a) == batch_group(a.replace(lr=1.0, init_std=0.3)), batch_group(a) == batch_group(a.replace(steps=20))
        (True, False)
    """
    return dataclasses.replace(run, lr=1.0, init_std=None)


def train_runs_batched(
    jobs: Sequence[tuple[Run, int]],
    device: str = "cpu",
    threads: int | None = 1,
    data_root: str | os.PathLike | None = None,
) -> list[pd.DataFrame]:
    """Train several ``(run, seed)`` jobs of batched MLP runs as one :class:`~bnlib.lab.batched.BatchedMLP`; one table per job.

    The runs must have ``batched=True`` and differ only in ``lr``, ``init_std`` (:func:`batch_group`) and the seed.
    Model ``i`` starts from the weights and sees the batches of ``train_run(run_i, seed_i)`` and is updated by SGD with
    its own learning rate (:func:`bnlib.lab.batched.fit_batched`); its table has :func:`train_run`'s columns. Each model's
    numbers are the same to float32 rounding (:data:`GROUPING_TOLERANCE`) whichever other jobs share the batch, not
    always bit for bit: evaluations and probes on a batch shared by all models are one matrix product over the models,
    whose last bits depend on its width on some CPUs (AVX-512). The runs are cached per run and seed like any other
    run, so a cached run read back in another grouping is the same to rounding.

    Example:
        >>> run = Run(dataset="mnist", model="mlp", hidden=(16,), steps=4, batch_size=60, lr=0.1, eval_every=2,
        ...           test_size=200, batched=True)
        >>> a, b = train_runs_batched([(run, 0), (run.replace(lr=0.5), 1)])
        >>> alone = train_runs_batched([(run, 0)])[0]
        >>> pd.testing.assert_frame_equal(a.drop(columns="elapsed_s"), alone.drop(columns="elapsed_s"), **GROUPING_TOLERANCE)
    """
    jobs = list(jobs)
    if not jobs:
        raise ValueError("train_runs_batched: no jobs given")
    group = batch_group(jobs[0][0])
    for run, _ in jobs:
        if not run.batched:
            raise ValueError(f"train_runs_batched: every run needs batched=True, got {run}")
        if batch_group(run) != group:
            raise ValueError("train_runs_batched: the runs differ in more than lr, init_std and the seed; train them apart")
    run = jobs[0][0]
    with intra_op_threads(threads):
        dev = resolve_device(device)
        sets = run_data(run, data_root)
        mean, std = input_stats(run)
        net = BatchedMLP([build_run_model(r, seed, data_root) for r, seed in jobs])
        callbacks = []
        if run.validate:
            def validation(step: int, model: torch.nn.Module) -> dict:
                if step < run.steps:
                    return {}
                loss, acc = evaluate_batched(model, sets["val"], mean=mean, std=std, device=dev)
                return {"val_loss": loss.tolist(), "val_acc": acc.tolist()}

            callbacks.append(validation)
        if run.probes:
            x, y = sets["probe"]
            callbacks += named_probes(run.probes, net, (to_float(x, mean, std).to(dev), y.to(dev)), dict(run.probe_args),
                                      run.lr)
        table = fit_batched(net, sets["train"], sets["test"] if run.evaluate_test else None, seeds=[s for _, s in jobs],
                            steps=run.steps, batch_size=run.batch_size, lr=[r.lr for r, _ in jobs], momentum=run.momentum,
                            device=dev, eval_every=run.eval_every, mean=mean, std=std, callbacks=callbacks, progress=False)
        return [table[table["model"] == i].drop(columns="model").reset_index(drop=True) for i in range(len(jobs))]
