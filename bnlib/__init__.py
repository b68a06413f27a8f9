"""bnlib: the helpers behind the Batch Normalization study series.

Each module has one job and can be copied on its own:

- ``bnlib.data``: real MNIST / Fashion-MNIST / CIFAR files -> uint8 tensors, batches by index
- ``bnlib.norms``: Batch Normalization from scratch (Ioffe & Szegedy 2015) and its variants
- ``bnlib.models``: the networks the notebooks train
- ``bnlib.train``: ``fit``, one training loop by steps that returns a tidy DataFrame
- ``bnlib.batched``: seeds together, S small networks trained as one batched model (notebook 02's sweeps)
- ``bnlib.probes``: measurements taken during training (activation quantiles, ...)
- ``bnlib.sweep``: grids of runs x seeds, each finished run saved to disk and skipped on re-run
- ``bnlib.verdicts``: per-seed numbers -> effect, Student-t interval and outcome against a declared minimum effect;
  ``metrics.json``
- ``bnlib.plots``: one seaborn theme, mean with the verdicts' 95% t-interval over seeds
- ``bnlib.params``: parameter checks as data (rules and ``check``), one declarative call per notebook check cell
- ``bnlib.cores``: bnlib processes computing at once share the CPU cores (torch threads, sweep workers)
- ``bnlib.files``: files written whole or not at all (a temporary file and a rename)
- ``bnlib.run``: ``python -m bnlib.run``, executes the notebooks with papermill
- ``bnlib.report``: ``python -m bnlib.report``, the README's verdict tables from the reference run

Nothing is imported here, so ``import bnlib`` is cheap and each module stays independent.
"""

__version__ = "0.1.0"
