"""Serializer: one co-variable group <-> one pickle stream plus out-of-band buffers.

A *group* is a set of names whose objects share sub-objects (DESIGN.md, "Co-variables"): they are
pickled in one stream so that sharing survives. This module turns a group into bytes at checkpoint
time (:func:`dump_group`, :func:`pack_parts`) and back into objects at restore time
(:func:`unpack_parts`, :func:`load_group`). It knows nothing about IPython, the store or the plan.

What a stored group looks like
------------------------------
``SerializedGroup.pickle`` is an envelope around two protocol-5 pickle streams::

    MAIN STREAM | HEADER STREAM | u64 header length | b"NBG1"

The main stream holds ``{name: object}``. The header (plain tuples, ints, str and bytes; read with an
unpickler that resolves no globals) lists the group's names and the *memory regions* of the group.
``SerializedGroup.buffers`` holds the region buffers first, then the out-of-band buffers that
pickle itself produced (pandas, pyarrow, ...). Every buffer is a zero-copy ``memoryview`` of the live
objects' memory: nothing large is copied at dump time, so the views must be written before the
kernel runs more code. Buffers under 64 KiB are kept in-band instead, so a dict of ten thousand
small arrays does not become ten thousand blob parts.

Memory regions: aliasing between arrays, tensors and bytearrays
---------------------------------------------------------------
Plain pickling copies every numpy view and every torch tensor separately (torch even copies the
whole storage once per view), so ``row = base[1]`` no longer aliases ``base`` after a restore.
Instead, every numpy array (exact ``np.ndarray`` with a plain dtype), every torch CPU storage and
every ``bytearray`` that arrays are built over is described as ``(memory region, offset, shape,
strides, dtype)``. Memory owners whose address
ranges contain one another (an array and its views; ``torch.from_numpy(a)`` and ``a``;
``np.frombuffer(raw)`` and ``raw``) become one region, stored once, and are rebuilt over one shared
buffer, so writes through one name stay visible through the others, exactly as in the source kernel.
Only the byte span actually used by the group is stored: a five-row view of an array that is no
longer reachable does not drag the whole base along.

Arrays inside pandas objects are the exception: pandas 3 has copy-on-write semantics (``df2 =
df.iloc[:3]`` shares memory with ``df`` only until one of them is written), and its reference
tracking is not pickled, so re-creating the sharing would make a write to ``df2`` leak into ``df``.
Inside a pandas object, arrays therefore go through numpy's own reducer (one copy per view, out of
band when contiguous; datetime arrays, which numpy keeps in-band, are sent out of band here).

Functions and classes defined in the session
--------------------------------------------
cloudpickle pickles objects whose ``__module__`` is ``"__main__"`` by value, whatever
``sys.modules["__main__"]`` is (it looks at ``__module__``, not at the module). We change two
things for functions whose ``__globals__`` is the
session namespace ``user_ns``:

* their globals dict is written as a reference (the global ``nbmigrate.serialize._SESSION_NAMESPACE``,
  which the unpickler's ``find_class`` resolves to the *target* kernel's ``user_ns``), so
  ``f.__globals__ is user_ns`` after a restore;
* the globals they reference are *not* pickled with them. A function reading a 300 MB global would
  otherwise drag a copy of it, and after the restore it would read that stale private copy instead
  of the live variable. The restorer binds every name, so the function finds them at call time.

References resolved by the unpickler go through ``find_class`` (called once per stream) rather than
``persistent_id``, which the C pickler would call for every object, ints and strs included (twice
the dump time of a dict of a million floats). ``persistent_id`` is needed only for objects pickle
never shows to a reducer (``dict``, ``bytearray``): the namespace held as a value (``g =
globals()``) and bytearrays that arrays are built over. A first pass without the hook stops as soon
as it meets either, and the group is pickled again with it.

This relies on cloudpickle internals, pinned by ``tests/unit/test_serialize.py`` so that an upgrade
that changes them fails loudly (and :func:`dump_group` raises rather than silently pickling globals):

* ``Pickler._function_getnewargs(func)`` returns ``(code, base_globals, name, argdefs, closure)``
  and ``_make_function`` builds the function over ``base_globals``;
* ``Pickler._dynamic_function_reduce(func)`` returns ``(_make_function, newargs, (state,
  slotstate), None, None, _function_setstate)`` where ``slotstate["__globals__"]`` is the dict of
  captured globals that ``_function_setstate`` merges into the function's globals;
* ``Pickler.reducer_override`` handles classes and functions, ``Pickler.dispatch_table`` the rest.

cloudpickle also writes ``__builtins__`` into the globals of every function it rebuilds;
:func:`load_group` puts back whatever ``user_ns["__builtins__"]`` was before.

Objects that can only be pickled by reference to ``__main__``
-------------------------------------------------------------
An ``lru_cache`` wrapper defined in the session reduces to its qualified name, i.e. "look up
``slow_square`` in ``__main__``". In the target kernel that lookup fails, or worse, silently binds
whatever ``slow_square`` is there. :func:`dump_group` refuses such objects (``reducer_override``
sees every reduction that returns a name), and the unpickler refuses any ``__main__`` lookup.

Trust
-----
Unpickling runs code. :func:`load_group` must only ever see bytes whose checksums and manifest HMAC
the store has verified (DESIGN.md, invariant 5).

Objects that are never stored
-----------------------------
cloudpickle would store an open text file as a ``StringIO`` holding the whole file, and a
``memoryview`` as ``bytes``: another type, and no longer tied to the file or buffer. Both are refused
at dump time, so their groups are recomputed by replaying the cells that made them (closed files are
rebuilt as closed files). Two things cloudpickle and torch drop are put back: the ``__slots__`` of a
class defined in the session (cloudpickle sets them after creating the class, where they have no
effect) and the ``.grad`` of a leaf tensor (torch's reducer leaves it out).

Limits
------
* ndarray subclasses (``np.memmap``, ``np.matrix``, masked arrays), object and ``StringDType``
  arrays go through numpy's reducer: copied, without memory shared with other objects.
* Arrays inside pandas objects do not share memory with arrays outside them after a restore (see
  above); nor do owners whose address ranges only partly overlap.
* Restored arrays do not own their memory (``ndarray.resize`` fails, as after any unpickling), and
  restored torch storages are not resizable (``t.resize_`` to a larger size fails).
* A strided view (``base[:, 0]``) spans most of its base, so most of the base is stored with it.
* A bytearray that arrays are built over is copied at dump time (it may be small; it must stay
  resizable for the user). Other buffers are live views: write them before the kernel runs code.
* The namespace held as a value is recognised at the top of a group, or wherever the namespace's
  ``__builtins__`` is a module (always, in IPython); elsewhere it would be pickled as a plain dict.
* cloudpickle maps a class to the live class with the same tracking id in the loading process.
  In a fresh kernel this gives one class for all groups; loading into the process that pickled
  the class (tests) updates that class in place instead of building a new one.
* Restored buffers are as aligned as the store leaves them: zero-copy views of a blob whose parts
  are not 64-byte aligned give unaligned arrays (correct, a little slower).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final, Literal, cast

import cloudpickle
import numpy as np
import zstandard

from .errors import SerializationError

__all__ = [
    "Part",
    "SerializedGroup",
    "dump_group",
    "load_group",
    "pack_parts",
    "unpack_parts",
]

_PROTOCOL: Final = 5
_FORMAT_VERSION: Final = 1
_MAGIC: Final = b"NBG1"
_TRAILER: Final = struct.Struct("<Q4s")

INLINE_LIMIT: Final = 64 * 1024
"""Buffers (and memory regions) smaller than this are written inside the pickle stream."""

_ALIGN: Final = 64
"""Stored region spans start and end on this alignment (within their owner), so that a store that
aligns buffer parts keeps restored arrays as aligned as the originals."""

# Compression policy (see pack_parts).
_SAMPLE_MIN: Final = 64 * 1024
_SAMPLE_SLICE: Final = 64 * 1024
_SAMPLE_RATIO: Final = 0.8
_KEEP_RATIO: Final = 0.9
_SMALL_MIN: Final = 4 * 1024
_THREADED_MIN: Final = 4 * 1024 * 1024

_PLAIN_KINDS: Final = frozenset("biufcmMSUV")
"""numpy dtype kinds whose items are plain bytes (no object pointers, no string arenas)."""

_MAIN_MODULES: Final = frozenset({"__main__", "__mp_main__"})

_whichmodule: Callable[[object, str], str] = pickle.whichmodule  # type: ignore[attr-defined]

_INCOMPATIBLE_CLOUDPICKLE: Final = (
    f"cloudpickle {getattr(cloudpickle, '__version__', '?')} changed the internals nbmigrate.serialize "
    "relies on to keep session functions bound to the live namespace; pin cloudpickle to a tested "
    "version (3.1.x) or update nbmigrate"
)


# -- public data ---------------------------------------------------------------------------------


@dataclass
class SerializedGroup:
    """One group, pickled: the envelope bytes and the buffers, in the order ``load_group`` wants them."""

    names: tuple[str, ...]
    pickle: bytes
    """Main pickle stream + header stream + trailer (see the module docstring)."""
    buffers: list[memoryview]
    """Region buffers then pickle's out-of-band buffers; zero-copy views of live memory, 1-D bytes."""
    seconds: float
    """Wall time spent pickling (both streams)."""

    @property
    def nbytes(self) -> int:
        return len(self.pickle) + sum(b.nbytes for b in self.buffers)


