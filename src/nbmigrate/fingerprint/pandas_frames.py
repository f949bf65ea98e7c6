"""pandas: frames, series, indexes and dtypes, walked through their blocks (numpy or Arrow values)."""

from __future__ import annotations

import sys
from typing import Any

from .arrow import _ArrowHandlers
from .buffers import _dtype_desc, _hash_ndarray_bytes, _np_bounds
from .numpy_arrays import _NumpyHandlers
from .tokens import _len, _Op, _qual, _str, _tok_bool, _tok_int


class _PandasHandlers(_NumpyHandlers, _ArrowHandlers):
    """Handlers for pandas objects."""

    def _note_pd_values(self, v: Any, depth: int = 0) -> None:
        """Spans of the buffers behind pandas values (ndarray or extension array).

        Under copy-on-write (pandas 3, or the option set) two pandas objects over one buffer are
        independent values: a write to either copies first, so the sharing is invisible and is not
        aliasing to preserve (``s = df["x"]`` after a restore need not share memory with ``df``).
        """
        if _pandas_copy_on_write():
            return
        np = sys.modules["numpy"]
        if isinstance(v, np.ndarray):
            bounds = _np_bounds(v)
            if bounds is not None:
                self._span(*bounds)
            return
        d = self._instance_dict(v) or {}
        pa_array = d.get("_pa_array")
        if pa_array is not None:
            self._arrow_spans(pa_array.chunks)
            return
        if depth > 2:
            return
        for attr in ("_ndarray", "_data", "_mask", "_sparse_values", "_left", "_right"):
            x = d[attr] if attr in d else getattr(v, attr, None) if attr == "_ndarray" else None
            if x is not None and x is not v:
                self._note_pd_values(x, depth + 1)

    def _pd_values(self, v: Any, temp: bool, elem_rec: bool) -> None:
        np = sys.modules["numpy"]
        if isinstance(v, np.ndarray):
            self._np_body(v, np, elem_rec)
            return
        if temp:
            self.keep.append(v)
            self._schedule_mode([v], False, None)
        else:
            self.stack.append(v)

    def _op_pd_column(self, arg: tuple[Any, int]) -> None:
        blk, loc = arg
        vals = blk.values
        col = vals[loc] if getattr(vals, "ndim", 1) == 2 else vals
        self.emit(b"c" + _str(str(blk.dtype)))
        self._pd_values(col, col is not vals, self.rec)

    def _op_pd_values(self, arg: tuple[Any, bool]) -> None:
        v, temp = arg
        self._pd_values(v, temp, self.rec)

    def _h_pdframe(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        mgr = o._mgr
        blocks = mgr.blocks
        if self.rec:
            for blk in blocks:
                self._note_pd_values(blk.values)
        cols = o.columns
        ncols = len(cols)
        blknos = mgr.blknos
        blklocs = mgr.blklocs
        nrows = len(o.index)
        self.emit(b"PD" + _str(_qual(t)) + _len(ncols) + _len(nrows))
        self.emit(_tok_bool(bool(o.flags.allows_duplicate_labels)))
        # A wide frame has thousands of columns in a few blocks: a Python step per column would cost
        # far more than hashing its bytes. Columns held by a numeric numpy block go in runs (adjacent
        # in the frame and in the block), their headers all first and their bytes in column order, so
        # the digest depends on the columns only, never on how pandas happens to group them in blocks.
        headers: list[bytes] = []
        items: list[Any] = [cols, o.index]
        numbers, locs = blknos.tolist(), blklocs.tolist()
        i = 0
        while i < ncols:
            blk = blocks[numbers[i]]
            header = _numeric_column_header(blk.values, nrows)
            if header is None:
                items.append(_Op(self._op_pd_column, (blk, locs[i])))
                i += 1
                continue
            j = i + 1
            while j < ncols and numbers[j] == numbers[i] and locs[j] == locs[i] + (j - i):
                j += 1
            headers.append(header * (j - i))
            items.append(_Op(self._op_pd_numeric, (blk.values, locs[i], locs[i] + j - i)))
            i = j
        self.emit(b"".join(headers))
        self._schedule_pd(items)
        self._schedule_attrs(o)

    def _op_pd_numeric(self, arg: tuple[Any, int, int]) -> None:
        """The bytes of columns ``start:stop`` of a numeric numpy block, one column after the other."""
        values, start, stop = arg
        self.count += stop - start
        if self.live:
            _hash_ndarray_bytes(self.emit, values[start:stop], sys.modules["numpy"])

    def _h_pdseries(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        values = o._values
        if self.rec:
            self._note_pd_values(values)
        self.emit(b"PSe" + _str(_qual(t)) + _str(str(o.dtype)) + _len(len(o)))
        self._schedule_pd([o.name, o.index, _Op(self._op_pd_values, (values, False))])
        self._schedule_attrs(o)

    def _schedule_pd(self, items: list[Any]) -> None:
        # Under copy-on-write the arrays inside pandas objects are never shared observably (see
        # _note_pd_values): walk them for content only; the frame's own identity is what aliases.
        if _pandas_copy_on_write():
            self._schedule_mode(items, False, None)
        else:
            self._schedule(items)

    def _schedule_attrs(self, o: Any) -> None:
        # pandas hands one ``attrs`` dict on from frame to derived frame (``__finalize__``): content,
        # but not an alias the user made, so it links nothing.
        attrs = o.attrs
        if attrs:
            self._schedule_mode([attrs], False)
        else:
            self.emit(b"PA0")

    def _h_pdindex(self, o: Any, t: type) -> None:
        pd = sys.modules["pandas"]
        self.emit(b"PI" + _str(_qual(t)) + _str(str(o.dtype)) + _len(len(o)))
        parts: list[Any] = [list(o.names)]
        if isinstance(o, pd.RangeIndex):
            self.emit(_tok_int(o.start) + _tok_int(o.stop) + _tok_int(o.step))
        elif isinstance(o, pd.MultiIndex):
            parts.extend([list(o.levels), list(o.codes)])
        else:
            parts.append(_Op(self._op_pd_values, (o._data, True)))
        self.keep.append(parts)
        self._schedule_mode(parts, False, None)

    def _h_pddtype(self, o: Any, t: type) -> None:
        # a dtype is defined by its ``_metadata`` attributes; its __dict__ also holds lazily filled
        # caches, which would make a dtype look changed after a read
        self.emit(b"PDt" + _str(_qual(t)) + _str(str(o)))
        parts = [getattr(o, k, None) for k in getattr(t, "_metadata", ())]
        self.keep.append(parts)
        self._schedule_mode([parts], False, None)

    def _h_pdarrow(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        ca = o._pa_array
        self.emit(b"PX" + _str(_qual(t)) + _str(str(o.dtype)))
        self._arrow_content(ca.chunks, ca.type, True)


def _numeric_column_header(values: Any, nrows: int) -> bytes | None:
    """What ``_op_pd_column`` emits before the bytes of one column of this 2-D numpy block, or None
    if the block's columns are walked one by one (object or string values, extension arrays)."""
    np = sys.modules["numpy"]
    if type(values) is not np.ndarray or values.ndim != 2 or values.dtype.hasobject or values.dtype.kind == "T":
        return None
    dt = values.dtype
    return b"c" + _str(str(dt)) + b"A" + _str(_dtype_desc(dt)) + _len(1) + _len(nrows)


def _pandas_copy_on_write() -> bool:
    pd = sys.modules.get("pandas")
    if pd is None:
        return False
    try:
        if int(str(pd.__version__).split(".", 1)[0]) >= 3:
            return True
        return pd.get_option("mode.copy_on_write") is True
    except Exception:
        return False
