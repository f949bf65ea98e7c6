"""Checkpoint side: one group of objects to one pickle envelope plus zero-copy buffers."""

from __future__ import annotations

import io
import pickle
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SerializationError
from .pickler import _BufferSink, _GroupPickler, _InterceptingPickler
from .refusals import _DumpFailure, _failure_text, _names_text
from .regions import _MemoryMap, _NeedsIntercept
from .stream_format import _FORMAT_VERSION, _MAGIC, _PROTOCOL, _TRAILER


@dataclass
class SerializedGroup:
    """One group, pickled: the envelope bytes and the buffers, in the order ``load_group`` wants them."""

    names: tuple[str, ...]
    pickle: bytes
    """Main pickle stream + header stream + trailer (see the package docstring)."""
    buffers: list[memoryview]
    """Region buffers then pickle's out-of-band buffers; zero-copy views of live memory, 1-D bytes."""
    seconds: float
    """Wall time spent pickling (both streams)."""

    @property
    def nbytes(self) -> int:
        return len(self.pickle) + sum(b.nbytes for b in self.buffers)


def dump_group(objects: Mapping[str, Any], user_ns: dict[str, Any]) -> SerializedGroup:
    """Pickle the objects of one group together (protocol 5, large buffers out of band, no copies).

    ``user_ns`` is the kernel's namespace: functions whose ``__globals__`` is ``user_ns`` are stored
    without their globals and re-bound to the target namespace at load, and a reference to
    ``user_ns`` itself (``g = globals()``) is stored as a reference to the target's namespace.

    Raises :class:`SerializationError` naming the variable(s) that cannot be pickled and the type of
    the object that failed, e.g. "cannot pickle `squares` (generator): TypeError: cannot pickle
    'generator' object". When the group as a whole fails, each name is tried alone to find which.
    Nothing is modified either way.
    """
    names = tuple(objects)
    for name in names:
        if type(name) is not str:
            raise SerializationError(f"group names must be str, got {name!r}")
    try:
        return _dump(names, objects, user_ns)
    except _DumpFailure as failure:
        raise _explain_failure(names, objects, user_ns, failure) from failure.error


def _dump(names: tuple[str, ...], objects: Mapping[str, Any], user_ns: dict[str, Any]) -> SerializedGroup:
    t0 = time.perf_counter()
    top = {name: objects[name] for name in names}
    # The fast pickler has no persistent_id hook (the C pickler would call it for every int and
    # str: twice the time on a dict of a million floats). It stops at the first sign that the hook
    # is needed (a bytearray under an array, the namespace pickled as a value), and we start over.
    intercept = any(value is user_ns for value in top.values())
    while True:
        memory = _MemoryMap(sys.modules.get("torch"), intercept)
        out = io.BytesIO()
        sink = _BufferSink()
        pickler_class = _InterceptingPickler if intercept else _GroupPickler
        pickler = pickler_class(out, user_ns, memory, sink)
        try:
            pickler.dump(top)
            break
        except _NeedsIntercept:
            intercept = True
        except SerializationError:
            raise
        except Exception as exc:
            raise _DumpFailure(exc, pickler.culprit) from exc
        finally:
            pickler.clear_memo()
    regions, refs, region_buffers = memory.finish()
    header = (_FORMAT_VERSION, names, len(sink.buffers), tuple(regions), tuple(refs))
    header_bytes = pickle.dumps(header, protocol=_PROTOCOL)
    out.write(header_bytes)
    out.write(_TRAILER.pack(len(header_bytes), _MAGIC))
    blob = out.getvalue()
    return SerializedGroup(
        names=names,
        pickle=blob,
        buffers=region_buffers + sink.buffers,
        seconds=time.perf_counter() - t0,
    )


def _explain_failure(
    names: tuple[str, ...], objects: Mapping[str, Any], user_ns: dict[str, Any], failure: _DumpFailure
) -> SerializationError:
    """Name the variable(s) responsible for a failure: alone if the group has one name, else by trial."""
    if len(names) == 1:
        return SerializationError(_failure_text(names[0], objects[names[0]], failure))
    failures: list[str] = []
    for name in names:
        try:
            _dump((name,), objects, user_ns)
        except _DumpFailure as single:
            failures.append(_failure_text(name, objects[name], single))
    if failures:
        return SerializationError("; ".join(failures))
    exc = failure.error
    return SerializationError(
        f"cannot pickle {_names_text(names)} together (each pickles alone): {type(exc).__name__}: {exc}"
    )
