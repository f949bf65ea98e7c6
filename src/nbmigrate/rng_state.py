"""The states of the process-global random generators, to see a cell draw from one inside a library.

The hazard table (:mod:`nbmigrate.access.hazards`) sees the draws a cell spells out; it cannot see a
library drawing from a global generator inside a call (scikit-learn's ``LinearSVC()`` shuffles with
numpy's global ``RandomState`` when it has no ``random_state``). A replay of such a cell starts from
another state and gives another result, so the monitor compares these states before and after each
cell. Each state is a few kilobytes copied in microseconds; generators of modules that are not
loaded are not looked at (nothing is imported here).
"""

from __future__ import annotations

import sys
from typing import Any

FAMILIES = {"rng:random": "random", "rng:numpy": "numpy.random", "rng:torch": "torch"}
"""Hazard family (as in the hazard table) -> the module whose global generator it is."""


def _numpy_state() -> Any:
    mtrand = sys.modules.get("numpy.random.mtrand")
    glob = getattr(mtrand, "_rand", None)
    if glob is None:
        return None
    kind, key, pos, has_gauss, gauss = glob.get_state()
    return kind, key.tobytes(), pos, has_gauss, gauss


def _random_state() -> Any:
    random = sys.modules.get("random")
    return random.getstate() if random is not None else None


def _torch_state() -> Any:
    torch = sys.modules.get("torch")
    generator = getattr(torch, "default_generator", None)
    return bytes(generator.get_state().numpy()) if generator is not None else None


_READERS = {"rng:random": _random_state, "rng:numpy": _numpy_state, "rng:torch": _torch_state}


def global_states() -> dict[str, Any]:
    """Family -> a comparable copy of its global generator's state, for the loaded families."""
    out: dict[str, Any] = {}
    for family, read in _READERS.items():
        try:
            state = read()
        except Exception:  # a half-imported or unusual module: no state, no hazard from it
            continue
        if state is not None:
            out[family] = state
    return out


def drawn(before: dict[str, Any], after: dict[str, Any], seeded: frozenset[str]) -> list[str]:
    """Families whose global generator moved between ``before`` and ``after`` and that the cell did not seed."""
    return [f for f in _READERS if f in before and f in after and before[f] != after[f] and f not in seeded]
