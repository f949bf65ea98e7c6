"""What a cell may read, what it binds, and why replaying it may not reproduce its effects.

This is the static half of the monitor (see DESIGN.md, "Monitor"): given the source of a cell *after*
IPython's ``shell.transform_cell`` and the user namespace, :func:`analyze_cell` returns a
:class:`CellAccess`. Writes and deletes are measured by the monitor from the namespace before and after
the cell; this module only says which names the cell *may* have looked at (so their versions become
the cell's inputs, and they become mutation candidates), which names its syntax binds, and what could
make a replay differ from the original run.

The module is pure: no IPython import, nothing is called on user objects (no ``getattr`` that could run
user code; modules are read through their ``__dict__``), and nothing here ever raises. Everything
that depends only on the source text is parsed once and cached; resolution against the namespace is
redone on every call because the namespace changes between calls.

Reads are an over-approximation. Worked example (two cells run in order)::

    cell 1:  scale = 2
             def f(v):
                 return v * scale

    cell 2:  y = f(3)
             y += offset

Cell 2 reads ``f`` (a free name), ``y`` (augmented assignment reads its target) and ``offset``; and
because ``f`` is a function defined in the session, also ``scale``, which ``f``'s code loads as a global.
Its ``bound`` is ``{"y"}``. If cell 1 is later rerun with ``scale = 3``, the AHG knows cell 2's result
depended on the old ``scale`` even though cell 2 never mentions it.

Scoping follows Python's rules, so locals never masquerade as globals::

    cell 1:  xs = [1, 2, 3]
    cell 2:  total = sum(x * k for x in xs)
             def g(a, b=limit):
                 global hits
                 hits += 1
                 return [a for a in range(b)]

Cell 2 reads ``sum``, ``xs``, ``k`` (free inside the generator), ``limit`` (a default is evaluated when
the ``def`` runs) and ``hits`` (declared ``global``: both read and bound), ``range``; not ``x`` or ``a``
(comprehension targets) nor ``b`` (a parameter). Builtins appear in ``reads`` like any other free
name: the monitor intersects reads with the names it tracks, and a user who rebinds ``len`` does read
it.

Magics arrive as ``get_ipython().run_line_magic(name, line)`` / ``run_cell_magic(name, line, body)``
/ ``system(cmd)`` / ``getoutput(cmd)`` calls (only with the literal ``get_ipython()`` receiver):

* ``time``, ``prun`` (line or cell): the code runs in the namespace, so its reads and bindings are
  the cell's. ``timeit``: its reads only (IPython compiles it inside a function), ``-v name`` binds
  ``name``, and the hazard ``timing magic: %timeit``. Option flags (``-o -q -n 5 -r 3``) are skipped.
* ``capture``: the line's output name is bound, the body is analysed like the cell itself.
* ``system``/``getoutput`` (``!cmd``, ``x = !cmd``), ``%%bash``/``%%sh``/``%%script``, ``%sx``, ``%pip``
  and IPython's shell aliases (``%ls``...): hazard ``shell command: <first 60 chars>``; ``{expr}`` and
  ``$name.attr`` in the command are read (IPython interpolates them from the namespace); path-looking
  tokens go to ``paths``.
* ``who``, ``whos``, ``who_ls``, ``store``, ``reset``, ``reset_selective``, ``xdel``, ``run -i``:
  conservative. Everything else (``env``, ``pwd``, ``writefile``, ``matplotlib``...): no hazard; the
  line is only interpolated and scanned for paths.

Magic bodies are raw IPython text; if one does not parse as Python, a minimal line-level transform of
``%magic`` / ``!cmd`` / ``x = !cmd`` lines is tried before giving up (conservative).

Hazard strings, ``"<family>: <detail>"``: ``unseeded randomness: numpy.random.rand`` (``...()`` when
the hazard is a seedless constructor or reseed, e.g. ``numpy.random.default_rng()``), ``clock:
time.time``, ``uuid: uuid.uuid4``, ``entropy: os.urandom`` / ``entropy: secrets.token_hex``,
``process hash: hash()``, ``process address: id()``, ``shell command: ls nb_tmp`` (or the
``subprocess``/``os.system`` callable), ``timing magic: %timeit``, ``output cache: _3``, ``input
cache: _i3``, and ``analysis failed: <ExcType>``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dis
import functools
import inspect
import re
import shlex
import string
import sys
import types
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

__all__ = ["CellAccess", "analyze_cell", "function_globals"]


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
    like filesystem paths; the monitor checks which exist.
    """

    reads: frozenset[str]
    bound: frozenset[str]
    conservative: bool
    hazards: tuple[str, ...]
    paths: frozenset[str]


# --------------------------------------------------------------------------------------------------
# Syntactic facts (depend on the source text only; cached)
# --------------------------------------------------------------------------------------------------

Pos = tuple[int, ...]
"""Where something happens in a cell: ``(line, col)``; code nested in a string (a magic body, an
``exec`` literal, a shell interpolation) appends its own ``(line, col)`` to the position of the call
that carries it. Tuples compare in source order, which is what seed-before-draw decisions need."""

_MISSING: Final = object()


@dataclass(frozen=True)
class _Ref:
    """A dotted reference ``root.a.b`` whose root is a global name or a name bound by an import.

    ``call`` is -1 when the reference is not called, 0 when it is called with no arguments (or with
    a lone ``None``, which means the same for seeds), 1 when called with arguments.
    """

    pos: Pos
    chain: tuple[str, ...]
    root_import: str | None
    call: int
    generator_kw: bool


@dataclass(frozen=True)
class _Facts:
    reads: tuple[tuple[str, Pos], ...]
    bound: frozenset[str]
    refs: tuple[_Ref, ...]
    imports: tuple[tuple[str, str], ...]
    reasons: tuple[str, ...]
    hazards: tuple[tuple[Pos, str], ...]
    paths: frozenset[str]


_SYNTAX_ERROR_FACTS: Final = _Facts((), frozenset(), (), (), ("syntax error",), (), frozenset())

_PATH_EXT = re.compile(r"\.[A-Za-z][A-Za-z0-9_-]{0,9}$")


def _looks_like_path(s: str) -> bool:
    """A string that may name a file: contains ``/`` or ends in a ``.ext``; one line, < 4096 chars.

    URLs (``scheme://``) are not local paths and are left out.
    """
    if not s or len(s) >= 4096 or "\n" in s or "\r" in s or "\x00" in s or "://" in s:
        return False
    return "/" in s or _PATH_EXT.search(s) is not None


_SHELL_STRIP_LEAD = re.compile(r"^[0-9]*[<>|&]+")


def _shell_paths(text: str) -> set[str]:
    """Path-looking tokens of a shell command line (quotes removed, redirections and ``--opt=`` cut)."""
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError:
        tokens = text.split()
    out: set[str] = set()
    for tok in tokens:
        tok = _SHELL_STRIP_LEAD.sub("", tok).rstrip(";|&")
        if tok.startswith("-") and "=" in tok:
            tok = tok.split("=", 1)[1]
        if not tok or any(c in tok for c in "${}*?"):
            continue
        if _looks_like_path(tok):
            out.add(tok)
    return out