@dataclass(frozen=True)
class Part:
    """One piece of a stored group: the pickle envelope or one buffer, possibly compressed."""

    kind: Literal["pickle", "buffer"]
    codec: Literal["none", "zstd"]
    raw_length: int
    """Length of the uncompressed bytes."""
    payload: memoryview
    """The bytes as they are written: zstd frame, or the raw zero-copy view."""


# -- dump ----------------------------------------------------------------------------------------


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


class _DumpFailure(Exception):
    """Internal: pickling raised ``error`` while reducing ``culprit`` (or an unknown object)."""

    def __init__(self, error: Exception, culprit: object) -> None:
        super().__init__(error)
        self.error = error
        self.culprit = culprit


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


_NO_CULPRIT: Final = object()


class _MainReference(pickle.PicklingError):
    """An object would be pickled as "look ``name`` up in ``__main__``"."""

    def __init__(self, obj: object, name: str) -> None:
        super().__init__(f"{_type_name(obj)} `{name}` can only be pickled by reference to __main__")
        self.obj = obj
        self.name = name


def _type_name(obj: object) -> str:
    t = type(obj)
    module = getattr(t, "__module__", None)
    qualname = getattr(t, "__qualname__", t.__name__)
    if module in (None, "builtins") or module in _MAIN_MODULES:
        return str(qualname)
    return f"{module}.{qualname}"


