"""Project-level checks: packaging lists agree, notebooks are stored clean, presets name real parameters."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from bnlib.lab.presets import PRESET_NAMES, PRESETS, SERIES
from bnlib.lab.series import notebook_parameters, resolve_notebooks

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted((REPO / "bnlib").rglob("*.py"))  # the package's source files, bnlib.lab's included
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_and_pyproject_name_the_same_packages():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip_names = {requirement_name(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {requirement_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert {CONDA_TO_PIP.get(n, n) for n in conda} == pip_names
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-e ."]


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("path", resolve_notebooks(), ids=lambda p: p.stem)
def test_notebook_stored_without_outputs_and_with_parameters(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    params = notebook_parameters(path)
    assert {"preset", "out_dir", "data_root", "seeds", "first_seed"} <= set(params)
    for preset in PRESET_NAMES:
        unknown = set(PRESETS.get(path.stem, {}).get(preset, {})) - set(params)
        assert not unknown, f"preset {preset} sets parameters {unknown} that {path.stem} does not declare"


@pytest.mark.parametrize("path", resolve_notebooks(), ids=lambda p: p.stem)
def test_first_cell_says_how_to_rerun_and_what_each_preset_costs(path):
    """The opening markdown cell names the command for this notebook at quick and at full, each with its cost."""
    intro = nbformat.read(path, as_version=4).cells[0]
    assert intro.cell_type == "markdown"
    number = path.stem[:2]
    assert f"`python -m bnlib.run {number} --preset quick` (about " in intro.source, path.stem
    assert re.search(r"`--preset full` \([^)]*about [^)]* on 2 CPU cores", intro.source), path.stem


@pytest.mark.parametrize("path", resolve_notebooks(), ids=lambda p: p.stem)
def test_check_cell_gives_every_parameter_a_rule(path):
    """The cell after the parameters is declarative: only P.check calls (and named rules), one rule per parameter but the
    two paths, each parameter once."""
    import ast

    cell = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"][1]
    tree = ast.parse(cell.source)
    calls = [node.value for node in tree.body if isinstance(node, ast.Expr)]
    assert calls and all(ast.unparse(c.func) == "P.check" and ast.unparse(c.args[0]) == "globals()" for c in calls)
    assert all(isinstance(node, (ast.Expr, ast.Import, ast.ImportFrom, ast.Assign)) for node in tree.body)
    checked = [k.arg for c in calls for k in c.keywords]
    assert len(checked) == len(set(checked)), f"checked twice: {[k for k in checked if checked.count(k) > 1]}"
    assert set(checked) == set(notebook_parameters(path)) - {"out_dir", "data_root"}
    assert len(cell.source.splitlines()) <= 25

@pytest.mark.parametrize("path", resolve_notebooks(), ids=lambda p: p.stem)
def test_every_parameter_has_a_type_papermill_shows_and_its_default_fits_it(path):
    """``papermill --help-notebook`` shows each parameter's type: an annotation (``seeds: int = 3``) or, where None is
    allowed, a type comment (``lr = None  # type: float|None ...``: papermill reads no ``|`` in an annotation); the
    default is of that type, and bnlib's own readers (``bnlib.lab.params``) see the same names and values."""
    import ast

    import papermill

    from bnlib.lab.params import _assigned, _literals

    inspected = papermill.inspect_notebook(str(path))
    source = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source
    assert _assigned(source) == list(inspected)
    defaults = _literals(source)
    kinds = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list}
    for name, info in inspected.items():
        typ = info["inferred_type_name"]
        assert typ != "None", f"{path.stem}: {name} has no type"
        base, _, none = typ.partition("|")
        assert none in ("", "None") and base.split("[")[0] in kinds, f"{path.stem}: {name}: {typ}"
        value = defaults[name]
        assert ast.literal_eval(info["default"]) == value
        fits = bool(none) if value is None else isinstance(value, bool) if base == "bool" else \
            isinstance(value, kinds[base.split("[")[0]]) and not isinstance(value, bool)
        assert fits, f"{path.stem}: {name} = {value!r} is not {typ}"
        if base.startswith("list["):
            assert all(isinstance(v, kinds[base[5:-1]]) for v in value), f"{path.stem}: {name} = {value!r} is not {typ}"


def test_series_notebooks_carry_their_identity():
    from bnlib.lab.series import notebook_identity

    assert [notebook_identity(p) for p in resolve_notebooks()] == list(SERIES)  # presets follow it, not the file name
    assert all(p.exists() for p in resolve_notebooks())


@pytest.mark.parametrize("stem", ["02_mnist_reproduction", "03_cifar10_experiments", "04_failed_variants", "05_loss_landscape",
                                  "06_batchnorm_in_practice"])