def _shell_label(text: str) -> str:
    return "shell command: " + " ".join(text.split())[:60]


# Magic tables. Magic names are those IPython registers; the transformed source always spells them
# ``get_ipython().run_line_magic(name, line)`` / ``run_cell_magic(name, line, cell)``.

_CONSERVATIVE_MAGICS: Final = frozenset(
    {"who", "whos", "who_ls", "store", "reset", "reset_selective", "xdel"}
)
"""Magics that read or rewrite the namespace by enumeration: no syntax says which names."""

_NO_VAR_EXPAND_MAGICS: Final = frozenset({"time", "timeit", "prun"})
"""Magics IPython marks ``@no_var_expand``: ``$x``/``{x}`` in their line is code, not interpolation."""

_SHELL_CELL_MAGICS: Final = frozenset(
    {"bash", "sh", "script", "python", "python2", "python3", "pypy", "perl", "ruby", "system"}
)
"""Cell magics whose body runs in another process."""

_SHELL_LINE_MAGICS: Final = frozenset(
    {
        "sx", "system", "pip", "conda", "mamba", "micromamba", "uv",
        # IPython's default POSIX shell aliases (``%ls`` etc.; also reached by automagic ``ls``).
        "cat", "cp", "ldir", "lf", "lk", "ll", "ls", "lx", "mkdir", "mv", "rm", "rmdir",
        "clear", "less", "man", "more",
    }
)  # fmt: skip
"""Line magics that run a shell command (the name itself is the command for aliases and pip)."""


def _split_opts(line: str, spec: str) -> tuple[dict[str, str], str]:
    """Strip leading getopt-style options (``spec`` as in IPython's ``parse_options``) off ``line``.

    Returns the options seen and the rest of the line verbatim (it is code for ``%timeit``/``%prun``).
    Long options (``--no-raise-error``) are dropped. Parsing stops at the first token that is not an
    option of ``spec``.
    """
    opts: dict[str, str] = {}
    rest = line
    while True:
        m = re.match(r"\s*(-\S*)", rest)
        if m is None:
            break
        tok = m.group(1)
        if tok.startswith("--"):
            rest = rest[m.end() :]
            continue
        letters = tok[1:]
        if not letters or letters[0] not in spec:
            break
        consumed = m.end()
        i = 0
        while i < len(letters):
            ch = letters[i]
            k = spec.find(ch)
            if k < 0:
                break
            if k + 1 < len(spec) and spec[k + 1] == ":":
                value = letters[i + 1 :]
                if not value:
                    m2 = re.match(r"\s*(\S+)", rest[consumed:])
                    if m2 is not None:
                        value = m2.group(1)
                        consumed += m2.end()
                opts[ch] = value
                break
            opts[ch] = ""
            i += 1
        rest = rest[consumed:]
    return opts, rest.strip()


# Minimal IPython syntax → Python, only for the raw bodies that magics hand to IPython themselves
# (``%%capture``/``%%time``/``%%timeit`` bodies, ``run_cell`` literals), and only when they do not
# parse as Python. The real cell went through IPython's own transformer before reaching us.
_LITE_CELL_MAGIC = re.compile(r"^\s*%%(\w+)[ \t]*(.*)$")
_LITE_ASSIGN = re.compile(r"^(\s*)([\w.,\s\[\]()*]+?)\s*=\s*([!%])(?![=%])(.*)$")
_LITE_LINE_MAGIC = re.compile(r"^(\s*)%(\w+)[ \t]?(.*)$")
_LITE_SHELL = re.compile(r"^(\s*)(!!?)(.*)$")


def _lite_transform(src: str) -> str:
    lines = src.splitlines()
    if lines:
        m = _LITE_CELL_MAGIC.match(lines[0])
        if m is not None:
            body = "\n".join(lines[1:]) + "\n"
            return f"get_ipython().run_cell_magic({m.group(1)!r}, {m.group(2)!r}, {body!r})\n"
    out = []
    for line in lines:
        if (m := _LITE_ASSIGN.match(line)) is not None:
            ind, target, kind, rest = m.groups()
            if kind == "!":
                call = f"get_ipython().getoutput({rest.strip()!r})"
            else:
                name, _, arg = rest.partition(" ")
                call = f"get_ipython().run_line_magic({name!r}, {arg.strip()!r})"
            out.append(f"{ind}{target.strip()} = {call}")
        elif (m := _LITE_LINE_MAGIC.match(line)) is not None:
            ind, name, arg = m.groups()
            out.append(f"{ind}get_ipython().run_line_magic({name!r}, {arg.strip()!r})")
        elif (m := _LITE_SHELL.match(line)) is not None:
            ind, bang, cmd = m.groups()
            meth = "getoutput" if bang == "!!" else "system"
            out.append(f"{ind}get_ipython().{meth}({cmd.strip()!r})")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


