"""pyarrow: arrays, chunked arrays, tables, buffers and scalars, digested per logical value."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import xxhash

from .core import _WalkerBase
from .tokens import _len, _qual, _str


def _arrow_kind(pa: Any, typ: Any) -> str:
    t = pa.types
    try:
        if isinstance(typ, pa.ExtensionType):
            return "other"
        if t.is_null(typ):
            return "null"
        if t.is_boolean(typ):
            return "bool"
        if t.is_dictionary(typ):
            return "dict"
        if t.is_string(typ) or t.is_binary(typ) or t.is_large_string(typ) or t.is_large_binary(typ):
            return "varbin"
        if getattr(t, "is_string_view", None) and (t.is_string_view(typ) or t.is_binary_view(typ)):
            return "view"
        simple = t.is_primitive(typ) or t.is_decimal(typ) or t.is_fixed_size_binary(typ)
        if simple and typ.num_fields == 0 and typ.bit_width % 8 == 0:
            return "fixed"
    except Exception:
        return "other"
    return "other"


def _arrow_digest(pa: Any, np: Any, chunks: Sequence[Any], typ: Any) -> bytes:
    """Digest of an arrow column, independent of chunking and slice offsets for the common layouts.

    Three streams: values (data bytes of the logical range), lengths (for variable-size binary) and
    null positions (global row numbers).  Types without a simple layout are hashed through their IPC
    serialisation, chunk by chunk.
    """
    kind = _arrow_kind(pa, typ)
    hv, hl, hn = xxhash.xxh3_128(), xxhash.xxh3_128(), xxhash.xxh3_128()
    pos = 0
    for c in chunks:
        n = len(c)
        if n == 0:
            continue
        if kind != "null" and c.null_count:
            mask = c.is_null().to_numpy(zero_copy_only=False)
            hn.update((np.flatnonzero(mask) + pos).astype("<i8"))
        if kind == "fixed":
            width = typ.bit_width // 8
            data = c.buffers()[1]
            hv.update(memoryview(data)[c.offset * width : (c.offset + n) * width])
        elif kind == "bool":
            vals = c.fill_null(False) if c.null_count else c
            hv.update(vals.to_numpy(zero_copy_only=False).view(np.uint8))
        elif kind in ("varbin", "view"):
            if kind == "view":
                c = c.cast(pa.large_binary() if pa.types.is_binary_view(typ) else pa.large_string())
            ctype = c.type
            large = pa.types.is_large_string(ctype) or pa.types.is_large_binary(ctype)
            bufs = c.buffers()
            offs = np.frombuffer(
                bufs[1], dtype="<i8" if large else "<i4", count=n + 1, offset=c.offset * (8 if large else 4)
            )
            hl.update(np.diff(offs).astype("<i8"))
            lo, hi = int(offs[0]), int(offs[-1])
            if hi > lo and bufs[2] is not None:
                hv.update(memoryview(bufs[2])[lo:hi])
        elif kind == "dict":
            hv.update(_arrow_digest(pa, np, [c.indices], c.indices.type))
            hv.update(_arrow_digest(pa, np, [c.dictionary], c.dictionary.type))
        elif kind == "other":
            hv.update(pa.RecordBatch.from_arrays([c], names=["_"]).serialize())
        pos += n
    return hv.digest() + hl.digest() + hn.digest()


class _ArrowHandlers(_WalkerBase):
    """Handlers for pyarrow values (also used for pandas and polars columns)."""

    def _arrow_spans(self, arrays: Sequence[Any]) -> None:
        """Arrow memory is never recorded as shared.

        Arrow arrays are immutable: two values over one buffer cannot see each other's writes, so the
        sharing is not aliasing, and pickling may or may not keep it (a Table and its RecordBatches
        come back over separate buffers). The one observable case, an Arrow array wrapping a numpy
        array that the session then writes to, is not tracked.
        """
        return

    def _arrow_content(self, chunks: Sequence[Any], typ: Any, spans: bool) -> None:
        pa = sys.modules["pyarrow"]
        if spans and self.rec:
            self._arrow_spans(chunks)
        else:
            self.extra_bytes += sum(c.nbytes for c in chunks)
        total = sum(len(c) for c in chunks)
        self.emit(b"AR" + _str(str(typ)) + _len(total))
        self.count += 1 + len(chunks)
        if not self.live:
            return
        np = sys.modules.get("numpy")
        if np is None:
            for c in chunks:
                self.emit(pa.RecordBatch.from_arrays([c], names=["_"]).serialize())
            return
        self.emit(_arrow_digest(pa, np, chunks, typ))

    def _h_paarray(self, o: Any, t: type) -> None:
        self._arrow_content([o], o.type, True)

    def _h_pachunked(self, o: Any, t: type) -> None:
        self._arrow_content(o.chunks, o.type, True)

    def _h_patable(self, o: Any, t: type) -> None:
        schema = o.schema
        self.emit(
            b"PT"
            + _str(_qual(t))
            + _str(schema.to_string(show_schema_metadata=True, truncate_metadata=False))
            + _len(o.num_rows)
        )
        for col in o.columns:
            if hasattr(col, "chunks"):
                self._arrow_content(col.chunks, col.type, True)
            else:
                self._arrow_content([col], col.type, True)

    def _h_pabuffer(self, o: Any, t: type) -> None:
        if self.rec and o.size and o.is_cpu:
            self._span(o.address, o.address + o.size)
        self.emit(b"PB" + _len(o.size))
        if self.live and o.size:
            self.emit(o)

    def _h_pascalar(self, o: Any, t: type) -> None:
        self.emit(b"PS" + _str(str(o.type)))
        value = o.as_py()
        self.keep.append(value)
        self.stack.append(value)
