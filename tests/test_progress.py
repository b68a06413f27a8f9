"""bnlib.lab.progress: the runner's progress lines and the one-line text bars of a kernel."""

from pathlib import Path

import nbformat
import pytest


def test_progress_lines_and_text_bars(tmp_path):
    """The runner's progress line counts the cells papermill completed; a bar in a runner's kernel prints one line."""
    import os

    from bnlib.lab.progress import TEXT_ENV, NotebookWatch, cells_done, progress_bar

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1") for _ in range(4)])
    for cell, status in zip(nb.cells, ["completed", "completed", "running", "pending"]):
        cell.metadata["papermill"] = {"status": status}
    path = tmp_path / "x.running.ipynb"
    nbformat.write(nb, path)
    assert cells_done(path) == (2, 4)
    path.write_text('{"cells": [')  # caught mid-write
    assert cells_done(path) is None
    watch = NotebookWatch(path, "x", expected_s=None)
    assert watch.line(2, 4, elapsed=75) == "[bnlib.run] x: 2/4 cells, 1 min 15 s elapsed"
    assert NotebookWatch(path, "x", expected_s=60).line(2, 4, elapsed=75).endswith(
        ", over the expected time (last execution 1 min 0 s)")
    assert NotebookWatch(path, "x", 100, expected_from="typical at quick:").line(2, 4, elapsed=40).endswith(
        ", about 1 min 0 s left (typical at quick: 1 min 40 s)")
    os.environ[TEXT_ENV] = "text"
    try:
        bar = progress_bar(total=5, initial=2, desc="base networks", unit="run")
        bar.update(3)
        bar.set_postfix(failed=0)
        import contextlib
        import io

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            bar.close()
            progress_bar(total=9, desc="steps", leave=False).close()  # a transient bar leaves nothing
    finally:
        del os.environ[TEXT_ENV]
    assert printed.getvalue() == "base networks: 5/5 runs in 0 s (2 from the cache, failed 0)\n"


@pytest.mark.slow
def test_progress_lines_survive_papermill_changing_directory(tmp_path, monkeypatch):
    """papermill executes with the process in the notebook's folder: a watch given a relative path still finds the copy."""
    import io
    import time

    from bnlib.lab.progress import NotebookWatch

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1") for _ in range(3)])
    nb.cells[0].metadata["papermill"] = {"status": "completed"}
    (tmp_path / "out").mkdir()
    nbformat.write(nb, tmp_path / "out" / "x.running.ipynb")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with NotebookWatch(Path("out") / "x.running.ipynb", "x", expected_s=None, every=0.5, stream=printed):
        monkeypatch.chdir(tmp_path / "notebooks")  # what papermill's execute_notebook(cwd=...) does
        time.sleep(7)  # the watch looks every 5 s
    assert "[bnlib.run] x: 1/3 cells" in printed.getvalue()
