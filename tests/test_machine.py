"""bnlib.lab.machine: the record of where a result came from, and its one line for a reader."""

import os
import platform

import torch

from bnlib.lab.machine import cpu_model, machine_info, machine_text


def test_machine_info_records_this_python_torch_and_cpu():
    info = machine_info()
    assert info["python"] == platform.python_version() and info["torch"] == torch.__version__
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu"] == cpu_model() and info["cpu"]  # a model name, or the architecture when unknown
    assert 1 <= info["cores"] <= (os.cpu_count() or 1)


def test_machine_text_names_every_field_and_marks_what_is_missing():
    text = machine_text(machine_info() | {"executor": "dask"})
    assert text.startswith(cpu_model()) and f"torch {torch.__version__}" in text and text.endswith("; runs on: dask")
    assert machine_text({"cpu": "X"}) == "X (torch kernels ?), ? cores; Python ?, torch ?, numpy ?, pandas ?"
    assert machine_text({}) == "?"
