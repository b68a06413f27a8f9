"""bnlib.lab: the machinery behind the notebooks, kept apart from the textbook modules a reader copies.

Words: an *execution* is one notebook through papermill (``executions.json``); a *run* is one training run
(``Run``, cached under a notebook's ``runs/``).

- ``experiment``: ``Run``, a training run as data (a frozen, JSON-serializable config), and ``train_run``
- ``sweep``: grids of runs x seeds through an executor, each finished run cached and checked on disk
- ``batched``: S seeds of a small MLP trained as one batched model (the same computation as S runs, faster)
- ``runner``: ``python -m bnlib.run``, the CLI that executes the notebooks through papermill; its parts:
  ``series`` (which notebooks, their presets and parameters), ``kernels`` (kernels and processes), ``records``
  (``executions.json``, kept results, ``SUMMARY.md``)
- ``markdown``: verdict records as Markdown tables, one renderer for ``SUMMARY.md``, the README and FINDINGS.md
- ``notebook``: ``setup(...)``, every notebook's preamble in one call
- ``report``: ``python -m bnlib.lab.report``, the verdict tables of README.md and FINDINGS.md from the reference run
- ``site``: ``python -m bnlib.lab.site`` (``make site``), the executed references and FINDINGS.md as static HTML
- ``params``, ``presets``: parameter checks as data; the presets of every notebook
- ``cores``, ``progress``, ``files``, ``machine``: sharing the CPU cores, progress lines, atomic writes, the machine record

The textbook modules (``bnlib.data``, ``norms``, ``models``, ``train``, ``probes``, ``inference``, ``distributed``,
``verdicts``, ``plots``) import nothing from here (``tests/test_imports.py`` checks it).
"""
