"""Parameter checks as data: a rule says what a value must be; :func:`check` applies rules to named values.

A notebook's check cell is one declarative call, one rule per parameter::

    >>> seeds, lr, lrs, test_size = 3, 0.1, [0.1, 1.0], None
    >>> check(globals(), seeds=count, lr=positive, lrs=list_of(positive), test_size=optional(integer(min=2)))

A value that breaks its rule raises ``ValueError`` naming the parameter, what it must be and what it got. Numbers
must be finite (``inf`` and ``nan`` fail every numeric rule); ``True``/``False`` are not numbers.

    >>> check({"lr": -1}, lr=positive)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number > 0, got -1

Rules are built from :func:`number`, :func:`integer`, :func:`one_of`, :func:`list_of`, :func:`interval` and
:func:`optional`, narrowed with :meth:`Rule.where`; library code calls a rule on keywords (``count(steps=steps)``). Counts
that size a loop or an allocation use :data:`step_count` (at most :data:`MAX_STEPS`), a conv net's width :func:`width_for`.
"""

from __future__ import annotations

import math
import re
from collections import ChainMap
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from bnlib.lab.presets import PRESET_NAMES, PRESETS

# ---------------------------------------------------------------- rules

class Rule:
    """What a value must be (``must``, the words of the error) and the ``test`` that says whether it is.

    A test that raises ``TypeError`` or ``ValueError`` counts as failed. Call a rule on keywords to check each.

    Example:
        >>> even = Rule("an even integer", lambda v: v % 2 == 0)
        >>> even(batch=4)
        >>> even(batch=5)
        Traceback (most recent call last):
        ...
        ValueError: batch must be an even integer, got 5
    """

    def __init__(self, must: str, test: Callable[[Any], bool]):
        self.must, self.test = must, test

    def __repr__(self) -> str:
        return f"Rule({self.must!r})"

    def problem(self, value: Any) -> str | None:
        """None when ``value`` passes; otherwise what to add after ``got value`` in the error ('' for nothing)."""
        try:
            return None if self.test(value) else ""
        except (TypeError, ValueError):
            return ""

    def check(self, name: str, value: Any) -> None:
        """Raise ``ValueError("<name> must be <must>, got <value>")`` unless ``value`` passes."""
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(f"{name} must be {self.must}, got {value!r}{problem}")

    def __call__(self, **named: Any) -> None:
        for name, value in named.items():
            self.check(name, value)

    def where(self, test: Callable[[Any], bool], must: str) -> Rule:
        """This rule and one more condition, described by ``must`` (appended to this rule's words).

        Example:
            >>> dist_batch = integer(min=4).where(lambda b: b % 2 == 0, "and even (two processes get half each)")
            >>> dist_batch(dist_batch=5)
            Traceback (most recent call last):
            ...
            ValueError: dist_batch must be an integer >= 4 and even (two processes get half each), got 5
        """
        return _Where(self, test, must)


class _Where(Rule):
    def __init__(self, base: Rule, test: Callable[[Any], bool], must: str):
        super().__init__(f"{base.must} {must}", test)
        self.base = base

    def problem(self, value: Any) -> str | None:
        base = self.base.problem(value)
        return base if base is not None else super().problem(value)


class _ListOf(Rule):
    def __init__(self, entry: Rule, length: int | None):
        size = f"a list of {length}" if length else "a non-empty list"
        super().__init__(f"{size}, each {entry.must}", lambda v: True)
        self.entry, self.length = entry, length

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, (list, tuple)) or not value or (self.length and len(value) != self.length):
            return ""
        bad = next((v for v in value if self.entry.problem(v) is not None), _NOTHING)
        return None if bad is _NOTHING else f" (bad entry {bad!r})"


# ---------------------------------------------------------------- the rules a notebook uses

_NOTHING = object()