class _Scope:
    """One Python scope while walking the AST: its kind and the names it binds or declares."""

    __slots__ = ("globals", "imports", "kind", "locals", "nonlocals", "parent")

    def __init__(self, kind: str, parent: _Scope | None) -> None:
        self.kind = kind  # "module" | "function" | "class" | "comprehension"
        self.parent = parent
        self.locals: set[str] = set()
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.imports: dict[str, str] = {}


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _arg_names(args: ast.arguments) -> list[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if args.vararg is not None:
        every.append(args.vararg)
    if args.kwarg is not None:
        every.append(args.kwarg)
    return [a.arg for a in every]


def _def_time_parts(node: ast.AST) -> list[ast.AST]:
    """Sub-expressions of a def/lambda/class evaluated in the *enclosing* scope when it runs."""
    parts: list[ast.AST] = []
    if isinstance(node, (*_FUNCTIONS, ast.Lambda)):
        a = node.args
        parts.extend(a.defaults)
        parts.extend(d for d in a.kw_defaults if d is not None)
        if isinstance(node, _FUNCTIONS):
            parts.extend(node.decorator_list)
            every = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            parts.extend(x.annotation for x in every if x is not None and x.annotation is not None)
            if node.returns is not None:
                parts.append(node.returns)
    elif isinstance(node, ast.ClassDef):
        parts.extend(node.decorator_list)
        parts.extend(node.bases)
        parts.extend(k.value for k in node.keywords)
    return parts


def _add_import(node: ast.Import | ast.ImportFrom, scope: _Scope) -> None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            top = alias.name.split(".")[0]
            local = alias.asname or top
            scope.locals.add(local)
            scope.imports[local] = alias.name if alias.asname else top
        return
    for alias in node.names:
        if alias.name == "*":
            continue
        local = alias.asname or alias.name
        scope.locals.add(local)
        if node.level == 0 and node.module:
            scope.imports[local] = f"{node.module}.{alias.name}"


def _add_targets(target: ast.AST, scope: _Scope) -> None:
    if isinstance(target, ast.Name):
        scope.locals.add(target.id)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            _add_targets(elt, scope)
    elif isinstance(target, ast.Starred):
        _add_targets(target.value, scope)


def _collect_bindings(body: Iterable[ast.AST], scope: _Scope, walrus: bool) -> None:
    """Fill ``scope`` with the names ``body`` binds, declares global/nonlocal, or imports.

    Without ``:=`` in the source only statements can bind, so expressions are not walked (the fast
    path, most cells); with it, :func:`_collect_bindings_full` walks everything.
    """
    if walrus:
        _collect_bindings_full(body, scope)
        return
    stack = [n for n in body if isinstance(n, ast.stmt)]
    while stack:
        node = stack.pop()
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            scope.locals.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                _add_targets(target, scope)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            _add_targets(node.target, scope)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            _add_targets(node.target, scope)
            stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    _add_targets(item.optional_vars, scope)
            stack.extend(node.body)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                _add_targets(target, scope)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            _add_import(node, scope)
        elif isinstance(node, ast.Global):
            scope.globals.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            scope.nonlocals.update(node.names)
        elif isinstance(node, (ast.If, ast.While)):
            stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            try_node: Any = node
            stack.extend(try_node.body)
            stack.extend(try_node.orelse)
            stack.extend(try_node.finalbody)
            for handler in try_node.handlers:
                if handler.name:
                    scope.locals.add(handler.name)
                stack.extend(handler.body)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                _collect_bindings_full([case.pattern], scope)
                stack.extend(case.body)
        elif not isinstance(node, (ast.Expr, ast.Return, ast.Raise, ast.Assert, ast.Pass, ast.Break,
                                   ast.Continue)):  # fmt: skip
            _collect_bindings_full([node], scope)  # e.g. a type alias statement: be exact


def _collect_bindings_full(body: Iterable[ast.AST], scope: _Scope) -> None:
    """Like :func:`_collect_bindings`, walking every node.

    Nested scopes are not entered, except for what they evaluate in this scope (decorators, defaults,
    class bases, a comprehension's first iterable) and walrus targets inside comprehensions, which
    bind here (PEP 572).
    """
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                scope.locals.add(node.id)
            continue
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            scope.locals.add(node.name)
            stack.extend(_def_time_parts(node))
            continue
        if isinstance(node, ast.Lambda):
            stack.extend(_def_time_parts(node))
            continue
        if isinstance(node, _COMPREHENSIONS):
            stack.append(node.generators[0].iter)
            for sub in ast.walk(node):
                if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                    scope.locals.add(sub.target.id)
            continue
        if isinstance(node, ast.Global):
            scope.globals.update(node.names)
            continue
        if isinstance(node, ast.Nonlocal):
            scope.nonlocals.update(node.names)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            _add_import(node, scope)
            continue
        if isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            scope.locals.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            scope.locals.add(node.rest)
        type_alias = getattr(ast, "TypeAlias", None)
        if type_alias is not None and isinstance(node, type_alias):
            name = getattr(node, "name", None)
            if isinstance(name, ast.Name):
                scope.locals.add(name.id)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _attr_chain(node: ast.Attribute) -> tuple[ast.Name, tuple[str, ...]] | None:
    """``a.b.c`` → (Name a, ("b", "c")); None when the base is not a plain name."""
    attrs: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        attrs.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name):
        return cur, tuple(reversed(attrs))
    return None


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _call_kind(node: ast.Call) -> int:
    """0 for ``f()``, ``f(None)`` or ``f(seed=None)`` (all mean "no seed"), 1 otherwise."""
    if not node.args and not node.keywords:
        return 0
    if len(node.args) == 1 and not node.keywords and _is_none(node.args[0]):
        return 0
    if not node.args and len(node.keywords) == 1 and node.keywords[0].arg == "seed":
        return 0 if _is_none(node.keywords[0].value) else 1
    return 1


def _str_const(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _literal_code(node: ast.expr) -> str | None:
    """The code text of an ``exec``/``eval`` argument if it is a literal (or ``compile(literal, ...)``)."""
    lit = _str_const(node)
    if lit is not None:
        return lit
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "compile"
        and node.args
    ):
        return _str_const(node.args[0])
    return None


_IPY_METHODS: Final = frozenset(
    {"run_line_magic", "run_cell_magic", "system", "getoutput", "system_piped", "system_raw", "ex", "ev",
     "run_cell", "magic"}
)  # fmt: skip

_MAX_DEPTH: Final = 16


class _Builder:
    """Accumulates the syntactic facts of one source text (and of code strings nested in it).

    Effects inside a ``def`` at module level (or a method of a module-level class) happen when the
    function is called, not when the cell defines it; they are kept only if the cell uses the
    function. ``owner`` is the name of the function or class whose body is being visited (None at
    module level); :meth:`freeze` drops hazards, references and reasons of owners the cell never
    loads (directly, or from the body of an owner it uses)::

        cell 1:  def noise():
                     return np.random.rand(3)      defining it: no hazard
        cell 2:  x = noise()                       calling it: "unseeded randomness: ..."

    Cell 2's hazard comes from walking ``noise``'s bytecode (it is a session function by then). Had
    cell 1 also called ``noise()``, its own hazard would have been kept.
    """

    def __init__(self) -> None:
        self.owner: str | None = None
        self.reads: dict[str, Pos] = {}
        self.loads: set[tuple[str, str | None]] = set()
        self.bound: set[str] = set()
        self.refs: list[tuple[str | None, _Ref]] = []
        self.imports: dict[str, str] = {}
        self.reasons: list[tuple[str | None, str]] = []
        self.hazards: list[tuple[str | None, Pos, str]] = []
        self.paths: set[str] = set()

    def read(self, name: str, pos: Pos) -> None:
        self.loads.add((name, self.owner))
        old = self.reads.get(name)
        if old is None or pos < old:
            self.reads[name] = pos

    def ref(self, ref: _Ref) -> None:
        self.refs.append((self.owner, ref))

    def reason(self, text: str) -> None:
        self.reasons.append((self.owner, text))

    def hazard(self, pos: Pos, text: str) -> None:
        self.hazards.append((self.owner, pos, text))

    def merge(self, facts: _Facts, prefix: Pos, *, bind: bool) -> None:
        """Merge facts of code nested at ``prefix``; ``bind``: it runs in the module namespace."""
        for name, pos in facts.reads:
            self.read(name, prefix + pos)
        sub_imports = dict(facts.imports)
        if bind:
            self.bound |= facts.bound
            self.imports.update(sub_imports)
        for r in facts.refs:
            root_import = r.root_import
            if root_import is None and r.chain[0] in sub_imports:
                root_import = sub_imports[r.chain[0]]
            self.ref(_Ref(prefix + r.pos, r.chain, root_import, r.call, r.generator_kw))
        for text in facts.reasons:
            self.reason(text)
        for p, h in facts.hazards:
            self.hazard(prefix + p, h)
        self.paths |= facts.paths

    def freeze(self) -> _Facts:
        used: set[str | None] = {None}
        grew = True
        while grew:
            grew = False
            for name, owner in self.loads:
                if owner in used and name not in used:
                    used.add(name)
                    grew = True
        return _Facts(
            reads=tuple(sorted(self.reads.items(), key=lambda kv: kv[1])),
            bound=frozenset(self.bound),
            refs=tuple(r for owner, r in self.refs if owner in used),
            imports=tuple(self.imports.items()),
            reasons=tuple(dict.fromkeys(t for owner, t in self.reasons if owner in used)),
            hazards=tuple((p, h) for owner, p, h in self.hazards if owner in used),
            paths=frozenset(self.paths),
        )