def _names_text(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _failure_text(name: str, value: object, failure: _DumpFailure) -> str:
    exc, culprit = failure.error, failure.culprit
    if isinstance(exc, _MainReference):
        kind = f"{_type_name(exc.obj)} defined in the session"
        if exc.obj is value:
            return f"`{name}` ({kind}) can only be pickled by reference to __main__"
        return f"`{name}` holds `{exc.name}` ({kind}), which can only be pickled by reference to __main__"
    if culprit is _NO_CULPRIT or culprit is value:
        what = _type_name(value)
    else:
        what = f"{_type_name(culprit)} inside {_type_name(value)}"
    return f"cannot pickle `{name}` ({what}): {type(exc).__name__}: {exc}"


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


class _BufferSink:
    """``buffer_callback``: large buffers out of band (kept, zero copy), small ones in band.

    A separate object rather than a bound method, so the pickler is not in a reference cycle and
    its memo (which holds every temporary of the dump) is freed as soon as the dump ends.
    """

    __slots__ = ("buffers",)

    def __init__(self) -> None:
        self.buffers: list[memoryview] = []

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < INLINE_LIMIT:
            return True
        self.buffers.append(raw)
        return False


class _NeedsIntercept(Exception):
    """Internal: this group needs the pickler with a ``persistent_id`` hook; start again with it."""


class _SessionNamespace:
    """Stands for the kernel's namespace in pickles: the globals of session functions.

    It pickles as the global ``nbmigrate.serialize._SESSION_NAMESPACE``, which the unpickler of
    :func:`load_group` resolves to the target namespace (``find_class``). Loaded any other way, the
    functions fail to build instead of getting a wrong namespace.
    """

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_SESSION_NAMESPACE"


_SESSION_NAMESPACE: Final = _SessionNamespace()


def _memory_reference(index: int) -> tuple[Any, int]:
    """Resolves a memory reference; :func:`load_group` replaces it by one that knows the regions."""
    raise pickle.UnpicklingError("nbmigrate groups can only be loaded with nbmigrate.serialize.load_group")


class _RegionRef:
    """Stands for one memory candidate inside reduce tuples: ``_memory_reference(index)`` at load."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _ScopeEnd:
    """Marks the end of a pandas object's state in the stream (loads as an empty tuple)."""

    __slots__ = ()


_FILE_TYPES = (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.FileIO)


def _closed_file(kind: str, name: Any, mode: str) -> Any:
    """An already-closed file object of the same type, name and direction as the original.

    ``with open(p) as f:`` leaves ``f`` bound to a closed file: it holds no state but its name, and
    a restore that rebuilds it spares replaying the cell just for a dead handle.
    """
    writing = any(c in mode for c in "wax+")
    if kind == "FileIO":
        fh: Any = io.FileIO(os.devnull, "w" if writing else "r")
        raw = fh
    else:
        text = kind == "TextIOWrapper"
        fh = open(os.devnull, ("w" if writing else "r") + ("" if text else "b"))  # noqa: SIM115
        raw = fh.buffer.raw if text else fh.raw
    try:
        raw.name = name
    finally:
        fh.close()
    return fh


class _GroupPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no type hints
    """cloudpickle's pickler, plus: session globals by reference, memory regions, __main__ checks."""

    def __init__(
        self, file: IO[bytes], user_ns: dict[str, Any], memory: _MemoryMap, sink: _BufferSink
    ) -> None:
        super().__init__(file, protocol=_PROTOCOL, buffer_callback=sink)
        self._ns = user_ns
        # Reaching the namespace's builtins module means the namespace itself is being pickled.
        ns_builtins = user_ns.get("__builtins__")
        self._ns_builtins = ns_builtins if isinstance(ns_builtins, types.ModuleType) else _NO_CULPRIT
        self._memory = memory
        self._torch = memory.torch
        self._storage_types: tuple[type, ...] = ()
        if self._torch is not None:
            self._storage_types = (self._torch.UntypedStorage, self._torch.storage.TypedStorage)
        self._dispatch_get: Callable[[type], Any] = self.dispatch_table.get
        self._pandas_depth = 0
        self._is_pandas: dict[type, bool] = {}
        self._keep: list[object] = []
        self.culprit: object = _NO_CULPRIT

    # Session functions: globals by reference to user_ns, captured globals dropped.
    def _function_getnewargs(self, func: types.FunctionType) -> Any:
        newargs = super()._function_getnewargs(func)
        if func.__globals__ is not self._ns:
            return newargs
        if not (isinstance(newargs, tuple) and len(newargs) == 5 and isinstance(newargs[1], dict)):
            raise SerializationError(_INCOMPATIBLE_CLOUDPICKLE)
        code, _base_globals, name, argdefs, closure = newargs
        return (code, _SESSION_NAMESPACE, name, argdefs, closure)

    def _dynamic_function_reduce(self, func: types.FunctionType) -> Any:
        rv = super()._dynamic_function_reduce(func)
        if func.__globals__ is not self._ns:
            return rv
        ok = isinstance(rv, tuple) and len(rv) == 6 and isinstance(rv[2], tuple) and len(rv[2]) == 2
        slotstate = rv[2][1] if ok else None
        if not (isinstance(slotstate, dict) and isinstance(slotstate.get("__globals__"), dict)):
            raise SerializationError(_INCOMPATIBLE_CLOUDPICKLE)
        state = (rv[2][0], {**slotstate, "__globals__": {}})
        return (rv[0], rv[1], state, rv[3], rv[4], rv[5])

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        try:
            if t is np.ndarray:
                return self._reduce_ndarray(obj)
            if t in self._storage_types:
                return self._reduce_storage(obj)
            if t is types.FunctionType:
                return super().reducer_override(obj)
            if isinstance(obj, type):
                return _keep_slots(obj, super().reducer_override(obj))
            if t is _RegionRef:
                return (_memory_reference, (obj.index,))
            if t is _ScopeEnd:
                self._pandas_depth -= 1
                return (tuple, ())
            if obj is self._ns_builtins and not self._memory.intercept:
                raise _NeedsIntercept
            if t in _FILE_TYPES and obj.closed:
                return (_closed_file, (t.__name__, obj.name, obj.mode))
            if t in _FILE_TYPES and obj is not sys.stdout and obj is not sys.stderr:
                # cloudpickle would store a text file's whole content as a StringIO: another type, a
                # copy of the file in the checkpoint. Refuse, so the cells that opened it are replayed.
                raise pickle.PicklingError("an open file is rebuilt by replaying the cell that opened it")
            if t is memoryview:
                # cloudpickle's reducer turns a memoryview into bytes: another type, and no longer a
                # view of the buffer it came from. Refuse, so the group is recomputed instead.
                raise pickle.PicklingError("a memoryview cannot be pickled as a view of its buffer")
            # What the C pickler would do next, done here so that we see the result.
            reducer = self._dispatch_get(t)
            rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(_PROTOCOL)
            if isinstance(rv, str):
                self._check_global(obj, rv)
                return rv
            if self._torch is not None and type(rv) is tuple and len(rv) == 2 and isinstance(obj, self._torch.Tensor):
                rv = _keep_grad(obj, rv)
            if self._pandas_depth == 0 and type(rv) is tuple and self._pandas_type(t):
                return self._enter_pandas(rv)
            return rv
        except _NeedsIntercept:
            raise
        except Exception:
            if self.culprit is _NO_CULPRIT:
                self.culprit = obj
            raise

    def _check_global(self, obj: Any, name: str) -> None:
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str):
            module = _whichmodule(obj, name)
        if module in _MAIN_MODULES:
            raise _MainReference(obj, name)

    def _pandas_type(self, t: type) -> bool:
        known = self._is_pandas.get(t)
        if known is None:
            module = getattr(t, "__module__", None)
            known = isinstance(module, str) and (module == "pandas" or module.startswith("pandas."))
            self._is_pandas[t] = known
        return known

    def _enter_pandas(self, rv: tuple[Any, ...]) -> tuple[Any, ...]:
        """Reduce a pandas object so that the end of its state is visible in the stream.

        Everything pickled between this call and the ``_ScopeEnd`` marker belongs to the pandas
        object (pickle is depth-first), so arrays met meanwhile get numpy's copy semantics.
        """
        func, args, state, listitems, dictitems, setter = (*rv, None, None, None, None)[:6]
        marker = _ScopeEnd()
        self._keep.append(marker)
        self._pandas_depth += 1
        return (func, args, (setter, state, marker), listitems, dictitems, _set_scoped_state)

    def _reduce_ndarray(self, a: np.ndarray[Any, Any]) -> Any:
        if a.nbytes == 0 or not _plain_dtype(a.dtype):
            return NotImplemented
        if self._pandas_depth == 0:
            found = self._memory.locate_array(a)
            if found is not None:
                ref, offset = found
                return (
                    _rebuild_ndarray,
                    (ref, offset, a.shape, a.strides, a.dtype, bool(a.flags.writeable)),
                )
        if a.dtype.kind in "mM" and a.nbytes >= INLINE_LIMIT:
            # numpy pickles datetime arrays in band (they do not export a buffer): view them as int64.
            flags = a.flags
            if flags.c_contiguous or flags.f_contiguous:
                order = "C" if flags.c_contiguous else "F"
                raw = pickle.PickleBuffer(cast(Any, a.view(np.int64)))
                return (_rebuild_contiguous, (raw, a.dtype, a.shape, order, bool(flags.writeable)))
        return NotImplemented

    def _reduce_storage(self, s: Any) -> Any:
        torch = self._torch
        if type(s) is torch.UntypedStorage:
            if s.device.type != "cpu":
                return NotImplemented
            if s.nbytes() == 0:  # torch's own reducer cannot load an empty untyped storage back
                return (_rebuild_untyped_storage, (None, 0))
            return (_rebuild_untyped_storage, (self._memory.locate_storage(s), s.nbytes()))
        untyped = s._untyped_storage
        if untyped.device.type != "cpu":
            return NotImplemented
        return (_rebuild_typed_storage, (untyped, s.dtype))


