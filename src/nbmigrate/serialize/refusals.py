"""Why a group cannot be pickled, in words that name the variable and the offending object."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Final

from .stream_format import _MAIN_MODULES


class _DumpFailure(Exception):
    """Internal: pickling raised ``error`` while reducing ``culprit`` (or an unknown object)."""

    def __init__(self, error: Exception, culprit: object) -> None:
        super().__init__(error)
        self.error = error
        self.culprit = culprit


_NO_CULPRIT: Final = object()


class _MainReference(pickle.PicklingError):
    """An object would be pickled as "look ``name`` up in ``__main__``"."""

    def __init__(self, obj: object, name: str) -> None:
        super().__init__(f"{_type_name(obj)} `{name}` can only be pickled by reference to __main__")
        self.obj = obj
        self.name = name


def _type_name(obj: object) -> str:
    t = type(obj)
    module = getattr(t, "__module__", None)
    qualname = getattr(t, "__qualname__", t.__name__)
    if module in (None, "builtins") or module in _MAIN_MODULES:
        return str(qualname)
    return f"{module}.{qualname}"


def _names_text(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _failure_text(name: str, value: object, failure: _DumpFailure) -> str:
    exc, culprit = failure.error, failure.culprit
    if isinstance(exc, _MainReference):
        kind = f"{_type_name(exc.obj)} defined in the session"
        if exc.obj is value:
            return f"`{name}` ({kind}) can only be pickled by reference to __main__"
        return f"`{name}` holds `{exc.name}` ({kind}), which can only be pickled by reference to __main__"
    if culprit is _NO_CULPRIT or culprit is value:
        what = _type_name(value)
    else:
        what = f"{_type_name(culprit)} inside {_type_name(value)}"
    return f"cannot pickle `{name}` ({what}): {type(exc).__name__}: {exc}"
