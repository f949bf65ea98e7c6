"""Library classes whose pickled state needs a fix before hashing: process-specific ids, lazy caches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tokens import _is_session_module


def _fix_mpl_transform(state: Any) -> Any:
    # TransformNode keys its parents by id(parent): the keys differ in every process and carry no
    # value; the parents themselves (in insertion order) do.
    if isinstance(state, dict) and isinstance(state.get("_parents"), dict):
        state = {**state, "_parents": list(state["_parents"].values())}
    return state


def _fix_sklearn_vectorizer(state: Any) -> Any:
    # scikit-learn's vectorizers remember id(self.stop_words) to skip re-checking the same stop-word
    # list: an address, different in a replay or another process, not part of the fitted value.
    if isinstance(state, dict) and "_stop_words_id" in state:
        state = {k: v for k, v in state.items() if k != "_stop_words_id"}
    return state


_STATE_FIXERS: dict[str, Callable[[Any], Any]] = {
    "matplotlib.transforms.TransformNode": _fix_mpl_transform,
    "sklearn.feature_extraction.text._VectorizerMixin": _fix_sklearn_vectorizer,
}
"""Rewrite the pickled state of some library classes whose state holds process-specific values
(``id()``s) that pickling carries but that are not part of the value."""


_CACHE_ATTRS: dict[str, frozenset[str]] = {
    "scipy.sparse._compressed._cs_matrix": frozenset({"_has_sorted_indices", "_has_canonical_format"}),
    "scipy.sparse._coo._coo_base": frozenset({"_has_canonical_format"}),
}
"""Instance attributes that some library classes fill lazily on *reads* (memoised flags): hashing
them would make a value look mutated after ``m.has_sorted_indices`` or ``m.sum()``."""

_FIXER_CACHE: dict[type, Callable[[Any], Any] | None] = {}


def _state_fixer(t: type) -> Callable[[Any], Any] | None:
    try:
        return _FIXER_CACHE[t]
    except KeyError:
        pass
    found = None
    for k in t.__mro__:
        found = _STATE_FIXERS.get(f"{getattr(k, '__module__', '')}.{getattr(k, '__qualname__', '')}")
        if found is not None:
            break
    if not _is_session_module(getattr(t, "__module__", None)):
        if len(_FIXER_CACHE) > 50_000:
            _FIXER_CACHE.clear()
        _FIXER_CACHE[t] = found
    return found