def _keep_grad(tensor: Any, rv: tuple[Any, Any]) -> tuple[Any, Any]:
    """torch's reducer drops ``.grad``: carry a leaf tensor's gradient along (``opt.step()`` reads it)."""
    if not (tensor.is_leaf and tensor.requires_grad) or tensor.grad is None:
        return rv
    return (_rebuild_with_grad, (rv[0], rv[1], tensor.grad))


def _rebuild_with_grad(func: Callable[..., Any], args: tuple[Any, ...], grad: Any) -> Any:
    tensor = func(*args)
    tensor.grad = grad
    return tensor


def _keep_slots(cls: type, rv: Any) -> Any:
    """Give a class pickled by value its ``__slots__`` back at creation time.

    cloudpickle (3.1) creates the class from ``type_kwargs`` (``__module__`` only) and sets the rest
    of its namespace afterwards, when ``__slots__`` no longer has any effect: instances of the rebuilt
    class get a ``__dict__`` and the slot descriptors are gone.
    """
    slots = cls.__dict__.get("__slots__")
    # tuple subclasses (namedtuples) only ever have empty slots, and typing.NamedTuple refuses them
    if slots is None or issubclass(cls, tuple):
        return rv
    if not (type(rv) is tuple and len(rv) >= 2 and rv[0] is cloudpickle.cloudpickle._make_skeleton_class
            and type(rv[1]) is tuple and len(rv[1]) >= 4 and isinstance(rv[1][3], dict)):
        return rv
    args = list(rv[1])
    args[3] = {**args[3], "__slots__": slots}
    return (rv[0], tuple(args), *rv[2:])


