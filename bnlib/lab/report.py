"""The verdict tables of README.md and FINDINGS.md, generated from the reference run: ``python -m bnlib.lab.report``.

    python -m bnlib.lab.report [--check] [--readme README.md] [--findings FINDINGS.md] [--reference outputs/reference]

Every notebook's verdicts are read from ``REFERENCE/NN_name/metrics.json`` and written between the markers
``<!-- bnlib.lab.report:begin NAME -->`` and ``<!-- bnlib.lab.report:end NAME -->``: ``overview`` (the table of outcome
counts) in ``README.md``, and each notebook's stem (its setting line and verdict table) in ``FINDINGS.md``, under the
hand-written paragraph that introduces it. A file must hold the markers of its blocks (``FILE_BLOCKS``); any other known
block it holds is filled too. Nothing between the markers is typed by hand, so neither file can drift from the data.
``--check`` writes nothing and exits 1 when either file is out of date (the tests run it).

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


def render(text: str, all_metrics: dict[str, dict], required: Sequence[str] | None = None, label: str = "README.md") -> str:
    r"""``text`` with every generated block it holds replaced; raises ``ValueError`` naming a block of ``required`` (all
    blocks when ``None``) whose markers ``text`` lacks.

    Example:
        >>> m = {"01_x": {"info": {"preset": "full"}, "verdicts": []}}
        >>> text = "a\n<!-- bnlib.lab.report:begin overview -->\nold\n<!-- bnlib.lab.report:end overview -->"
        >>> print(render(text, m, ["overview"]))
        a
        <!-- bnlib.lab.report:begin overview -->
        | notebook | preset | supported | not supported | inconclusive | mixed | untestable here | checks |
        |---|---|---|---|---|---|---|---|
        | 01_x | full | 0 | 0 | 0 | 0 | 0 | 0 passed, 0 failed |
        <!-- bnlib.lab.report:end overview -->
        >>> render("no markers", m, ["01_x"], "FINDINGS.md")
        Traceback (most recent call last):
        ValueError: FINDINGS.md has no block for '01_x': add the lines <!-- bnlib.lab.report:begin 01_x --> and ...
    """
    blocks = {"overview": overview(all_metrics), **{s: notebook_block(s, m) for s, m in all_metrics.items()}}
    required = list(blocks) if required is None else list(required)
    for name, body in blocks.items():
        begin, end = BEGIN.format(name), END.format(name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            if name in required:
                raise ValueError(f"{label} has no block for {name!r}: add the lines {begin} and {end} where its table goes")
            continue
        text = pattern.sub(lambda _, b=begin, e=end, body=body: f"{b}\n{body}\n{e}", text)
    return text


def file_blocks(kind: str, all_metrics: dict[str, dict]) -> list[str]:
    """The blocks a file must hold: ``overview`` in the README, every notebook's table in FINDINGS.md.

    >>> file_blocks("findings", {"01_x": {}, "02_y": {}})
    ['01_x', '02_y']
    """
    return ["overview"] if kind == "readme" else list(all_metrics)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bnlib.lab.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--findings", default=str(REPO / "FINDINGS.md"))
    parser.add_argument("--reference", default=str(REPO / "outputs" / "reference"))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if either file is out of date")
    args = parser.parse_args(argv)
    all_metrics = load_reference(Path(args.reference))
    files = {"readme": Path(args.readme), "findings": Path(args.findings)}
    try:
        new = {k: render(p.read_text(), all_metrics, file_blocks(k, all_metrics), p.name) for k, p in files.items()}
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = {k: p for k, p in files.items() if new[k] != p.read_text()}
    if args.check:
        for path in stale.values():
            print(f"{path} is out of date with {args.reference}: run `python -m bnlib.lab.report`", file=sys.stderr)
        return 1 if stale else 0
    for kind, path in stale.items():
        path.write_text(new[kind])
    print(f"[bnlib.lab.report] wrote the verdict tables of {', '.join(map(str, stale.values())) or 'nothing (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
