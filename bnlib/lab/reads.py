"""What a function reads besides its arguments, as a stable fingerprint: the key of a cached call must change with it.

A notebook function cached by :func:`bnlib.lab.sweep.call_sweep` reads globals: parameters (``etas``), data (``TRAIN``),
other notebook functions (``train``) and the configs of runs it loads (``BASE_KEPT``). Had its key held only its own
source and its config, a rerun with another ``-p etas`` would return the results of the old ``etas``. :func:`reads`
follows every global the function loads (its bytecode's ``LOAD_GLOBAL``, in nested functions, lambdas and
comprehensions too) and every variable it closes over, into the notebook functions it calls, and fingerprints each
value:

- numbers, strings, lists, tuples, dicts, sets, dataclasses (a :class:`~bnlib.lab.experiment.Run`), devices and dtypes
  by value; floats to 10 significant digits;
- integer and boolean arrays and tensors (images, labels) by a SHA-256 of their bytes; float ones by dtype, shape and
  float64 sums to 8 significant digits (their bits differ between CPUs: a reduction sums in another order; a cache
  must survive a change of machine); an ``nn.Module`` by its state;
- functions and classes defined where the function was (the notebook) by their source (or bytecode) and what they read
  in turn; anything imported (``torch``, ``bnlib.train.fit``) by its name only: library code is covered by
  ``CACHE_VERSION`` and the canary test (``tests/test_canary.py``);
- locations are left out: ``pathlib`` paths and the globals named in :data:`LOCATIONS` say where files are, not what is
  computed (the reference folder moves between machines).

Anything else raises ``TypeError`` naming the global: pass it through the config instead. A value is read when the
sweep starts, so a function that appends to a list it reads (a call counter) finds another key next time: count calls
otherwise (a print, a file).

Library code is tracked apart: :func:`code_fingerprint` names the code that computes runs (its syntax, without
docstrings, comments or layout); every stored run records it, and ``bnlib.run``'s SUMMARY.md warns when a notebook's
cache holds runs made by other code.

Example:
    >>> etas = [0.5, 1.0]
    >>> def probe(seed):
    ...     return [e * 2 for e in etas]
    >>> reads(probe)
    {'etas': ['0.5', '1']}
"""

from __future__ import annotations

import ast
import dataclasses
import dis
import enum
import functools
import hashlib
import importlib.util
import inspect
import types
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

LOCATIONS = frozenset({"data_root", "out_dir"})
"""Globals that name where files are (a data root, an output folder), never part of a fingerprint."""

RUN_CODE = ("bnlib.data", "bnlib.norms", "bnlib.models", "bnlib.train", "bnlib.probes", "bnlib.inference",
            "bnlib.distributed", "bnlib.lab.experiment", "bnlib.lab.batched")
"""The modules whose code computes runs (and what cached calls use of bnlib): :func:`code_fingerprint`."""
_CHUNK = 1 << 22  # elements of a float array summed at a time (no float64 copy of a whole dataset)


def reads(fn: Callable) -> dict[str, Any]:
    """A JSON-able fingerprint of everything ``fn`` reads besides its arguments: ``{global name: fingerprint}``, closure
    variables as ``"<qualname>.<name>"``; what the notebook functions it calls read is merged in (one namespace).

    Example:
        >>> import torch
        >>> scale = torch.tensor([1, 2], dtype=torch.uint8)
        >>> def f(seed):
        ...     return scale * seed
        >>> reads(f)["scale"]["sha256"][:12]
        'a12871fee210'
    """
    found: dict[str, Any] = {}
    _read(fn, found, set())
    return dict(sorted(found.items()))


# ---------------------------------------------------------------- what a function reads


def global_names(code: types.CodeType) -> set[str]:
    """The globals that ``code`` and the code nested in it (functions, lambdas, comprehensions) load.

    Example:
        >>> def f(x):
        ...     return [math.sqrt(v) + offset for v in x]
        >>> sorted(global_names(f.__code__))
        ['math', 'offset']
    """
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def _read(fn: Callable, found: dict[str, Any], seen: set[int]) -> None:
    if id(fn) in seen:
        return
    seen.add(id(fn))
    code, home = fn.__code__, fn.__globals__
    for name in sorted(global_names(code)):
        if name in home and name not in LOCATIONS and name not in found:
            found[name] = None  # a placeholder: a function that reads itself (recursion) stops here
            found[name] = _fingerprint(home[name], name, home, found, seen)
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        label = f"{fn.__qualname__}.{name}"
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not filled yet: the function's own name inside its body
            continue
        found[label] = _fingerprint(value, label, home, found, seen)


# ---------------------------------------------------------------- fingerprints of values