class _InterceptingPickler(_GroupPickler):
    """The pickler with a ``persistent_id`` hook, for the objects pickle never shows to a reducer.

    ``dict`` and ``bytearray`` are pickled by C fast paths: only ``persistent_id`` sees them. The
    namespace becomes a reference to the target's namespace, and every bytearray a memory region,
    so that arrays built over it (``np.frombuffer(raw)``) still share it after a restore.
    """

    def persistent_id(self, obj: Any) -> Any:
        if obj is self._ns:
            return ("ns",)
        if type(obj) is bytearray:
            return ("bytearray", self._memory.locate_bytearray(obj).index)
        return None


def _plain_dtype(dtype: np.dtype[Any]) -> bool:
    return dtype.kind in _PLAIN_KINDS and not dtype.hasobject


# -- memory regions ------------------------------------------------------------------------------


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


# -- rebuilders (referenced by name from stored pickles: renaming them breaks old checkpoints) ----


def _rebuild_ndarray(
    region: tuple[Any, int],
    offset: int,
    shape: tuple[int, ...],
    strides: tuple[int, ...],
    dtype: np.dtype[Any],
    writeable: bool,
) -> np.ndarray[Any, Any]:
    memory, delta = region
    arr: np.ndarray[Any, Any] = np.ndarray(
        shape, dtype=dtype, buffer=memory, offset=delta + offset, strides=strides
    )
    if not writeable:
        arr.flags.writeable = False
    return arr


