"""A static HTML site of the executed references: ``python -m bnlib.lab.site`` (``make site``).

    python -m bnlib.lab.site [--reference outputs/reference] [--findings FINDINGS.md] [--out outputs/site]

Every executed notebook ``REFERENCE/NN_name.ipynb`` becomes ``OUT/NN_name.html`` (nbconvert's ``basic`` template: its
figures are the notebook's PNG outputs, embedded as ``data:`` URIs, so a page is one file), ``FINDINGS.md`` (the
verdict tables, :mod:`bnlib.lab.report`) becomes ``OUT/findings.html``, and ``OUT/index.html`` links them all under
the overview of outcome counts. One small stylesheet, ``OUT/style.css``, serves every page; nothing is fetched from the
network (no MathJax: formulas show as their TeX source).

The ``basic`` template was measured against nbconvert's ``lab`` and ``classic`` ones on the references: about the same time
(2-5 s a notebook, most of it in reading and base64), 0.3 MB less a page (no inlined JupyterLab CSS) and no script
loaded from a CDN.

Example (a site of one tiny executed notebook):
    >>> import tempfile, nbformat
    >>> from nbformat.v4 import new_notebook, new_markdown_cell, new_code_cell, new_output
    >>> ref, out = (Path(tempfile.mkdtemp()) for _ in range(2))
    >>> cell = new_code_cell("plot()", outputs=[new_output("display_data", {"image/png": TINY_PNG})])
    >>> nbformat.write(new_notebook(cells=[new_markdown_cell("# 01 · A title"), cell]), ref / "01_x.ipynb")
    >>> sorted(p.name for p in build_site(ref, out))
    ['01_x.html', 'index.html', 'style.css']
    >>> 'href="01_x.html"' in (out / "index.html").read_text()
    True
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# a 1x1 PNG, for examples and tests
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
STYLE = """body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
nav { margin-bottom: 1.5em; font-size: 14px; } nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; } th, td { border: 1px solid #ccc; padding: 3px 6px; }
th { background: #f3f3f3; } img { max-width: 100%; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 13px; }
.jp-InputArea, .input { border-left: 3px solid #9ab; margin: 1em 0 0.3em; }
.jp-OutputArea pre, .output pre { background: #fff; }
.jp-InputPrompt, .jp-OutputPrompt, .prompt { display: none; }
.anchor-link { visibility: hidden; text-decoration: none; } :hover > .anchor-link { visibility: visible; }
"""


def stylesheet() -> str:
    """The site's CSS: the page layout and pygments' colours for the code cells (class ``highlight``).

    >>> ".highlight .k" in stylesheet()
    True
    """
    from pygments.formatters import HtmlFormatter

    return STYLE + HtmlFormatter().get_style_defs(".highlight")


def _page(title: str, body: str, nav: str = "") -> str:
    """A complete HTML page around ``body``, with the shared stylesheet.

    >>> _page("A & B", "<p>x</p>").count("<title>A &amp; B</title>")
    1
    """
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f'<link rel="stylesheet" href="style.css">\n</head>\n<body>\n{nav}\n{body}\n</body>\n</html>\n')


def _nav(stems: Sequence[str], findings: bool) -> str:
    """The line of links at the top of every page.

    >>> _nav(["01_x"], False)
    '<nav><a href="index.html">index</a><a href="01_x.html">01</a></nav>'
    """
    links = ['<a href="index.html">index</a>'] + [f'<a href="{s}.html">{s[:2]}</a>' for s in stems]
    if findings:
        links.append('<a href="findings.html">findings</a>')
    return "<nav>" + "".join(links) + "</nav>"


def notebook_title(nb) -> str:
    """The first heading of a notebook's first markdown cell, without its ``#`` marks (the file's stem otherwise).

    >>> from nbformat.v4 import new_notebook, new_markdown_cell
    >>> notebook_title(new_notebook(cells=[new_markdown_cell("intro\\n# 02 · Title")]))
    '02 · Title'
    """
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def notebook_page(path: Path, stems: Sequence[str], findings: bool) -> tuple[str, str]:
    """``(title, html)`` of one executed notebook: its cells and outputs, figures embedded."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    body, _ = HTMLExporter(template_name="basic", embed_images=True).from_notebook_node(nb)
    title = notebook_title(nb) or path.stem
    return title, _page(title, body, _nav(stems, findings))


def site_links(markdown: str) -> str:
    """``markdown`` with its repository links rewritten for a page in ``outputs/site/``: an executed reference notebook
    to its page, any other relative path to the file in the checkout (two folders up); absolute URLs and anchors kept.

    >>> site_links("[a](outputs/reference/01_x.ipynb) [b](outputs/reference/01_x/metrics.json) [c](#top)")
    '[a](01_x.html) [b](../../outputs/reference/01_x/metrics.json) [c](#top)'
    """
    def fix(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        page = re.fullmatch(r"outputs/reference/(\d\d_\w+)\.ipynb", target)
        return f"]({page.group(1)}.html)" if page else f"](../../{target})"

    return re.sub(r"\]\(([<]?)([^)\s>]+)>?\)", fix, markdown)


def markdown_page(text: str, title: str, stems: Sequence[str]) -> str:
    """A Markdown file (``FINDINGS.md``) as a page: links rewritten (:func:`site_links`), comments dropped, rendered by
    nbconvert's Markdown filter (mistune).

    >>> "<table>" in markdown_page("| a |\\n|---|\\n| 1 |\\n", "t", [])
    True
    """
    from nbconvert.filters import markdown2html

    text = re.sub(r"<!--.*?-->\n?", "", site_links(text), flags=re.S)
    return _page(title, markdown2html(text), _nav(stems, True))


def index_page(titles: dict[str, str], overview_md: str, findings: bool) -> str:
    """The index: the overview of outcome counts, a link to every notebook page and to the findings page.

    >>> page = index_page({"01_x": "01 · A"}, "", False)
    >>> '<a href="01_x.html">01 · A</a>' in page
    True
    """
    from nbconvert.filters import markdown2html

    items = "\n".join(f'<li><a href="{s}.html">{html.escape(t)}</a></li>' for s, t in titles.items())
    body = ["<h1>Batch Normalization, tested</h1>",
            "<p>The executed <code>full</code> references of the notebook series, every output and figure included.</p>",
            f"<h2>Notebooks</h2>\n<ul>\n{items}\n</ul>"]
    if findings:
        body.append('<p>Every verdict with its evidence, notebook by notebook: <a href="findings.html">findings</a>.</p>')
    if overview_md:
        body.append("<h2>Outcomes</h2>\n" + markdown2html(overview_md))
    return _page("Batch Normalization, tested", "\n".join(body), _nav(list(titles), findings))


def build_site(reference: Path, out: Path, findings: Path | None = None) -> list[Path]:
    """Write the site of ``reference``'s executed notebooks (and ``findings``, a Markdown file, when given) into ``out``;
    returns the files written. Raises ``FileNotFoundError`` when ``reference`` holds no ``NN_*.ipynb``."""
    from bnlib.lab.markdown import overview
    from bnlib.lab.report import load_reference

    notebooks = sorted(Path(reference).glob("[0-9][0-9]_*.ipynb"))
    notebooks = [p for p in notebooks if not p.stem.endswith(".previous")]
    if not notebooks:
        raise FileNotFoundError(f"no executed notebook NN_name.ipynb in {reference}")
    out.mkdir(parents=True, exist_ok=True)
    stems, has_findings = [p.stem for p in notebooks], findings is not None and findings.exists()
    written, titles = [out / "style.css"], {}
    written[0].write_text(stylesheet())
    for path in notebooks:
        titles[path.stem], page = notebook_page(path, stems, has_findings)
        written.append(out / f"{path.stem}.html")
        written[-1].write_text(page)
    if has_findings:
        written.append(out / "findings.html")
        written[-1].write_text(markdown_page(findings.read_text(), "Findings", stems))
    metrics = load_reference(Path(reference))
    written.append(out / "index.html")
    written[-1].write_text(index_page(titles, overview(metrics) if metrics else "", has_findings))
    return sorted(written)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bnlib.lab.site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default=str(REPO / "outputs" / "reference"))
    parser.add_argument("--findings", default=str(REPO / "FINDINGS.md"))
    parser.add_argument("--out", default=str(REPO / "outputs" / "site"))
    args = parser.parse_args(argv)
    try:
        written = build_site(Path(args.reference), Path(args.out), Path(args.findings))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in written)
    index = Path(args.out) / "index.html"
    print(f"[bnlib.lab.site] wrote {len(written)} files, {size / 1e6:.1f} MB, into {args.out}: open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
