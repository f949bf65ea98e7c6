"""Resolution against the namespace: the cell's reads through session functions, and its hazards.

:func:`analyze_cell` combines the cached syntactic facts of :mod:`.syntax` with the live namespace:
it follows functions and classes defined in the session to the globals they read (transitively,
within a budget), matches called references against the hazard table of :mod:`.hazards`, and never
raises (an internal failure makes the result conservative).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import inspect
import sys
import types
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .bytecode import _code_facts, _CodeFacts
from .hazards import _cache_hazard, _classify, _Outcome, _step, _table
from .operands import NO_OPERANDS, OperandUse, operand_use
from .safe_reads import _MISSING, _class_module, _isa, _ns_get
from .syntax import _SYNTAX_ERROR_FACTS, Pos, _facts_for


@dataclass(frozen=True)
class CellAccess:
    """Result of :func:`analyze_cell`.

    ``reads``: module-level names the cell may read, including the globals of functions and classes
    defined in the session that it reaches (transitively). ``bound``: names its syntax binds or deletes
    at module level (including names declared ``global`` in functions defined in this cell, and names
    bound by ``%time``/``%%capture``/``exec("literal")`` code). ``conservative``: the cell may read
    names that no syntax shows (``exec(code)``, ``globals()``, ``%who``, a syntax error, an analysis
    failure): the monitor must assume it read everything. ``hazards``: reasons a replay may not
    reproduce the cell's effects, each ``"<family>: <detail>"``. ``paths``: string constants that look
    like filesystem paths; the monitor checks which exist. ``operands``: reads that are only operands
    of arithmetic (see :mod:`.operands`): if their values are numeric arrays or frames, the cell cannot
    have changed them in place. ``seeded``: the random-generator families (``rng:numpy``, ``rng:random``,
    ``rng:torch``) the cell seeds with a seed, so that later draws from them in the cell are reproducible.
    """

    reads: frozenset[str]
    bound: frozenset[str]
    conservative: bool
    hazards: tuple[str, ...]
    paths: frozenset[str]
    operands: OperandUse = NO_OPERANDS
    seeded: frozenset[str] = frozenset()


_CONSTRUCTION_METHODS: Final = frozenset(
    {"__new__", "__init__", "__post_init__", "__init_subclass__", "__set_name__", "__class_getitem__"}
)
"""Methods that run when an object (or subclass) is made, not when an existing instance is used."""

_FN_LIKE: Final = (
    types.FunctionType, types.MethodType, staticmethod, classmethod, property, functools.partial,
    functools.cached_property, type,
)  # fmt: skip


_WALK_BUDGET: Final = 20_000


class _Resolver:
    """Resolves names and dotted references of one analysis against the namespace."""

    def __init__(self, ns: Mapping[str, Any], imports: Mapping[str, str], bound: frozenset[str]) -> None:
        self.ns = ns
        self.imports = imports
        self.bound = bound
        self.table = _table()

    def root(self, name: str, fallback: Mapping[str, Any] | None) -> tuple[Any, str | None]:
        value = _ns_get(self.ns, name)
        if value is _MISSING and fallback is not None and fallback is not self.ns:
            value = _ns_get(fallback, name)
        if value is _MISSING:
            if name in self.imports:
                qual = self.imports[name]
                return sys.modules.get(qual, _MISSING), qual
            if name in self.bound:
                return _MISSING, None
            return vars(builtins).get(name, _MISSING), None
        if _isa(value, types.ModuleType):
            mod_name = vars(value).get("__name__")
            return value, mod_name if isinstance(mod_name, str) else None
        return value, None

    def outcome(
        self,
        chain: tuple[str, ...],
        root_import: str | None,
        call: int,
        generator_kw: bool,
        fallback: Mapping[str, Any] | None = None,
    ) -> _Outcome | None:
        if root_import is not None:
            obj: Any = sys.modules.get(root_import, _MISSING)
            qual: str | None = root_import
            if obj is _MISSING:
                head, _, tail = root_import.rpartition(".")
                parent = sys.modules.get(head) if head else None
                if parent is not None:
                    obj, qual = _step(parent, head, tail)
        else:
            obj, qual = self.root(chain[0], fallback)
        if obj is _MISSING and qual is None:
            return None
        for attr in chain[1:]:
            obj, qual = _step(obj, qual, attr)
            if obj is _MISSING and qual is None:
                return None
        rule = self.table.match(obj, qual)
        if rule is None:
            return None
        return _classify(rule, call, generator_kw)


@dataclass
class _Event:
    pos: Pos
    outcome: _Outcome


class _Walker:
    """Transitive walk of session functions/classes/instances reachable from names (rule 3)."""

    def __init__(self, ns: Mapping[str, Any], resolver: _Resolver) -> None:
        self.ns = ns
        self.resolver = resolver
        self.seen: set[int] = set()
        self.seen_classes: set[tuple[int, bool]] = set()
        self.keep: list[Any] = []
        self.names: dict[str, Pos] = {}
        self.events: list[_Event] = []
        self.reasons: list[str] = []
        self.queue: deque[tuple[Any, Pos]] = deque()
        self.budget = _WALK_BUDGET

    def add(self, obj: Any, pos: Pos) -> None:
        if obj is _MISSING or obj is None or id(obj) in self.seen:
            return
        self.queue.append((obj, pos))

    def run(self) -> None:
        while self.queue:
            obj, pos = self.queue.popleft()
            if id(obj) in self.seen:
                continue
            self.budget -= 1
            if self.budget < 0:
                self.reasons.append("session walk budget exceeded")
                self.queue.clear()
                return
            self.seen.add(id(obj))
            self.keep.append(obj)
            try:
                self.visit(obj, pos)
            except Exception:
                self.reasons.append("session object not analysable")

    def is_session_function(self, fn: types.FunctionType) -> bool:
        """Defined in the session: its globals are the namespace, or it says ``__main__`` twice.

        A function restored from a pickle has a fresh globals dict but keeps ``__module__`` and the
        dict's ``__name__`` (cloudpickle copies it). A library wrapper made with ``functools.wraps``
        around a session function copies ``__module__ == "__main__"`` too, but its globals are its
        library's; its code is not the session's (``dataclasses``' repr wrapper calls ``id()``).
        """
        if fn.__globals__ is self.ns:
            return True
        return fn.__module__ == "__main__" and fn.__globals__.get("__name__", "__main__") == "__main__"

    def visit(self, obj: Any, pos: Pos) -> None:
        t = type(obj)
        if t is types.FunctionType:
            if self.is_session_function(obj):
                self.function(obj, pos)
            else:  # a library wrapper may hold a session function: follow it, not the wrapper's code
                self.add(obj.__dict__.get("__wrapped__", _MISSING), pos)
                for cell in obj.__closure__ or ():
                    with contextlib.suppress(ValueError):
                        if _isa(cell.cell_contents, _FN_LIKE):
                            self.add(cell.cell_contents, pos)
        elif t is types.MethodType:
            self.add(obj.__func__, pos)
            owner = obj.__self__
            if _class_module(type(owner)) == "__main__":
                self.klass(type(owner), pos, construct=False)
        elif issubclass(t, type):
            if _class_module(obj) == "__main__":
                self.klass(obj, pos, construct=True)
        elif issubclass(t, functools.partial):
            self.add(obj.func, pos)
            for value in (*obj.args, *obj.keywords.values()):
                if _isa(value, _FN_LIKE):
                    self.add(value, pos)
        elif t in (staticmethod, classmethod):
            self.add(obj.__func__, pos)
        elif t is property:
            for f in (obj.fget, obj.fset, obj.fdel):
                self.add(f, pos)
        elif issubclass(t, functools.cached_property):
            self.add(obj.func, pos)
        else:
            if _class_module(t) == "__main__":
                self.klass(t, pos, construct=False)  # an instance: its methods may run
            if callable(obj):
                try:
                    wrapped = inspect.getattr_static(obj, "__wrapped__", _MISSING)
                except Exception:
                    wrapped = _MISSING
                self.add(wrapped, pos)

    def function(self, fn: types.FunctionType, pos: Pos) -> None:
        facts = _code_facts(fn.__code__)
        self.code(facts, fn.__globals__, pos)
        for cell in fn.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell
                self.add(cell.cell_contents, pos)
        defaults = (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values())
        for value in defaults:
            if _isa(value, _FN_LIKE):
                self.add(value, pos)
        self.add(fn.__dict__.get("__wrapped__", _MISSING), pos)

    def klass(self, klass: type, pos: Pos, construct: bool) -> None:
        """Queue the methods of a session class and of its session bases.

        Reached through an *instance* (``construct=False``), the object exists already: its
        construction methods will not run again, so they are skipped::

            cell 1:  torch.manual_seed(0)
                     model = Net()               # Net.__init__ builds nn.Linear: seeded, fine
            cell 2:  y = model(x)                # reads Net.forward's globals; no Linear hazard
        """
        key = (id(klass), construct)
        if key in self.seen_classes:
            return
        self.seen_classes.add(key)
        self.keep.append(klass)
        for base in type.__dict__["__mro__"].__get__(klass):
            if _class_module(base) != "__main__":
                continue
            for name, value in list(type.__dict__["__dict__"].__get__(base).items()):
                if not construct and name in _CONSTRUCTION_METHODS:
                    continue
                if _isa(value, _FN_LIKE):
                    self.add(value, pos)

    def code(self, facts: _CodeFacts, globs: Mapping[str, Any], pos: Pos) -> None:
        for name in facts.names:
            old = self.names.get(name)
            if old is None or pos < old:
                self.names[name] = pos
            value = _ns_get(self.ns, name)
            if value is _MISSING and globs is not self.ns:
                value = _ns_get(globs, name)
            if name in ("exec", "eval", "globals") and (value is _MISSING or value is vars(builtins)[name]):
                self.reasons.append(f"{name} in a session function")
            self.add(value, pos)
        seeded: set[str] = set()
        for chain, call in facts.refs:
            outcome = self.resolver.outcome(chain, None, call, facts.generator_kw, globs)
            if outcome is None:
                continue
            if outcome.seed:
                seeded.add(outcome.family)
            elif outcome.family not in seeded:
                self.events.append(_Event(pos, outcome))


def _finish_hazards(events: list[_Event], static: Iterable[tuple[Pos, str]]) -> tuple[tuple[str, ...], frozenset[str]]:
    """Drop draws preceded by a seeding of their family, then sort by position and deduplicate.

    Also returns the generator families the cell itself seeds (with a seed).
    """
    ordered = sorted(
        [(e.pos, 0, e.outcome) for e in events] + [(p, 1, _Outcome(False, "", h)) for p, h in static],
        key=lambda item: (item[0], item[1]),
    )
    seeded: set[str] = set()
    labels: dict[str, None] = {}
    for _pos, _order, outcome in ordered:
        if outcome.seed:
            seeded.add(outcome.family)
        elif outcome.family.startswith("rng:") and outcome.family in seeded:
            continue
        else:
            labels.setdefault(outcome.label, None)
    return tuple(labels), frozenset(seeded)


class _Partial:
    """What an analysis has found so far (returned, marked conservative, if something breaks)."""

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.bound: set[str] = set()
        self.paths: set[str] = set()


def analyze_cell(source: str, namespace: Mapping[str, Any]) -> CellAccess:
    """Reads, bindings, hazards and paths of one transformed cell against ``namespace``.

    ``source`` is the output of ``shell.transform_cell``; ``namespace`` is the user namespace (the
    real ``user_ns`` dict, so that session functions are recognised by ``fn.__globals__ is
    namespace``). Never raises: any failure gives ``conservative=True`` and a hazard
    ``"analysis failed: <ExcType>"``.

    Magics (line ``%name`` or cell ``%%name``, as IPython's transformer writes them)::

        %time x = f(y)           reads f, y; binds x
        %timeit -n 5 f(x)        reads f, x; hazard "timing magic: %timeit" (``-v r`` binds r)
        %%capture out            binds out; reads/binds whatever the body does
        !echo {n * 7} $n         reads n; hazard "shell command: echo {n * 7} $n"
        %who / %store / %reset   conservative

    Seeding in the same cell cancels randomness hazards of the same family that come after it::

        cell 1:  np.random.seed(0)
                 a = np.random.rand(3)          no hazard
        cell 2:  b = np.random.rand(3)          "unseeded randomness: numpy.random.rand"

    (Replaying cell 2 alone does not give back ``b``: the planner must store it.)
    """
    partial = _Partial()
    try:
        return _analyze(source, namespace, partial)
    except Exception as exc:
        return CellAccess(
            reads=frozenset(partial.reads),
            bound=frozenset(partial.bound),
            conservative=True,
            hazards=(f"analysis failed: {type(exc).__name__}",),
            paths=frozenset(partial.paths),
        )


def _analyze(source: str, ns: Mapping[str, Any], partial: _Partial) -> CellAccess:
    facts = _facts_for(source, "exec", 0)
    if facts is _SYNTAX_ERROR_FACTS:
        return CellAccess(frozenset(), frozenset(), True, (), frozenset())
    partial.reads.update(name for name, _ in facts.reads)
    partial.bound.update(facts.bound)
    partial.paths.update(facts.paths)
    conservative = bool(facts.reasons)

    resolver = _Resolver(ns, dict(facts.imports), facts.bound)
    events: list[_Event] = []
    for ref in facts.refs:
        outcome = resolver.outcome(ref.chain, ref.root_import, ref.call, ref.generator_kw)
        if outcome is not None:
            events.append(_Event(ref.pos, outcome))

    walker = _Walker(ns, resolver)
    for name, pos in facts.reads:  # already in source order: earliest reference first
        walker.add(_ns_get(ns, name), pos)
    walker.run()
    conservative = conservative or bool(walker.reasons)

    reads = dict(facts.reads)
    for name, pos in walker.names.items():
        if name not in reads or pos < reads[name]:
            reads[name] = pos
    partial.reads.update(reads)

    static = list(facts.hazards)
    for name, pos in reads.items():
        if name in facts.bound:
            continue
        label = _cache_hazard(name)
        if label is not None:
            static.append((pos, label))
    hazards, seeded = _finish_hazards(events + walker.events, static)
    return CellAccess(
        reads=frozenset(reads),
        bound=facts.bound,
        conservative=conservative,
        hazards=hazards + _unordered_results(source, ns),
        paths=facts.paths,
        seeded=seeded,
        # a name a session function reaches may be written through it: never an inert operand
        operands=NO_OPERANDS if conservative else operand_use(source).without(set(walker.names)),
    )


_UNORDERED_METHODS = frozenset({"group_by", "unique", "partition_by"})
"""polars methods whose output varies from run to run: multi-threaded hashing changes the row order
(unless ``maintain_order=True``), and a group_by's parallel float aggregation changes the last bits
of sums (whatever the order option), so a replay does not reproduce the value."""


def _unordered_results(source: str, ns: Mapping[str, Any]) -> tuple[str, ...]:
    """Hazards for polars calls whose result order is not reproducible::

    cell:  agg = df.group_by("k").agg(pl.col("v").sum()).sort("k")   hazard: float sums vary
    cell:  u = df.unique(maintain_order=True)                         no hazard
    """
    if "polars" not in sys.modules or not any(m in source for m in _UNORDERED_METHODS):
        return ()
    found: list[str] = []
    polars_here: bool | None = None
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _UNORDERED_METHODS
        ):
            continue
        if node.func.attr != "group_by" and any(
            k.arg == "maintain_order" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        ):
            continue
        root: ast.AST = node.func.value
        while isinstance(root, (ast.Attribute, ast.Call, ast.Subscript)):
            root = root.func if isinstance(root, ast.Call) else root.value
        if not isinstance(root, ast.Name):
            continue
        value = _ns_get(ns, root.id)
        if value is _MISSING:  # made earlier in this cell: polars if the cell uses polars at all
            polars_here = polars_here if polars_here is not None else _mentions_polars(source, ns)
            module = "polars" if polars_here else ""
        else:
            module = value.__name__ if isinstance(value, types.ModuleType) else type(value).__module__
        if isinstance(module, str) and module.partition(".")[0] == "polars":
            found.append(f"irreproducible result: polars {node.func.attr}")
    return tuple(dict.fromkeys(found))


def _mentions_polars(source: str, ns: Mapping[str, Any]) -> bool:
    """Whether the cell imports polars or names a variable bound to the polars module."""
    if "polars" in source:
        return True
    names = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    return any(getattr(_ns_get(ns, n), "__name__", None) == "polars" for n in names)


def function_globals(fn: Any, namespace: Mapping[str, Any]) -> frozenset[str]:
    """Global names a session function/class/instance may read or write, transitively.

    ``fn`` may be a function, method, class, instance of a session class, ``functools.partial`` or a
    decorated wrapper; only *session* code is walked (functions whose ``__globals__`` is
    ``namespace`` or whose ``__module__`` is ``"__main__"``, classes whose ``__module__`` is
    ``"__main__"``), so a library function gives the empty set. Worked example::

        cell 1:  rate = 0.1
                 def step(w):
                     return w - rate * grad(w)
                 def grad(w):
                     global calls
                     calls += 1
                     return 2 * w
        function_globals(step, ns) == {"rate", "grad", "calls"}

    Globals a function *writes* (``calls``) are included: the monitor treats them as mutation
    candidates. Never raises; on failure returns what was found so far.
    """
    walker: _Walker | None = None
    try:
        resolver = _Resolver(namespace, {}, frozenset())
        walker = _Walker(namespace, resolver)
        walker.add(fn, (0, 0))
        walker.run()
        return frozenset(walker.names)
    except Exception:
        return frozenset(walker.names) if walker is not None else frozenset()
