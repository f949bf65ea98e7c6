"""Which names in an IPython namespace are the user's variables.

IPython keeps its own machinery in the user namespace: ``In``/``Out``, the input history ``_i``,
``_ii``, ``_i7``, the output cache ``_``, ``__``, ``___``, ``_7``, ``_oh``/``_dh``/``_ih``,
``get_ipython``, ``exit``/``quit`` and module dunders. Everything else is the user's, including
names that start with an underscore (``_cache``, ``__hidden_note``) and names that shadow builtins
(``id = "user-17"``). A name IPython put there counts as the user's once the user rebinds it
(``user_ns_hidden`` records the original objects, so we compare identity, not just the name).
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterator, Mapping
from typing import Any

_IPYTHON_NAMES = re.compile(
    r"^(_|__|___|_i|_ii|_iii|_i\d+|_\d+|_oh|_dh|_ih|In|Out|exit|quit|get_ipython|_exit_code)$")
_MISSING = object()


@functools.lru_cache(maxsize=8192)
def _machinery_name(name: str) -> bool:
    """A dunder or a name IPython creates (cached: the monitor scans the namespace twice per cell)."""
    return (name.startswith("__") and name.endswith("__")) or _IPYTHON_NAMES.match(name) is not None


def is_user_name(name: str, value: Any, hidden: Mapping[str, Any]) -> bool:
    """True if ``name`` bound to ``value`` is a user variable (see module docstring)."""
    return not _machinery_name(name) and hidden.get(name, _MISSING) is not value


def user_items(ns: Mapping[str, Any], hidden: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The (name, value) pairs of user variables in ``ns``."""
    for name, value in list(ns.items()):
        if is_user_name(name, value, hidden):
            yield name, value


def importable_module_name(value: Any) -> str | None:
    """The import name of a module bound to a variable, or None if it cannot be re-imported by name.

    ``import numpy as np`` binds ``np`` to a module that ``sys.modules['numpy']`` also holds, so a
    restore re-imports it instead of pickling it.
    """
    import sys

    if not isinstance(value, types.ModuleType):
        return None
    name = getattr(value, "__name__", None)
    if isinstance(name, str) and sys.modules.get(name) is value and name != "__main__":
        return name
    return None


def type_name(value: Any) -> str:
    """``module.QualName`` of a value's type, as recorded in the manifest and compared at restore."""
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"
