"""polars: frames, series and lazy frames, digested through Arrow (or IPC bytes without pyarrow)."""

from __future__ import annotations

import io
import sys
from typing import Any

from .arrow import _ArrowHandlers
from .tokens import _len, _Op, _qual, _str


class _PolarsHandlers(_ArrowHandlers):
    """Handlers for polars objects."""

    def _pl_series_content(self, s: Any) -> None:
        pl = sys.modules["polars"]
        self.emit(b"PLs" + _str(str(s.name)) + _str(str(s.dtype)) + _len(s.len()) + _len(s.null_count()))
        if s.dtype == pl.Object:  # exported as raw pointers: walk the Python objects instead
            items = s.to_list()
            self.keep.append(items)
            self._seq_body(items)
            return
        if "pyarrow" in sys.modules:
            chunks: list[Any] = []
            for c in s.get_chunks():
                arr = c.to_arrow(compat_level=pl.CompatLevel.newest())
                chunks.extend(arr.chunks if hasattr(arr, "chunks") else [arr])
            typ = chunks[0].type if chunks else None
            if typ is None:
                return
            self._arrow_content(chunks, typ, True)
            return
        # without pyarrow (never imported on our behalf): Arrow IPC bytes, no spans
        self.count += 1
        if self.live:
            buf = io.BytesIO()
            pl.DataFrame([s]).write_ipc(buf, compression="uncompressed")
            self.emit(buf.getvalue())

    def _h_pldf(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        cols = o.get_columns()
        self.emit(b"PLD" + _str(_qual(t)) + _len(o.height) + _len(len(cols)))
        self.keep.append(cols)
        self._schedule([_Op(self._pl_series_content, s) for s in cols])

    def _h_plseries(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        self.emit(b"PLS" + _str(_qual(t)))
        self._pl_series_content(o)

    def _h_pllazy(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        self.emit(b"PLL")
        if self.live:
            plan = o.serialize(format="binary")
            self.emit(_len(len(plan)) + plan)
