"""Which notebooks, and with which parameters: the series, names to paths, presets by identity, ``-p`` values
parsed and checked against a notebook's ``parameters`` cell, the output folder and paths as a kernel sees them.

Example:
    >>> [p.stem for p in resolve_notebooks(["01"])]
    ['01_internal_covariate_shift']
    >>> check_parameters(resolve_notebooks(["02"])[0], {"seeds": 3.0})
    {'seeds': 3}
"""

from __future__ import annotations

import ast
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from bnlib.lab.presets import PRESETS, SERIES, preset_parameters

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
PATH_SUFFIXES = ("_root",)  # parameters holding a path: a relative one is resolved against the caller's directory


# ---------------------------------------------------------------- which notebooks


def notebook_identity(path: Path) -> str | None:
    """The series notebook ``path`` is (``metadata.bnlib.notebook``), or None for a notebook outside the series.

    Example:
        >>> notebook_identity(NOTEBOOK_DIR / "01_internal_covariate_shift.ipynb")
        '01_internal_covariate_shift'
    """
    try:
        metadata = json.loads(Path(path).read_text()).get("metadata", {})
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read notebook {path}: {exc}") from exc
    identity = metadata.get("bnlib", {}).get("notebook")
    return identity if isinstance(identity, str) else None


def series() -> list[Path]:
    """The series' notebooks in order (``notebooks/<identity>.ipynb`` for each of ``bnlib.lab.presets.SERIES``)."""
    return [NOTEBOOK_DIR / f"{name}.ipynb" for name in SERIES]


def resolve_notebooks(names: Sequence[str] = ()) -> list[Path]:
    """Notebook paths for names like ``01``, ``01_internal_covariate_shift`` or a path; the series if empty.

    A name is a path to a notebook, a whole stem in ``notebooks/``, or a prefix of one: of a series notebook
    first (``01`` is the series' 01, not its copies), else of any notebook there. A prefix matching several is
    refused with the list.

    Example:
        >>> resolve_notebooks(["no_such"])
        Traceback (most recent call last):
        ...
        ValueError: no notebook matches 'no_such'; the series: 01_internal_covariate_shift, 02_mnist_reproduction...
        >>> resolve_notebooks(["0"])
        Traceback (most recent call last):
        ...
        ValueError: '0' matches several notebooks: 01_internal_covariate_shift, 02_mnist_reproduction, ...; name one
    """
    if not names:
        return series()
    everything = series() + sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if p not in series())
    paths = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            paths.append(path.resolve())
            continue
        stem = path.name.removesuffix(".ipynb")
        exact = [p for p in everything if p.stem == stem]
        for pool in (exact, series(), everything):
            matches = [p for p in pool if p.stem.startswith(stem)]
            if len(matches) > 1:
                raise ValueError(f"{name!r} matches several notebooks: {', '.join(p.stem for p in matches)}; name one")
            if matches:
                paths.append(matches[0])
                break
        else:
            raise ValueError(f"no notebook matches {name!r}; the series: {', '.join(SERIES)}")
    return paths


def notebook_presets(path: Path, preset: str) -> dict:
    """The parameters ``preset`` sets for the notebook at ``path``, by its identity (a renamed copy gets them too).

    Example:
        >>> notebook_presets(NOTEBOOK_DIR / "01_internal_covariate_shift.ipynb", "smoke")["seeds"]
        2
    """
    identity = notebook_identity(path)
    if identity in PRESETS:
        return preset_parameters(identity, preset)
    if preset == "quick":  # a notebook's own defaults need no identity
        return {}
    raise ValueError(f"{path.name} is not a notebook of the series (its metadata has no bnlib.notebook among "
                     f"{', '.join(SERIES)}), so preset {preset!r} does not apply to it; run it with --preset quick "
                     "(its own defaults), or give it the metadata of the notebook it was copied from")


# ---------------------------------------------------------------- parameters


def parse_value(text: str):
    """Parse a ``-p`` value: JSON (numbers, lists, true/false/null), Python's True/False/None, else the string.

    Example:
        >>> parse_value("1e-3"), parse_value("[1, 2]"), parse_value("True"), parse_value("relu")
        (0.001, [1, 2], True, 'relu')
    """
    python_words = {"True": True, "False": False, "None": None}
    if text in python_words:
        return python_words[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def notebook_parameters(path: Path) -> dict:
    """Names and defaults (as source text) of the notebook's ``parameters`` cell (``papermill.inspect_notebook``)."""
    import papermill

    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def _kind(value) -> str | None:
    for kind, types in (("bool", bool), ("integer", int), ("number", float), ("string", str), ("list", list)):
        if isinstance(value, types):
            return kind
    return None


def _numbers(value) -> Iterator:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, float):
        yield value


