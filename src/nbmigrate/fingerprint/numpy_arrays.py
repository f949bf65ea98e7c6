"""numpy: arrays hashed through the buffer protocol (no copies), their memory ranges as spans."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from .buffers import _dtype_desc, _hash_ndarray_bytes, _np_bounds
from .core import _WalkerBase
from .tokens import _ATOMS, _len, _qual, _str, _tok_int


class _NumpyHandlers(_WalkerBase):
    """Handlers for numpy arrays, scalars and dtypes."""

    def _h_ndarray(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        np = sys.modules["numpy"]
        self.obj_bytes -= o.nbytes if o.flags.owndata else 0
        if self.rec:
            base = o.base
            while base is not None:
                bt = type(base)
                if bt in _ATOMS or bt in (tuple, frozenset):
                    break
                self._record(base)
                base = getattr(base, "base", None) if isinstance(base, np.ndarray) else None
            bounds = _np_bounds(o)
            if bounds is not None:
                self._span(*bounds)
        else:
            self.extra_bytes += o.nbytes
        if t is not np.ndarray:
            self.emit(b"AX" + _str(_qual(t)))
            if isinstance(o, np.memmap):
                self.emit(_str(str(getattr(o, "filename", ""))) + _tok_int(int(getattr(o, "offset", 0) or 0)))
            else:
                self._push_attrs_if_any(o)
        self._np_body(o, np, None)

    def _np_body(self, a: Any, np: Any, elem_rec: bool | None) -> None:
        """dtype, shape and C-order content of an array (which may be a temporary view)."""
        if type(a) is not np.ndarray:
            a = np.ndarray.view(a, np.ndarray)  # subclasses (masked, matrix): their own data only
        dt = a.dtype
        self.emit(b"A" + _str(_dtype_desc(dt)) + _len(a.ndim) + b"".join(_len(d) for d in a.shape))
        if dt.hasobject or dt.kind == "T":
            flat = a.reshape(-1).tolist()
            self.count += len(flat)
            self._seq_body(flat, elem_rec)
            return
        self.count += 1
        if self.live:
            _hash_ndarray_bytes(self.emit, a, np)

    _RUN_KINDS = frozenset("biufc")

    def _scalar_run(self, seq: Sequence[Any], t: type) -> bool:
        """Numeric numpy scalars of one type (``vocabulary_`` values, metrics appended in a loop):
        packed into one array and hashed as its buffer instead of one handler call per scalar.

        Only types whose dtype is fixed by the type (bool, integers, floats, complex; not datetime64
        with its per-value unit, not the padded long double) are packed, so the array holds exactly
        the scalars' bytes.
        """
        np = sys.modules.get("numpy")
        if np is None or not issubclass(t, np.generic):
            return super()._scalar_run(seq, t)
        dt = np.dtype(t)
        if dt.kind not in self._RUN_KINDS or t in (np.longdouble, np.clongdouble):
            return super()._scalar_run(seq, t)
        n = len(seq)
        arr = np.array(seq, dtype=dt)
        self.count += n
        self.obj_bytes += sys.getsizeof(seq[0]) * n
        self.emit(b"aR" + _str(_dtype_desc(dt)) + _str(_qual(t)) + _len(n))
        if self.live:
            self.emit(arr.data)
        return True

    def _h_npscalar(self, o: Any, t: type) -> None:
        self.emit(b"a" + _str(_dtype_desc(o.dtype)) + _str(_qual(t)))
        if o.dtype.hasobject:
            value = o.item()
            self.keep.append(value)
            self.stack.append(value)
        else:
            self.emit(o.tobytes())

    def _h_npdtype(self, o: Any, t: type) -> None:
        self.emit(b"d" + _str(_dtype_desc(o)))