def _finite(value: Any) -> bool:
    """A finite int or float (not a bool, inf or nan)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def number(*, gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None) -> Rule:
    """A finite number within the bounds given (``gt``: >, ``ge``: >=, ``lt``: <, ``le``: <=).

    Example:
        >>> number(ge=0, lt=1)
        Rule('a finite number in [0, 1)')
        >>> number(gt=0, le=1)(momentum=1.5)
        Traceback (most recent call last):
        ...
        ValueError: momentum must be a finite number in (0, 1], got 1.5
    """
    low, high = (gt, "(") if gt is not None else (ge, "["), (lt, ")") if lt is not None else (le, "]")
    if low[0] is not None and high[0] is not None:
        words = f"in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    else:
        words = " ".join(f"{op} {bound:g}" for op, bound in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if bound is not None)
    def test(v: Any) -> bool:
        return _finite(v) and (gt is None or v > gt) and (ge is None or v >= ge) and (lt is None or v < lt) \
            and (le is None or v <= le)
    return Rule(f"a finite number {words}".rstrip(), test)


def integer(*, min: int | None = None, max: int | None = None) -> Rule:
    """An integer (not a bool) in ``[min, max]``.

    Example:
        >>> integer(min=2)(batch_size=1)
        Traceback (most recent call last):
        ...
        ValueError: batch_size must be an integer >= 2, got 1
    """
    words = f" in [{min}, {max}]" if min is not None and max is not None else \
        f" >= {min}" if min is not None else f" <= {max}" if max is not None else ""
    return Rule(f"an integer{words}", lambda v: not isinstance(v, bool) and isinstance(v, int)
                and (min is None or v >= min) and (max is None or v <= max))


def one_of(*options: Any) -> Rule:
    """One of ``options`` (compared with ``==``; True is not 1 here).

    Example:
        >>> one_of("sigmoid", "relu")(activation="swish")
        Traceback (most recent call last):
        ...
        ValueError: activation must be one of 'sigmoid', 'relu', got 'swish'
    """
    return Rule(f"one of {', '.join(map(repr, options))}",
                lambda v: any(v == o and type(v) is type(o) or v is o for o in options))


def list_of(entry: Rule, *, length: int | None = None) -> Rule:
    """A non-empty list (or tuple) whose entries all pass ``entry``; with ``length``, exactly that many.

    Example:
        >>> list_of(positive)(lrs=[0.1, 0])
        Traceback (most recent call last):
        ...
        ValueError: lrs must be a non-empty list, each a finite number > 0, got [0.1, 0] (bad entry 0)
    """
    return _ListOf(entry, length)


def interval(entry: Rule) -> Rule:
    """``[low, high]`` with ``low < high``, both passing ``entry`` (a search range).

    Example:
        >>> interval(positive)(lr_range=[1.0, 0.1])
        Traceback (most recent call last):
        ...
        ValueError: lr_range must be [low, high] with low < high, each a finite number > 0, got [1.0, 0.1]
    """
    pair = list_of(entry, length=2)
    return Rule(f"[low, high] with low < high, each {entry.must}", lambda v: pair.problem(v) is None and v[0] < v[1])


def optional(rule: Rule) -> Rule:
    """None, or a value passing ``rule``.

    Example:
        >>> optional(positive)(base_lr=None)
        >>> optional(positive)(base_lr=0)
        Traceback (most recent call last):
        ...
        ValueError: base_lr must be a finite number > 0 or None, got 0
    """
    return Rule(f"{rule.must} or None", lambda v: v is None or rule.problem(v) is None)


positive = number(gt=0)
count = integer(min=1)
"""An integer >= 1: seeds, steps, sizes."""
MAX_STEPS = 10**7
"""The most steps (or batches, passes, examples) a notebook's count may ask for: :data:`step_count`.

