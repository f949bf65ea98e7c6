"""Restore side: one verified envelope plus buffers back to ``{name: object}`` in the target namespace."""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from typing import IO, Any, Final, cast

from ..errors import SerializationError
from .rebuild import _PICKLED_MODULE
from .refusals import _names_text
from .regions import _region_memory
from .stream_format import _FORMAT_VERSION, _MAGIC, _MAIN_MODULES, _TRAILER

_MISSING: Final = object()


def load_group(
    pickle_bytes: bytes | memoryview,
    buffers: Sequence[memoryview | bytearray],
    user_ns: dict[str, Any],
) -> dict[str, Any]:
    """Unpickle one group: ``{name: object}``. Call it ONLY on bytes the store has verified.

    Unpickling executes code chosen by whoever wrote the bytes, so the store checks blob checksums
    and the manifest's HMAC before anything reaches this function (DESIGN.md, invariant 5).

    ``buffers`` are those of ``SerializedGroup.buffers``, in order; they should be writable
    (as :func:`unpack_parts` returns them): restored arrays and tensors are built
    over them without copies and are writable like the originals. A read-only buffer is copied.
    Functions defined in the session come back with ``__globals__ is user_ns``. The names are NOT
    bound in ``user_ns`` (the restorer decides when); ``user_ns["__builtins__"]`` is left as it was.
    Any failure raises :class:`SerializationError` naming the group's variables.
    """
    view = memoryview(pickle_bytes)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    main, header = _split_envelope(view)
    names, n_oob, regions, refs = header
    what = _names_text(names)
    n_region_buffers = sum(1 for _kind, loc, _n in regions if isinstance(loc, int))
    if len(buffers) != n_region_buffers + n_oob:
        raise SerializationError(f"cannot load {what}: expected {n_region_buffers + n_oob} buffers, got {len(buffers)}")
    memories = [_region_memory(b) for b in buffers]
    region_objects: list[Any] = []
    for kind, location, nbytes in regions:
        source: Any = location if isinstance(location, bytes) else memories[location]
        if len(source) != nbytes:
            raise SerializationError(f"cannot load {what}: a memory region has {len(source)} bytes instead of {nbytes}")
        if kind == "bytearray":
            region_objects.append(bytearray(source))
        elif isinstance(location, bytes):
            region_objects.append(_region_memory(bytearray(location)))
        else:
            region_objects.append(source)
    oob = [memoryview(cast(Any, m)) for m in memories[n_region_buffers:]]

    unpickler = _GroupUnpickler(io.BytesIO(main), user_ns, region_objects, refs, oob)
    builtins_before = user_ns.get("__builtins__", _MISSING)
    try:
        values = unpickler.load()
    except Exception as exc:
        raise SerializationError(f"cannot load {what}: {type(exc).__name__}: {exc}") from exc
    finally:
        if builtins_before is _MISSING:
            user_ns.pop("__builtins__", None)
        else:
            user_ns["__builtins__"] = builtins_before
    if not isinstance(values, dict) or tuple(values) != names:
        raise SerializationError(f"cannot load {what}: the stream does not hold these variables")
    return values


_Header = tuple[tuple[str, ...], int, list[tuple[str, int | bytes, int]], list[tuple[int, int]]]
"""names, number of pickle's own out-of-band buffers, regions (kind, location, size), references."""


def _split_envelope(view: memoryview) -> tuple[memoryview, _Header]:
    if view.nbytes < _TRAILER.size:
        raise SerializationError("not a stored nbmigrate group: too short")
    header_len, magic = _TRAILER.unpack(view[-_TRAILER.size :])
    if magic != _MAGIC or header_len > view.nbytes - _TRAILER.size:
        raise SerializationError("not a stored nbmigrate group: bad trailer")
    end = view.nbytes - _TRAILER.size
    try:
        raw = _HeaderUnpickler(io.BytesIO(view[end - header_len : end])).load()
    except Exception as exc:
        raise SerializationError(f"unreadable group header: {type(exc).__name__}: {exc}") from exc
    return view[: end - header_len], _check_header(raw)


def _check_header(raw: Any) -> _Header:
    def bad(why: str) -> SerializationError:
        return SerializationError(f"malformed group header: {why}")

    if not (isinstance(raw, tuple) and len(raw) == 5):
        raise bad("not a 5-tuple")
    version, names, n_oob, regions, refs = raw
    if version != _FORMAT_VERSION:
        raise bad(f"format version {version!r}, this nbmigrate reads {_FORMAT_VERSION}")
    if not (isinstance(names, tuple) and all(type(n) is str for n in names)):
        raise bad("names")
    if type(n_oob) is not int or n_oob < 0:
        raise bad("buffer count")
    checked_regions: list[tuple[str, int | bytes, int]] = []
    n_buffers = 0
    for region in regions if isinstance(regions, tuple) else ():
        if not (isinstance(region, tuple) and len(region) == 3 and region[0] in ("raw", "bytearray")):
            raise bad("region")
        kind, location, nbytes = region
        if type(location) is int:
            if location != n_buffers:
                raise bad("region buffer order")
            n_buffers += 1
        elif type(location) is not bytes:
            raise bad("region location")
        if type(nbytes) is not int or nbytes < 0:
            raise bad("region size")
        checked_regions.append((kind, location, nbytes))
    if not isinstance(regions, tuple):
        raise bad("regions")
    checked_refs: list[tuple[int, int]] = []
    for ref in refs if isinstance(refs, tuple) else ():
        if not (
            isinstance(ref, tuple)
            and len(ref) == 2
            and type(ref[0]) is int
            and type(ref[1]) is int
            and 0 <= ref[0] < len(checked_regions)
        ):
            raise bad("memory reference")
        checked_refs.append((ref[0], ref[1]))
    if not isinstance(refs, tuple):
        raise bad("references")
    return names, n_oob, checked_regions, checked_refs


class _HeaderUnpickler(pickle.Unpickler):
    """The header holds plain data only: refuse every global."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the group header may not reference {module}.{name}")


class _GroupUnpickler(pickle.Unpickler):
    def __init__(
        self,
        file: IO[bytes],
        user_ns: dict[str, Any],
        regions: list[Any],
        refs: list[tuple[int, int]],
        buffers: list[memoryview],
    ) -> None:
        super().__init__(file, buffers=buffers)
        self._ns = user_ns
        self._regions = regions
        self._refs = refs

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is tuple and pid:
            if pid == ("ns",):
                return self._ns
            if pid[0] == "bytearray" and len(pid) == 2 and type(pid[1]) is int:
                memory, delta = self._memory_reference(pid[1])
                if type(memory) is bytearray and delta == 0:
                    return memory
        raise pickle.UnpicklingError(f"unknown persistent reference {pid!r}")

    def _memory_reference(self, index: int) -> tuple[Any, int]:
        if type(index) is not int or not 0 <= index < len(self._refs):
            raise pickle.UnpicklingError(f"memory reference {index!r} out of range")
        region, delta = self._refs[index]
        return (self._regions[region], delta)

    def find_class(self, module: str, name: str) -> Any:
        if module == _PICKLED_MODULE:
            if name == "_SESSION_NAMESPACE":
                return self._ns
            if name == "_memory_reference":
                return self._memory_reference
        if module in _MAIN_MODULES:
            raise pickle.UnpicklingError(
                f"refusing to look up {module}.{name}: it would bind whatever the target kernel has there"
            )
        return super().find_class(module, name)
