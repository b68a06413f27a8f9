"""``bnlib.sweep.run_sweep`` under its old name: grids of runs x seeds, cached on disk, live in :mod:`bnlib.lab.sweep`.

Example:
    >>> from bnlib.sweep import run_sweep
    >>> run_sweep.__module__
    'bnlib.lab.sweep'
"""

from bnlib.lab.sweep import call_sweep, run_sweep, trained_model

__all__ = ["call_sweep", "run_sweep", "trained_model"]
