"""The import graph of bnlib (issue 36): the textbook modules import no machinery (``bnlib.lab`` or the entry points
that lead into it), and the graph has no cycle."""
import ast
from pathlib import Path

import pytest

BNLIB = Path(__file__).resolve().parents[1] / "bnlib"
TEXTBOOK = ("data", "norms", "models", "train", "probes", "inference", "distributed", "verdicts", "plots")
ENTRY_POINTS = ("run", "experiment", "sweep")  # old names kept as thin re-exports of bnlib.lab


def module_name(path: Path) -> str:
    parts = path.relative_to(BNLIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def bnlib_imports(source: str) -> set[str]:
    """Every bnlib module a source imports, anywhere in it (a function's body too), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bnlib"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "bnlib":
            found |= {node.module} if node.module != "bnlib" else {f"bnlib.{a.name}" for a in node.names}
            folder = BNLIB.parent / node.module.replace(".", "/")  # `from bnlib.lab import cores` imports bnlib.lab.cores
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (folder / a.name).is_dir() or (folder / f"{a.name}.py").exists()}
    return found


GRAPH = {module_name(p): bnlib_imports(p.read_text()) for p in sorted(BNLIB.rglob("*.py"))}


def test_the_graph_covers_the_package():
    assert {f"bnlib.{m}" for m in TEXTBOOK + ENTRY_POINTS} | {"bnlib.lab.runner", "bnlib.lab.sweep"} <= set(GRAPH)
    assert "bnlib.lab.sweep" in GRAPH["bnlib.lab.notebook"] and "bnlib.data" in GRAPH["bnlib.train"]


@pytest.mark.parametrize("module", TEXTBOOK)
def test_textbook_module_imports_no_machinery(module):
    imported = GRAPH[f"bnlib.{module}"]
    machinery = sorted(m for m in imported if m.startswith("bnlib.lab") or m in {f"bnlib.{e}" for e in ENTRY_POINTS})
    assert not machinery, f"bnlib.{module} imports machinery: {machinery}"
    assert imported <= {f"bnlib.{m}" for m in TEXTBOOK}, imported


def test_the_check_can_fail():
    """A textbook module with a machinery import, at the top or inside a function, is caught."""
    source = ("import torch\nfrom bnlib.norms import BatchNorm\n\n"
              "def f():\n    from bnlib.lab import cores\n    import bnlib.sweep\n")
    assert bnlib_imports(source) == {"bnlib.norms", "bnlib.lab", "bnlib.lab.cores", "bnlib.sweep"}


def test_no_cycle():
    def visit(node, path):
        assert node not in path, f"import cycle: {' -> '.join([*path, node])}"
        for nxt in GRAPH.get(node, ()):
            visit(nxt, (*path, node))

    for module in GRAPH:
        visit(module, ())
