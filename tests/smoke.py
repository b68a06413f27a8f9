"""Helpers for the notebook tests: which notebooks the smoke run executed (``BNLIB_SMOKE_ONLY``), their metrics and verdicts."""

import json
import os
from pathlib import Path

import pytest

from bnlib.verdicts import summary, summary_mismatches


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


def assert_ends_with_summary(path: Path, records: list[dict]) -> None:
    """The executed notebook at ``path`` ends with the summary generated from ``records`` (its metrics.json verdicts),
    and none of its text names another outcome than they hold."""
    nb = json.loads(path.read_text())
    last = [o for c in nb["cells"] for o in c.get("outputs", [])][-1]
    assert "".join(last["data"]["text/markdown"]) == summary(records)
    assert summary_mismatches(notebook_text(nb), records) == []
