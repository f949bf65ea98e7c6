"""The complete walker (generic walk plus every library's handlers) and :func:`fingerprint`."""

from __future__ import annotations

import warnings
from typing import Any

from .matplotlib_figures import _MatplotlibHandlers
from .pandas_frames import _PandasHandlers
from .polars_frames import _PolarsHandlers
from .result import Fingerprint, FingerprintSession
from .torch_tensors import _TorchHandlers


class _Walker(_PandasHandlers, _PolarsHandlers, _TorchHandlers, _MatplotlibHandlers):
    """One fingerprint computation: the generic walk with the handlers of every supported library."""


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    if not spans:
        return ()
    spans.sort()
    out: list[tuple[int, int]] = []
    lo, hi = spans[0]
    for s, e in spans[1:]:
        if s <= hi:
            if e > hi:
                hi = e
        else:
            out.append((lo, hi))
            lo, hi = s, e
    out.append((lo, hi))
    return tuple(out)


def fingerprint(obj: Any, *, budget: int = 2_000_000, session: FingerprintSession | None = None) -> Fingerprint:
    """Walk the object graph reachable from ``obj`` once and return its :class:`Fingerprint`.

    ``budget`` bounds the work: objects visited plus container elements (a numeric buffer counts as
    one, whatever its size, since hashing it costs far less than visiting Python objects).  When it
    is exhausted the walk stops, ``complete`` is False and ``digest`` None.  Pass the same
    ``session`` to every call of one monitoring pass (see :class:`FingerprintSession`).  Never
    raises for any user object.
    """
    keep: list[Any] = session._keep if session is not None else []
    w: _Walker | None = None
    try:
        w = _Walker(budget, keep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w.run(obj)
    except Exception as exc:  # an internal failure: report it as opaque, never raise into the cell
        if w is None:
            return Fingerprint(None, frozenset(), (), (f"nbmigrate:{type(exc).__name__}",), False, 0,
                               frozenset(), frozenset())  # fmt: skip
        w._mark_opaque(type(exc))
        w.complete = False
    spans = _merge(w.spans)
    digest = w.root.hexdigest() if (w.live and w.complete) else None
    nbytes = w.obj_bytes + w.extra_bytes + sum(e - s for s, e in spans)
    return Fingerprint(
        digest=digest,
        ids=frozenset(w.ids),
        spans=spans,
        opaque=tuple(w.opaque),
        complete=w.complete,
        nbytes=max(0, nbytes),
        modules=frozenset(w.modules),
        session_types=frozenset(w.session_types),
    )