def _rebuild_contiguous(
    buffer: Any, dtype: np.dtype[Any], shape: tuple[int, ...], order: Literal["C", "F"], writeable: bool
) -> np.ndarray[Any, Any]:
    arr = np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)
    if not writeable:
        arr.flags.writeable = False
    return arr


def _rebuild_untyped_storage(region: tuple[Any, int] | None, nbytes: int) -> Any:
    import torch

    torch_module: Any = torch
    if region is None:
        return torch_module.UntypedStorage(0)
    memory, delta = region
    view = memoryview(memory).cast("B")[delta : delta + nbytes]
    return torch_module.frombuffer(view, dtype=torch_module.uint8).untyped_storage()


def _rebuild_typed_storage(untyped: Any, dtype: Any) -> Any:
    import torch

    storage_module: Any = torch.storage
    return storage_module.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _set_scoped_state(obj: Any, packed: tuple[Any, Any, Any]) -> None:
    """State setter of pandas objects reduced by ``_enter_pandas``: do what BUILD would have done."""
    setter, state, _marker = packed
    if setter is not None:
        setter(obj, state)
        return
    if state is None:
        return
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slotstate = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slotstate = state
    if state:
        inst_dict = obj.__dict__
        for key, value in state.items():
            inst_dict[sys.intern(key) if type(key) is str else key] = value
    if slotstate:
        for key, value in slotstate.items():
            setattr(obj, key, value)


