"""What every benchmark script shares: the machine description and appending a row to results.csv."""

from __future__ import annotations

import csv
import datetime
import os
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results.csv"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_row() -> dict:
    """Date, CPU, core count, GPU (if any), torch version and threads: the columns every result row starts with."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores" + (f", {gpu}" if gpu else ""),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path``; rows written earlier with other columns are kept (columns merged)."""
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    columns = list(dict.fromkeys([c for r in rows for c in r] + list(row)))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows + [row])
    tmp.replace(path)
