"""Memory regions: owners (arrays, torch storages, bytearrays) whose address ranges contain each other.

At dump time, :class:`_MemoryMap` merges overlapping owners into one region and stores only the span
the group uses; at load time every array is rebuilt over its region (:class:`_RegionMemory`), so
views and ``torch.from_numpy`` keep sharing memory.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np

from ..errors import SerializationError
from .stream_format import _ALIGN, _PLAIN_KINDS, INLINE_LIMIT


class _NeedsIntercept(Exception):
    """Internal: this group needs the pickler with a ``persistent_id`` hook; start again with it."""


class _RegionRef:
    """Stands for one memory candidate inside reduce tuples: ``_memory_reference(index)`` at load."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _plain_dtype(dtype: np.dtype[Any]) -> bool:
    return dtype.kind in _PLAIN_KINDS and not dtype.hasobject


class _RegionMemory(np.ndarray):
    """A 1-D uint8 array over one restored buffer: the base of every array rebuilt over it.

    Its own base is the store's buffer object, never an ndarray, so numpy does not collapse view
    chains past it; a later checkpoint of the restored kernel sees it as the memory owner and stores
    just this region instead of whatever larger blob the store had read it into.
    """


class _Candidate:
    """One memory owner met during a dump: an ndarray owning its data, a torch storage, a bytearray."""

    __slots__ = ("hi", "index", "kind", "lo", "ref", "source", "used_hi", "used_lo")

    def __init__(self, index: int, kind: str, lo: int, hi: int, source: Any) -> None:
        self.index = index
        self.kind = kind
        self.lo = lo
        self.hi = hi
        self.source = source
        self.used_lo = hi
        self.used_hi = lo
        self.ref = _RegionRef(index)

    def use(self, lo: int, hi: int) -> None:
        self.used_lo = min(self.used_lo, lo)
        self.used_hi = max(self.used_hi, hi)


def _address(a: np.ndarray[Any, Any]) -> int:
    return int(a.__array_interface__["data"][0])


def _extent(a: np.ndarray[Any, Any]) -> tuple[int, int]:
    """Address range [lo, hi) touched by the (non-empty) array ``a``."""
    lo = hi = _address(a)
    for n, stride in zip(a.shape, a.strides, strict=True):
        if stride < 0:
            lo += stride * (n - 1)
        else:
            hi += stride * (n - 1)
    return lo, hi + a.itemsize


def _flat_bytes(a: np.ndarray[Any, Any]) -> memoryview:
    """All of a contiguous array's memory as a 1-D byte view (no copy)."""
    plain = a.view(np.ndarray) if type(a) is not np.ndarray else a
    order: Literal["C", "F"] = "F" if plain.flags.f_contiguous and not plain.flags.c_contiguous else "C"
    flat = plain.reshape(-1, order=order).view(np.uint8)
    if _address(flat) != _address(a) or flat.nbytes != a.nbytes:  # pragma: no cover - numpy guarantees
        raise SerializationError("internal error: could not view an array's memory without copying")
    return memoryview(cast(Any, flat))


