"""What compiled code does with globals: names it loads or writes and the dotted references it calls.

Functions and classes defined in the session are analysed from their code objects (their source may
be gone), so a cell that calls ``f`` reads the globals ``f`` reads.
"""

from __future__ import annotations

import dis
import functools
import types
from dataclasses import dataclass
from typing import Final


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
