"""bnlib.lab: the machinery behind the notebooks, kept apart from the textbook modules a reader copies.

- ``experiment``: ``Run``, a training run as data (a frozen, JSON-serializable config), and ``train_run``
- ``sweep``: grids of runs x seeds through an executor, each finished run cached and checked on disk
- ``batched``: S seeds of a small MLP trained as one batched model (the same computation as S runs, faster)
- ``runner``: ``python -m bnlib.run``, the notebooks through papermill, ``runs.json`` and ``SUMMARY.md``
- ``report``: ``python -m bnlib.lab.report``, the README's verdict tables from the reference run
- ``params``, ``presets``: parameter checks as data; the presets of every notebook
- ``cores``, ``progress``, ``files``, ``machine``: sharing the CPU cores, progress lines, atomic writes, the machine record

The textbook modules (``bnlib.data``, ``norms``, ``models``, ``train``, ``probes``, ``inference``, ``distributed``,
``verdicts``, ``plots``) import nothing from here (``tests/test_imports.py`` checks it).
"""
