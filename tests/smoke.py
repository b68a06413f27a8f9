"""Helpers for the notebook tests: which notebooks the smoke run executed (``BNLIB_SMOKE_ONLY``), their metrics and verdicts."""

import json
import os
from pathlib import Path

import pytest


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