class _MemoryMap:
    """Collects memory owners during one dump and merges them into regions at the end."""

    def __init__(self, torch: Any, intercept: bool) -> None:
        self.torch = torch
        self.intercept = intercept
        self._candidates: list[_Candidate] = []
        self._by_key: dict[tuple[str, int], _Candidate] = {}
        self._keep: list[object] = []

    def _add(self, key: tuple[str, int], kind: str, lo: int, hi: int, source: Any) -> _Candidate:
        cand = self._by_key.get(key)
        if cand is None:
            cand = _Candidate(len(self._candidates), kind, lo, hi, source)
            self._candidates.append(cand)
            self._by_key[key] = cand
            self._keep.append(source)
        return cand

    def locate_bytearray(self, ba: bytearray) -> _Candidate:
        lo = 0
        if ba:
            probe = np.frombuffer(ba, dtype=np.uint8)
            lo = _address(probe)
            del probe  # release the export at once: the user may resize ``ba`` later
        cand = self._add(("bytearray", id(ba)), "bytearray", lo, lo + len(ba), ba)
        cand.use(cand.lo, cand.hi)
        return cand

    def locate_storage(self, s: Any) -> _RegionRef:
        lo = int(s.data_ptr())
        cand = self._add(("torch", int(s._cdata)), "torch", lo, lo + int(s.nbytes()), s)
        cand.use(cand.lo, cand.hi)
        return cand.ref

    def locate_array(self, a: np.ndarray[Any, Any]) -> tuple[_RegionRef, int] | None:
        """The region of ``a``'s memory owner and ``a``'s data offset in it, or None (use numpy's)."""
        cand = self._owner(a)
        if cand is None:
            return None
        lo, hi = _extent(a)
        if lo < cand.lo or hi > cand.hi:
            return None
        cand.use(lo, hi)
        return cand.ref, _address(a) - cand.lo

    def _owner(self, a: np.ndarray[Any, Any]) -> _Candidate | None:
        node: Any = a
        torch = self.torch
        while True:
            if isinstance(node, np.ndarray):
                base = node.base
                if base is None or type(node) is _RegionMemory:
                    return self._array_owner(node)
                node = base
            elif isinstance(node, memoryview):
                node = node.obj
            elif type(node) is bytearray:
                if not node:
                    return None
                if not self.intercept:
                    raise _NeedsIntercept  # the bytearray itself must become the shared region
                return self.locate_bytearray(node)
            elif torch is not None and isinstance(node, torch.Tensor):
                if node.device.type != "cpu":
                    return None
                s = node.untyped_storage()
                lo = int(s.data_ptr())
                return self._add(("torch", int(s._cdata)), "torch", lo, lo + int(s.nbytes()), s)
            elif type(node).__name__ == "DummyArray" and isinstance(getattr(node, "base", None), np.ndarray):
                node = node.base  # np.lib.stride_tricks.as_strided / sliding_window_view
            else:
                return None

    def _array_owner(self, owner: np.ndarray[Any, Any]) -> _Candidate | None:
        flags = owner.flags
        if owner.nbytes == 0 or not _plain_dtype(owner.dtype):
            return None
        if not (flags.c_contiguous or flags.f_contiguous):
            return None
        lo = _address(owner)
        return self._add(("array", id(owner)), "array", lo, lo + owner.nbytes, owner)

    def _export(self, cand: _Candidate) -> memoryview:
        if cand.kind == "array":
            return _flat_bytes(cand.source)
        if cand.kind == "bytearray":
            return memoryview(bytes(cand.source))  # a snapshot: never hold an export on the user's bytearray
        torch = self.torch
        size = int(cand.source.nbytes())
        u8 = torch.empty(0, dtype=torch.uint8).set_(cand.source, 0, (size,), (1,))
        return memoryview(u8.numpy())

    def finish(self) -> tuple[list[tuple[str, int | bytes, int]], list[tuple[int, int]], list[memoryview]]:
        """Merge candidates into regions: (region table, candidate -> (region, delta), buffers).

        A candidate whose address range lies inside another's joins that region. Sorting by start
        address (then by decreasing end) makes the candidate with the furthest end seen so far the
        only one to test: anything contained in an earlier region is contained in that one too.
        Partially overlapping owners (rare: two arrays over overlapping slices of foreign memory)
        become separate regions, so their aliasing is lost.
        """
        order = sorted(self._candidates, key=lambda c: (c.lo, -c.hi, c.kind != "bytearray"))
        groups: list[list[_Candidate]] = []
        best = -1
        for cand in order:
            if best >= 0 and cand.kind != "bytearray":
                top = groups[best][0]
                if top.lo <= cand.lo and cand.hi <= top.hi:
                    groups[best].append(cand)
                    continue
            groups.append([cand])
            if best < 0 or cand.hi > groups[best][0].hi:
                best = len(groups) - 1

        regions: list[tuple[str, int | bytes, int]] = []
        refs: list[tuple[int, int]] = [(0, 0)] * len(self._candidates)
        buffers: list[memoryview] = []
        for group in groups:
            top = group[0]
            used = [c for c in group if c.used_lo < c.used_hi]
            if top.kind == "bytearray":
                lo, hi = top.lo, top.hi
            elif not used:  # owners met but no object kept (an array that fell back to numpy)
                lo = hi = top.lo
            else:
                lo = min(c.used_lo for c in used)
                hi = max(c.used_hi for c in used)
                lo = max(top.lo, lo - lo % _ALIGN)
                hi = min(top.hi, hi + (-hi) % _ALIGN)
            data = self._export(top)[lo - top.lo : hi - top.lo]
            location: int | bytes
            if data.nbytes < INLINE_LIMIT:
                location = data.tobytes()
            else:
                location = len(buffers)
                buffers.append(data)
            kind = "bytearray" if top.kind == "bytearray" else "raw"
            for cand in group:
                refs[cand.index] = (len(regions), cand.lo - lo)
            regions.append((kind, location, data.nbytes))
        return regions, refs, buffers


def _region_memory(buffer: memoryview | bytearray | bytes) -> _RegionMemory:
    view = memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    if view.readonly:
        view = memoryview(bytearray(view))
    memory: _RegionMemory = np.ndarray.__new__(_RegionMemory, (view.nbytes,), np.uint8, buffer=view)
    return memory