# -- load ----------------------------------------------------------------------------------------


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
    (bytearray-backed, as :func:`unpack_parts` returns them): restored arrays and tensors are built
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
        raise SerializationError(
            f"cannot load {what}: expected {n_region_buffers + n_oob} buffers, got {len(buffers)}"
        )
    memories = [_region_memory(b) for b in buffers]
    region_objects: list[Any] = []
    for kind, location, nbytes in regions:
        source: Any = location if isinstance(location, bytes) else memories[location]
        if len(source) != nbytes:
            raise SerializationError(
                f"cannot load {what}: a memory region has {len(source)} bytes instead of {nbytes}"
            )
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


def _region_memory(buffer: memoryview | bytearray | bytes) -> _RegionMemory:
    view = memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    if view.readonly:
        view = memoryview(bytearray(view))
    memory: _RegionMemory = np.ndarray.__new__(_RegionMemory, (view.nbytes,), np.uint8, buffer=view)
    return memory


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
        if module == __name__:
            if name == "_SESSION_NAMESPACE":
                return self._ns
            if name == "_memory_reference":
                return self._memory_reference
        if module in _MAIN_MODULES:
            raise pickle.UnpicklingError(
                f"refusing to look up {module}.{name}: it would bind whatever the target kernel has there"
            )
        return super().find_class(module, name)


# -- parts: compression --------------------------------------------------------------------------


def pack_parts(
    group: SerializedGroup,
    *,
    compress: Literal["auto", "always", "never"] = "auto",
    level: int = 3,
) -> list[Part]:
    """The group as parts to write: the pickle envelope first, then each buffer, each maybe zstd'ed.

    ``compress="auto"`` compresses only when it pays. A part of 64 KiB or more is judged on a
    sample (three 64 KiB slices: start, middle, end); it is compressed whole (multithreaded for
    large parts) only if the sample shrinks below 80 %, and kept compressed only if the whole
    shrinks below 90 %. Random floats stay raw; zeros, ramps and small integers get compressed.
    A smaller part is compressed when it exceeds 4 KiB and shrinks. Raw parts are zero-copy views.
    """
    if compress not in ("auto", "always", "never"):
        raise ValueError(f"compress must be 'auto', 'always' or 'never', not {compress!r}")
    # Frames carry a content checksum (xxhash, cheap): a decoding bug or a corrupt frame that slipped
    # past the store's SHA-256 fails here instead of producing wrong bytes.
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
    threaded: zstandard.ZstdCompressor | None = None

    def compress_whole(view: memoryview) -> bytes:
        nonlocal threaded
        if view.nbytes < _THREADED_MIN:
            return compressor.compress(view)
        if threaded is None:
            threaded = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True)
        return threaded.compress(view)

    parts: list[Part] = []
    sources: list[tuple[Literal["pickle", "buffer"], memoryview]] = [("pickle", memoryview(group.pickle))]
    sources += [("buffer", b) for b in group.buffers]
    for kind, source in sources:
        view = _byte_view(source)
        n = view.nbytes
        packed: bytes | None = None
        if compress == "always" and n:
            packed = compress_whole(view)
        elif compress == "auto" and n >= _SAMPLE_MIN:
            if _sample_ratio(compressor, view) < _SAMPLE_RATIO:
                candidate = compress_whole(view)
                if len(candidate) < _KEEP_RATIO * n:
                    packed = candidate
        elif compress == "auto" and n > _SMALL_MIN:
            candidate = compressor.compress(view)
            if len(candidate) < n:
                packed = candidate
        if packed is None:
            parts.append(Part(kind=kind, codec="none", raw_length=n, payload=view))
        else:
            parts.append(Part(kind=kind, codec="zstd", raw_length=n, payload=memoryview(packed)))
    return parts