def checked_value(name: str, value, default):
    """``value`` for parameter ``name`` as the notebook gets it, or ``ValueError`` naming the parameter: it must be
    finite and of the default's kind (None always passes, and anything where the default is None); an integral float
    for an integer becomes an int; a relative path for a ``*_root`` parameter becomes absolute (from the cwd).

    Example:
        >>> checked_value("steps", 1e4, 300), checked_value("lr", 1, 0.1)
        (10000, 1)
        >>> checked_value("lr", float("inf"), 0.1)
        Traceback (most recent call last):
        ...
        ValueError: parameter 'lr' must be finite, got inf
        >>> checked_value("steps", 2.5, 300)
        Traceback (most recent call last):
        ...
        ValueError: parameter 'steps' takes an integer (its default is 300), got 2.5
    """
    if any(not math.isfinite(v) for v in _numbers(value)):
        raise ValueError(f"parameter {name!r} must be finite, got {value!r}")
    if name.endswith(PATH_SUFFIXES) and isinstance(value, str):
        return str(Path(value).expanduser().resolve())
    kind, got = _kind(default), _kind(value)
    if value is None or kind is None or got == kind or (kind == "number" and got == "integer"):
        return value
    if kind == "integer" and got == "number" and value.is_integer():
        return int(value)
    hint = "; for None write None or null" if isinstance(value, str) and value.lower() in ("none", "null") else ""
    article = "an" if kind == "integer" else "a"
    raise ValueError(f"parameter {name!r} takes {article} {kind} (its default is {default!r}), got {value!r}{hint}")


def check_parameters(path: Path, params: dict) -> dict:
    """Refuse parameter names the notebook does not declare (listing the valid ones) and values of the wrong kind;
    returns the values as the notebook will get them (:func:`checked_value`).

    Example:
        >>> check_parameters(resolve_notebooks(["01"])[0], {"no_such_param": 1})
        Traceback (most recent call last):
        ...
        ValueError: unknown parameter 'no_such_param' for 01_internal_covariate_shift; valid parameters: ...
    """
    if not params:
        return {}
    valid = notebook_parameters(path)
    unknown = [name for name in params if name not in valid]
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} for {path.stem}; valid parameters: {', '.join(valid)}"
        )
    checked = {}
    for name, value in params.items():
        try:
            default = ast.literal_eval(valid[name])
        except (ValueError, SyntaxError):  # an expression: no kind to check against
            default = None
        try:
            checked[name] = checked_value(name, value, default)
        except ValueError as exc:
            raise ValueError(f"{path.stem}: {exc}") from None
    return checked


def runs_executor(path: Path, params: dict) -> str:
    """Where the notebook's runs train: its ``executor`` parameter as given, else its default, else "kernel" (a
    notebook without one trains in its kernel).

    Example:
        >>> runs_executor(NOTEBOOK_DIR / "02_mnist_reproduction.ipynb", {}), runs_executor(Path("x.ipynb"), {"executor": "dask"})
        ('local', 'dask')
        >>> runs_executor(NOTEBOOK_DIR / "01_internal_covariate_shift.ipynb", {})
        'kernel'
    """
    if "executor" in params:
        return str(params["executor"])
    try:
        return str(ast.literal_eval(notebook_parameters(path)["executor"]))
    except (KeyError, ValueError, SyntaxError, OSError):
        return "kernel"


def prepare_out(out: str | os.PathLike) -> Path:
    """``out`` created if needed and checked writable, before any notebook runs; ``ValueError`` naming it if not.

    Example:
        >>> prepare_out("/proc/version")
        Traceback (most recent call last):
        ...
        ValueError: --out /proc/version is a file, not a folder; name a folder (it is created if missing)
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder; name a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"--out {path.resolve()} cannot be written ({exc.strerror}); choose a folder you can write "
                         "to") from exc
    return path


def kernel_path(target: Path, cwd: Path) -> str:
    """``target`` as the kernel (running in ``cwd``) should see it: relative inside the repository, else absolute.

    Example:
        >>> kernel_path(REPO / "outputs" / "01_x", NOTEBOOK_DIR)
        '../outputs/01_x'
    """
    target, cwd = target.resolve(), cwd.resolve()
    if target.is_relative_to(REPO) and cwd.is_relative_to(REPO):
        return os.path.relpath(target, cwd)
    return str(target)
