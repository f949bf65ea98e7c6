"""Library singletons: module-level state of imported libraries, whose ids are never recorded.

Two variables that both reach ``pd.NA`` or a matplotlib rcParams default are not co-variables; the
registry pins these objects (so their ids stay theirs) and the walk stops recording below them.
"""

from __future__ import annotations

import itertools
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from .tokens import _is_session_module

_NOT_SINGLETON_TYPES = frozenset(
    {
        type(None), bool, int, float, complex, str, bytes, tuple, frozenset, type,
        types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
        types.WrapperDescriptorType, types.MethodDescriptorType, types.GetSetDescriptorType,
        types.MemberDescriptorType, types.ClassMethodDescriptorType, staticmethod, classmethod,
        property,
    }
)  # fmt: skip


_SCAN_ELEMENTS = 10_000


def _add_elements(add: Callable[[Any], None], v: Any) -> None:
    """Also count as library state the elements of a module- or class-level container (one level:
    ``matplotlib.rcParams`` values are shared by every artist created from them)."""
    t = type(v)
    try:
        if issubclass(t, dict):
            items: Any = dict.values(v)
        elif issubclass(t, (list, tuple, set, frozenset)):
            items = v
        else:
            return
        for x in itertools.islice(items, _SCAN_ELEMENTS):
            if type(x) not in _NOT_SINGLETON_TYPES:
                add(x)
    except Exception:
        return


class _Registry:
    """Process-wide, lazily refreshed knowledge about imported libraries.

    ``singletons`` holds the ids of module-level attribute values of every imported module except
    ``__main__`` (refreshed when ``len(sys.modules)`` changes; only newly imported modules are
    scanned) and the ids of class attribute values of the library classes met during walks.
    ``stops`` holds the ids of module ``__dict__``s, which are never walked.  The objects behind
    ``singletons`` are pinned (strong references): a library that rebinds an attribute would
    otherwise free the old object and let a user object reuse its id, silently unrecorded.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nmods = -1
        self.scanned: set[str] = set()
        self.singletons: set[int] = set()
        self.pinned: list[Any] = []
        self.stops: set[int] = set()
        self.classes: dict[int, weakref.ref[type]] = {}

    def _add(self, v: Any) -> None:
        i = id(v)
        if i not in self.singletons:
            self.singletons.add(i)
            self.pinned.append(v)

    def refresh(self) -> None:
        if len(sys.modules) == self.nmods:
            return
        with self.lock:
            mods = list(sys.modules.items())
            self.nmods = len(mods)
            add = self._add
            skip = _NOT_SINGLETON_TYPES
            main = getattr(sys.modules.get("__main__"), "__dict__", None)
            for name, mod in mods:
                if name in self.scanned or name == "__main__":
                    continue
                try:
                    d = object.__getattribute__(mod, "__dict__")
                except Exception:
                    continue
                # The session's namespace can be registered under other names too (torch and
                # multiprocessing alias it as __mp_main__): its values are user data, never singletons.
                if type(d) is not dict or d is main or d.get("__name__") == "__main__":
                    continue
                self.scanned.add(name)
                self.stops.add(id(d))
                for v in list(d.values()):
                    if type(v) not in skip:
                        add(v)
                        _add_elements(add, v)

    def scan_class(self, t: type) -> None:
        r = self.classes.get(id(t))
        if r is not None and r() is t:
            return
        with self.lock:
            try:
                self.classes[id(t)] = weakref.ref(t)
            except TypeError:
                return
            add = self._add
            skip = _NOT_SINGLETON_TYPES
            for k in t.__mro__:
                if k is object or _is_session_module(getattr(k, "__module__", None)):
                    continue
                try:
                    vals = list(k.__dict__.values())
                except Exception:
                    continue
                for v in vals:
                    if type(v) not in skip:
                        add(v)
                        _add_elements(add, v)


_REG = _Registry()