def _fingerprint(value: Any, name: str, home: dict, found: dict[str, Any], seen: set[int]) -> Any:
    """The fingerprint of ``value``, read under ``name`` by a function whose globals are ``home``."""
    import numpy as np
    import torch

    def again(v: Any) -> Any:
        return _fingerprint(v, name, home, found, seen)

    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, (list, tuple)):
        return [again(v) for v in value]
    if isinstance(value, dict):
        return {str(k): again(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(str(again(v)) for v in value)
    if isinstance(value, PurePath):
        return "<location>"
    if isinstance(value, (torch.device, torch.dtype, np.dtype)):
        return str(value)
    if isinstance(value, np.generic):
        return again(value.item())
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return array_fingerprint(value)
    if isinstance(value, torch.nn.Module):
        return {"module": type(value).__qualname__, "state": {k: array_fingerprint(v) for k, v in value.state_dict().items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": type(value).__qualname__,
                **{f.name: again(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, functools.partial):
        return {"partial": again(value.func), "args": again(value.args), "keywords": again(value.keywords)}
    if isinstance(value, types.ModuleType):
        return f"<module {value.__name__}>"
    if isinstance(value, types.FunctionType) and value.__globals__ is home:  # defined here (the notebook): what it does
        _read(value, found, seen)
        return {"source": _source(value)}
    if isinstance(value, type) and _defined_in(value, home):
        methods = {k: v for k, v in vars(value).items() if isinstance(v, types.FunctionType)}
        for method in methods.values():
            _read(method, found, seen)
        return {"class": value.__qualname__, "methods": {k: _source(v) for k, v in sorted(methods.items())}}
    if callable(value) and hasattr(value, "__qualname__"):  # imported: library code is versioned elsewhere
        return f"<{getattr(value, '__module__', '?')}.{value.__qualname__}>"
    raise TypeError(f"cannot fingerprint the global {name!r} (a {type(value).__qualname__}) that a cached function "
                    "reads; pass it through the call's config instead (call_sweep's key must change whenever it does)")


def array_fingerprint(array: Any) -> dict[str, Any]:
    """dtype, shape and content of an array or tensor: integers and booleans by a SHA-256 of their bytes, floats by
    float64 sums of the values, their squares and their positions, to 8 significant digits (the same on every CPU).

    Example:
        >>> import torch
        >>> array_fingerprint(torch.tensor([0.1, 0.2]))
        {'dtype': 'torch.float32', 'shape': [2], 'sums': ['0.3', '0.050000001', '0.1']}
    """
    import numpy as np
    import torch

    t = torch.as_tensor(array).detach().cpu()
    out: dict[str, Any] = {"dtype": str(array.dtype), "shape": list(t.shape)}
    if t.is_floating_point() or t.is_complex():
        flat = t.reshape(-1)
        total = squares = positions = 0.0
        for start in range(0, flat.numel(), _CHUNK):
            part = flat[start:start + _CHUNK].to(torch.float64)
            index = torch.arange(start, start + part.numel(), dtype=torch.float64) / max(1, flat.numel())
            total, squares = total + part.sum().item(), squares + (part * part).sum().item()
            positions += (part * index).sum().item()
        out["sums"] = [f"{v:.8g}" for v in (total, squares, positions)]
    else:
        out["sha256"] = hashlib.sha256(np.ascontiguousarray(t.numpy()).tobytes()).hexdigest()
    return out


def _source(fn: Callable) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):  # no file (exec'd code): its bytecode
        return fn.__code__.co_code.hex()


def _defined_in(cls: type, home: dict) -> bool:
    return cls.__module__ == home.get("__name__")


# ---------------------------------------------------------------- the code that computes runs


@functools.cache
def code_fingerprint(modules: tuple[str, ...] = RUN_CODE) -> str:
    """12 hex digits of the code of ``modules``: their syntax trees without docstrings, so that an edited comment,
    docstring or line break leaves it alone and any change to what the code does moves it.

    It tells a cached run from one made by other code (``RunCache`` records it with every run); whether that code
    computes other numbers is the canary test's question (``tests/test_canary.py``), answered by bumping
    ``CACHE_VERSION``.

    Example:
        >>> len(code_fingerprint()), code_fingerprint() == code_fingerprint(RUN_CODE)
        (12, True)
    """
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"code_fingerprint: no source for module {name!r}")
        digest.update(f"{name}\n{code_only(Path(spec.origin).read_text())}\n".encode())
    return digest.hexdigest()[:12]


def code_only(source: str) -> str:
    """The syntax tree of ``source`` without its string statements (docstrings, attribute docs), as text.

    Example:
        >>> code_only("def f():\\n    'Doc.'\\n    return 1  # one") == code_only("def f():\\n    return (1)")
        True
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                            and isinstance(s.value.value, str))]
            node.body = kept or [ast.Pass()]
    return ast.dump(tree)
