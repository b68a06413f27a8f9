"""bnlib.lab.reads: the fingerprint of what a cached function reads besides its arguments changes with every such value."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from bnlib.lab.experiment import Run
from bnlib.lab.reads import LOCATIONS, array_fingerprint, global_names, reads

NOTEBOOK = '''
import math
import torch
from bnlib.train import fit

etas = [0.5, 1.0]
dim = 4
TRAIN = (torch.arange(12, dtype=torch.uint8), torch.tensor([0, 1, 0]))
MEAN = torch.tensor([0.1307])
BASE = Run(dataset="mnist", model="mlp", hidden=(8,), steps=4, batch_size=10, lr=0.05)
data_root = "/somewhere/data"
RUNS = Path("/somewhere/runs")

def helper(x):
    return [e * x for e in etas] + [math.sqrt(dim)]

def train_dln(*, seed, **setup):
    g = torch.Generator().manual_seed(seed)
    net = fit  # imported: by name only
    return helper(seed), TRAIN[0].sum(), (MEAN * 2), BASE.lr, data_root, RUNS, [v for v in range(dim)]
'''


def notebook(**changes):
    """The globals of a toy notebook (a namespace named __main__, as in a kernel) with ``changes`` applied."""
    space = {"__name__": "__main__", "Run": Run, "Path": Path}
    exec(compile(NOTEBOOK, "<notebook cell>", "exec"), space)
    space.update(changes)
    return space


def test_global_names_follow_nested_code_and_skip_attributes_and_locals():
    space = notebook()
    assert global_names(space["train_dln"].__code__) == {"torch", "fit", "helper", "TRAIN", "MEAN", "BASE", "data_root",
                                                          "RUNS", "dim", "range"}  # not "manual_seed", "sum", "lr": attributes


def test_reads_follow_notebook_functions_and_leave_out_imports_and_locations():
    read = reads(notebook()["train_dln"])
    assert sorted(read) == ["BASE", "MEAN", "RUNS", "TRAIN", "dim", "etas", "fit", "helper", "math", "torch"]
    assert read["etas"] == ["0.5", "1"] and read["dim"] == 4  # read by helper, which train_dln calls
    assert read["fit"] == "<bnlib.train.fit>" and read["torch"] == "<module torch>"
    assert isinstance(read["helper"]["source"], str) and read["helper"]["source"]  # exec'd code: its bytecode
    assert read["BASE"]["dataclass"] == "Run" and read["BASE"]["lr"] == "0.05"
    assert "data_root" in LOCATIONS and read["RUNS"] == "<location>"  # a data root and a Path say where, not what


@pytest.mark.parametrize("name, value", [
    ("etas", [1.0, 8.0]),  # a parameter read by a function it calls (notebook 05's train_dln, issue 37)
    ("dim", 5),
    ("TRAIN", (torch.arange(12, dtype=torch.uint8).flip(0), torch.tensor([0, 1, 0]))),  # other images, same shape
    ("MEAN", torch.tensor([0.2860])),  # another dataset's statistics
    ("BASE", Run(dataset="mnist", model="mlp", hidden=(8,), steps=4, batch_size=10, lr=0.1)),  # notebook 06's fine-tuning
])
def test_every_value_read_changes_the_fingerprint(name, value):
    assert reads(notebook(**{name: value})["train_dln"]) != reads(notebook()["train_dln"])


def test_locations_and_unread_globals_leave_the_fingerprint_alone():
    base = reads(notebook()["train_dln"])
    assert reads(notebook(data_root="/elsewhere", RUNS=Path("/elsewhere/runs"), unrelated=3)["train_dln"]) == base


def test_an_edited_helper_changes_the_fingerprint():
    space = notebook()
    before = reads(space["train_dln"])
    exec("def helper(x):\n    return [e * x * 2 for e in etas]", space)
    assert reads(space["train_dln"]) != before


def test_closures_partials_and_recursion():
    def outer(scale):
        def inner(seed):
            return scale * seed + inner.__name__.count("i")
        return inner

    assert reads(outer(2)) != reads(outer(3))
    space = notebook()
    space["p"] = functools.partial(space["helper"], 3)
    exec("def uses_partial(seed):\n    return p()", space)
    exec("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)", space)
    assert reads(space["uses_partial"])["p"]["partial"]["source"]
    assert "fact" in reads(space["fact"])  # a function that calls itself is read once


def test_float_arrays_are_fingerprinted_to_8_digits_integers_exactly():
    x = torch.linspace(0, 1, 1000)
    assert array_fingerprint(x) == array_fingerprint(x + 1e-12)  # another CPU's last bits
    assert array_fingerprint(x) != array_fingerprint(x.flip(0))  # the same values in another order
    assert array_fingerprint(x) != array_fingerprint(x * 1.001)
    labels = np.array([3, 1, 2])
    assert array_fingerprint(labels) != array_fingerprint(labels[::-1].copy())
    assert array_fingerprint(labels)["sha256"] == array_fingerprint(torch.tensor([3, 1, 2]))["sha256"]


def test_a_value_that_cannot_be_fingerprinted_is_named():
    space = notebook()
    space["cursor"] = object()
    exec("def reads_cursor(seed):\n    return cursor", space)
    with pytest.raises(TypeError, match=r"cannot fingerprint the global 'cursor' \(a object\) .* pass it through the call's"):
        reads(space["reads_cursor"])
