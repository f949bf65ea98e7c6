"""Array memory: its bytes fed to the hasher without copies, and the address range it spans.

Shared by the numpy, torch and pandas handlers and by the generic walk (``memoryview`` of an array).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_CHUNK_BYTES = 1 << 22
"""Upper bound of the temporary copy made when hashing a non-contiguous array (4 MiB)."""
_TRANSPOSE_ROWS = 32
"""Rows gathered per step by :func:`_hash_transposed` (fastest between 8 and 32 on a 2000-row block)."""
_MIN_TRANSPOSE_ROWS = 4
"""Below this many rows per step (very long rows) the gather saves nothing: use the generic iterator."""


def _dtype_desc(dt: Any) -> str:
    if dt.names is None and dt.subdtype is None:
        return str(dt.str) + ("" if dt.kind != "T" else repr(dt))
    return repr(dt.descr)


def _hash_ndarray_bytes(emit: Callable[[Any], None], a: Any, np: Any) -> None:
    """Feed the bytes of a fixed-size-dtype array in C order: zero copy when C-contiguous, else in
    bounded chunks (never a full copy)."""
    if a.nbytes == 0:
        return
    if a.flags.c_contiguous:
        emit(a.reshape(-1).view(np.uint8))
        return
    if a.ndim == 2 and a.strides[0] == a.itemsize and a.strides[1] > 0:
        rows = min(_TRANSPOSE_ROWS, _CHUNK_BYTES // max(1, a.shape[1] * a.itemsize))
        if rows >= _MIN_TRANSPOSE_ROWS:
            _hash_transposed(emit, a, np, rows)
            return
    it = np.nditer(
        a,
        flags=["external_loop", "buffered", "zerosize_ok"],
        op_flags=[["readonly"]],
        order="C",
        buffersize=max(1, _CHUNK_BYTES // max(1, a.itemsize)),
    )
    for chunk in it:
        emit(np.ascontiguousarray(chunk).view(np.uint8))


def _hash_transposed(emit: Callable[[Any], None], a: Any, np: Any, rows: int) -> None:
    """C-order bytes of a 2-D array contiguous along its first axis (a pandas block of a frame built
    from a row-major array), ``rows`` rows at a time.

    Copying such rows to C order straight away reads one element per cache line; gathering ``rows``
    adjacent elements of every column first (short contiguous runs) and transposing that small
    buffer, which fits in cache, is ~5x faster and feeds the hasher exactly the same bytes.
    """
    for i in range(0, a.shape[0], rows):
        gathered = np.ascontiguousarray(a[i : i + rows].T)
        emit(np.ascontiguousarray(gathered.T).reshape(-1).view(np.uint8))


def _np_bounds(a: Any) -> tuple[int, int] | None:
    if a.size == 0 or a.itemsize == 0:
        return None
    lo = hi = int(a.__array_interface__["data"][0])
    for s, n in zip(a.strides, a.shape, strict=True):
        if s < 0:
            lo += s * (n - 1)
        else:
            hi += s * (n - 1)
    return lo, hi + a.itemsize
