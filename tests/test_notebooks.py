"""Every notebook runs end to end through papermill at the smoke preset, and records verdicts that carry their evidence.

The per-notebook numbers are checked in ``test_notebook_NN.py``; the run itself is the session fixture ``smoke_run``.
"""

import json
import re

import nbformat
import pytest
from smoke import smoke_ran

from bnlib.lab.series import check_parameters, parse_value, resolve_notebooks
from bnlib.verdicts import OUTCOMES

NOTEBOOKS = [p.stem for p in resolve_notebooks()]
DECIDED_FIELDS = ("estimate", "ci", "n", "test")


def test_all_notebooks_run_at_smoke(smoke_run):
    out, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((out / "executions.json").read_text())
    for name in NOTEBOOKS:
        smoke_ran(out, name)
    assert sorted(runs) == sorted(NOTEBOOKS)
    assert all(r["status"] == "ok" for r in runs.values())
    assert "without encryption" not in proc.stderr  # the kernels talk over local sockets: no transport warning
    for name in runs:
        assert f"[bnlib.run] {name} (preset smoke) started" in proc.stdout
        assert re.search(rf"\[bnlib.run\] {name}: ok in \d", proc.stdout)
    assert all(r["revision"] and r["compute"]["runs"] >= 0 for r in runs.values())
    for name, r in runs.items():  # where each ran: the executor of its runs ("kernel": trained in its kernel)
        assert r["machine"]["executor"] == ("kernel" if name.startswith("01") else "local") and r["machine"]["cpu"], name
    summary = (out / "SUMMARY.md").read_text()
    assert "| notebook | status | preset | seeds | wall time | training in the run cache |" in summary


