"""The canary: tiny pinned runs that fail when a code change alters what a run computes (issue 37, item 5).

Runs are cached under :meth:`bnlib.lab.experiment.Run.key`, a hash of the config, the seed, :data:`CACHE_VERSION` and the
versions of changed probes (:data:`bnlib.probes.PROBE_VERSIONS`): nothing in it sees the code. A change to a model, a
norm, the training loop or a probe that alters the numbers of a run therefore needs a version bump, or the cache keeps
returning the old code's tables as if the new code had computed them. :data:`RUNS` covers every model builder
(:data:`bnlib.models.MODELS`), every norm kind (:data:`bnlib.norms.NORM_KINDS`, in dense layers and in convolutions),
every named probe (:data:`bnlib.probes.PROBES`) and the batched MLP path, each for 3-4 steps on real data (MNIST; CIFAR-10
for the conv builders at their smallest widths), and compares the numbers of their tables with ``tests/canary_pins.json``.

Pinned: every column of every row except the accuracies (an argmax can flip on a tie between two logits that differ in
the last bit) and the wall times (``elapsed_s``, ``probe_s``): losses, penalties, every probe's numbers, and ``step``,
``seed``, ``lr``, ``diverged``. Tolerance :data:`TOLERANCE`: the last bits differ between CPUs (AVX-512 or AVX2 kernels
of torch, oneDNN and MKL) and between thread counts. With those capped to AVX2 and to SSE4, and with 2 threads, the
runs here stay within a tenth of the tolerance, while a changed computation moves them by far more (see the notes on
the runs for what keeps them that close).

When a pinned number moves:

* the change is intended: bump ``CACHE_VERSION`` in ``bnlib/lab/experiment.py`` (or, when only a probe's numbers changed,
  the probe's entry in ``bnlib.probes.PROBE_VERSIONS``), so that cached runs are recomputed, then re-pin with
  ``python tests/test_canary.py --repin``;
* it is not: it is a bug.

``--repin`` keeps the pins of every run whose cache key did not change and whose numbers are the same to the tolerance,
and refuses (writing nothing) when such a run computes other numbers: the bump comes first, or the cache would hold old
and new numbers under one key. ``--repin --force`` re-pins those too: only for a difference that is rounding (another
kind of CPU, a tolerance set too tight), never for a changed computation. The pins record the ``CACHE_VERSION`` and
``PROBE_VERSIONS`` they were made under and every run's key and config; the tests ask for a re-pin when those moved.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import pytest

if __name__ == "__main__":  # as a script (--repin): the bnlib of this checkout, not another one installed in the environment
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bnlib.lab import experiment  # noqa: E402
from bnlib.lab.experiment import Run, train_run  # noqa: E402
from bnlib.models import MODELS, min_width  # noqa: E402
from bnlib.norms import NORM_KINDS  # noqa: E402
from bnlib.probes import PROBE_VERSIONS, PROBES  # noqa: E402

PINS = Path(__file__).with_name("canary_pins.json")
SEED = 0
TOLERANCE = {"rtol": 1e-3, "atol": 1e-5}  # as numpy.isclose: |new - pinned| <= atol + rtol * |pinned|
UNPINNED = ("elapsed_s", "probe_s")  # wall times: differ between executions
REPIN = "python tests/test_canary.py --repin"

# ---------------------------------------------------------------- the runs

# MNIST runs: the paper's MLP (sigmoid) and a small ResNet with tanh: smooth networks. A ReLU gate or a max-pooling choice
# that the last bits of a gradient flip (they differ between CPUs: about one such tie per million activations) moves that
# gradient by a percent, and a few steps later the numbers by more than the tolerance; smooth networks have no such ties.
# They also record the quantiles of their logits on a fixed batch in train mode (the output_quantiles probe), which show a
# change of the training transform that the eval-mode test loss, with BN's running statistics, hides.
LOGITS = {"probes": ("output_quantiles",), "probe_args": {"quantile_layers": ["out"]}}
MNIST = Run(dataset="mnist", model="mlp", steps=4, batch_size=64, lr=0.05, eval_every=2, train_size=2000, test_size=500,
            probe_size=64, **LOGITS)
RESNET = MNIST.replace(model="small_resnet", width=min_width("small_resnet"), activation="tanh", lr=0.02)
# CIFAR-10 runs: every conv builder as it comes (ReLU, max pooling, He initialization, BN) at its smallest width, one
# evaluation per step, with a learning rate small enough that a flipped ReLU gate or pooling choice (above) moves the
# weights by far less than the tolerance (VGG-19 at lr 1e-3 already used a third of it)
CIFAR = Run(dataset="cifar10", model="small_cnn", steps=3, batch_size=32, lr=3e-4, eval_every=1, train_size=1000,
            test_size=200)
PENALIZED = ("rigid", "rigid_clip", "kl_bn", "kl_only")  # norms whose layers store a penalty: trained with reg_cf > 0
NOT_DENSE = ("in",)  # instance norm of a dense layer normalizes each single value to 0: rounding noise times 1/sqrt(eps)


def _penalized(run: Run) -> Run:
    return run.replace(reg_cf=0.1) if run.norm in PENALIZED else run


RUNS: dict[str, Run] = {
    # the paper's MLP as the builder makes it (no norm), with the other evaluations (validation split, training images)
    "mlp": MNIST.replace(norm="none", momentum=0.9, validate=True, eval_train=True),
    # other options of a Run
    "mlp_options": MNIST.replace(norm="bn", optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="cosine", init="xavier",
                                 inputs="unit", augment=True),
    # every named probe, on a penalized norm (penalty_grad measures something), through double backward (hessian)
    "mlp_probes": MNIST.replace(norm="rigid", reg_cf=0.1, hidden=(32, 32), probes=tuple(PROBES),
                                probe_args={"quantile_layers": ["norm2", "out"], "hessian_iters": 5}),
    # the batched fast path (bnlib.lab.batched.BatchedMLP) with the probe it takes
    "mlp_batched": MNIST.replace(norm="bn", hidden=(16, 16), batched=True, probes=("unit_quantiles",),
                                 probe_args={"quantile_layers": ["norm2", "out"], "mode": "train"}),
    # every norm kind in dense layers (2-D input) ...
    **{f"mlp_{kind}": _penalized(MNIST.replace(norm=kind)) for kind in NORM_KINDS if kind not in NOT_DENSE},
    # ... and in convolutions (4-D input)
    **{f"resnet_{kind}": _penalized(RESNET.replace(norm=kind)) for kind in NORM_KINDS},
    # every conv builder on CIFAR-10
    **{f"cifar_{model}": CIFAR.replace(model=model, width=min_width(model)) for model in MODELS if model != "mlp"},
}
# noisy BN's first version (noise per example and channel): the numbers resnet_noisy_bn had before noise per activation
RUNS["resnet_noisy_bn_channel"] = RESNET.replace(norm="noisy_bn", norm_args={"per": "channel"})
RUNS["cifar_small_cnn"] = RUNS["cifar_small_cnn"].replace(dropout=0.1)
RUNS["cifar_vgg11"] = RUNS["cifar_vgg11"].replace(channels_last=True)
# at this width gn's default of gcd(channels, 32) groups leaves one channel per group, which is instance norm: two groups
RUNS["resnet_gn"] = RUNS["resnet_gn"].replace(norm_args={"num_groups": 2})

# the probe behind a probe column "layer|kind|stat", by its kind (unit_quantiles: "unit<i>")
PROBE_OF_KIND = {"in": "layer_stats", "out": "layer_stats", "grad": "layer_stats", "ics": "ics", "landscape": "landscape",
                 "hessian": "hessian", "dist": "output_quantiles", "unit": "unit_quantiles", "weight": "weight_norms",
                 "penalty_grad": "penalty_grad", "channel": "channel_stats", "noise": "noise_acc",
                 "grad_spread": "gradient_spread"}


def probe_of(column: str) -> str | None:
    """The probe that computes ``column`` (None for the training and evaluation columns).

    Example:
        >>> probe_of("norm2|unit7|q50"), probe_of("all|hessian|top"), probe_of("test_loss")
        ('unit_quantiles', 'hessian', None)
    """
    if column.count("|") != 2:
        return None
    kind = column.split("|")[1]
    return PROBE_OF_KIND.get(re.sub(r"^unit\d+$", "unit", kind), f"unknown probe column kind {kind!r}")


# ---------------------------------------------------------------- pinned numbers

def _pinned(value):
    """A number as the pins hold it: 9 significant digits (far below the tolerance), NaN as null, booleans as they are."""
    if isinstance(value, bool):
        return value
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.9g}")


def pinned_columns(table) -> dict[str, list]:
    """The pinned columns of a run's table, one list of rows each: all but the accuracies (an argmax can flip on a tie)
    and the timings."""
    return {c: [_pinned(v) for v in table[c].tolist()] for c in table.columns
            if not c.endswith("_acc") and c not in UNPINNED}


def compute(name: str, data_root=None) -> dict[str, list]:
    """Train the canary run ``name`` (one thread: the same numbers whatever the machine's cores) and pin its table."""
    return pinned_columns(train_run(RUNS[name], SEED, threads=1, data_root=data_root))


def _close(pinned, new) -> bool:
    if isinstance(pinned, bool) or isinstance(new, bool) or pinned is None or new is None:
        return pinned == new
    return abs(new - pinned) <= TOLERANCE["atol"] + TOLERANCE["rtol"] * abs(pinned)


def differences(pinned: dict[str, list], new: dict[str, list]) -> list[tuple[str, str]]:
    """What differs between two sets of pinned columns: (column, what) pairs, with the row's step and both values."""
    steps = pinned.get("step") or []
    found = [(c, "pinned, not computed any more") for c in pinned if c not in new]
    found += [(c, "computed, not pinned") for c in new if c not in pinned]
    for c in (c for c in pinned if c in new):
        old, now = pinned[c], new[c]
        if len(old) != len(now):
            found.append((c, f"{len(old)} rows pinned, {len(now)} computed"))
            continue
        for i, (a, b) in enumerate(zip(old, now)):
            if not _close(a, b):
                at = f"step {steps[i]:g}" if i < len(steps) and steps[i] is not None else f"row {i}"
                rel = f" (relative difference {abs(b - a) / abs(a):.2g})" if isinstance(a, float) and isinstance(b, float) and a \
                    else ""
                found.append((c, f"at {at}: pinned {a!r}, now {b!r}{rel}"))
    return found


def explain(name: str, found: list[tuple[str, str]]) -> str:
    """The message for canary run ``name`` whose numbers moved: what moved, and what to do."""
    lines = [f"  {column!r} {what}" for column, what in found[:12]]
    lines += [f"  ... and {len(found) - 12} more"] if len(found) > 12 else []
    probes = sorted({probe_of(column) or "" for column, _ in found})
    if probes and "" not in probes:  # only probe columns moved: a probe's own change, or one its numbers measure
        where = (f"Only columns of the probes {probes} moved. If the change is intended, bump CACHE_VERSION in "
                 f"bnlib/lab/experiment.py (now {experiment.CACHE_VERSION}) so that cached runs are recomputed; if what "
                 f"changed is only the code of those probes (not the network they measure), bump their entries in "
                 f"bnlib.probes.PROBE_VERSIONS instead (now { {p: PROBE_VERSIONS.get(p, 1) for p in probes} }), which "
                 f"recomputes only the runs that list them.")
    else:
        where = (f"If the change is intended, bump CACHE_VERSION in bnlib/lab/experiment.py (now "
                 f"{experiment.CACHE_VERSION}) so that cached runs are recomputed.")
    return (f"canary run {name!r} (tests/test_canary.py RUNS[{name!r}]) computes other numbers than pinned "
            f"(rtol={TOLERANCE['rtol']}, atol={TOLERANCE['atol']}):\n" + "\n".join(lines) + "\n"
            f"This change alters what runs compute while their cache keys stay the same: the cache would return the old "
            f"code's runs as the new code's. {where} Then re-pin with `{REPIN}`. If the change is not intended, it is a "
            f"bug.")


def _versions() -> dict:
    return {"cache_version": experiment.CACHE_VERSION, "probe_versions": dict(sorted(PROBE_VERSIONS.items()))}


def load_pins() -> dict:
    if not PINS.exists():
        raise FileNotFoundError(f"{PINS} is missing: pin the canary runs with `{REPIN}`")
    return json.loads(PINS.read_text())


def _dump(obj, indent: int = 0) -> str:
    """JSON with one line per column and per run config (a re-pin's diff shows which numbers moved)."""
    if not isinstance(obj, dict) or not obj:
        return json.dumps(obj)
    pad = " " * (indent + 1)
    items = ",\n".join(f"{pad}{json.dumps(k)}: {json.dumps(v) if k == 'run' else _dump(v, indent + 1)}" for k, v in obj.items())
    return "{\n" + items + "\n" + " " * indent + "}"


# ---------------------------------------------------------------- the tests

def test_the_canary_covers_every_model_norm_kind_and_probe():
    """A builder, norm kind or probe added to bnlib needs a canary run (and a re-pin)."""
    runs = RUNS.values()
    missing = {"models": set(MODELS) - {r.model for r in runs}, "norm kinds": set(NORM_KINDS) - {r.norm for r in runs},
               "probes": set(PROBES) - {p for r in runs for p in r.probes}}
    assert not any(missing.values()), f"without a canary run in tests/test_canary.py: {missing}"
    assert any(r.batched for r in runs), "no canary run takes the batched path (bnlib.lab.batched)"


def test_the_pins_are_of_this_cache_version_and_these_runs():
    """The pins were made under the current CACHE_VERSION and PROBE_VERSIONS, for the runs of :data:`RUNS`."""
    pins = load_pins()
    pinned_under = {k: pins[k] for k in ("cache_version", "probe_versions")}
    assert pinned_under == _versions(), (
        f"tests/canary_pins.json was pinned under {pinned_under}, the code is at {_versions()}: a version was bumped "
        f"without a re-pin; re-pin with `{REPIN}`")
    assert pins["seed"] == SEED and sorted(pins["runs"]) == sorted(RUNS), (
        f"tests/canary_pins.json pins the runs {sorted(pins['runs'])} (seed {pins['seed']}), the canary has {sorted(RUNS)} "
        f"(seed {SEED}); re-pin with `{REPIN}`")
    # by key, as the run cache knows them: a Run field added later at its default (LATER_FIELDS) changes no key
    changed = [n for n in RUNS if RUNS[n].key(SEED) != pins["runs"][n]["key"]]
    assert not changed, f"the canary runs {changed} changed since they were pinned; re-pin with `{REPIN}`"


def test_every_pinned_probe_column_belongs_to_a_probe_of_its_run():
    """:data:`PROBE_OF_KIND` knows every probe column (what the failure message's advice rests on)."""
    for name, pins in load_pins()["runs"].items():
        run = RUNS.get(name)
        for column in pins["columns"]:
            probe = probe_of(column)
            assert probe is None or (run is not None and probe in run.probes), \
                f"column {column!r} of canary run {name!r}: {probe}, not one of the run's probes; update PROBE_OF_KIND"


@pytest.mark.parametrize("name", list(RUNS))
def test_the_run_computes_its_pinned_numbers(name, data_root):
    pins = load_pins()["runs"].get(name)
    assert pins is not None, f"the canary run {name!r} has no pins; re-pin with `{REPIN}`"
    assert pins["key"] == RUNS[name].key(SEED), (
        f"the canary run {name!r} was pinned under another cache key (another CACHE_VERSION, probe version or config): "
        f"re-pin with `{REPIN}`")
    found = differences(pins["columns"], compute(name, data_root))
    if found:
        pytest.fail(explain(name, found), pytrace=False)


# ---------------------------------------------------------------- re-pinning: python tests/test_canary.py --repin [--force]

def repin(force: bool = False, out=sys.stdout) -> int:
    """Compute every canary run and rewrite :data:`PINS`; 1, with nothing written, when a run whose cache key did not
    change computes other numbers than its pins (unless ``force``).

    The pins of a run whose key did not change and whose numbers are the same to the tolerance stay as they were, so a
    re-pin on another CPU rewrites nothing."""
    old = load_pins()["runs"] if PINS.exists() else {}
    runs, refused = {}, []
    print(f"bnlib of {Path(experiment.__file__).resolve().parents[2]}, CACHE_VERSION {experiment.CACHE_VERSION}, "
          f"PROBE_VERSIONS {dict(sorted(PROBE_VERSIONS.items()))}", file=out)
    for name, run in RUNS.items():
        start = time.perf_counter()
        columns, key = compute(name), run.key(SEED)
        previous = old.get(name)
        same_key = previous is not None and previous["key"] == key
        found = differences(previous["columns"], columns) if same_key else []
        if same_key and not found:
            columns, state = previous["columns"], "unchanged"
        elif found:
            refused.append((name, found))
            state = f"OTHER NUMBERS UNDER THE SAME KEY ({len(found)})"
        else:
            state = "new key: pinned" if previous is not None else "new run: pinned"
        print(f"{name:24s} {time.perf_counter() - start:5.1f} s  key {key}  {state}", file=out)
        runs[name] = {"key": key, "run": json.loads(run.to_json()), "columns": columns}
    for name, found in refused:
        print(f"\n{explain(name, found)}", file=out)
    if refused and not force:
        print(f"\nrefused, nothing written: {len(refused)} run(s) compute other numbers under the cache keys they were pinned "
              f"under. Bump the version first (above), then re-pin. `{REPIN} --force` re-pins anyway: only for a "
              f"difference that is rounding (another kind of CPU, a tolerance set too tight), never for a changed "
              f"computation.", file=out)
        return 1
    if refused:
        print(f"\n--force: re-pinned {len(refused)} run(s) under unchanged cache keys", file=out)
    pins = {"about": f"the numbers of the runs of tests/test_canary.py; rewrite with `{REPIN}`", **_versions(), "seed": SEED,
            "tolerance": TOLERANCE, "runs": runs}
    PINS.write_text(_dump(pins) + "\n")
    print(f"wrote {PINS}", file=out)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repin", action="store_true", help="compute the canary runs and rewrite tests/canary_pins.json")
    parser.add_argument("--force", action="store_true", help="with --repin: also re-pin runs whose numbers moved under "
                                                             "an unchanged cache key (rounding only)")
    args = parser.parse_args()
    if not args.repin:
        parser.error("nothing to do: give --repin (the tests run under pytest)")
    sys.exit(repin(args.force))
