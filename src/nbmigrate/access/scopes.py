"""Python scoping for the syntax walk: which names each scope binds, so locals never pass for globals."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any


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
