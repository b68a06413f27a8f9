"""``bnlib.experiment.Run`` under its old name: a training run as data lives in :mod:`bnlib.lab.experiment`.

Example:
    >>> from bnlib.experiment import Run
    >>> Run(dataset="mnist", model="mlp", steps=10, batch_size=60, lr=0.1).steps
    10
"""

from bnlib.lab.experiment import Run, build_run_model, run_data, train_run

__all__ = ["Run", "build_run_model", "run_data", "train_run"]
