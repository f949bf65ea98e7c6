"""Syntactic facts of one cell: what its source reads, binds and calls, before any namespace is seen.

Everything here depends on the source text only, so :func:`_facts_for` parses each text once and
caches the result; :mod:`.session` resolves the facts against the namespace on every call. Code nested
in strings (magic bodies, ``exec`` literals, shell interpolations) is analysed recursively at its
position in the cell.
"""

from __future__ import annotations

import ast
import functools
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from .magics import (
    _CONSERVATIVE_MAGICS,
    _NO_VAR_EXPAND_MAGICS,
    _SHELL_CELL_MAGICS,
    _SHELL_LINE_MAGICS,
    _lite_transform,
    _looks_like_path,
    _shell_label,
    _shell_paths,
    _split_opts,
)
from .scopes import _arg_names, _collect_bindings, _def_time_parts, _Scope

Pos = tuple[int, ...]
"""Where something happens in a cell: ``(line, col)``; code nested in a string (a magic body, an
``exec`` literal, a shell interpolation) appends its own ``(line, col)`` to the position of the call
that carries it. Tuples compare in source order, which is what seed-before-draw decisions need."""


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
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "compile" and node.args:
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
        """Account for one magic call (the per-magic rules are in the package docstring)."""
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
