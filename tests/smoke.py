"""Helpers for the notebook tests: which notebooks the smoke run executed (``BNLIB_SMOKE_ONLY``), their metrics and verdicts."""

import json
import os
from pathlib import Path

import pytest

from bnlib.verdicts import preset_note, summary, summary_mismatches


def smoke_ran(out: Path, name: str) -> None:
    """Skip a test of notebook ``name`` (stem or number) that ``BNLIB_SMOKE_ONLY`` left out."""
    only = [n for n in os.environ.get("BNLIB_SMOKE_ONLY", "").split(",") if n]
    if only and name[:2] not in only:
        pytest.skip(f"BNLIB_SMOKE_ONLY={','.join(only)} left out {name}")


def find_verdict(verdicts: list[dict], start: str) -> dict:
    """The one verdict record whose claim starts with ``start`` (fails if none or several)."""
    found = [v for v in verdicts if v["claim"].startswith(start)]
    assert len(found) == 1, f"{len(found)} verdicts start with {start!r}"
    return found[0]


def read_metrics(folder: Path) -> dict:
    """The ``metrics.json`` a notebook wrote into its output ``folder``."""
    return json.loads((folder / "metrics.json").read_text())


def notebook_text(nb: dict) -> str:
    """Every markdown cell and every text output (streams, text/plain, text/markdown) of an executed notebook."""
    parts = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            parts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts += ["".join(out.get("text", ""))] + ["".join(data.get(k, "")) for k in ("text/plain", "text/markdown")]
    return "\n".join(parts)


def assert_ends_with_summary(path: Path, records: list[dict], preset: str = "smoke") -> None:
    """The executed notebook at ``path`` ends with the summary generated from ``records`` (its metrics.json verdicts)
    at ``preset``, which opens with the preset's note (a smoke run's verdicts are not results), and none of its text
    names another outcome than they hold."""
    nb = json.loads(path.read_text())
    last = [o for c in nb["cells"] for o in c.get("outputs", [])][-1]
    shown = "".join(last["data"]["text/markdown"])
    assert shown == summary(records, preset=preset)
    assert shown.startswith(preset_note(preset)), "the closing summary opens with the preset's note"
    assert summary_mismatches(notebook_text(nb), records) == []


def rerun_changed(out: Path, stem: str, tmp: Path, name: str, value: str) -> tuple[dict, dict]:
    """Notebook ``stem`` at smoke with ``-p name value``, into a copy of the smoke run's cache ("used") and into a fresh
    folder: the numbers of both metrics.json files. A cached result that ignores the parameter shows as a difference."""
    import shutil
    import subprocess
    import sys

    numbers = []
    for folder in (tmp / "used", tmp / "fresh"):
        if folder.name == "used":
            shutil.copytree(out / stem / "runs", folder / stem / "runs")
        run = subprocess.run([sys.executable, "-m", "bnlib.run", stem, "--preset", "smoke", "-p", name, value,
                              "--out", str(folder)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        numbers.append(read_metrics(folder / stem)["numbers"])
    return numbers[0], numbers[1]


def flat(value, path: str = "") -> dict[str, float]:
    """Every number in a nested dict/list of metrics.json, by its path (``"a/b/0"``): for pytest.approx."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}/{i}").items()}
    return {path: value}
