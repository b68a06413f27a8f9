"""``python -m bnlib.run``: execute the notebooks with papermill (the runner is :mod:`bnlib.lab.runner`).

This entry point and its name stay here; the machinery behind it lives in :mod:`bnlib.lab`.

Example:
    >>> from bnlib.run import resolve_notebooks
    >>> [p.stem for p in resolve_notebooks(["02"])]
    ['02_mnist_reproduction']
"""

import sys

from bnlib.lab.runner import main, run_notebooks
from bnlib.lab.series import resolve_notebooks

__all__ = ["main", "resolve_notebooks", "run_notebooks"]

if __name__ == "__main__":
    sys.exit(main())
