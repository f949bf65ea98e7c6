"""The group pickler: cloudpickle plus session globals by reference, memory regions, refusals.

Session functions keep ``user_ns`` as their globals (by reference, never by value); plain numpy arrays,
torch CPU storages and bytearrays become references into memory regions (:mod:`.regions`); pandas
objects keep numpy's copy semantics; ``__main__`` lookups, open files and memoryviews are refused.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections.abc import Callable
from typing import IO, Any, Final, cast

import cloudpickle
import numpy as np

from ..errors import SerializationError
from .rebuild import (
    _SESSION_NAMESPACE,
    _closed_file,
    _memory_reference,
    _rebuild_contiguous,
    _rebuild_ndarray,
    _rebuild_typed_storage,
    _rebuild_untyped_storage,
    _rebuild_with_grad,
    _set_scoped_state,
)
from .refusals import _NO_CULPRIT, _MainReference
from .regions import _MemoryMap, _NeedsIntercept, _plain_dtype, _RegionRef
from .stream_format import _MAIN_MODULES, _PROTOCOL, INLINE_LIMIT

_whichmodule: Callable[[object, str], str] = pickle.whichmodule  # type: ignore[attr-defined]

_INCOMPATIBLE_CLOUDPICKLE: Final = (
    f"cloudpickle {getattr(cloudpickle, '__version__', '?')} changed the internals nbmigrate.serialize "
    "relies on to keep session functions bound to the live namespace; pin cloudpickle to a tested "
    "version (3.1.x) or update nbmigrate"
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


class _ScopeEnd:
    """Marks the end of a pandas object's state in the stream (loads as an empty tuple)."""

    __slots__ = ()


_FILE_TYPES = (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.FileIO)


class _GroupPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no type hints
    """cloudpickle's pickler, plus: session globals by reference, memory regions, __main__ checks."""

    def __init__(self, file: IO[bytes], user_ns: dict[str, Any], memory: _MemoryMap, sink: _BufferSink) -> None:
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
                return _keep_class_namespace(obj, super().reducer_override(obj))
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


def _keep_class_namespace(cls: type, rv: Any) -> Any:
    """Give a class pickled by value its ``__qualname__`` and ``__slots__`` back at creation time.

    cloudpickle (3.1) creates the class from ``type_kwargs`` (``__module__`` only) and sets the rest
    of its namespace afterwards. Two entries of a class body only work at creation time:

    * ``__qualname__`` is not in ``cls.__dict__`` at all (the type keeps it), so cloudpickle drops it:
      a class made by ``def make(): class Local`` came back as ``Local`` instead of
      ``make.<locals>.Local``, in a new process only (in the same one cloudpickle hands back the live
      class). Its instances then changed type name and digest, so the restore reported a mismatch
      whenever the planner stored them rather than replaying their cell.
    * ``__slots__`` set afterwards has no effect: instances of the rebuilt class get a ``__dict__``
      and the slot descriptors are gone.

    ``__qualname__`` is only added where it differs from ``__name__`` (the default of a new class),
    so a top-level class pickles to the same bytes as before.
    """
    if not (
        type(rv) is tuple
        and len(rv) >= 2
        and rv[0] is cloudpickle.cloudpickle._make_skeleton_class
        and type(rv[1]) is tuple
        and len(rv[1]) >= 4
        and isinstance(rv[1][3], dict)
    ):
        return rv  # by reference, an enum (cloudpickle keeps its qualname), or not cloudpickle's reducer
    extra: dict[str, Any] = {}
    if cls.__qualname__ != cls.__name__:
        extra["__qualname__"] = cls.__qualname__
    slots = cls.__dict__.get("__slots__")
    # tuple subclasses (namedtuples) only ever have empty slots, and typing.NamedTuple refuses them
    if slots is not None and not issubclass(cls, tuple):
        extra["__slots__"] = slots
    if not extra:
        return rv
    args = list(rv[1])
    args[3] = {**args[3], **extra}
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