def _byte_view(buffer: memoryview | bytes | bytearray) -> memoryview:
    view = memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def _sample_ratio(compressor: zstandard.ZstdCompressor, view: memoryview) -> float:
    n = view.nbytes
    if n <= 3 * _SAMPLE_SLICE:
        sample = view.tobytes()
    else:
        middle = n // 2 - _SAMPLE_SLICE // 2
        sample = b"".join(
            (view[:_SAMPLE_SLICE], view[middle : middle + _SAMPLE_SLICE], view[n - _SAMPLE_SLICE :])
        )
    return len(compressor.compress(sample)) / len(sample)


def unpack_parts(parts: Sequence[Part], data: memoryview) -> tuple[memoryview, list[memoryview]]:
    """Undo :func:`pack_parts`: ``(pickle envelope, buffers)``, every buffer writable.

    Each part's ``payload`` holds its bytes, normally a slice of ``data`` (the verified blob, which
    the caller provides writable). zstd parts are decompressed into fresh bytearrays; raw parts are
    returned as zero-copy views (re-sliced from ``data`` if the payload view itself is read-only,
    copied only if it is read-only and not inside ``data``). Lengths are checked against
    ``raw_length``; a mismatch raises :class:`SerializationError`.
    """
    if not parts or parts[0].kind != "pickle" or any(p.kind != "buffer" for p in parts[1:]):
        raise SerializationError("a stored group is one pickle part followed by buffer parts")
    blob = _byte_view(data)
    out: list[memoryview] = []
    for i, part in enumerate(parts):
        payload = _byte_view(part.payload)
        if part.codec == "zstd":
            out.append(_decompress(payload, part.raw_length, i))
        elif part.codec == "none":
            if payload.nbytes != part.raw_length:
                raise SerializationError(
                    f"part {i}: {payload.nbytes} bytes stored raw but raw_length is {part.raw_length}"
                )
            out.append(_writable(payload, blob))
        else:
            raise SerializationError(f"part {i}: unknown codec {part.codec!r}")
    return out[0], out[1:]


def _decompress(payload: memoryview, raw_length: int, index: int) -> memoryview:
    target = bytearray(raw_length)
    view = memoryview(target)
    got = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
            while got < raw_length:
                n = reader.readinto(view[got:])
                if not n:
                    break
                got += n
            extra = reader.read(1)
    except zstandard.ZstdError as exc:
        raise SerializationError(f"part {index}: corrupt zstd data: {exc}") from exc
    if got != raw_length or extra:
        raise SerializationError(f"part {index}: decompresses to a different length than {raw_length}")
    return view


def _writable(payload: memoryview, blob: memoryview) -> memoryview:
    if not payload.readonly:
        return payload
    if payload.nbytes and not blob.readonly and blob.nbytes:
        start = _view_address(payload) - _view_address(blob)
        if start >= 0 and start + payload.nbytes <= blob.nbytes:
            return blob[start : start + payload.nbytes]
    return memoryview(bytearray(payload))


def _view_address(view: memoryview) -> int:
    return _address(np.frombuffer(view, dtype=np.uint8))