def _check_effect(record: dict, where: str) -> None:
    for key in DECIDED_FIELDS:
        assert key in record, f"{where}: no {key!r}"
    low, high = record["ci"]
    if record["test"] == "exact":
        assert low == high == record["estimate"], where
    elif low is not None:
        assert low <= record["estimate"] <= high, where
    assert record["n"] >= 1, where


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_outputs(smoke_run, name):
    out, _ = smoke_run
    smoke_ran(out, name)
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    # no progress widget frozen at its first frame: under the runner bars print one line when they close
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not [o for o in outputs if "0%|" in o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))]
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    pngs = sorted(p.name for p in (out / name).glob("*.png"))
    assert len(images) >= len(pngs) >= 1  # every saved figure is also shown
    metrics = json.loads((out / name / "metrics.json").read_text())
    assert metrics["info"]["preset"] == "smoke"
    assert metrics["info"]["executor"] in ("kernel", "local")
    assert metrics["machine"]["torch"] and metrics["machine"]["cpu_capability"]  # the machine it came from
    assert metrics["verdicts"], "a notebook must record verdicts"
    for v in metrics["verdicts"]:
        assert v["outcome"] in OUTCOMES and v["evidence"] and v["source"], v["claim"]
        assert isinstance(v["min_effect"], (int, float)) and v["min_effect"] >= 0 and v["predicts"] in ("higher", "lower", "same")
        if "parts" in v:
            assert len(v["parts"]) >= 2, v["claim"]
            for part in v["parts"]:
                _check_effect(part, f"{v['claim']} / {part['part']}")
        else:
            assert v["outcome"] != "mixed", f"{v['claim']}: mixed needs parts"
            _check_effect(v, v["claim"])
        # printed under a cell of the executed notebook: the claim with its outcome
        printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert f"{v['outcome'].upper()}: {v['claim']}" in printed, v["claim"]
    summary = (out / "SUMMARY.md").read_text()
    assert all(v["claim"] in summary for v in metrics["verdicts"])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_declares_first_seed_and_no_inline_rules(name):
    """Seeds are first_seed .. first_seed + seeds - 1; no outcome is written by hand in a code cell."""
    from bnlib.lab.series import notebook_parameters

    path = resolve_notebooks([name])[0]
    assert notebook_parameters(path)["first_seed"] == "0"
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert not re.search(r"[\"'](supported|not supported|mixed|inconclusive)[\"']\s+if\b", code)
    assert "bnlib.results" not in code


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
    ("03", "epochs", "1", "epochs must be an integer in [2, 1000], got 1"),  # issue 37: 1 epoch failed later, in the plateau cell
    ("03", "dropouts", "[0.0]", "dropouts must be a non-empty list, each a finite number in [0, 1) with a value > 0"),
    ("03", "schedules", '["step"]', "schedules must be a non-empty list, each one of 'exponential', 'cosine', got ['step']"),
    ("03", "memorize_epochs", "100000", "memorize_epochs must be an integer in [1, 10000], got 100000"),
    ("03", "final_epochs", "3", "final_epochs must be an integer in [3, 1000] and greater than epochs (4), got 3"),
    # issue 37, item 9: 1-channel networks (126 parameters) trained and reported verdicts
    ("03", "width", "1e-9", "width must be a finite number >= 0.0625 (vgg11's narrowest layer keeps >= 4 channels), got 1e-09"),
    ("04", "bound", "0", "bound must be a finite number > 0 or None, got 0"),
    ("04", "bound", "none", "bound must be a finite number > 0 or None, got 'none'"),
    ("04", "datasets", "[]", "datasets must be a non-empty list, each one of 'mnist', 'fashion_mnist', 'cifar10', got []"),
    ("04", "cifar_variants", '["none", "bn", "rigid"]', "cifar_variants must be a non-empty list, each one of 'none', 'bn', "
     "'rigid', 'rigid_mv', 'rigid_clip', 'rigid_reg', 'kl_bn', 'kl_only', 'kl_bn_original', 'kl_only_original' and include none, "
     "bn, rigid and kl_only (claims 1 and 2)"),
    ("04", "sweep_dataset", "cifar10", "sweep_dataset must be one of 'mnist' and not cifar10 (the sweeps train the small CNN"),
    ("04", "bounds", "[4.0, 5.0]", "bounds must be a non-empty list, each a finite number > 1 with one bound at most 3"),
    ("05", "slice_points", "2", "slice_points must be an integer >= 3, got 2"),
    ("06", "dist_batch", "5", "dist_batch must be an integer >= 4 and even (two processes get at least 2 images each), got 5"),
    ("06", "small_batch_sizes", "[1, 8]", "small_batch_sizes must be a non-empty list, each an integer in [2, 250], got [1, 8] "
                                          "(bad entry 1)"),  # at most half of small_batch_train_size: 2+ steps an epoch
    # issue 40: ghost BN's groups divide its SGD batch; ghost BN is no longer a kind of the batch-size comparison
    ("06", "ghost_groups", "[3]", "ghost_groups must be a non-empty list, each an integer in [2, 16] dividing ghost_batch=32, "
                                  "got [3] (bad entry 3)"),
    ("06", "ghost_groups", "[32]", "ghost_groups must be a non-empty list, each an integer in [2, 16] dividing ghost_batch=32, "
                                   "got [32] (bad entry 32)"),
    ("06", "small_batch_kinds", '["none", "torch_bn", "ghost_bn"]', "small_batch_kinds must be a non-empty list, each one of "
                                                                    "'none', 'torch_bn', 'bn', 'batch_renorm', 'ln', 'in', 'gn'"),
    ("06", "small_batch_widen", "-1", "small_batch_widen must be an integer >= 0, got -1"),
    ("06", "small_batch_train_size", "2", "small_batch_train_size must be an integer in [8, 45000], got 2"),
    ("06", "gn_lr_factors", "[-1]", "gn_lr_factors must be a non-empty list, each a finite number > 0, got [-1] (bad entry -1)"),
    ("06", "init_scale", "2", "init_scale must be a finite number in (0, 1], got 2"),
    ("06", "bn_momenta", "[0.99, 1.5]", "bn_momenta must be a non-empty list, each a finite number in (0, 1], got [0.99, 1.5] "
                                        "(bad entry 1.5)"),
    ("06", "search_lr_range", "[1.0, 0.1]",
     "search_lr_range must be [low, high] with low < high, each a finite number > 0, got [1.0, 0.1]"),
    ("06", "search_train_size", "3", "search_train_size must be an integer >= 4, got 3"),
    # issue 37, item 9: 10**12 steps failed in torch's allocator (a per-step window of steps // 4) without naming steps
    ("06", "steps", "1000000000000", "steps must be an integer in [1, 10000000], got 1000000000000"),
    ("06", "lag_every", "10000001", "lag_every must be an integer in [1, 10000000], got 10000001"),
    ("06", "width", "1e-9", "width must be a finite number >= 0.0625 (vgg11's narrowest layer keeps >= 4 channels), got 1e-09"),
    ("06", "fold_widths", "[0.125, 0.03]",
     "fold_widths must be a non-empty list, each a finite number >= 0.0625 (vgg11's narrowest layer keeps >= 4 channels), "
     "got [0.125, 0.03] (bad entry 0.03)"),
])
def test_notebook_bad_values_name_the_parameter(notebook, name, value, message):
    assert check_cell_error(notebook, name, value).startswith(message)


@pytest.mark.parametrize("name", ["steps", "lag_steps", "lag_every", "recompute_batches", "port_batches", "small_batch_epochs",
                                  "fold_repeats", "overfit_steps", "sweep_steps", "search_repeats", "final_steps",
                                  "finetune_steps"])
def test_notebook_06_bounds_every_count_that_sizes_a_loop_or_an_allocation(name):
    """At most P.MAX_STEPS (issue 37, item 9): refused in the check cell, by name, before any data is loaded."""
    from bnlib.lab.params import MAX_STEPS

    message = f"{name} must be an integer in [1, {MAX_STEPS}], got {MAX_STEPS + 1}"
    assert check_cell_error("06", name, str(MAX_STEPS + 1)) == message
