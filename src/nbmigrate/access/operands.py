"""Names a cell uses only as operands of arithmetic: reads that cannot change a numeric value in place.

The mutation detector re-fingerprints every name a cell reads (DESIGN.md, "Mutation detector"); for a
big DataFrame that means re-hashing all of it, and most reads of big values are arithmetic::

    risk_adj_mom = mom[250] / vol60        mom and vol60 are only operands

On numeric numpy arrays and pandas objects (the monitor checks the values at run time, see
:mod:`nbmigrate.arithmetic_values`) binary operators, comparisons and unary ``- + ~`` build new objects
and never write to their operands, so such a read cannot have changed the value.

A name qualifies only if *every* occurrence of it in the cell is a leaf of an *operand tree*: a maximal
expression made only of binary operators, the comparisons ``== != < <= > >=`` and unary ``- + ~``,
whose leaves are all numeric constants, names, or ``name[constant]``. A call, attribute or any other
node anywhere in the tree disqualifies the whole tree (the runtime type of its result is unknown, and
a user's ``__rtruediv__`` could write to the other operand)::

    z = vol60 * 2 + mom[20]       vol60, mom qualify (the monitor still checks their types)
    z = vol60 * f(x)              vol60 does not: f(x) may return anything
    vol60 /= 2; vol60.fillna(0)   vol60 does not: bound, or an attribute base

A name bound or deleted anywhere in the cell, or spelled in any other way (a string constant such as
``exec("...")`` or ``ns["x"]``, an attribute name such as ``__main__.x``, a parameter) never qualifies;
no name qualifies in a cell that mentions a back door to the namespace (``get_ipython``, ``globals``...).
Pure syntax, cached per source text like the rest of :mod:`nbmigrate.access`.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass

Leaf = tuple[str, int | str | None]
"""An operand: a name, or ``name[key]`` with a constant ``key``."""

_BACK_DOORS = frozenset({
    "get_ipython", "globals", "locals", "vars", "exec", "eval", "compile", "__import__", "__main__",
    "__dict__", "__builtins__", "builtins", "user_ns", "modules", "sys", "gc", "ctypes", "inspect",
})  # fmt: skip
"""Names through which code can reach a variable without spelling it."""

_UNARY = (ast.USub, ast.UAdd, ast.Invert)
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


@dataclass(frozen=True)
class OperandUse:
    """``names``: names whose every occurrence is a leaf of one of ``trees``; ``trees``: the leaves
    of each operand tree that holds one of ``names`` (a name is an inert read only if every tree
    holding it has operands of inert types)."""

    names: frozenset[str]
    trees: tuple[tuple[Leaf, ...], ...]

    def without(self, excluded: frozenset[str] | set[str]) -> OperandUse:
        """Drop the trees with a leaf in ``excluded`` (names a session function reaches: their value
        during the cell is unknown) and the names that were in them."""
        if not excluded:
            return self
        keep = tuple(t for t in self.trees if not any(n in excluded for n, _ in t))
        dropped = {n for t in self.trees if t not in keep for n, _ in t}
        return _use(self.names - dropped - excluded, keep)


NO_OPERANDS = OperandUse(frozenset(), ())


def _use(names: frozenset[str] | set[str], trees: tuple[tuple[Leaf, ...], ...]) -> OperandUse:
    if not names:
        return NO_OPERANDS
    return OperandUse(frozenset(names), tuple(t for t in trees if any(n in names for n, _ in t)))


def _leaves(node: ast.expr, out: list[Leaf]) -> bool:
    """Append the leaves of the operand tree rooted at ``node``; False if it is not one."""
    if isinstance(node, ast.BinOp):
        return _leaves(node.left, out) and _leaves(node.right, out)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, _UNARY) and _leaves(node.operand, out)
    if isinstance(node, ast.Compare):
        return all(isinstance(op, _COMPARE) for op in node.ops) and all(
            _leaves(e, out) for e in (node.left, *node.comparators))
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float, complex)
    if isinstance(node, ast.Name):
        out.append((node.id, None))
        return True
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        key = node.slice.value if isinstance(node.slice, ast.Constant) else None
        if isinstance(key, int | str) and not isinstance(key, bool):
            out.append((node.value.id, key))
            return True
    return False


def _is_operator(node: ast.AST) -> bool:
    return isinstance(node, ast.BinOp | ast.UnaryOp | ast.Compare)


@functools.lru_cache(maxsize=256)
def operand_use(source: str) -> OperandUse:
    """The :class:`OperandUse` of one transformed cell (see the module docstring)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return NO_OPERANDS
    trees: list[tuple[Leaf, ...]] = []
    spelled: set[str] = set()  # every identifier met outside an operand tree
    strings: list[str] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if _is_operator(node):
            leaves: list[Leaf] = []
            if _leaves(node, leaves):  # type: ignore[arg-type]
                if leaves:
                    trees.append(tuple(leaves))
                continue
        for _, value in ast.iter_fields(node):
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, ast.AST):
                    stack.append(item)
                elif isinstance(item, str) and isinstance(node, ast.Constant):
                    strings.append(item)
                elif isinstance(item, str):
                    spelled.add(item)
    if not spelled.isdisjoint(_BACK_DOORS):
        return NO_OPERANDS
    names = {n for t in trees for n, _ in t} - spelled
    names = {n for n in names if not any(n in s for s in strings)}
    return _use(names, tuple(trees))
