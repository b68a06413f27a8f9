"""What every notebook does before its first section, in one call: :func:`setup`.

The parameters cell sets the knobs; ``setup`` turns the common ones into what the notebook works with: its output
folder (created), the device, the seeds, the :class:`~bnlib.verdicts.Results` that collects numbers and verdicts
(with the machine record), the figure theme, this kernel's share of the CPU cores, and ``runs``, a sweep function
bound to the notebook's run cache, executor, device and data.

Example:
    >>> import tempfile
    >>> nb = setup("00_demo", out_dir=tempfile.mkdtemp(), preset="quick", device="cpu", seeds=3, first_seed=5,
    ...            executor="kernel", width=0.5)
    >>> nb.seeds, nb.device, nb.results.info["width"], nb.runs_dir.name
    ([5, 6, 7], device(type='cpu'), 0.5, 'runs')
    >>> sorted(nb.results.machine) == sorted(machine_info())
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bnlib.lab.cores import use_share
from bnlib.lab.experiment import Run
from bnlib.lab.machine import machine_info
from bnlib.lab.params import seeds_from
from bnlib.lab.series import REPO
from bnlib.lab.sweep import check_dask_scheduler, run_sweep
from bnlib.plots import set_theme
from bnlib.train import resolve_device
from bnlib.verdicts import Results


@dataclass
class Notebook:
    """What :func:`setup` returns: ``out`` (the output folder), ``runs_dir`` (its run cache, ``out/runs``), ``device``,
    ``seeds``, ``results`` and the sweep settings that :meth:`runs` passes on."""

    out: Path
    runs_dir: Path
    device: torch.device
    seeds: list[int]
    results: Results
    executor: str
    data_root: str | os.PathLike | None

    def runs(self, configs: Sequence[Run], seeds: Sequence[int], desc: str,
             columns: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> pd.DataFrame:
        """Train (or load from ``runs_dir``) every Run of ``configs`` for every seed of ``seeds``
        (:func:`bnlib.lab.sweep.run_sweep`); one row per evaluation, the Run's fields as columns, then ``columns``
        applied to the table where given."""
        kernel = self.executor == "kernel"  # runs train in this process
        df = run_sweep(configs, seeds, self.runs_dir, executor=None if kernel else self.executor, workers=1 if kernel else None,
                       device=str(self.device), data_root=self.data_root, desc=desc)
        return df if columns is None else columns(df)


def output_folder(notebook: str, out_dir: str | os.PathLike | None = None) -> Path:
    """Where a notebook writes, the same from any working directory: ``<repo>/outputs/<notebook>`` for None, a relative
    ``out_dir`` from the repository root (as ``data_root``'s None means ``$BNLIB_DATA`` or ``<repo>/data``), an
    absolute one (or ``~/...``) as given. Plain ``papermill`` starts the kernel in the caller's working directory, so a
    path relative to it would land outside the clone.

    Example:
        >>> output_folder("01_x") == REPO / "outputs" / "01_x", output_folder("01_x", "outputs/o") == REPO / "outputs" / "o"
        (True, True)
        >>> str(output_folder("01_x", "/tmp/o"))
        '/tmp/o'
    """
    if out_dir is None:
        return REPO / "outputs" / notebook
    path = Path(out_dir).expanduser()
    return path if path.is_absolute() else REPO / path


def setup(notebook: str, *, out_dir: str | os.PathLike | None, preset: str, device: str, seeds: int, first_seed: int,
          data_root: str | os.PathLike | None = None, executor: str = "local", **info) -> Notebook:
    """The preamble of a notebook: creates ``out_dir`` (None: ``<repo>/outputs/<notebook>``, relative: from the repository
    root; :func:`output_folder`), sets the figure theme and this kernel's share of the cores,
    resolves ``device``, draws the seeds ``first_seed .. first_seed + seeds - 1`` and starts the notebook's
    :class:`~bnlib.verdicts.Results` with the machine record and ``notebook``, ``preset``, ``seeds``, ``first_seed``,
    ``device``, ``executor`` and every other ``info`` keyword (all recorded in ``metrics.json``).

    ``executor``: where :meth:`Notebook.runs` trains ("local", "dask", "dask://HOST:PORT"; "kernel" for a notebook
    whose runs all train in its own kernel). A scheduler's address is checked here, before any work
    (:func:`bnlib.lab.sweep.check_dask_scheduler`).
    """
    if executor.startswith(("dask://", "tcp://")):
        check_dask_scheduler(executor)
    out = output_folder(notebook, out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_theme()
    use_share()  # from here on this kernel computes with its share of the cores (bnlib.lab.cores)
    dev = resolve_device(device)
    results = Results(out, machine=machine_info(), notebook=notebook, preset=preset, seeds=seeds, first_seed=first_seed,
                      device=str(dev), executor=executor, **info)
    return Notebook(out=out, runs_dir=out / "runs", device=dev, seeds=seeds_from(first_seed, seeds), results=results,
                    executor=executor, data_root=data_root)