``bnlib.train.fit`` keeps 3 float32 per step between two evaluations (``bnlib.train.MetricsWindow``), so a run of 10**7
steps evaluated only at its end holds 120 MB; ``-p steps 1000000000000`` in notebook 06 (evaluated every steps // 4) asked
torch's allocator for 1 TB and failed there, without the parameter's name. 10**7 steps of 64 images are over 14,000 epochs
of CIFAR-10's 45,000 training images; the full presets run at most 50,000 steps.
"""
step_count = integer(min=1, max=MAX_STEPS)
"""An integer in [1, :data:`MAX_STEPS`]: training steps and other counts that size a loop or an allocation."""
nonnegative = integer(min=0)
"""An integer >= 0: ``first_seed``."""
flag = one_of(True, False)
fraction = number(ge=0, lt=1)
"""A probability in [0, 1): dropout, SGD momentum."""
preset = one_of(*PRESET_NAMES)


class _Preset(Rule):
    """The ``preset`` of notebook ``notebook``: one of the presets, and true of the values (:func:`preset_mismatch`)."""

    def __init__(self, notebook: str):
        super().__init__(preset.must, preset.test)
        self.notebook = notebook


def preset_for(notebook: str) -> Rule:
    """The rule of a notebook's ``preset`` parameter: one of :data:`~bnlib.lab.presets.PRESET_NAMES`, and, checked by
    :func:`check` once every rule has passed, a label that does not lie about the sizes (:func:`preset_mismatch`).

    Example:
        >>> check({"preset": "smoke", "seeds": 3}, preset=preset_for("01_internal_covariate_shift"))
        Traceback (most recent call last):
        ...
        ValueError: preset='smoke' but these parameters do not hold smoke's values: seeds=3 (smoke: 2); ...
    """
    return _Preset(notebook)


def preset_mismatch(notebook: str, name: str, values: Mapping[str, Any], explicit: frozenset[str] = frozenset(),
                    defaults: Mapping[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """``{parameter: (value, preset's value)}`` for the parameters that make ``name`` a false label of ``values``; {}
    when it holds.

    The rule: every parameter that the preset sets must hold that preset's value, unless it was set by name for this
    run (``explicit``: ``-p`` or ``-f`` in papermill, ``-p`` in ``bnlib.run``), so an override at a preset is allowed;
    parameters the preset does not set are free. ``quick`` is the notebook's ``defaults``: it sets every parameter that
    ``smoke`` or ``full`` sets to its default (nothing, where the defaults are unknown). And when not one of the
    preset's parameters holds its value, every one is a mismatch, explicit or not (``-f smoke.yaml -p preset full``).

    Example:
        >>> nb = "01_internal_covariate_shift"
        >>> preset_mismatch(nb, "smoke", {"seeds": 3, "lin_steps": 60})
        {'seeds': (3, 2)}
        >>> preset_mismatch(nb, "smoke", {"seeds": 5, "lin_steps": 60}, explicit=frozenset({"seeds"}))
        {}
        >>> preset_mismatch(nb, "quick", {"seeds": 2, "lin_steps": 500}, defaults={"seeds": 3, "lin_steps": 500})
        {'seeds': (2, 3)}
    """
    presets = PRESETS.get(notebook, {})
    if name == "quick":
        others = {k for p in presets.values() for k in p}
        expected = {k: defaults[k] for k in others if k in (defaults or {})} | presets.get("quick", {})
    else:
        expected = presets.get(name, {})
    expected = {k: v for k, v in expected.items() if k in values}
    differ = {k: (values[k], v) for k, v in expected.items() if not _same(values[k], v)}
    if differ and len(differ) == len(expected):
        return differ
    return {k: d for k, d in differ.items() if k not in explicit}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _check_preset(rule: _Preset, name: str, values: Mapping[str, Any]) -> None:
    params, injected = _cells(values)
    defaults = _literals(params) if params is not None else None
    differ = preset_mismatch(rule.notebook, values[name], values, frozenset(injected), defaults)
    if not differ:
        return
    label, number = values[name], rule.notebook[:2]
    listed = ", ".join(f"{k}={v!r} ({label}: {want!r})" for k, (v, want) in differ.items())
    raise ValueError(f"{name}={label!r} but these parameters do not hold {label}'s values: {listed}; the label would lie "
                     f"(papermill's -p {name} {label} changes only the label). Run `python -m bnlib.run {number} --preset "
                     f"{label}` (add -p NAME VALUE to change one) or `papermill -f notebooks/presets/{number}/{label}.yaml "
                     f"...`, or set {name} to the preset the values are")


executor = Rule('"local", "dask" (a LocalCluster on this machine) or "dask://HOST:PORT"',
                lambda v: v in ("local", "dask") or (isinstance(v, str) and v.startswith("dask://") and ":" in v[7:]))
"""Where runs train (:func:`bnlib.lab.sweep.executor_from`)."""


def width_for(model: str) -> Rule:
    """A width multiplier of the conv net ``model``: a finite number >= ``bnlib.models.min_width(model)``, so that its
    narrowest layer keeps at least ``bnlib.models.MIN_CHANNELS`` channels (the builders refuse less).

    Example:
        >>> width_for("vgg11")(width=1e-9)
        Traceback (most recent call last):
        ...
        ValueError: width must be a finite number >= 0.0625 (vgg11's narrowest layer keeps >= 4 channels), got 1e-09
    """
    from bnlib.models import MIN_CHANNELS, min_width

    low = min_width(model)
    return Rule(f"a finite number >= {low:g} ({model}'s narrowest layer keeps >= {MIN_CHANNELS} channels)",
                lambda v: _finite(v) and v >= low)


class _Device(Rule):
    def __init__(self):
        super().__init__("'cpu', 'cuda' (or 'cuda:N') or 'auto'", lambda v: isinstance(v, str) and bool(_DEVICE.fullmatch(v)))

    def check(self, name: str, value: Any) -> None:
        super().check(name, value)
        if value.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"{name}={value!r} but torch {torch.__version__} sees no CUDA device "
                                 f"(torch.cuda.is_available() is False); use -p {name} cpu or -p {name} auto")


_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")
device = _Device()
"""``"cpu"``, ``"cuda"`` (or ``"cuda:N"``, only where torch sees a GPU) or ``"auto"`` (:func:`bnlib.train.resolve_device`).

Example:
    >>> device(device="tpu")
    Traceback (most recent call last):
    ...
    ValueError: device must be 'cpu', 'cuda' (or 'cuda:N') or 'auto', got 'tpu'
"""


# ---------------------------------------------------------------- checking a notebook's values

def check(values: Mapping[str, Any], **rules: Rule) -> None:
    """Check ``values[name]`` against each rule, in the order given; the first failure raises ``ValueError``.

    ``values`` is any mapping: a notebook passes ``globals()``. A rule that depends on another parameter belongs in a
    second call, after that parameter has passed its own.

    Example:
        >>> check({"steps": 10, "batch_size": 64}, steps=count, batch_size=integer(min=2))
        >>> check({"steps": 10}, step=count)
        Traceback (most recent call last):
        ...
        NameError: check(step=...): no parameter named 'step' (a typo in the check cell?)
    """
    unknown, declared = unknown_injected(values)
    if unknown:
        raise ValueError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} injected by "
                         f"papermill: this notebook declares no such parameter (it would be ignored); valid names: "
                         f"{', '.join(declared)}")
    coerced: dict[str, Any] = {}
    for name, rule in rules.items():
        if name not in values:
            raise NameError(f"check({name}=...): no parameter named {name!r} (a typo in the check cell?)")
        value = values[name]
        if rule.problem(value) is not None:
            parsed = parsed_value(value)
            if parsed is not _NOTHING and rule.problem(parsed) is None:
                value = coerced[name] = parsed
                if isinstance(values, MutableMapping):
                    values[name] = parsed  # the notebook's globals: it goes on with the parsed value
        rule.check(name, value)
    for name, rule in rules.items():
        if isinstance(rule, _Preset):
            _check_preset(rule, name, ChainMap(coerced, values))


def parsed_value(value: Any) -> Any:
    """``value`` parsed from text, or ``_NOTHING`` when there is nothing to parse: a string read as a Python literal
    (``ast.literal_eval``) or else as JSON, a list whose strings entries are read so. papermill's ``-p lrs [0.1,1]``
    passes the string ``'[0.1,1]'`` and PyYAML reads ``1e-5`` (no dot) as a string; :func:`check` uses the parsed value
    where the original breaks its rule and the parsed one passes.

    Example:
        >>> parsed_value("[0.1,1]"), parsed_value("1e-5"), parsed_value(["1e-5", 0.1]), parsed_value("null")
        ([0.1, 1], 1e-05, [1e-05, 0.1], None)
        >>> parsed_value("cpu") is _NOTHING, parsed_value(3) is _NOTHING
        (True, True)
        >>> values = {"lrs": "[0.1, 1]", "lr": "1e-5", "name": "x"}
        >>> check(values, lrs=list_of(positive), lr=positive, name=one_of("x")); values
        {'lrs': [0.1, 1], 'lr': 1e-05, 'name': 'x'}
    """
    import ast
    import json

    if isinstance(value, list) and any(isinstance(v, str) for v in value):
        entries = [(parsed_value(v), v) for v in value]
        return [v if p is _NOTHING else p for p, v in entries]
    if not isinstance(value, str):
        return _NOTHING
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(value)
    except ValueError:
        return _NOTHING


# ---------------------------------------------------------------- parameters papermill injected

INJECTED_HEADER = "# Parameters\n"  # how papermill's injected cell (tagged injected-parameters) starts


def _assigned(source: str) -> list[str]:
    """The names a cell's top-level statements assign (``x = ...``, ``x: int = ...``), in order; [] if it does not parse."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def _cells(values: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """``(parameters cell source, names papermill injected)`` from the kernel's input history (``In``): the parameters
    cell is the one before the last injected cell, or (without papermill) the last cell that assigns ``preset``."""
    history = values.get("In")
    if not isinstance(history, list):
        return None, []
    sources = [(i, s) for i, s in enumerate(history) if isinstance(s, str)]
    injected_at = [i for i, source in sources if source.startswith(INJECTED_HEADER)]
    if injected_at and injected_at[-1] > 0:
        return history[injected_at[-1] - 1], _assigned(history[injected_at[-1]])
    cell = next((s for _, s in reversed(sources) if "preset" in _assigned(s)), None)
    return cell, []


def _literals(source: str) -> dict[str, Any]:
    r"""The names a cell assigns a literal (``x = 3``, ``x: int = 3``), with their values.

    Example:
        >>> _literals('seeds: int = 3\nlrs = [0.1, 1]\nf = len([])')
        {'seeds': 3, 'lrs': [0.1, 1]}
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None
        if isinstance(target, ast.Name):
            try:
                found[target.id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):
                pass
    return found


def unknown_injected(values: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    r"""``(unknown, declared)``: the names papermill injected that the notebook's parameters cell does not declare, and
    the names it declares. Read from the kernel's input history (``In`` in ``globals()``): papermill runs the
    parameters cell, then its injected cell (``# Parameters`` and one assignment per ``-p``), then the check cell; a
    notebook run without papermill has no injected cell and nothing is unknown. Without this, ``papermill -p seed 5``
    only warns and the notebook runs with its own ``seeds``.

    Example:
        >>> history = ["", 'seeds = 3\nlr = 0.1', '# Parameters\nseed = 5\n', "P.check(globals(), ...)"]
        >>> unknown_injected({"In": history})
        (['seed'], ['seeds', 'lr'])
        >>> unknown_injected({"In": ["", "seeds = 3", "# Parameters\nseeds = 5\n"]}), unknown_injected({"seeds": 3})
        (([], ['seeds']), ([], []))
    """
    history = values.get("In")
    if not isinstance(history, list):
        return [], []
    injected_at = [i for i, source in enumerate(history) if isinstance(source, str) and source.startswith(INJECTED_HEADER)]
    if not injected_at or injected_at[-1] == 0:
        return [], []
    at = injected_at[-1]
    declared = _assigned(history[at - 1])
    return [n for n in _assigned(history[at]) if n not in declared], declared


def seeds_from(first_seed: int, seeds: int) -> list[int]:
    """The seeds of a notebook: ``first_seed, ..., first_seed + seeds - 1``.

    Example:
        >>> seeds_from(100, 3)
        [100, 101, 102]
    """
    check({"first_seed": first_seed, "seeds": seeds}, first_seed=nonnegative, seeds=count)
    return list(range(first_seed, first_seed + seeds))