def test_training_notebooks_take_an_executor_and_sweep_runs(stem):
    """Their runs are bnlib.lab.experiment.Run configs trained by a sweep (``NB.runs``, bound by ``setup`` to the executor
    the parameter names, or ``run_sweep``)."""
    path = REPO / "notebooks" / f"{stem}.ipynb"
    assert notebook_parameters(path)["executor"] == "\"local\""  # the default, as written in the parameters cell
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert "executor=P.executor" in source and "executor=executor" in source.split("executor=P.executor", 1)[1]
    assert ("NB.runs(" in source or "run_sweep(" in source) and "NORM_KINDS[" not in source


def test_ruff_finds_nothing():
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    proc = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]  # rules and line length in pyproject.toml [tool.ruff]


def test_every_module_has_its_test_file():
    """One test file per module, named after it (``bnlib/lab/records.py``: ``tests/test_records.py``); the entry points
    that only re-export (``bnlib.run``, ``bnlib.experiment``, ``bnlib.sweep``) are tested through what they re-export."""
    from test_imports import ENTRY_POINTS

    shims = [REPO / "bnlib" / f"{name}.py" for name in ENTRY_POINTS]
    modules = [p for p in MODULES if p.stem != "__init__" and p not in shims]
    missing = [str(p.relative_to(REPO)) for p in modules if not (REPO / "tests" / f"test_{p.stem}.py").exists()]
    assert not missing, f"modules without tests/test_<module>.py: {missing}"


def test_every_long_module_reads_in_banner_sections():
    """A module over 300 lines is divided by banner comments (``# ---- title``), as airbench's single file is."""
    unbannered = []
    for path in MODULES:
        lines = path.read_text().splitlines()
        banners = [i for i, line in enumerate(lines) if re.match(r"# -{8,}", line)
                   and (line.strip("# -") or (i + 1 < len(lines) and re.match(r"# \w", lines[i + 1])))]
        if len(lines) > 300 and len(banners) < 2:
            unbannered.append(f"{path.relative_to(REPO)} ({len(lines)} lines, {len(banners)} banners)")
    assert not unbannered, f"long modules without banner sections: {unbannered}"


def test_make_lab_starts_jupyterlab_on_the_repository():
    """``make lab`` runs JupyterLab from the virtual environment with the repository as its root (notebooks/ and
    outputs/reference/ in its file browser), passes LAB_ARGS on and adds --allow-root only for root."""
    import os
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/bin/.installed", "lab",
                           "LAB_ARGS=--no-browser --port 8899"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    command = proc.stdout.strip().splitlines()[-1]
    assert command.startswith(".venv/bin/python -m jupyter lab"), command
    assert f'--ServerApp.root_dir="{REPO}"' in command and command.endswith("--no-browser --port 8899")
    assert ("--allow-root" in command) == (os.getuid() == 0)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "jupyterlab" in {requirement_name(s) for s in project["dependencies"]}


def test_license_file_is_the_mit_license_pyproject_names():
    """pyproject.toml says MIT; LICENSE holds that text, with the copyright of the authors pyproject.toml lists."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    text = (REPO / "LICENSE").read_text()
    assert project["license"] == "MIT" and text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text and 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    holders = [a["name"] for a in project["authors"]]
    assert holders and all(re.search(rf"Copyright \(c\) \d{{4}} {re.escape(h)}", text) for h in holders)


def test_readme_shows_the_way_into_the_notebooks():
    """The README names ``make lab`` beside the two commands, links every notebook of the series to its executed copy in
    outputs/reference/ (the sources have no outputs), and says how to activate .venv before its first ``python -m bnlib.run``."""
    readme = (REPO / "README.md").read_text()
    commands = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert re.search(r"^make lab\b", commands, re.M), "the first command block names make lab"
    for stem in SERIES:
        executed = f"outputs/reference/{stem}.ipynb"
        assert f"]({executed})" in readme, f"the README links no executed copy of {stem}"
        assert (REPO / executed).exists(), executed
    activate = readme.find("source .venv/bin/activate")
    assert 0 <= activate < readme.find("python -m bnlib.run"), "activate .venv before the first python -m bnlib.run"


def test_readme_is_a_way_in():
    """The README stays short (about 150 lines: the details are in FINDINGS.md and docs/), counts no tests in its prose and
    dates no timing (those are rows of benchmarks/results.csv)."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert not re.search(r"\b\d[\d,]* tests\b", readme), re.findall(r"\b\d[\d,]* tests\b", readme)
    prose = [line for line in readme.splitlines() if not line.startswith("|")]
    assert not [line for line in prose if re.search(r"\b20\d\d-\d\d-\d\d\b.*\b\d+(\.\d+)? (s|min|h)\b", line)]
