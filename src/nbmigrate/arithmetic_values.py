"""Values whose arithmetic never writes to them and never runs user code.

The runtime half of :mod:`nbmigrate.access.operands`: a cell that uses a name only as an operand of
``+ - * / ** @ == < ...`` or unary ``- + ~`` cannot have changed it in place if every operand of those
expressions is one of these values, so the monitor keeps the name's fingerprint instead of re-hashing
a DataFrame of hundreds of megabytes (the per-cell cost goal of DESIGN.md; on the corpus notebook
trading_backtest, ``risk_adj_mom = mom[250] / vol60`` spent 228 ms in the monitor's hooks, 49 ms now).

Inert: Python ``int``/``float``/``complex``/``bool``; numpy arrays (exact ``ndarray``, no subclass)
and numpy scalars of numeric, boolean or datetime dtype; pandas ``DataFrame``/``Series`` (exact types)
whose columns have such numpy dtypes, whose index and columns hold numbers, dates or strings, and with
no ``attrs`` (pandas deep-copies ``attrs`` into results, which can run user code). Anything else
(object dtype, extension dtypes, subclasses, user classes) may run user code during the operation,
which could write to the other operand: the monitor then re-fingerprints as before.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

_KINDS = frozenset("biufcmM")
"""numpy dtype kinds whose arithmetic runs no Python code: bool, integers, floats, complex, dates."""


def _numpy_kind_ok(dtype: Any, np: Any) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in _KINDS


def _index_ok(index: Any, pd: Any, np: Any) -> bool:
    if isinstance(index, pd.MultiIndex):
        return all(_index_ok(level, pd, np) for level in index.levels)
    dtype = index.dtype
    if _numpy_kind_ok(dtype, np) or isinstance(dtype, pd.StringDtype):
        return True
    return bool(getattr(dtype, "kind", "") == "O" and index.inferred_type in ("string", "empty"))


def is_inert(value: Any) -> bool:
    """True if arithmetic with ``value`` as an operand provably neither writes to it nor runs user code."""
    t = type(value)
    if t in (int, float, complex, bool):
        return True
    np = sys.modules.get("numpy")
    if np is None:
        return False
    if t is np.ndarray or (isinstance(value, np.generic) and t.__module__ == "numpy"):
        return _numpy_kind_ok(value.dtype, np)
    pd = sys.modules.get("pandas")
    if pd is None or t not in (pd.DataFrame, pd.Series):
        return False
    try:
        if value.attrs or not _index_ok(value.index, pd, np):
            return False
        if t is pd.Series:
            return _numpy_kind_ok(value.dtype, np)
        return _index_ok(value.columns, pd, np) and all(_numpy_kind_ok(d, np) for d in set(value.dtypes))
    except Exception:  # an unusual frame: not provably inert
        return False


def leaf_value(ns: Mapping[str, Any], name: str, key: int | str | None) -> Any:
    """The operand ``name`` or ``name[key]`` in ``ns`` without running user code (exact dict, list or
    tuple containers only); ``None`` when it cannot be read that way."""
    value: Any = ns.get(name)
    if key is None:
        return value
    t = type(value)
    if t is dict:
        return value.get(key)
    if t in (list, tuple) and type(key) is int and -len(value) <= key < len(value):
        return value[key]
    return None