class _Visitor(ast.NodeVisitor):
    """Walks one parsed source with Python's scoping rules, filling a :class:`_Builder`."""

    def __init__(self, builder: _Builder, depth: int, walrus: bool) -> None:
        self.b = builder
        self.depth = depth
        self.walrus = walrus
        self.scope = _Scope("module", None)
        self.class_owner: str | None = None  # module-level class whose body is being visited

    # ---- entry -----------------------------------------------------------------------------------
    def run(self, tree: ast.AST) -> None:
        body: list[ast.AST] = list(tree.body) if isinstance(tree, ast.Module) else [tree]
        if isinstance(tree, ast.Expression):
            body = [tree.body]
        _collect_bindings(body, self.scope, self.walrus)
        self.b.bound |= self.scope.locals
        self.b.imports.update(self.scope.imports)
        for node in body:
            self.visit(node)

    # ---- dispatch (NodeVisitor's, with the method lookup cached per node type) -------------------
    _dispatch: ClassVar[dict[type, Any]] = {}  # method per node type, shared by all instances

    def visit(self, node: ast.AST) -> None:
        t = type(node)
        meth = self._dispatch.get(t)
        if meth is None:
            meth = getattr(type(self), "visit_" + t.__name__, None) or type(self).generic_visit
            self._dispatch[t] = meth
        meth(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)

    # ---- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def pos(node: ast.AST) -> Pos:
        return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))

    def resolve(self, name: str) -> tuple[str, str | None]:
        """("global", None), ("local", None) or ("import", qualified) for a load of ``name`` here."""
        s: _Scope | None = self.scope
        first = True
        while s is not None:
            if s.kind == "module":
                return ("global", None)
            if s.kind == "class":
                if first and (name in s.globals or name in s.locals):
                    # A class body looks names up in its own dict, then in globals (LOAD_NAME).
                    return ("global", None)
            else:
                if name in s.globals:
                    return ("global", None)
                if name in s.locals or name in s.nonlocals:
                    if name in s.imports and name not in s.nonlocals:
                        return ("import", s.imports[name])
                    return ("local", None)
            s = s.parent
            first = False
        return ("global", None)

    def is_global(self, name: str) -> bool:
        return self.resolve(name)[0] == "global"

    def ref(self, root: ast.Name, attrs: tuple[str, ...], call: int, gen: bool) -> None:
        kind, qual = self.resolve(root.id)
        pos = self.pos(root)
        if kind == "global":
            self.b.read(root.id, pos)
            self.b.ref(_Ref(pos, (root.id, *attrs), None, call, gen))
        elif kind == "import":
            self.b.ref(_Ref(pos, (root.id, *attrs), qual, call, gen))
        if attrs and ("user_ns" in attrs or "user_global_ns" in attrs):
            self.b.reason("shell namespace access")

    def sub(self, code: str | None, mode: str, pos: Pos, *, bind: bool, what: str) -> None:
        """Analyse code carried in a string (magic body, exec literal, interpolation) at ``pos``."""
        if code is None:
            self.b.reason(f"dynamic {what}")
            return
        if not code.strip():
            return
        if self.depth >= _MAX_DEPTH:
            self.b.reason("nesting too deep")
            return
        facts = _facts_for(code, mode, self.depth + 1)
        if facts is _SYNTAX_ERROR_FACTS:
            self.b.reason(f"unparsable {what}")
            return
        self.b.merge(facts, pos, bind=bind)

    def interpolations(self, text: str, pos: Pos) -> None:
        """``{expr}`` and ``$name.attr`` in a shell line or magic line: IPython evaluates them."""
        fields: list[str] = []
        literal_parts: list[str] = []
        try:
            for lit, field, _spec, _conv in string.Formatter().parse(text):
                literal_parts.append(lit)
                if field:
                    fields.append(field)
        except ValueError:
            fields = re.findall(r"(?<!\{)\{([^{}\n]+)\}(?!\})", text)
            literal_parts = [text]
        for part in literal_parts:
            for m in re.finditer(r"(\$?)\$([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", part):
                if not m.group(1):
                    fields.append(m.group(2))
        for field in fields:
            try:
                ast.parse(field, mode="eval")
            except (SyntaxError, ValueError):
                continue
            self.sub(field, "eval", pos, bind=False, what="interpolation")

    # ---- scopes ----------------------------------------------------------------------------------
    def _enter(self, kind: str, body: Iterable[ast.AST], params: Iterable[str], node: ast.AST) -> _Scope:
        scope = _Scope(kind, self.scope)
        scope.locals.update(params)
        _collect_bindings(body, scope, self.walrus)
        scope.locals -= scope.globals
        scope.locals -= scope.nonlocals
        if scope.globals:
            # ``global x`` in a def/class of this cell: the cell may both read and rebind x.
            self.b.bound |= scope.globals
            for name in scope.globals:
                self.b.read(name, self.pos(node))
        return scope

    def _visit_in(self, scope: _Scope, nodes: Iterable[ast.AST], owner: str | None = None) -> None:
        saved, saved_owner = self.scope, self.b.owner
        self.scope = scope
        if owner is not None:
            self.b.owner = owner
        try:
            for n in nodes:
                self.visit(n)
        finally:
            self.scope, self.b.owner = saved, saved_owner

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for part in _def_time_parts(node):
            self.visit(part)
        params = _arg_names(node.args)
        params += [getattr(t, "name", "") for t in getattr(node, "type_params", [])]
        body: list[ast.AST] = [node.body] if isinstance(node, ast.Lambda) else list(node.body)
        scope = self._enter("function", body, params, node)
        owner = None
        if self.b.owner is None and not isinstance(node, ast.Lambda):
            # A module-level def (or a method of a module-level class) runs when called: defer.
            if self.scope.kind == "module":
                owner = node.name
            elif self.scope.kind == "class":
                owner = self.class_owner
        self._visit_in(scope, body, owner)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._function(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for part in _def_time_parts(node):
            self.visit(part)
        params = [getattr(t, "name", "") for t in getattr(node, "type_params", [])]
        scope = self._enter("class", node.body, params, node)
        saved = self.class_owner
        if self.scope.kind == "module" and self.b.owner is None:
            self.class_owner = node.name
        try:
            self._visit_in(scope, node.body)
        finally:
            self.class_owner = saved

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        gens = node.generators
        self.visit(gens[0].iter)  # evaluated in the enclosing scope
        scope = _Scope("comprehension", self.scope)
        for gen in gens:
            for sub in ast.walk(gen.target):
                if isinstance(sub, ast.Name):
                    scope.locals.add(sub.id)
        inner: list[ast.AST] = [gens[0].target, *gens[0].ifs]
        for gen in gens[1:]:
            inner += [gen.target, gen.iter, *gen.ifs]
        if isinstance(node, ast.DictComp):
            inner += [node.key, node.value]
        else:
            inner.append(node.elt)
        self._visit_in(scope, inner)

    visit_ListComp = _comprehension
    visit_SetComp = _comprehension
    visit_GeneratorExp = _comprehension
    visit_DictComp = _comprehension

    # ---- names and references --------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.ref(node, (), -1, False)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name) and self.is_global(node.target.id):
            self.b.read(node.target.id, self.pos(node.target))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _attr_chain(node)
        if chain is None:
            if node.attr in ("user_ns", "user_global_ns"):
                self.b.reason("shell namespace access")
            self.visit(node.value)
        elif isinstance(node.ctx, ast.Load):
            self.ref(chain[0], chain[1], -1, False)
        else:
            self.ref(chain[0], chain[1][:-1], -1, False)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _str_const(node.slice) == "__main__":  # sys.modules["__main__"]: the whole namespace
            self.b.reason("__main__ module access")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _looks_like_path(node.value):
            self.b.paths.add(node.value)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        # Literal fragments of an f-string are not whole paths; only visit the interpolated values.
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                self.visit(value)

    def visit_Import(self, node: ast.Import) -> None:
        if any(a.name == "__main__" for a in node.names):
            self.b.reason("__main__ module access")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "__main__" and node.level == 0:
            for alias in node.names:
                if alias.name == "*":
                    self.b.reason("__main__ module access")
                else:
                    self.b.read(alias.name, self.pos(node))

    # ---- calls -----------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        if self._special_call(node):
            return
        call = _call_kind(node)
        gen = any(k.arg == "generator" for k in node.keywords)
        func = node.func
        if isinstance(func, ast.Name):
            self.ref(func, (), call, gen)
        elif isinstance(func, ast.Attribute) and (chain := _attr_chain(func)) is not None:
            self.ref(chain[0], chain[1], call, gen)
        else:
            self.visit(func)
        for arg in node.args:
            self.visit(arg)
        for kw in node.keywords:
            self.visit(kw.value)

    def _special_call(self, node: ast.Call) -> bool:
        func = node.func
        pos = self.pos(node)
        if isinstance(func, ast.Name) and self.is_global(func.id):
            name = func.id
            if name in ("globals", "locals", "vars") and not node.args and not node.keywords:
                self.b.reason(f"{name}()")
                return False
            if name in ("exec", "eval", "compile") and node.args:
                code = _literal_code(node.args[0])
                if code is None:
                    if name != "compile":
                        self.b.reason(f"{name}() of non-literal code")
                    return False
                mode = "eval" if name == "eval" else "exec"
                if name == "compile":
                    mode_arg = node.args[2] if len(node.args) > 2 else None
                    for kw in node.keywords:
                        if kw.arg == "mode":
                            mode_arg = kw.value
                    mode = _str_const(mode_arg) or "exec"
                    mode = mode if mode in ("exec", "eval", "single") else "exec"
                    mode = "exec" if mode == "single" else mode
                at_module = self.scope.kind == "module" and name != "compile" and len(node.args) == 1
                self.sub(code, mode, pos, bind=at_module, what=f"{name}() code")
                self.ref(func, (), _call_kind(node), False)
                first = node.args[0]
                if isinstance(first, ast.Call):  # exec(compile("...", ...)): visit the other args
                    for arg in first.args[1:]:
                        self.visit(arg)
                for arg in node.args[1:]:
                    self.visit(arg)
                for kw in node.keywords:
                    self.visit(kw.value)
                return True
            return False
        if not (isinstance(func, ast.Attribute) and func.attr in _IPY_METHODS):
            return False
        recv = func.value
        if not (
            isinstance(recv, ast.Call)
            and isinstance(recv.func, ast.Name)
            and recv.func.id == "get_ipython"
            and not recv.args
            and self.is_global("get_ipython")
        ):
            return False
        self.visit(recv)
        lits: list[str | None] = [_str_const(a) for a in node.args]
        for arg, lit in zip(node.args, lits, strict=True):
            if lit is None:
                self.visit(arg)
        kw_lits: dict[str, str | None] = {}
        for kw in node.keywords:
            if kw.arg is not None:
                kw_lits[kw.arg] = _str_const(kw.value)
            if kw.arg is None or kw_lits[kw.arg] is None:
                self.visit(kw.value)

        def argv(i: int, kw_name: str, default: str | None) -> str | None:
            if i < len(node.args):
                return lits[i]
            if kw_name in kw_lits:
                return kw_lits[kw_name]
            return default

        meth = func.attr
        if meth == "run_line_magic":
            self.magic(argv(0, "magic_name", None), argv(1, "line", ""), None, pos, cell_mode=False)
        elif meth == "run_cell_magic":
            self.magic(argv(0, "magic_name", None), argv(1, "line", ""), argv(2, "cell", None), pos, True)
        elif meth == "magic":
            text = argv(0, "arg_s", None)
            if text is None:
                self.b.reason("dynamic magic")
            else:
                name, _, line = text.lstrip("%").partition(" ")
                self.magic(name, line, None, pos, cell_mode=False)
        elif meth in ("system", "getoutput", "system_piped", "system_raw"):
            cmd = argv(0, "cmd", None)
            if cmd is None:
                self.b.hazard(pos, "shell command: <dynamic>")
            else:
                self.b.hazard(pos, _shell_label(cmd))
                self.interpolations(cmd, pos)
                self.b.paths |= _shell_paths(cmd)
        elif meth in ("ex", "run_cell"):
            code = argv(0, "cmd" if meth == "ex" else "raw_cell", None)
            self.sub(code, "exec", pos, bind=True, what="code")
        elif meth == "ev":
            self.sub(argv(0, "expr", None), "eval", pos, bind=False, what="code")
        return True

    def magic(self, name: str | None, line: str | None, cell: str | None, pos: Pos, cell_mode: bool) -> None:
        """Account for one magic call (the per-magic rules are in the module docstring)."""
        if name is None:
            self.b.reason("dynamic magic")
            return
        code_magic = name in ("time", "timeit", "prun", "capture")
        if line is None or (cell_mode and cell is None):
            if code_magic or name in _CONSERVATIVE_MAGICS:
                self.b.reason(f"dynamic %{name} arguments")
            if name in _SHELL_CELL_MAGICS or name in _SHELL_LINE_MAGICS:
                self.b.hazard(pos, f"shell command: %{name} <dynamic>")
            if line is None:
                return
        if name in _CONSERVATIVE_MAGICS:
            self.b.reason(f"%{name}")
        if name == "run" and re.search(r"(^|\s)-\w*i", line):
            self.b.reason("%run -i")
        if name not in _NO_VAR_EXPAND_MAGICS:
            self.interpolations(line, pos)
        if name == "time":
            _opts, code = _split_opts(line, "")
            self.sub(code, "exec", pos, bind=True, what="%time code")
            if cell is not None:
                self.sub(cell, "exec", pos, bind=True, what="%%time body")
        elif name == "timeit":
            # Statement and setup run inside a function IPython compiles: they bind nothing here.
            opts, code = _split_opts(line, "n:r:tcp:qov:")
            if opts.get("v", "").isidentifier():
                self.b.bound.add(opts["v"])
            self.sub(code, "exec", pos, bind=False, what="%timeit code")
            if cell is not None:
                self.sub(cell, "exec", pos, bind=False, what="%%timeit body")
            self.b.hazard(pos, "timing magic: %timeit")
        elif name == "prun":
            opts, code = _split_opts(line, "D:l:rs:T:q")
            for key in ("D", "T"):
                if opts.get(key) and _looks_like_path(opts[key]):
                    self.b.paths.add(opts[key])
            self.sub(code, "exec", pos, bind=True, what="%prun code")
            if cell is not None:
                self.sub(cell, "exec", pos, bind=True, what="%%prun body")
        elif name == "capture":
            names = [t for t in line.split() if not t.startswith("-")]
            if names and names[0].isidentifier():
                self.b.bound.add(names[0])
            if cell is not None:
                self.sub(cell, "exec", pos, bind=True, what="%%capture body")
        elif cell is not None and name in _SHELL_CELL_MAGICS:
            self.b.hazard(pos, _shell_label(cell))
            self.b.paths |= _shell_paths(cell) | _shell_paths(line)
        elif not cell_mode and name in _SHELL_LINE_MAGICS:
            cmd = line if name in ("sx", "system") else f"{name} {line}"
            self.b.hazard(pos, _shell_label(cmd))
            self.b.paths |= _shell_paths(line)
        else:
            # %writefile, %run, %load, %cd, %env, %pwd, unknown magics: no hazard, paths only.
            self.b.paths |= _shell_paths(line)


@functools.lru_cache(maxsize=2048)
def _facts_for(source: str, mode: str = "exec", depth: int = 0) -> _Facts:
    """Syntactic facts of ``source`` (pure, cached). Raw IPython syntax is tried as a fallback.

    Returns :data:`_SYNTAX_ERROR_FACTS` when the text parses neither as Python nor after the minimal
    IPython transform (only tried for nested code, ``depth > 0``: the cell itself is already
    transformed).
    """
    try:
        tree: ast.AST = ast.parse(source, mode=mode)
    except (SyntaxError, ValueError):
        if depth == 0 or mode != "exec":
            return _SYNTAX_ERROR_FACTS
        try:
            tree = ast.parse(_lite_transform(source), mode="exec")
        except (SyntaxError, ValueError):
            return _SYNTAX_ERROR_FACTS
    builder = _Builder()
    _Visitor(builder, depth, ":=" in source).run(tree)
    return builder.freeze()


# --------------------------------------------------------------------------------------------------
# The hazard table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """One known source of irreproducibility.

    ``name`` is the canonical dotted name (used in the hazard text). ``kind`` is the hazard family;
    ``rng:*`` kinds name the generator family so that seeding it earlier in the same cell (or the same
    function) cancels the hazard. ``when``: ``always``; ``noargs`` (only when called without a seed);
    ``nogen`` (unless called with an explicit ``generator=``); ``called`` (only when called: printing
    the builtin ``id`` is harmless); ``seed`` (a seeding call: with a seed it
    makes later draws of its family reproducible, without one it reseeds from OS entropy).
    """

    name: str
    kind: str
    when: str = "always"


def _rules(prefix: str, names: str, kind: str, when: str = "always") -> list[_Rule]:
    return [_Rule(f"{prefix}.{n}", kind, when) for n in names.split()]


_HAZARD_RULES: Final[tuple[_Rule, ...]] = (
    # Python's ``random`` module functions are bound methods of one hidden, OS-seeded ``Random``;
    # without ``random.seed(n)`` earlier in the cell they differ on every run. ``SystemRandom`` reads
    # OS entropy and cannot be seeded at all. ``Random()`` with no seed is seeded from OS entropy;
    # ``Random(3)`` is reproducible. ``random.seed()`` with no argument reseeds from entropy.
    *_rules(
        "random",
        "random uniform triangular randint choice randrange sample shuffle choices normalvariate "
        "lognormvariate expovariate vonmisesvariate gammavariate gauss betavariate paretovariate "
        "weibullvariate getrandbits randbytes binomialvariate SystemRandom",
        "rng:random",
    ),
    _Rule("random.Random", "rng:random", "noargs"),
    _Rule("random.seed", "rng:random", "seed"),
    # numpy's legacy API (``np.random.rand`` & co.) draws from one global, entropy-seeded RandomState;
    # ``np.random.seed(n)`` makes it reproducible, ``np.random.seed()`` reseeds from entropy.
    # ``default_rng()``, ``RandomState()``, ``SeedSequence()`` and the bit generators without a seed
    # (or with ``None``) are seeded from OS entropy; with a seed they are reproducible.
    *_rules(
        "numpy.random",
        "rand randn randint random random_sample ranf sample random_integers choice bytes shuffle "
        "permutation beta binomial chisquare dirichlet exponential f gamma geometric gumbel "
        "hypergeometric laplace logistic lognormal logseries multinomial multivariate_normal "
        "negative_binomial noncentral_chisquare noncentral_f normal pareto poisson power rayleigh "
        "standard_cauchy standard_exponential standard_gamma standard_normal standard_t triangular "
        "uniform vonmises wald weibull zipf",
        "rng:numpy",
    ),
    *_rules(
        "numpy.random",
        "default_rng RandomState SeedSequence MT19937 PCG64 PCG64DXSM Philox SFC64",
        "rng:numpy",
        "noargs",
    ),
    _Rule("numpy.random.seed", "rng:numpy", "seed"),
    # torch's sampling functions and ``torch.nn.init`` initialisers draw from the global generator
    # unless given ``generator=``; ``torch.manual_seed(n)`` makes them reproducible and ``torch.seed()``
    # reseeds from entropy. Layers whose constructor initialises weights randomly are listed too
    # (constant-initialised ones such as the norm layers are not). Dropout draws at call time, which
    # no table can see.
    *_rules(
        "torch",
        "rand randn randint randperm rand_like randn_like randint_like normal bernoulli multinomial poisson",
        "rng:torch",
        "nogen",
    ),
    *_rules(
        "torch.nn.init",
        "uniform_ normal_ trunc_normal_ xavier_uniform_ xavier_normal_ kaiming_uniform_ kaiming_normal_ "
        "orthogonal_ sparse_ uniform normal xavier_uniform xavier_normal kaiming_uniform kaiming_normal "
        "orthogonal sparse",
        "rng:torch",
        "nogen",
    ),
    *_rules(
        "torch.nn",
        "Linear Bilinear LazyLinear Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d "
        "LazyConv1d LazyConv2d LazyConv3d LazyConvTranspose1d LazyConvTranspose2d LazyConvTranspose3d "
        "Embedding EmbeddingBag RNN LSTM GRU RNNCell LSTMCell GRUCell MultiheadAttention Transformer "
        "TransformerEncoderLayer TransformerDecoderLayer AdaptiveLogSoftmaxWithLoss",
        "rng:torch",
    ),
    _Rule("torch.seed", "rng:torch"),
    _Rule("torch.manual_seed", "rng:torch", "seed"),
    _Rule("torch.random.manual_seed", "rng:torch", "seed"),
    # The wall clock and process timers give a different value on every run. ``localtime()`` & co.
    # read the clock only when called without a timestamp.
    *_rules(
        "time",
        "time time_ns perf_counter perf_counter_ns monotonic monotonic_ns process_time process_time_ns "
        "thread_time thread_time_ns",
        "clock",
    ),
    *_rules("time", "localtime gmtime ctime asctime", "clock", "noargs"),
    *_rules("datetime.datetime", "now utcnow today", "clock"),
    _Rule("datetime.date.today", "clock"),
    # uuid1 embeds the clock and host, uuid4 is random (uuid3/uuid5 are hashes: reproducible).
    *_rules("uuid", "uuid1 uuid4 uuid6 uuid7", "uuid"),
    # OS entropy: never reproducible. Every public function of ``secrets`` but compare_digest.
    *_rules("os", "urandom getrandom", "entropy"),
    *_rules(
        "secrets", "choice randbelow randbits SystemRandom token_bytes token_hex token_urlsafe", "entropy"
    ),
    # ``hash()`` of str/bytes is salted per process (PYTHONHASHSEED); ``id()`` is an address.
    _Rule("builtins.hash", "hash", "called"),
    _Rule("builtins.id", "address", "called"),
    # Another process: its effects and output depend on the machine, not on the namespace.
    *_rules("os", "system popen", "shell"),
    *_rules("subprocess", "run call check_call check_output Popen getoutput getstatusoutput", "shell"),
)
"""Known nondeterministic callables, by canonical dotted name (see the comments per group).

Matching is by object identity when the module is loaded (so ``from numpy.random import rand as r``
is caught), by canonical name otherwise (a cell that imports ``secrets`` and uses it before the import
has run), and, for bound methods, by ``(__self__, __name__)`` (``datetime.datetime.now`` is a fresh
object on each access). Bound methods of the hidden ``random._inst`` and of numpy's global
``RandomState`` found at build time are added, so new draw functions are covered. A bound ``now``,
``today`` or ``utcnow`` of any ``datetime.date`` subclass (``pandas.Timestamp.now``) reads the clock.
"""

_WATCHED_MODULES: Final = (
    "builtins", "random", "numpy", "numpy.random", "numpy.random.mtrand", "torch", "torch.nn",
    "torch.nn.init", "time", "datetime", "uuid", "os", "secrets", "subprocess",
)  # fmt: skip

_CLOCK_METHODS: Final = frozenset({"now", "today", "utcnow"})


class _Table:
    """Index of :data:`_HAZARD_RULES` over the modules loaded when it was built."""

    def __init__(self) -> None:
        self.by_name: dict[str, _Rule] = {}
        self.by_id: dict[int, tuple[Any, _Rule]] = {}
        self.by_self: dict[tuple[int, str], tuple[Any, _Rule]] = {}
        self.date_cls: Any = None

    def add_object(self, obj: Any, rule: _Rule) -> None:
        self.by_id.setdefault(id(obj), (obj, rule))
        if type(obj) in (types.BuiltinMethodType, types.MethodType):
            owner = getattr(obj, "__self__", None)
            name = getattr(obj, "__name__", None)
            if owner is not None and isinstance(name, str):
                self.by_self.setdefault((id(owner), name), (owner, rule))

    @classmethod
    def build(cls) -> _Table:
        table = cls()
        for rule in _HAZARD_RULES:
            table.by_name[rule.name] = rule
            obj = _object_by_name(rule.name)
            if obj is not _MISSING:
                table.add_object(obj, rule)
        rnd = sys.modules.get("random")
        if rnd is not None:
            inst = vars(rnd).get("_inst")
            for name, value in list(vars(rnd).items()):
                if name.startswith("_") or name in ("seed", "getstate", "setstate"):
                    continue
                if inst is not None and getattr(value, "__self__", None) is inst:
                    table.add_object(value, _Rule(f"random.{name}", "rng:random"))
        nprand, mtrand = sys.modules.get("numpy.random"), sys.modules.get("numpy.random.mtrand")
        if nprand is not None and mtrand is not None:
            glob = vars(mtrand).get("_rand")
            for name, value in list(vars(nprand).items()):
                if name.startswith("_") or name in ("seed", "get_state", "set_state"):
                    continue
                if glob is not None and type(value) is types.MethodType and value.__self__ is glob:
                    rule = _Rule(f"numpy.random.{name}", "rng:numpy")
                    table.add_object(value, rule)
                    table.by_name.setdefault(rule.name, rule)
        dt = sys.modules.get("datetime")
        if dt is not None:
            table.date_cls = vars(dt).get("date")
        return table

    def match(self, obj: Any, qual: str | None) -> _Rule | None:
        if obj is not _MISSING:
            hit = self.by_id.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
            if type(obj) in (types.BuiltinMethodType, types.MethodType):
                owner = obj.__self__
                name = obj.__name__
                hit2 = self.by_self.get((id(owner), name))
                if hit2 is not None and hit2[0] is owner:
                    return hit2[1]
                if (
                    self.date_cls is not None
                    and name in _CLOCK_METHODS
                    and _isa(owner, type)
                    and issubclass(owner, self.date_cls)
                ):
                    return _Rule(f"{owner.__qualname__}.{name}", "clock")
        if qual is not None:
            return self.by_name.get(qual)
        return None


def _static_member(owner: type, name: str) -> Any:
    """``owner.name`` without running user descriptors; classmethods are bound, staticmethods unwrapped."""
    for klass in type.__dict__["__mro__"].__get__(owner):
        d = type.__dict__["__dict__"].__get__(klass)
        if name in d:
            raw = d[name]
            if _isa(raw, classmethod) or type(raw).__name__ == "classmethod_descriptor":
                return raw.__get__(None, owner)
            if _isa(raw, staticmethod):
                return raw.__func__
            return raw
    return _MISSING


def _step(obj: Any, qual: str | None, attr: str) -> tuple[Any, str | None]:
    """One ``.attr`` step of a dotted reference: modules through their dict, classes statically."""
    nxt: Any = _MISSING
    if _isa(obj, types.ModuleType):
        nxt = vars(obj).get(attr, _MISSING)
        if nxt is _MISSING and qual is not None:
            nxt = sys.modules.get(f"{qual}.{attr}", _MISSING)
    elif _isa(obj, type):
        nxt = _static_member(obj, attr)
    elif obj is _MISSING and qual is not None:
        nxt = sys.modules.get(f"{qual}.{attr}", _MISSING)
    new_qual = f"{qual}.{attr}" if qual is not None else None
    if _isa(nxt, types.ModuleType):
        name = vars(nxt).get("__name__")
        new_qual = name if isinstance(name, str) else new_qual
    return nxt, new_qual


def _object_by_name(dotted: str) -> Any:
    """Resolve a canonical dotted name through already-imported modules only (never imports)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is not None:
            obj: Any = mod
            qual: str | None = ".".join(parts[:i])
            for attr in parts[i:]:
                obj, qual = _step(obj, qual, attr)
                if obj is _MISSING:
                    return _MISSING
            return obj
    return _MISSING


_table_cache: list[tuple[tuple[int, ...], _Table]] = []


def _table() -> _Table:
    key = tuple(id(sys.modules.get(m)) for m in _WATCHED_MODULES)
    if _table_cache and _table_cache[0][0] == key:
        return _table_cache[0][1]
    table = _Table.build()
    _table_cache[:] = [(key, table)]
    return table


def _rule_label(rule: _Rule, noarg_call: bool) -> str:
    kind = rule.kind
    suffix = "()" if noarg_call else ""
    if kind.startswith("rng:"):
        return f"unseeded randomness: {rule.name}{suffix}"
    if kind == "hash":
        return "process hash: hash()"
    if kind == "address":
        return "process address: id()"
    if kind == "shell":
        return f"shell command: {rule.name}"
    return f"{kind}: {rule.name}{suffix}"


@dataclass(frozen=True)
class _Outcome:
    seed: bool  # True: a seeding call for ``family``; False: a hazard ``label``
    family: str
    label: str


def _classify(rule: _Rule, call: int, generator_kw: bool) -> _Outcome | None:
    when = rule.when
    if when == "always":
        return _Outcome(False, rule.kind, _rule_label(rule, False))
    if when == "noargs":
        return _Outcome(False, rule.kind, _rule_label(rule, True)) if call == 0 else None
    if when == "called":
        return None if call < 0 else _Outcome(False, rule.kind, _rule_label(rule, False))
    if when == "nogen":
        return None if generator_kw else _Outcome(False, rule.kind, _rule_label(rule, False))
    if when == "seed":
        if call == 0:
            return _Outcome(False, rule.kind, _rule_label(rule, True))
        if call == 1:
            return _Outcome(True, rule.kind, "")
    return None


_OUTPUT_CACHE = re.compile(r"^(_{1,3}|_\d+|Out|_oh)$")
_INPUT_CACHE = re.compile(r"^(_i{1,3}|_i\d+|In|_ih)$")


def _cache_hazard(name: str) -> str | None:
    if _OUTPUT_CACHE.match(name):
        return f"output cache: {name}"
    if _INPUT_CACHE.match(name):
        return f"input cache: {name}"
    return None


# --------------------------------------------------------------------------------------------------
# Namespace-dependent resolution
# --------------------------------------------------------------------------------------------------


def _isa(obj: Any, cls: type | tuple[type, ...]) -> bool:
    """``isinstance`` that never consults ``obj.__class__`` (a user ``__getattribute__`` could run)."""
    return issubclass(type(obj), cls)


def _ns_get(ns: Mapping[str, Any], name: str) -> Any:
    try:
        return ns.get(name, _MISSING)
    except Exception:
        return _MISSING


def _class_module(klass: Any) -> Any:
    try:
        return type.__dict__["__dict__"].__get__(klass).get("__module__")
    except Exception:
        return None


_CONSTRUCTION_METHODS: Final = frozenset(
    {"__new__", "__init__", "__post_init__", "__init_subclass__", "__set_name__", "__class_getitem__"}
)
"""Methods that run when an object (or subclass) is made, not when an existing instance is used."""

_FN_LIKE: Final = (
    types.FunctionType, types.MethodType, staticmethod, classmethod, property, functools.partial,
    functools.cached_property, type,
)  # fmt: skip


@dataclass(frozen=True)
class _CodeFacts:
    """What a code object (and the code objects nested in it) does with globals."""

    names: tuple[str, ...]
    refs: tuple[tuple[tuple[str, ...], int], ...]
    generator_kw: bool


_GLOBAL_LOAD_OPS: Final = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_GLOBAL_WRITE_OPS: Final = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL"})
_ATTR_OPS: Final = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_FILLER_OPS: Final = frozenset({"CACHE", "PRECALL", "PUSH_NULL", "NOP", "EXTENDED_ARG"})


def _bytecode_call(ins: list[dis.Instruction], j: int) -> int:
    """After a reference ending before ``ins[j]``: 0 if it is called with no argument (or ``None``)."""

    def skip(k: int) -> int:
        while k < len(ins) and ins[k].opname in _FILLER_OPS:
            k += 1
        return k

    j = skip(j)
    if j < len(ins) and ins[j].opname == "CALL" and ins[j].arg == 0:
        return 0
    if j < len(ins) and ins[j].opname == "LOAD_CONST" and ins[j].argval is None:
        k = skip(j + 1)
        if k < len(ins) and ins[k].opname == "CALL" and ins[k].arg == 1:
            return 0
    return 1


@functools.lru_cache(maxsize=4096)
def _code_facts(code: types.CodeType) -> _CodeFacts:
    """Global names and global-rooted dotted references of ``code``, from its bytecode.

    Bytecode is used rather than ``co_names`` because ``co_names`` mixes attribute names with globals.
    Code objects compare by value, so equal code shares one cache entry.
    """
    names: dict[str, None] = {}
    refs: list[tuple[tuple[str, ...], int]] = []
    generator_kw = False
    stack = [code]
    while stack:
        c = stack.pop()
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                stack.append(const)
            elif isinstance(const, tuple) and "generator" in const:
                generator_kw = True
        ins = list(dis.get_instructions(c))
        i = 0
        while i < len(ins):
            op = ins[i].opname
            if op in _GLOBAL_LOAD_OPS and isinstance(ins[i].argval, str):
                name = ins[i].argval
                if (
                    op == "LOAD_NAME"
                    and name == "__name__"
                    and i + 1 < len(ins)
                    and ins[i + 1].opname == "STORE_NAME"
                    and ins[i + 1].argval == "__module__"
                ):
                    i += 2  # the implicit ``__module__ = __name__`` of every class body
                    continue
                names[name] = None
                chain = [name]
                j = i + 1
                while j < len(ins) and ins[j].opname in _ATTR_OPS and isinstance(ins[j].argval, str):
                    chain.append(ins[j].argval)
                    j += 1
                refs.append((tuple(chain), _bytecode_call(ins, j)))
                i = j
                continue
            if op in _GLOBAL_WRITE_OPS and isinstance(ins[i].argval, str):
                names[ins[i].argval] = None
            i += 1
    return _CodeFacts(tuple(names), tuple(refs), generator_kw)


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


def _finish_hazards(events: list[_Event], static: Iterable[tuple[Pos, str]]) -> tuple[str, ...]:
    """Drop draws preceded by a seeding of their family, then sort by position and deduplicate."""
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
    return tuple(labels)


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
    hazards = _finish_hazards(events + walker.events, static) + _unordered_results(source, ns)
    return CellAccess(
        reads=frozenset(reads),
        bound=facts.bound,
        conservative=conservative,
        hazards=hazards,
        paths=facts.paths,
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
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in _UNORDERED_METHODS):
            continue
        if node.func.attr != "group_by" and any(
                k.arg == "maintain_order" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords):
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
