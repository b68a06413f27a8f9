"""bnlib.lab.site: the static HTML site of the executed references (``make site``)."""

import re
import subprocess

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from bnlib.lab import site

PNG = re.compile(r'<img[^>]+src="data:image/png;base64,[A-Za-z0-9+/=]{20,}"')


def page_links(html: str) -> set[str]:
    """The local pages an HTML page links (``href="x.html"``), anchors and other schemes left out.

    >>> sorted(page_links('<a href="a.html">a</a> <a href="https://x.org/b.html">b</a> <a href="#c">c</a>'))
    ['a.html']
    """
    return {h for h in re.findall(r'href="([^"#:]+\.html)"', html)}


def executed_notebook(path, title, image=True):
    outputs = [new_output("display_data", {"image/png": site.TINY_PNG * 2})] if image else []
    cells = [new_markdown_cell(f"# {title}\n\nSome text."), new_code_cell("x = 1", outputs=outputs, execution_count=1)]
    nbformat.write(new_notebook(cells=cells), path)


@pytest.fixture
def reference(tmp_path):
    ref = tmp_path / "reference"
    ref.mkdir()
    executed_notebook(ref / "01_first.ipynb", "01 · First")
    executed_notebook(ref / "02_second.ipynb", "02 · Second", image=False)
    (ref / "01_first").mkdir()
    (ref / "01_first" / "metrics.json").write_text('{"info": {"preset": "full"}, "verdicts": [{"outcome": "supported"}]}')
    return ref


def test_site_links_every_page_and_embeds_the_figures(reference, tmp_path):
    findings = tmp_path / "FINDINGS.md"
    findings.write_text("# Findings\n\n[01](outputs/reference/01_first.ipynb), "
                        "[its numbers](outputs/reference/01_first/metrics.json)\n\n| a |\n|---|\n| 1 |\n")
    out = tmp_path / "site"
    written = site.build_site(reference, out, findings)
    names = {p.name for p in written}
    assert names == {"index.html", "01_first.html", "02_second.html", "findings.html", "style.css"}
    index = (out / "index.html").read_text()
    assert page_links(index) == names - {"index.html", "style.css"} | {"index.html"}
    assert "| 01_first | full | 1 |" not in index and "<td>01_first</td>" in index  # the overview as an HTML table
    assert PNG.search((out / "01_first.html").read_text()), "the figure is not embedded"
    assert not PNG.search((out / "02_second.html").read_text())  # the check can fail: no image, no match
    assert "<h1" in (out / "01_first.html").read_text() and "First" in index
    page = (out / "findings.html").read_text()
    assert 'href="01_first.html"' in page and 'href="../../outputs/reference/01_first/metrics.json"' in page
    assert "<table>" in page
    for name in names - {"style.css"}:  # every page is self-contained: no script, nothing fetched
        text = (out / name).read_text()
        assert "<script" not in text and not re.search(r'(src|href)="https?:', text), name


def test_site_without_findings_and_without_notebooks(reference, tmp_path):
    written = site.build_site(reference, tmp_path / "site", tmp_path / "missing.md")
    assert "findings.html" not in {p.name for p in written}
    assert "findings.html" not in (tmp_path / "site" / "index.html").read_text()
    with pytest.raises(FileNotFoundError, match="no executed notebook"):
        site.build_site(tmp_path / "site", tmp_path / "other")
    assert site.main(["--reference", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2


def test_make_site_calls_the_module():
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/bin/.installed", "site"], cwd=site.REPO,
                          capture_output=True, text=True, check=True)  # no "make[1]: ..." lines under `make test`
    assert proc.stdout.strip().splitlines()[-1] == ".venv/bin/python -m bnlib.lab.site --out outputs/site"


def test_site_folder_is_ignored_by_git():
    assert "outputs/site/" in (site.REPO / ".gitignore").read_text().splitlines()
