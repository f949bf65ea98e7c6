"""Reads of user objects that never run user code (no ``getattr``, no ``isinstance`` on ``__class__``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

_MISSING: Final = object()


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
