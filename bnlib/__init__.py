"""bnlib: the helpers behind the Batch Normalization study series.

The textbook modules, the code a reader studies and copies (each alone, or with ``norms.py`` / ``verdicts.py`` where
its docstring says so; ``tests/test_copy_alone.py`` checks it):

- ``bnlib.data``: real MNIST / Fashion-MNIST / CIFAR files -> uint8 tensors, batches by index
- ``bnlib.norms``: Batch Normalization from scratch (Ioffe & Szegedy 2015) and its variants
- ``bnlib.models``: the networks the notebooks train
- ``bnlib.train``: ``fit``, one training loop by steps that returns a tidy DataFrame
- ``bnlib.probes``: measurements taken during training (activation quantiles, ICS, the loss landscape, ...)
- ``bnlib.inference``: BN at inference (recomputed statistics, folding into the convolution)
- ``bnlib.distributed``: BN statistics across processes
- ``bnlib.verdicts``: per-seed numbers -> effect, Student-t interval and outcome against a declared minimum effect;
  ``metrics.json``
- ``bnlib.plots``: one seaborn theme, mean with the verdicts' 95% t-interval over seeds

The machinery (runs as data, sweeps and their cache, the papermill runner, presets, parameter checks, cores) lives
in :mod:`bnlib.lab`, which the textbook modules never import. ``bnlib.run`` (``python -m bnlib.run``),
``bnlib.experiment.Run`` and ``bnlib.sweep.run_sweep`` keep their names as thin entry points into it.

Nothing is imported here, so ``import bnlib`` is cheap and each module stays independent.
"""

__version__ = "0.1.0"
