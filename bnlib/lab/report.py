"""The README's verdict tables, generated from the reference run: ``python -m bnlib.lab.report``.

    python -m bnlib.lab.report [--check] [--readme README.md] [--reference outputs/reference]

Every notebook's verdicts are read from ``REFERENCE/NN_name/metrics.json`` and
written into ``README.md`` between the markers ``<!-- bnlib.lab.report:begin NAME -->``
and ``<!-- bnlib.lab.report:end NAME -->`` (``NAME`` is ``overview`` for the table of
outcome counts, or a notebook's stem). Nothing between the markers is typed by
hand, so the README cannot drift from the data. ``--check`` writes nothing and
exits 1 when the README is out of date (the tests run it).

The tables are rendered by :mod:`bnlib.lab.markdown`, as ``SUMMARY.md``'s are.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from bnlib.lab.markdown import overview, verdict_table

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- bnlib.lab.report:begin {} -->", "<!-- bnlib.lab.report:end {} -->"


def _setting(info: dict) -> str:
    seeds, first = info.get("seeds"), info.get("first_seed")
    parts = [f"preset **{info.get('preset', '?')}**"]
    if isinstance(seeds, int) and isinstance(first, int):
        parts.append(f"{seeds} seeds ({first}–{first + seeds - 1})")
    return ", ".join(parts)


def notebook_block(stem: str, metrics: dict) -> str:
    """The generated block of one notebook: its setting line and its verdict table."""
    path = f"outputs/reference/{stem}/metrics.json"
    head = f"Notebook {stem[:2]}: {_setting(metrics.get('info', {}))}; numbers from [`{path}`]({path})."
    return head + "\n\n" + verdict_table(metrics.get("verdicts", []))


def load_reference(reference: Path) -> dict[str, dict]:
    """``{notebook stem: metrics}`` for every ``reference/NN_*/metrics.json``, in order."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(reference.glob("[0-9][0-9]_*/metrics.json"))}


def render(readme_text: str, all_metrics: dict[str, dict]) -> str:
    """``readme_text`` with every generated block replaced; raises ``ValueError`` naming a missing marker."""
    blocks = {"overview": overview(all_metrics), **{s: notebook_block(s, m) for s, m in all_metrics.items()}}
    text = readme_text
    for name, body in blocks.items():
        begin, end = BEGIN.format(name), END.format(name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no block for {name!r}: add the lines {begin} and {end} where its table goes")
        text = pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bnlib.lab.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--reference", default=str(REPO / "outputs" / "reference"))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    try:
        new = render(readme.read_text(), load_reference(Path(args.reference)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != readme.read_text():
            print(f"{readme} is out of date with {args.reference}: run `python -m bnlib.lab.report`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    print(f"[bnlib.lab.report] wrote the verdict tables of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
