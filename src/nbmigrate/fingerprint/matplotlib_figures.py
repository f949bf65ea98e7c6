"""matplotlib: figures and artists digested by what they show, linked by the figure they belong to."""

from __future__ import annotations

import sys
from typing import Any

from .core import _WalkerBase
from .tokens import _qual, _str


class _MatplotlibHandlers(_WalkerBase):
    """Handlers for matplotlib artists and callback registries."""

    def _h_mplcallbacks(self, o: Any, t: type) -> None:
        # CallbackRegistry.__getstate__ advances an id counter: reading it would mutate the figure
        # and change its digest on every walk.  Hash what that method would keep, without calling it.
        if not self._enter(o, t):
            return
        pickled = set(getattr(o, "_pickled_cids", ()))
        callbacks: dict[Any, dict[Any, Any]] = {}
        for sig, d in getattr(o, "callbacks", {}).items():
            callbacks[sig] = {cid: ref() for cid, ref in d.items() if cid in pickled}
        state = [_qual(t), getattr(o, "exception_handler", None), getattr(o, "_signals", None), callbacks]
        self.keep.append(state)
        self.emit(b"MC")
        self._schedule_mode([state], False, None)

    def _h_mplartist(self, o: Any, t: type) -> None:
        # A figure's internals (transforms, canvas, dpi set by the inline backend, callback ids) differ
        # between processes and after unpickling while the picture is the same. The digest therefore
        # covers what the figure shows (_mpl_summary); identity links every artist of one figure
        # (fig, ax, line are co-variables) without walking the internals.
        if not self._enter(o, t):
            return
        if self.rec:
            self._record(o)
            for member in _mpl_family(o):
                self._record(member)
        summary = _mpl_summary(o)
        self.keep.append(summary)
        self.emit(b"MA" + _str(_qual(t)))
        self._schedule_mode([summary], False)  # the summary is made here: content only, no identities


def _mpl_family(artist: Any) -> list[Any]:
    """The figure ``artist`` belongs to, its axes and their data artists (itself included).

    Not ``findobj()``: axis ticks are created lazily, so their ids change from one call to the next.
    """
    try:
        fig = artist.get_figure(root=True)
    except TypeError:
        fig = artist.get_figure()
    except Exception:
        fig = None
    family = [artist]
    if fig is None:
        return family
    family.append(fig)
    for ax in getattr(fig, "axes", []):
        family.append(ax)
        for name in ("lines", "collections", "patches", "texts", "images"):
            family.extend(getattr(ax, name, ()))
    return family


def _mpl_summary(a: Any, depth: int = 0) -> Any:
    """What an artist shows: sizes, texts, limits, line data; children summarised two levels down."""
    try:
        kind = type(a).__name__
        if hasattr(a, "get_size_inches") and hasattr(a, "axes"):
            suptitle = getattr(getattr(a, "_suptitle", None), "get_text", lambda: None)()
            return (
                "figure",
                tuple(float(x) for x in a.get_size_inches()),
                suptitle,
                [_mpl_summary(ax, depth + 1) for ax in a.axes] if depth < 2 else len(a.axes),
            )
        if hasattr(a, "get_xlim") and hasattr(a, "lines"):

            def children(xs: Any) -> Any:
                return [_mpl_summary(x, depth + 1) for x in xs] if depth < 2 else len(xs)

            return (
                "axes",
                a.get_title(),
                a.get_xlabel(),
                a.get_ylabel(),
                tuple(float(x) for x in a.get_xlim()),
                tuple(float(x) for x in a.get_ylim()),
                children(a.lines),
                children(a.collections),
                children(a.images),
                len(a.patches),
                len(a.texts),
            )
        if hasattr(a, "get_xydata"):
            return (
                "line",
                a.get_xydata().copy(),
                a.get_label(),
                str(a.get_color()),
                str(a.get_linestyle()),
                str(a.get_marker()),
            )
        if hasattr(a, "get_array") and hasattr(a, "get_cmap"):
            # images, scatter plots, meshes: the data they map to colours, the colour map, the points
            np = sys.modules["numpy"]  # matplotlib imports it
            data = a.get_array()
            offsets = a.get_offsets() if hasattr(a, "get_offsets") else None
            return (
                "mappable",
                kind,
                str(a.get_label()),
                None if data is None else np.ma.getdata(data),
                None if data is None else np.ma.getmaskarray(data),
                str(a.get_cmap().name),
                tuple(float(x) for x in a.get_clim() if x is not None),
                None if offsets is None else np.ma.getdata(offsets),
            )
        if hasattr(a, "get_text"):
            return ("text", kind, a.get_text())
        return ("artist", kind, str(a.get_label()))
    except Exception as exc:  # an artist in an odd state still gets a stable description
        return ("artist", type(a).__name__, type(exc).__name__)
