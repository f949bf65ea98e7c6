"""The digest's token stream: self-delimiting encodings of atoms, and the walk's small helpers."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import Any

_pack_d = struct.Struct("<d").pack
_pack_dd = struct.Struct("<dd").pack


def _len(n: int) -> bytes:
    return n.to_bytes(8, "little")


def _str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return _len(len(b)) + b


def _tok_none(o: Any) -> bytes:
    return b"N"


def _tok_bool(o: Any) -> bytes:
    return b"T" if o else b"F"


def _tok_int(o: Any) -> bytes:
    b: bytes = o.to_bytes((o.bit_length() + 8) // 8, "little", signed=True)
    return b"i" + _len(len(b)) + b


def _tok_float(o: Any) -> bytes:
    return b"f" + _pack_d(o)


def _tok_complex(o: Any) -> bytes:
    return b"c" + _pack_dd(o.real, o.imag)


def _tok_str(o: Any) -> bytes:
    return b"s" + _str(o)


def _tok_bytes(o: Any) -> bytes:
    return b"b" + _len(len(o)) + bytes(o)


_ATOMS: dict[type, Callable[[Any], bytes]] = {
    type(None): _tok_none,
    bool: _tok_bool,
    int: _tok_int,
    float: _tok_float,
    complex: _tok_complex,
    str: _tok_str,
    bytes: _tok_bytes,
}
_MARSHALABLE = frozenset(_ATOMS)
_ATOM_BASES: tuple[type, ...] = (int, float, complex, str, bytes)


def _noop(b: Any) -> None:
    return None


def _qual(t: Any) -> str:
    mod = getattr(t, "__module__", None)
    qn = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or "?"
    if not isinstance(qn, str):
        qn = "?"
    if not isinstance(mod, str) or mod == "builtins":
        return qn
    return f"{mod}.{qn}"


def _is_session_module(mod: object) -> bool:
    return mod is None or mod == "__main__"


_EXCLUDED_MODULES = frozenset({"builtins", "__main__", *sys.stdlib_module_names})


class _Op:
    """A scheduled action on the walk stack (distinguished from user objects by its exact type)."""

    __slots__ = ("arg", "fn")

    def __init__(self, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.fn = fn
        self.arg = arg
