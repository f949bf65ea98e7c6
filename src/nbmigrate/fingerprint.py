"""Fingerprints of live values: content digest, identity, shared memory — in one walk.

The monitor needs three answers about every variable a cell may have touched, and it needs them after
every cell, so they come from a single walk over the object graph reachable from the value:

* **Did it change?**  A content digest (``xxh3_128``) plus the identities of the mutable objects
  reached plus the memory ranges of the raw buffers reached. :func:`changed` compares two fingerprints
  of one name taken before and after a cell.
* **Does it share state with another variable?**  Two names whose ``ids`` intersect or whose
  ``spans`` overlap are *co-variables* (see :mod:`nbmigrate.covariables`): they must be stored or
  recomputed together, or aliasing is lost.
* **Is the restored value the same?**  The digest depends on content only, never on memory addresses,
  ``id()`` values or ``PYTHONHASHSEED``, so the digest taken at checkpoint time can be compared with the
  digest of the value rebuilt in another process (DESIGN.md invariant 2).

Design choices, and why
-----------------------
*One explicit stack, no recursion.*  Notebook values can be deep (linked structures, nested JSON); the
walk is an iterative pre-order traversal, so Python's recursion limit never truncates it.  The digest
is a single stream of self-delimiting tokens (type tag, lengths, payload) fed to one hasher, in visit
order.  Only sets need sub-digests (their iteration order depends on the hash seed): each element is
hashed separately and the element digests are sorted.

*Back references.*  A mutable object met a second time is encoded as "the n-th object of this walk",
so cycles terminate, ``[a, a]`` and ``[a, copy(a)]`` differ (aliasing is part of the value, DESIGN.md
invariant 1) and the digest stays deterministic.  Immutable containers (tuple, frozenset) are
re-encoded by value, so constant folding or interning never changes a digest.

*Persistent identities only.*  ``ids`` lists only objects reached through references the program
itself holds (container elements, an instance's real ``__dict__``/slots, function defaults and closure
cells, ``ndarray.base``, ``gc.get_referents`` of objects without a better handler...).  Temporaries the
walk creates (results of ``__reduce_ex__``/``__getstate__``, array views, ``tolist()``) are walked for
content in *content-only* mode and never recorded: their ids would differ on every walk (making every
value look mutated) and could collide with ids of other values.  When content-only mode meets an object
that is a real referent of the object being reduced, it switches back to recording.  Immutable values,
modules, library classes and functions are never recorded, nor are *library singletons* and anything
reached through them: module-level attributes of imported modules other than ``__main__`` and the
elements of module-level containers (``matplotlib.rcParams`` values), and class attributes of library
classes (cached paths, default objects).  So ``x = 5; y = 5``, two lists holding ``pd.NA``, or two
figures sharing rcParams defaults are not linked.

*Buffers are hashed, not walked.*  numpy, torch, pyarrow, pandas and polars data are hashed through
the buffer protocol with zero copies (bounded-size chunks for non-contiguous views), so the cost of a
large array is one pass of xxh3 (> 10 GB/s).  Their memory ranges become ``spans``: a view, a
transposition, a Series taken from a DataFrame, ``torch.from_numpy`` all overlap the original.

*Lazy libraries.*  Optional libraries are looked up in ``sys.modules`` only: fingerprinting never
imports numpy, pandas, torch, pyarrow or polars on its own.

*Never raise.*  Any handler that fails turns that sub-object *opaque*: the digest becomes ``None``
("cannot prove unchanged") but the walk continues so identities and spans are still collected.

Cost
----
Linear in the reachable graph.  Each Python object costs 1-4 µs; lists, tuples and dicts of plain atoms
(str/int/float/bytes/None/bool) are encoded in bulk through :mod:`marshal` (100,000 short strings:
~15 ms); numeric buffers cost one pass of xxh3 (300 MB: ~20 ms).  The first call after new modules are
imported scans their module dictionaries for library singletons (~45 ms with numpy, pandas, torch,
sklearn, matplotlib, polars and pyarrow imported: ~2,700 modules, ~32,000 objects pinned; later calls
only scan the modules imported since).

Limitations
-----------
* Layout independence: numpy content is hashed in C order and pandas column by column, so strides and
  block layout never matter; Arrow data (pyarrow, pandas ``str``/``pyarrow`` columns, polars) is hashed
  independently of chunking and slicing for fixed-width, boolean and string/binary types, but nested
  and dictionary types are hashed chunk by chunk.  Bytes under null slots and struct padding are hashed
  as they are (Arrow builders zero them).
* Objects pickled through ``__reduce_ex__`` contribute the identities of their real referents that
  appear in the reduce output only; what their ``__getstate__`` leaves out is not an identity.
* User data kept in an imported module (``import mydata; df = mydata.df``) counts as library state:
  its content is hashed, its identity never links two names.
* Lazily filled caches in ``__dict__`` (``functools.cached_property``) are part of the state: the
  first access makes the value look changed (conservative).  Known library caches are left out
  (``_CACHE_ATTRS``, pandas dtypes); matplotlib id-keyed state is rewritten (``_STATE_FIXERS``).
* A pyplot figure's digest changes when it is unpickled into a session that already has figures (its
  figure number); drawing a figure creates artists (ticks), so it looks changed after a draw.
* Spans of non-CPU tensors are not recorded (device memory is another address space); their bytes are
  copied to the host in full to be hashed.  A memory-mapped array is hashed by reading all its pages.
* The budget counts Python objects and container elements, not bytes: a reached 10 GB array is hashed
  in full (bounded by memory bandwidth, ~1 s).
* Without pyarrow imported, polars data is hashed through its IPC serialisation (a copy) and has no
  spans.
"""

from __future__ import annotations

import collections
import contextlib
import copyreg
import enum
import functools
import gc
import io
import itertools
import marshal
import pickle
import struct
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import xxhash

__all__ = ["Fingerprint", "FingerprintSession", "changed", "fingerprint"]

_FORMAT = b"nbmigrate-fingerprint/1\x00"
_CHUNK_BYTES = 1 << 22
"""Upper bound of the temporary copy made when hashing a non-contiguous array (4 MiB)."""
_MARSHAL_CHUNK = 1 << 15
"""Elements per marshal call on the bulk path (bounds the temporary bytes object)."""
_MAX_OPAQUE = 10


@dataclass(frozen=True)
class Fingerprint:
    """What one walk over a value's object graph found.

    ``digest`` is the hex ``xxh3_128`` of the value's content (``None`` when the walk reached
    something opaque or stopped at the budget); ``ids`` the ``id()`` of every persistent mutable
    object reached; ``spans`` the merged ``[start, end)`` address ranges of the raw buffers reached;
    ``opaque`` the type names of objects that could neither be walked nor hashed (at most 10);
    ``complete`` is False when the budget stopped the walk; ``nbytes`` an estimate of the value's
    size (buffer bytes, shared memory counted once, plus ``sys.getsizeof`` of the other objects);
    ``modules`` the third-party top-level packages whose types or functions were reached (standard
    library, ``builtins`` and ``__main__`` excluded); ``session_types`` the qualified names of the
    classes and functions defined in the session (``__module__ == "__main__"``) that were reached.
    """

    digest: str | None
    ids: frozenset[int]
    spans: tuple[tuple[int, int], ...]
    opaque: tuple[str, ...]
    complete: bool
    nbytes: int
    modules: frozenset[str]
    session_types: frozenset[str]


def changed(before: Fingerprint, after: Fingerprint) -> bool:
    """The mutation rule: True unless the two fingerprints prove the value is unchanged.

    Unchanged means: both digests known and equal (same content), same identities (``a[0] =
    copy_of_old`` keeps the content but changes which object is shared with whom) and same buffers.
    """
    if before.digest is None or after.digest is None:
        return True
    return before.digest != after.digest or before.ids != after.ids or before.spans != after.spans


class FingerprintSession:
    """Keeps every temporary created during a pass alive, so ids never collide within the pass.

    Walking a value creates temporaries (``__reduce_ex__`` results, state copies, extension-array
    views) that are memoised by ``id()`` during the walk.  CPython reuses an id as soon as its object
    dies; holding the temporaries until the end of the pass guarantees that no id seen while
    fingerprinting one variable is reused by another object while fingerprinting the next one.
    Use one session per monitoring pass and close it before user code runs again (held temporaries
    may pin memory or buffer exports)::

        with FingerprintSession() as s:
            fps = {name: fingerprint(ns[name], session=s) for name in candidates}
    """

    def __init__(self) -> None:
        self._keep: list[Any] = []

    def __enter__(self) -> FingerprintSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the temporaries held since the session was opened."""
        self._keep.clear()

    @property
    def held(self) -> int:
        """Number of temporaries currently held alive."""
        return len(self._keep)


# --------------------------------------------------------------------------------------------------
# Token helpers

_pack_d = struct.Struct("<d").pack
_pack_dd = struct.Struct("<dd").pack


def _len(n: int) -> bytes:
    return n.to_bytes(8, "little")


def _str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return _len(len(b)) + b


def _tok_none(o: Any) -> bytes:
    return b"N"


def _tok_bool(o: Any) -> bytes:
    return b"T" if o else b"F"


def _tok_int(o: Any) -> bytes:
    b: bytes = o.to_bytes((o.bit_length() + 8) // 8, "little", signed=True)
    return b"i" + _len(len(b)) + b


def _tok_float(o: Any) -> bytes:
    return b"f" + _pack_d(o)


def _tok_complex(o: Any) -> bytes:
    return b"c" + _pack_dd(o.real, o.imag)


def _tok_str(o: Any) -> bytes:
    return b"s" + _str(o)


def _tok_bytes(o: Any) -> bytes:
    return b"b" + _len(len(o)) + bytes(o)


_ATOMS: dict[type, Callable[[Any], bytes]] = {
    type(None): _tok_none,
    bool: _tok_bool,
    int: _tok_int,
    float: _tok_float,
    complex: _tok_complex,
    str: _tok_str,
    bytes: _tok_bytes,
}
_MARSHALABLE = frozenset(_ATOMS)
_ATOM_BASES: tuple[type, ...] = (int, float, complex, str, bytes)


def _noop(b: Any) -> None:
    return None


def _qual(t: Any) -> str:
    mod = getattr(t, "__module__", None)
    qn = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or "?"
    if not isinstance(qn, str):
        qn = "?"
    if not isinstance(mod, str) or mod == "builtins":
        return qn
    return f"{mod}.{qn}"


def _is_session_module(mod: object) -> bool:
    return mod is None or mod == "__main__"


_EXCLUDED_MODULES = frozenset({"builtins", "__main__", *sys.stdlib_module_names})


class _Op:
    """A scheduled action on the walk stack (distinguished from user objects by its exact type)."""

    __slots__ = ("arg", "fn")

    def __init__(self, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.fn = fn
        self.arg = arg


# --------------------------------------------------------------------------------------------------
# Library singletons: ids never recorded


_NOT_SINGLETON_TYPES = frozenset(
    {
        type(None), bool, int, float, complex, str, bytes, tuple, frozenset, type,
        types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
        types.WrapperDescriptorType, types.MethodDescriptorType, types.GetSetDescriptorType,
        types.MemberDescriptorType, types.ClassMethodDescriptorType, staticmethod, classmethod,
        property,
    }
)  # fmt: skip


_SCAN_ELEMENTS = 10_000


def _add_elements(add: Callable[[Any], None], v: Any) -> None:
    """Also count as library state the elements of a module- or class-level container (one level:
    ``matplotlib.rcParams`` values are shared by every artist created from them)."""
    t = type(v)
    try:
        if issubclass(t, dict):
            items: Any = dict.values(v)
        elif issubclass(t, (list, tuple, set, frozenset)):
            items = v
        else:
            return
        for x in itertools.islice(items, _SCAN_ELEMENTS):
            if type(x) not in _NOT_SINGLETON_TYPES:
                add(x)
    except Exception:
        return


class _Registry:
    """Process-wide, lazily refreshed knowledge about imported libraries.

    ``singletons`` holds the ids of module-level attribute values of every imported module except
    ``__main__`` (refreshed when ``len(sys.modules)`` changes; only newly imported modules are
    scanned) and the ids of class attribute values of the library classes met during walks.
    ``stops`` holds the ids of module ``__dict__``s, which are never walked.  The objects behind
    ``singletons`` are pinned (strong references): a library that rebinds an attribute would
    otherwise free the old object and let a user object reuse its id, silently unrecorded.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nmods = -1
        self.scanned: set[str] = set()
        self.singletons: set[int] = set()
        self.pinned: list[Any] = []
        self.stops: set[int] = set()
        self.classes: dict[int, weakref.ref[type]] = {}

    def _add(self, v: Any) -> None:
        i = id(v)
        if i not in self.singletons:
            self.singletons.add(i)
            self.pinned.append(v)

    def refresh(self) -> None:
        if len(sys.modules) == self.nmods:
            return
        with self.lock:
            mods = list(sys.modules.items())
            self.nmods = len(mods)
            add = self._add
            skip = _NOT_SINGLETON_TYPES
            main = getattr(sys.modules.get("__main__"), "__dict__", None)
            for name, mod in mods:
                if name in self.scanned or name == "__main__":
                    continue
                try:
                    d = object.__getattribute__(mod, "__dict__")
                except Exception:
                    continue
                # The session's namespace can be registered under other names too (torch and
                # multiprocessing alias it as __mp_main__): its values are user data, never singletons.
                if type(d) is not dict or d is main or d.get("__name__") == "__main__":
                    continue
                self.scanned.add(name)
                self.stops.add(id(d))
                for v in list(d.values()):
                    if type(v) not in skip:
                        add(v)
                        _add_elements(add, v)

    def scan_class(self, t: type) -> None:
        r = self.classes.get(id(t))
        if r is not None and r() is t:
            return
        with self.lock:
            try:
                self.classes[id(t)] = weakref.ref(t)
            except TypeError:
                return
            add = self._add
            skip = _NOT_SINGLETON_TYPES
            for k in t.__mro__:
                if k is object or _is_session_module(getattr(k, "__module__", None)):
                    continue
                try:
                    vals = list(k.__dict__.values())
                except Exception:
                    continue
                for v in vals:
                    if type(v) not in skip:
                        add(v)
                        _add_elements(add, v)


_REG = _Registry()


# --------------------------------------------------------------------------------------------------
# Type resolution: which handler, and whether instances are mutable (recordable)

_TYPE_CACHE: dict[type, tuple[str, bool]] = {}

_EXACT: dict[type, tuple[str, bool]] = {
    list: ("list", True),
    tuple: ("tuple", False),
    dict: ("dict", True),
    set: ("set", True),
    frozenset: ("set", False),
    collections.deque: ("deque", True),
    collections.OrderedDict: ("dict", True),
    collections.defaultdict: ("dict", True),
    bytearray: ("bytearray", True),
    memoryview: ("memoryview", True),
    range: ("range", False),
    slice: ("slice", False),
    type(Ellipsis): ("named", False),
    type(NotImplemented): ("named", False),
    types.FunctionType: ("function", True),
    types.MethodType: ("method", False),
    types.BuiltinFunctionType: ("builtin", False),
    types.MethodWrapperType: ("builtin", False),
    types.WrapperDescriptorType: ("descriptor", False),
    types.MethodDescriptorType: ("descriptor", False),
    types.ClassMethodDescriptorType: ("descriptor", False),
    types.GetSetDescriptorType: ("descriptor", False),
    types.MemberDescriptorType: ("descriptor", False),
    types.ModuleType: ("module", False),
    types.CodeType: ("code", False),
    types.CellType: ("cell", True),
    types.MappingProxyType: ("mappingproxy", False),
    functools.partial: ("partial", True),
    staticmethod: ("wrapped", False),
    classmethod: ("wrapped", False),
    property: ("property", False),
}


def _opaque_types() -> tuple[type, ...]:
    out: list[type] = [
        types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType, types.FrameType,
        types.TracebackType, weakref.ReferenceType, weakref.ProxyType, weakref.CallableProxyType,
        type(threading.Lock()), type(threading.RLock()), io.IOBase,
    ]  # fmt: skip
    for modname, names in (
        ("socket", ("socket",)),
        ("sqlite3", ("Connection", "Cursor", "Blob")),
        ("mmap", ("mmap",)),
        ("select", ("epoll", "poll", "kqueue", "devpoll")),
        ("ssl", ("SSLContext", "SSLObject")),
        ("_asyncio", ("Future", "Task")),
        ("contextvars", ("Context",)),
    ):
        mod = sys.modules.get(modname)
        for n in names:
            c = getattr(mod, n, None) if mod is not None else None
            if isinstance(c, type):
                out.append(c)
    return tuple(out)


def _custom_reduce(t: type) -> bool:
    try:
        return (
            t in copyreg.dispatch_table
            or getattr(t, "__reduce_ex__", None) is not object.__reduce_ex__
            or getattr(t, "__reduce__", None) is not object.__reduce__
            or getattr(t, "__getstate__", object.__getstate__) is not object.__getstate__
            or hasattr(t, "__getnewargs_ex__")
            or hasattr(t, "__getnewargs__")
        )
    except Exception:
        return True


_HEAPTYPE = 1 << 9


def _plain_python_class(t: type) -> bool:
    """True when every class in the MRO (but ``object``) is defined in Python: no hidden C state."""
    try:
        return all(k.__flags__ & _HEAPTYPE for k in t.__mro__[:-1])
    except Exception:
        return False


def _immutable_value_types() -> tuple[type, ...]:
    out: list[type] = []
    for modname, names in (
        ("datetime", ("date", "time", "timedelta", "tzinfo")),
        ("decimal", ("Decimal",)),
        ("fractions", ("Fraction",)),
        ("uuid", ("UUID",)),
        ("pathlib", ("PurePath",)),
        ("re", ("Pattern", "Match")),
        ("ipaddress", ("IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network")),
    ):
        mod = sys.modules.get(modname)
        for n in names:
            c = getattr(mod, n, None) if mod is not None else None
            if isinstance(c, type):
                out.append(c)
    return tuple(out)


def _resolve(t: type) -> tuple[str, bool]:
    hit = _EXACT.get(t)
    if hit is not None:
        return hit
    if issubclass(t, type):
        return ("type", False)
    if issubclass(t, enum.Enum):
        return ("enum", False)
    if issubclass(t, (io.StringIO, io.BytesIO)):
        return ("reduce", True)
    if issubclass(t, _opaque_types()):
        return ("opaque", True)
    np = sys.modules.get("numpy")
    if np is not None:
        if issubclass(t, np.ndarray):
            return ("ndarray", True)
        if issubclass(t, np.generic):
            return ("npscalar", False)
        if issubclass(t, np.dtype):
            return ("npdtype", False)
    torch = sys.modules.get("torch")
    if torch is not None:
        if issubclass(t, torch.Tensor):
            return ("tensor", True)
        if t in (torch.dtype, torch.device, torch.layout, torch.memory_format):
            return ("bystr", False)
    pd = sys.modules.get("pandas")
    if pd is not None:
        try:
            if issubclass(t, pd.DataFrame):
                return ("pdframe", True)
            if issubclass(t, pd.Series):
                return ("pdseries", True)
            if issubclass(t, pd.Index):
                return ("pdindex", False)
            if issubclass(t, pd.arrays.ArrowExtensionArray):
                return ("pdarrow", True)
            if issubclass(t, pd.api.extensions.ExtensionDtype):
                return ("pddtype", False)
        except AttributeError:
            pass
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        try:
            if issubclass(t, pa.ChunkedArray):
                return ("pachunked", False)
            if issubclass(t, pa.Array):
                return ("paarray", False)
            if issubclass(t, (pa.Table, pa.RecordBatch)):
                return ("patable", False)
            if issubclass(t, pa.Buffer):
                return ("pabuffer", False)
            if issubclass(t, (pa.DataType, pa.Field, pa.Schema)):
                return ("bystr", False)
            if issubclass(t, pa.Scalar):
                return ("pascalar", False)
        except AttributeError:
            pass
    pl = sys.modules.get("polars")
    if pl is not None:
        try:
            if issubclass(t, pl.DataFrame):
                return ("pldf", True)
            if issubclass(t, pl.Series):
                return ("plseries", True)
            if issubclass(t, pl.LazyFrame):
                return ("pllazy", True)
        except AttributeError:
            pass
    cbook = sys.modules.get("matplotlib.cbook")
    registry = getattr(cbook, "CallbackRegistry", None)
    if isinstance(registry, type) and issubclass(t, registry):
        return ("mplcallbacks", True)
    artist = getattr(sys.modules.get("matplotlib.artist"), "Artist", None)
    if isinstance(artist, type) and issubclass(t, artist):
        return ("mplartist", True)
    has_dict = getattr(t, "__dictoffset__", 0) != 0
    if issubclass(t, (list, dict, set, collections.deque)):
        base = "list" if issubclass(t, list) else "dict" if issubclass(t, dict) else "set"
        return (base if not issubclass(t, collections.deque) else "deque", True)
    if issubclass(t, tuple):
        return ("tuple", has_dict)
    if issubclass(t, frozenset):
        return ("set", has_dict)
    if issubclass(t, _ATOM_BASES):
        return ("atomsub", has_dict)
    imm = _immutable_value_types()
    rec = not (imm and issubclass(t, imm))
    if _custom_reduce(t) or not _plain_python_class(t):
        return ("reduce", rec)
    return ("instance", rec)


def _slot_descriptors(t: type) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for k in t.__mro__:
        s = k.__dict__.get("__slots__")
        if s is None:
            continue
        names = (s,) if isinstance(s, str) else tuple(s)
        for n in names:
            if not isinstance(n, str) or n in ("__dict__", "__weakref__"):
                continue
            if n.startswith("__") and not n.endswith("__"):
                n = f"_{k.__name__.lstrip('_')}{n}"
            desc = k.__dict__.get(n)
            if n in seen or desc is None:
                continue
            seen.add(n)
            out.append((n, desc))
    return out


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
    it = np.nditer(
        a,
        flags=["external_loop", "buffered", "zerosize_ok"],
        op_flags=[["readonly"]],
        order="C",
        buffersize=max(1, _CHUNK_BYTES // max(1, a.itemsize)),
    )
    for chunk in it:
        emit(np.ascontiguousarray(chunk).view(np.uint8))


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


def _fix_mpl_transform(state: Any) -> Any:
    # TransformNode keys its parents by id(parent): the keys differ in every process and carry no
    # value; the parents themselves (in insertion order) do.
    if isinstance(state, dict) and isinstance(state.get("_parents"), dict):
        state = {**state, "_parents": list(state["_parents"].values())}
    return state


_STATE_FIXERS: dict[str, Callable[[Any], Any]] = {
    "matplotlib.transforms.TransformNode": _fix_mpl_transform,
}
"""Rewrite the pickled state of some library classes whose state holds process-specific values
(``id()``s) that pickling carries but that are not part of the value."""


_CACHE_ATTRS: dict[str, frozenset[str]] = {
    "scipy.sparse._compressed._cs_matrix": frozenset({"_has_sorted_indices", "_has_canonical_format"}),
    "scipy.sparse._coo._coo_base": frozenset({"_has_canonical_format"}),
}
"""Instance attributes that some library classes fill lazily on *reads* (memoised flags): hashing
them would make a value look mutated after ``m.has_sorted_indices`` or ``m.sum()``."""

_FIXER_CACHE: dict[type, Callable[[Any], Any] | None] = {}


def _state_fixer(t: type) -> Callable[[Any], Any] | None:
    try:
        return _FIXER_CACHE[t]
    except KeyError:
        pass
    found = None
    for k in t.__mro__:
        found = _STATE_FIXERS.get(f"{getattr(k, '__module__', '')}.{getattr(k, '__qualname__', '')}")
        if found is not None:
            break
    if not _is_session_module(getattr(t, "__module__", None)):
        if len(_FIXER_CACHE) > 50_000:
            _FIXER_CACHE.clear()
        _FIXER_CACHE[t] = found
    return found


# --------------------------------------------------------------------------------------------------
# The walker


_Handler = Callable[[Any, type], None]


class _Walker:
    """One fingerprint computation (not reusable, not thread-safe)."""

    def __init__(self, budget: int, keep: list[Any]) -> None:
        self.budget = budget
        self.keep = keep
        self.count = 0
        self.root = xxhash.xxh3_128(_FORMAT)
        self.h = self.root
        self.hstack: list[Any] = []
        self.emit: Callable[[Any], None] = self.h.update
        self.live = True
        self.complete = True
        self.stack: list[Any] = []
        self.memo: dict[int, int] = {}
        self.nmemo = 0
        self.scope: list[int] | None = None
        self.scopes: list[tuple[list[int] | None, int]] = []
        self.rec = True
        self.real: set[int] | None = None
        self.ids: set[int] = set()
        self.spans: list[tuple[int, int]] = []
        self.opaque: list[str] = []
        self.modules: set[str] = set()
        self.session_types: set[str] = set()
        self.obj_bytes = 0
        self.extra_bytes = 0
        self.tinfo: dict[type, tuple[_Handler, bool, bool]] = {}
        self.cinfo: dict[type, tuple[bytes, list[tuple[str, Any]], bool, frozenset[str]]] = {}
        _REG.refresh()
        self.singletons = _REG.singletons
        self.stops = _REG.stops
        self.main_ns = -1
        main = sys.modules.get("__main__")
        if main is not None:
            with contextlib.suppress(Exception):
                self.main_ns = id(object.__getattribute__(main, "__dict__"))

    # ---------------------------------------------------------------- driver

    def run(self, root: Any) -> None:
        stack = self.stack
        stack.append(root)
        atoms = _ATOMS
        getsize = sys.getsizeof
        budget = self.budget
        tinfo = self.tinfo
        while stack:
            o = stack.pop()
            t = type(o)
            if t is _Op:
                try:
                    o.fn(o.arg)
                except Exception:
                    self._mark_opaque(f"nbmigrate:{getattr(o.fn, '__name__', 'op')}")
                continue
            self.count += 1
            if self.count > budget:
                self.complete = False
                self._kill()
                return
            tok = atoms.get(t)
            if tok is not None:
                if self.live:
                    self.emit(tok(o))
                self.obj_bytes += getsize(o)
                continue
            if self.rec:
                if id(o) in self.singletons:
                    # Library state (rcParams values, cached paths, default objects): neither it nor
                    # anything below it is user data, so no identity below it links two variables.
                    stack.append(_Op(self._op_mode, (True, None)))
                    self.rec = False
            elif self.real is not None and id(o) in self.real:
                # A real referent of the object being reduced: identities count again below it.
                stack.append(_Op(self._op_mode, (False, self.real)))
                self.rec = True
                self.real = None
            try:
                info = tinfo.get(t)
                if info is None:
                    info = self._type_info(t)
                info[0](o, t)
            except Exception:
                self._mark_opaque(t)

    def _type_info(self, t: type) -> tuple[_Handler, bool, bool]:
        mod = getattr(t, "__module__", None)
        if not isinstance(mod, str):
            mod = None
        if mod == "__main__":
            name, rec = _resolve(t)
        else:
            hit = _TYPE_CACHE.get(t)
            if hit is None:
                hit = _resolve(t)
                if len(_TYPE_CACHE) > 50_000:
                    _TYPE_CACHE.clear()
                _TYPE_CACHE[t] = hit
            name, rec = hit
            if mod is not None:
                self._add_module(mod)
            _REG.scan_class(t)
        # a __sizeof__ written in Python can be arbitrarily expensive (pandas computes deep memory
        # usage): such objects are sized by their C-level header only
        native_size = not isinstance(getattr(t, "__sizeof__", None), types.FunctionType)
        info: tuple[_Handler, bool, bool] = (getattr(self, "_h_" + name), rec, native_size)
        self.tinfo[t] = info
        return info

    # ---------------------------------------------------------------- bookkeeping

    def _kill(self) -> None:
        self.live = False
        self.emit = _noop

    def _mark_opaque(self, t: Any) -> None:
        name = t if isinstance(t, str) else _qual(t)
        if name not in self.opaque and len(self.opaque) < _MAX_OPAQUE:
            self.opaque.append(name)
        self._kill()

    def _add_module(self, mod: str) -> None:
        top = mod.partition(".")[0]
        if top and top not in _EXCLUDED_MODULES:
            self.modules.add(top)

    def _record(self, o: Any) -> None:
        i = id(o)
        if i not in self.singletons:
            self.ids.add(i)

    def _enter(self, o: Any, t: type) -> bool:
        """Memoise ``o``; False (and a back reference emitted) if it was already visited."""
        i = id(o)
        idx = self.memo.get(i)
        _, recordable, native_size = self.tinfo[t]
        if idx is not None:
            if self.live:
                self.emit(b"R" + _len(idx))
            if self.rec and recordable:
                self._record(o)
            return False
        self.memo[i] = self.nmemo
        self.nmemo += 1
        if self.scope is not None:
            self.scope.append(i)
        if self.rec and recordable:
            self._record(o)
        try:
            self.obj_bytes += sys.getsizeof(o, 64) if native_size else object.__sizeof__(o) + 16
        except Exception:
            self.obj_bytes += 64
        return True

    def _span(self, lo: int, hi: int) -> None:
        if hi > lo:
            self.spans.append((lo, hi))

    def _schedule(self, items: Sequence[Any]) -> None:
        """Visit ``items`` in order, after the current handler returns."""
        self.stack.extend(reversed(items))

    def _schedule_mode(self, items: Sequence[Any], rec: bool, real: set[int] | None = None) -> None:
        """Visit ``items`` in order with the given recording mode, then restore the current one."""
        stack = self.stack
        stack.append(_Op(self._op_mode, (self.rec, self.real)))
        stack.extend(reversed(items))
        stack.append(_Op(self._op_mode, (rec, real)))

    def _op_mode(self, arg: tuple[bool, set[int] | None]) -> None:
        self.rec, self.real = arg

    def _op_emit(self, b: bytes) -> None:
        self.emit(b)

    def _marshal(self, seq: Sequence[Any]) -> None:
        n = len(seq)
        self.count += n
        self.obj_bytes += sum(map(sys.getsizeof, seq))
        if not self.live:
            return
        items: Any = seq
        if n <= _MARSHAL_CHUNK:
            self.emit(b"M" + marshal.dumps(items, 2))
        else:
            emit = self.emit
            emit(b"M")
            for i in range(0, n, _MARSHAL_CHUNK):
                emit(marshal.dumps(items[i : i + _MARSHAL_CHUNK], 2))

    def _seq_body(self, seq: Sequence[Any], rec: bool | None = None) -> None:
        """Elements of an ordered container; bulk-encoded when they are all plain atoms."""
        n = len(seq)
        if n == 0:
            return
        if set(map(type, seq)) <= _MARSHALABLE:
            self._marshal(seq)
            return
        if rec is None or (rec == self.rec and self.real is None):
            self.stack.extend(reversed(seq))
        else:
            self._schedule_mode(seq, rec)

    def _dict_content(self, d: dict[Any, Any]) -> None:
        """Items of an exact dict: one marshal call when keys and values are all plain atoms."""
        n = len(d)
        if (
            0 < n <= _MARSHAL_CHUNK
            and type(d) is dict
            and set(map(type, d)) <= _MARSHALABLE
            and set(map(type, d.values())) <= _MARSHALABLE
        ):
            self.count += 2 * n
            self.obj_bytes += sum(map(sys.getsizeof, d)) + sum(map(sys.getsizeof, d.values()))
            if self.live:
                self.emit(b"{D" + marshal.dumps(d, 2))
            return
        self._dict_body(list(d), list(d.values()))

    def _dict_body(self, keys: list[Any], values: list[Any]) -> None:
        n = len(keys)
        self.emit(b"{" + _len(n))
        if n == 0:
            return
        if set(map(type, keys)) <= _MARSHALABLE:
            self._marshal(keys)
            if set(map(type, values)) <= _MARSHALABLE:
                self._marshal(values)
            else:
                self.stack.extend(reversed(values))
        else:
            self.emit(b"P")
            flat: list[Any] = []
            for k, v in zip(keys, values, strict=True):
                flat.append(k)
                flat.append(v)
            self.stack.extend(reversed(flat))

    def _op_dict_body(self, arg: tuple[list[Any], list[Any]]) -> None:
        self._dict_body(*arg)

    def _op_attrs(self, d: dict[Any, Any]) -> None:
        self.emit(b"@")
        self._dict_content(d)

    def _instance_dict(self, o: Any) -> dict[Any, Any] | None:
        try:
            d = object.__getattribute__(o, "__dict__")
        except Exception:
            return None
        return d if isinstance(d, dict) else None

    def _push_attrs_if_any(self, o: Any) -> None:
        # called for instances of subclasses of list/tuple/dict/set/deque/atoms: a session class
        # (namedtuple, IntFlag ...) links the instance to the name bound to it, as in _h_instance
        t = type(o)
        self._session_class(t, self._class_info(t)[2])
        d = self._instance_dict(o)
        if d:
            self.stack.append(_Op(self._op_attrs, d))

    # set elements: each element gets its own hasher and memo scope; digests sorted at the end
    def _op_set_begin(self, _: Any) -> None:
        self.hstack.append(self.h)
        self.h = xxhash.xxh3_128()
        self.emit = self.h.update if self.live else _noop
        self.scopes.append((self.scope, self.nmemo))
        self.scope = []

    def _op_set_end(self, frame: list[bytes]) -> None:
        d = self.h.digest()
        self.h = self.hstack.pop()
        self.emit = self.h.update if self.live else _noop
        for i in self.scope or ():
            self.memo.pop(i, None)
        self.scope, self.nmemo = self.scopes.pop()
        frame.append(d)

    def _op_set_finish(self, frame: list[bytes]) -> None:
        frame.sort()
        self.emit(b"".join(frame))

    # ---------------------------------------------------------------- builtin containers

    def _h_list(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        if t is list:
            self.emit(b"[" + _len(len(o)))
            self._seq_body(o)
            return
        items = list.copy(o)
        self.emit(b"[X" + _str(_qual(t)) + _len(len(items)))
        self._push_attrs_if_any(o)
        self._seq_body(items)

    def _h_tuple(self, o: Any, t: type) -> None:
        if t is tuple:
            self.emit(b"(" + _len(len(o)))
            self._seq_body(o)
            return
        if self.tinfo[t][1] and not self._enter(o, t):
            return
        items = tuple(tuple.__iter__(o))
        self.emit(b"(X" + _str(_qual(t)) + _len(len(items)))
        self._push_attrs_if_any(o)
        self._seq_body(items)

    def _h_dict(self, o: Any, t: type) -> None:
        if id(o) in self.stops or id(o) == self.main_ns:
            self.emit(b"gd")  # a module namespace: never walked (see _Registry)
            return
        if not self._enter(o, t):
            return
        if t is dict:
            self._dict_content(o)
            return
        if issubclass(t, collections.OrderedDict):
            keys = list(collections.OrderedDict.keys(o))
            values = list(collections.OrderedDict.values(o))
        else:
            keys = list(dict.keys(o))
            values = list(dict.values(o))
        self.emit(b"{X" + _str(_qual(t)))
        self._push_attrs_if_any(o)
        self.stack.append(_Op(self._op_dict_body, (keys, values)))
        if issubclass(t, collections.defaultdict):
            self.stack.append(o.default_factory)

    def _h_set(self, o: Any, t: type) -> None:
        if (t is not frozenset or self.tinfo[t][1]) and not self._enter(o, t):
            return
        base = frozenset if issubclass(t, frozenset) else set
        elems = list(base.__iter__(o))
        n = len(elems)
        self.emit((b"Z" if base is frozenset else b"S") + _str("" if t is base else _qual(t)) + _len(n))
        if t is not base:
            self._push_attrs_if_any(o)
        if n == 0:
            return
        if set(map(type, elems)) <= _MARSHALABLE:
            self.count += n
            if self.live:
                self.emit(b"M" + b"".join(sorted(map(marshal.dumps, elems, itertools.repeat(2, n)))))
            return
        frame: list[bytes] = []
        begin = _Op(self._op_set_begin)
        end = _Op(self._op_set_end, frame)
        items: list[Any] = []
        for e in elems:
            items.append(begin)
            items.append(e)
            items.append(end)
        items.append(_Op(self._op_set_finish, frame))
        self._schedule(items)

    def _h_deque(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        items = list(o)
        self.emit(b"Q" + _str(_qual(t)) + _len(len(items)) + _tok_int(-1 if o.maxlen is None else o.maxlen))
        self._push_attrs_if_any(o)
        self._seq_body(items)

    def _h_bytearray(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        n = len(o)
        if self.rec and n:
            import ctypes

            view = (ctypes.c_char * n).from_buffer(o)
            addr = ctypes.addressof(view)
            del view  # release the buffer export at once: the user may resize the bytearray
            self._span(addr, addr + n)
        else:
            self.extra_bytes += n
        self.emit(b"B" + _str(_qual(t)) + _len(n))
        if self.live:
            self.emit(bytes(o) if t is not bytearray else o)
        if t is not bytearray:
            self._push_attrs_if_any(o)

    def _h_memoryview(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        self.emit(b"V" + _str(o.format) + _len(o.itemsize) + b"".join(_len(d) for d in o.shape))
        np = sys.modules.get("numpy")
        bounds = None
        if self.rec and np is not None:
            try:
                bounds = _np_bounds(np.asarray(o))
            except Exception:
                bounds = None
        if bounds is not None:
            self._span(*bounds)
        else:
            self.extra_bytes += o.nbytes
        if self.live:
            if o.c_contiguous:
                self.emit(o.cast("B") if o.ndim != 1 or o.format != "B" else o)
            else:
                self.emit(o.tobytes())

    def _h_range(self, o: Any, t: type) -> None:
        self.emit(b"r" + _tok_int(o.start) + _tok_int(o.stop) + _tok_int(o.step))

    def _h_slice(self, o: Any, t: type) -> None:
        self.emit(b"l")
        self._schedule([o.start, o.stop, o.step])

    def _h_named(self, o: Any, t: type) -> None:
        self.emit(b"n" + _str(repr(o)))

    def _h_mappingproxy(self, o: Any, t: type) -> None:
        self.emit(b"mp")
        self._dict_body(list(o.keys()), list(o.values()))

    # ---------------------------------------------------------------- functions, classes, modules

    def _by_name(self, mod: Any, qualname: Any, tag: bytes = b"g") -> None:
        if isinstance(mod, str):
            self._add_module(mod)
        self.emit(tag + _str(f"{mod}.{qualname}"))

    def _h_function(self, o: Any, t: type) -> None:
        mod = getattr(o, "__module__", None)
        if not _is_session_module(mod):
            self._by_name(mod, o.__qualname__)
            return
        if not self._enter(o, t):
            return
        self.session_types.add(o.__qualname__)
        self.emit(b"F" + _str(o.__qualname__))
        d = self._instance_dict(o)
        self._schedule(
            [o.__code__, o.__defaults__, o.__kwdefaults__, o.__closure__, _Op(self._op_attrs, d or {})]
        )

    def _h_code(self, o: Any, t: type) -> None:
        meta = (
            o.co_name, o.co_qualname, o.co_argcount, o.co_posonlyargcount, o.co_kwonlyargcount,
            o.co_flags, o.co_names, o.co_varnames, o.co_freevars, o.co_cellvars,
        )  # fmt: skip
        code = o.co_code
        self.emit(b"C" + _str(repr(meta)) + _len(len(code)) + code)
        self.stack.append(o.co_consts)

    def _h_cell(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        try:
            contents = o.cell_contents
        except ValueError:
            self.emit(b"c0")
            return
        self.emit(b"c1")
        self.stack.append(contents)

    def _h_method(self, o: Any, t: type) -> None:
        self.emit(b"m")
        self._schedule([o.__func__, o.__self__])

    def _h_builtin(self, o: Any, t: type) -> None:
        owner = getattr(o, "__self__", None)
        name = getattr(o, "__qualname__", None) or getattr(o, "__name__", "?")
        if owner is None or isinstance(owner, types.ModuleType):
            mod = getattr(o, "__module__", None) or getattr(owner, "__name__", None)
            self._by_name(mod, name)
        elif isinstance(owner, type):
            self._by_name(owner.__module__, name)
        else:
            self.emit(b"mb" + _str(str(getattr(o, "__name__", "?"))))
            self.stack.append(owner)

    def _h_descriptor(self, o: Any, t: type) -> None:
        owner = getattr(o, "__objclass__", None)
        self._by_name(getattr(owner, "__module__", None), f"{_qual(owner)}.{getattr(o, '__name__', '?')}")

    def _h_module(self, o: Any, t: type) -> None:
        name = getattr(o, "__name__", None)
        if isinstance(name, str):
            self._add_module(name)
        self.emit(b"u" + _str(str(name)))

    def _h_partial(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        self.emit(b"P" + _str(_qual(t)))
        d = self._instance_dict(o)
        self._schedule([o.func, o.args, o.keywords, _Op(self._op_attrs, d or {})])

    def _h_wrapped(self, o: Any, t: type) -> None:
        self.emit(b"w" + _str(t.__name__))
        self.stack.append(o.__func__)

    def _h_property(self, o: Any, t: type) -> None:
        self.emit(b"Y")
        self._schedule([o.fget, o.fset, o.fdel, o.__doc__])

    # __slotnames__ is a cache copyreg adds to a class the first time one of its instances is pickled:
    # not part of the class, and absent after a restore.
    _CLASS_SKIP = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "_abc_impl",
                             "__slotnames__"})

    def _h_type(self, o: Any, t: type) -> None:
        mod = getattr(o, "__module__", None)
        qualname = getattr(o, "__qualname__", None) or getattr(o, "__name__", "?")
        if not _is_session_module(mod):
            self._by_name(mod, qualname, b"t")
            return
        if not self._enter(o, t):
            if self.rec:
                self._record(o)
            return
        if self.rec:
            self._record(o)
        self.session_types.add(str(qualname))
        self.emit(b"K" + _str(str(qualname)))
        keys: list[Any] = []
        values: list[Any] = []
        # sorted: the order of a class namespace is not part of the class (cloudpickle rebuilds it
        # in another order), while its contents are
        for k, v in sorted(o.__dict__.items(), key=lambda kv: str(kv[0])):
            if k not in self._CLASS_SKIP:
                keys.append(k)
                values.append(v)
        self._schedule([o.__bases__, _Op(self._op_dict_body, (keys, values))])

    def _h_enum(self, o: Any, t: type) -> None:
        self._session_class(t, _is_session_module(t.__module__))  # `color is Color.RED` after a restore
        self._by_name(t.__module__, f"{t.__qualname__}.{o._name_}", b"E")
        if o._name_ is None:
            self.stack.append(o._value_)

    def _h_atomsub(self, o: Any, t: type) -> None:
        if self.tinfo[t][1] and not self._enter(o, t):
            return
        for base in _ATOM_BASES:
            if issubclass(t, base):
                convert: Any = bytes if base is bytes else getattr(base, f"__{base.__name__}__")
                self.emit(b"X" + _str(_qual(t)) + _ATOMS[base](convert(o)))
                break
        self._push_attrs_if_any(o)

    def _h_bystr(self, o: Any, t: type) -> None:
        self.emit(b"z" + _str(_qual(t)) + _str(str(o)))

    # ---------------------------------------------------------------- generic objects

    def _class_info(self, t: type) -> tuple[bytes, list[tuple[str, Any]], bool, frozenset[str]]:
        """(encoded qualified name, slot descriptors, defined in the session, cache attributes to
        leave out), cached per walk."""
        info = self.cinfo.get(t)
        if info is None:
            session = _is_session_module(getattr(t, "__module__", None))
            if session:
                self.session_types.add(t.__qualname__)
            ignored: frozenset[str] = frozenset()
            for k in t.__mro__:
                ignored |= _CACHE_ATTRS.get(_qual(k), frozenset())
            info = (_str(_qual(t)), _slot_descriptors(t), session, ignored)
            self.cinfo[t] = info
        return info

    def _session_class(self, t: type, session: bool) -> None:
        # an instance shares its class with the name bound to it: session classes are identities
        if session and self.rec:
            self._record(t)

    def _h_instance(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        qual, slots, session, ignored = self._class_info(t)
        self._session_class(t, session)
        self.emit(b"O" + qual)
        if slots:
            self.stack.append(_Op(self._op_slots, (o, t, slots)))
        d = self._instance_dict(o)
        if d is not None:
            if ignored and not ignored.isdisjoint(d):
                d = {k: v for k, v in d.items() if k not in ignored}
            self._dict_content(d)
        else:
            self.emit(b"-")

    def _op_slots(self, arg: tuple[Any, type, list[tuple[str, Any]]]) -> None:
        o, t, slots = arg
        values: list[Any] = []
        for _, desc in slots:
            try:
                values.append(desc.__get__(o, t))
            except AttributeError:
                values.append(_Op(self._op_emit, b"U"))
        self.emit(b"S" + marshal.dumps([n for n, _ in slots], 2))
        self._schedule(values)

    def _reduce(self, o: Any, t: type) -> Any:
        reducer = copyreg.dispatch_table.get(t)
        rv = reducer(o) if reducer is not None else o.__reduce_ex__(5)
        if not isinstance(rv, (str, tuple)) or (isinstance(rv, tuple) and not 2 <= len(rv) <= 6):
            raise TypeError(f"bad __reduce_ex__ result for {_qual(t)}")
        return rv

    def _pickled(self, o: Any, t: type) -> None:
        buffers: list[Any] = []
        data = pickle.dumps(o, protocol=5, buffer_callback=buffers.append)
        self.emit(b"Pk" + _str(_qual(t)) + _len(len(data)) + data)
        for b in buffers:
            raw = b.raw()
            self.emit(_len(raw.nbytes))
            self.emit(raw)

    def _real_referents(self, o: Any) -> set[int]:
        real = set(map(id, gc.get_referents(o)))
        d = self._instance_dict(o)
        if d:
            real.update(map(id, d.values()))
        return real

    def _h_reduce(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        self._session_class(t, self._class_info(t)[2])
        # Some C types (io.StringIO, io.BytesIO) create their __dict__ on first access and put it in
        # __getstate__ only once it exists; the walk reads __dict__ below, so touch it first or the
        # first walk of an object would differ from every later one.
        self._instance_dict(o)
        try:
            rv = self._reduce(o, t)
        except Exception:
            self._pickled(o, t)  # the last resort; raises (-> opaque) if pickle fails too
            return
        if isinstance(rv, str):
            self.emit(b"Rg" + _str(_qual(t)) + _str(rv))
            return
        self.keep.append(rv)
        parts: list[Any] = [rv[0], rv[1]]
        state = rv[2] if len(rv) > 2 else None
        fixer = _state_fixer(t)
        if fixer is not None and state is not None:
            state = fixer(state)
            self.keep.append(state)
        parts.append(state)
        parts.append(list(rv[3]) if len(rv) > 3 and rv[3] is not None else None)
        parts.append(list(rv[4]) if len(rv) > 4 and rv[4] is not None else None)
        self.keep.append(parts)
        self.emit(b"Rt" + _str(_qual(t)))
        real = self._real_referents(o) if self.rec else self.real
        self._schedule_mode(parts, False, real)

    def _h_opaque(self, o: Any, t: type) -> None:
        self._mark_opaque(t)
        if not self._enter(o, t):
            return
        if self.rec and not issubclass(t, (types.FrameType, types.TracebackType)):
            # identities below an opaque object still matter (a generator's frame holds the list it
            # iterates): walk what it references, never frames (they lead to every global)
            refs = gc.get_referents(o)
            if isinstance(o, weakref.ReferenceType):
                # not a gc referent, yet shared with whoever holds it: a weak reference travels with
                # its target, or a replayed reference would point at a dead copy
                target = o()
                if target is not None:
                    refs = [*refs, target]
            self._schedule(refs)

    # ---------------------------------------------------------------- numpy

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

    # ---------------------------------------------------------------- torch

    def _h_tensor(self, o: Any, t: type) -> None:
        if not self._enter(o, t):
            return
        torch = sys.modules["torch"]
        np = sys.modules.get("numpy")
        strided = o.layout == torch.strided
        cpu = o.device.type == "cpu"
        if self.rec and strided and cpu and not o.is_quantized:
            st = o.untyped_storage()
            n = st.nbytes()
            ptr = st.data_ptr()
            if n and ptr:
                self._span(ptr, ptr + n)
        else:
            self.extra_bytes += o.numel() * o.element_size()
        self.emit(
            b"TT" + _str(_qual(t)) + _str(str(o.dtype)) + _str(str(o.layout)) + _str(o.device.type)
            + b"".join(_len(d) for d in o.shape) + _tok_bool(o.requires_grad)
        )  # fmt: skip
        self._push_attrs_if_any(o)
        if o.is_leaf and o.requires_grad and o.grad is not None:  # .grad of a non-leaf warns
            self.emit(b"Tg")  # gradients are state: backward() changes them, optimizer.step() reads them
            self.stack.append(o.grad)
        if not strided or o.is_quantized or np is None or o.device.type == "meta":
            if o.device.type == "meta":
                return
            rv = o.__reduce_ex__(5)
            self.keep.append(rv)
            self._schedule_mode([rv], False, None)
            return
        self.count += 1
        if not self.live:
            return
        x = o.detach().resolve_conj().resolve_neg()
        if not cpu:
            x = x.cpu()
        try:
            arr = x.numpy()
        except (TypeError, RuntimeError):
            ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
            arr = x.view(ints[x.element_size()]).numpy()
        _hash_ndarray_bytes(self.emit, arr, np)

    # ---------------------------------------------------------------- pyarrow

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

    # ---------------------------------------------------------------- pandas

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
        self.emit(b"PD" + _str(_qual(t)) + _len(ncols) + _len(len(o.index)))
        self.emit(_tok_bool(bool(o.flags.allows_duplicate_labels)))
        items: list[Any] = [cols, o.index]
        for i in range(ncols):
            items.append(_Op(self._op_pd_column, (blocks[int(blknos[i])], int(blklocs[i]))))
        self._schedule_pd(items)
        self._schedule_attrs(o)

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

    # ---------------------------------------------------------------- polars

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

    # ---------------------------------------------------------------- matplotlib

    def _h_mplcallbacks(self, o: Any, t: type) -> None:
        # CallbackRegistry.__getstate__ advances an id counter: reading it would mutate the figure
        # and change its digest on every walk.  Hash what that method would keep, without calling it.
        if not self._enter(o, t):
            return
        pickled = set(getattr(o, "_pickled_cids", ()))
        callbacks: dict[Any, dict[Any, Any]] = {}
        for sig, d in getattr(o, "callbacks", {}).items():
            callbacks[sig] = {cid: ref() for cid, ref in d.items() if cid in pickled}
        state = [_qual(t), getattr(o, "exception_handler", None), getattr(o, "_signals", None), callbacks]
        self.keep.append(state)
        self.emit(b"MC")
        self._schedule_mode([state], False, None)


    def _h_mplartist(self, o: Any, t: type) -> None:
        # A figure's internals (transforms, canvas, dpi set by the inline backend, callback ids) differ
        # between processes and after unpickling while the picture is the same. The digest therefore
        # covers what the figure shows (_mpl_summary); identity links every artist of one figure
        # (fig, ax, line are co-variables) without walking the internals.
        if not self._enter(o, t):
            return
        if self.rec:
            self._record(o)
            for member in _mpl_family(o):
                self._record(member)
        summary = _mpl_summary(o)
        self.keep.append(summary)
        self.emit(b"MA" + _str(_qual(t)))
        self._schedule_mode([summary], False)  # the summary is made here: content only, no identities


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


def _mpl_family(artist: Any) -> list[Any]:
    """The figure ``artist`` belongs to, its axes and their data artists (itself included).

    Not ``findobj()``: axis ticks are created lazily, so their ids change from one call to the next.
    """
    try:
        fig = artist.get_figure(root=True)
    except TypeError:
        fig = artist.get_figure()
    except Exception:
        fig = None
    family = [artist]
    if fig is None:
        return family
    family.append(fig)
    for ax in getattr(fig, "axes", []):
        family.append(ax)
        for name in ("lines", "collections", "patches", "texts", "images"):
            family.extend(getattr(ax, name, ()))
    return family


def _mpl_summary(a: Any, depth: int = 0) -> Any:
    """What an artist shows: sizes, texts, limits, line data; children summarised two levels down."""
    try:
        kind = type(a).__name__
        if hasattr(a, "get_size_inches") and hasattr(a, "axes"):
            suptitle = getattr(getattr(a, "_suptitle", None), "get_text", lambda: None)()
            return ("figure", tuple(float(x) for x in a.get_size_inches()), suptitle,
                    [_mpl_summary(ax, depth + 1) for ax in a.axes] if depth < 2 else len(a.axes))
        if hasattr(a, "get_xlim") and hasattr(a, "lines"):
            def children(xs: Any) -> Any:
                return [_mpl_summary(x, depth + 1) for x in xs] if depth < 2 else len(xs)

            return ("axes", a.get_title(), a.get_xlabel(), a.get_ylabel(),
                    tuple(float(x) for x in a.get_xlim()), tuple(float(x) for x in a.get_ylim()),
                    children(a.lines), children(a.collections), children(a.images), len(a.patches), len(a.texts))
        if hasattr(a, "get_xydata"):
            return ("line", a.get_xydata().copy(), a.get_label(), str(a.get_color()),
                    str(a.get_linestyle()), str(a.get_marker()))
        if hasattr(a, "get_array") and hasattr(a, "get_cmap"):
            # images, scatter plots, meshes: the data they map to colours, the colour map, the points
            np = sys.modules["numpy"]  # matplotlib imports it
            data = a.get_array()
            offsets = a.get_offsets() if hasattr(a, "get_offsets") else None
            return ("mappable", kind, str(a.get_label()),
                    None if data is None else np.ma.getdata(data), None if data is None else np.ma.getmaskarray(data),
                    str(a.get_cmap().name), tuple(float(x) for x in a.get_clim() if x is not None),
                    None if offsets is None else np.ma.getdata(offsets))
        if hasattr(a, "get_text"):
            return ("text", kind, a.get_text())
        return ("artist", kind, str(a.get_label()))
    except Exception as exc:  # an artist in an odd state still gets a stable description
        return ("artist", type(a).__name__, type(exc).__name__)


# --------------------------------------------------------------------------------------------------


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    if not spans:
        return ()
    spans.sort()
    out: list[tuple[int, int]] = []
    lo, hi = spans[0]
    for s, e in spans[1:]:
        if s <= hi:
            if e > hi:
                hi = e
        else:
            out.append((lo, hi))
            lo, hi = s, e
    out.append((lo, hi))
    return tuple(out)


def fingerprint(
    obj: Any, *, budget: int = 2_000_000, session: FingerprintSession | None = None
) -> Fingerprint:
    """Walk the object graph reachable from ``obj`` once and return its :class:`Fingerprint`.

    ``budget`` bounds the work: objects visited plus container elements (a numeric buffer counts as
    one, whatever its size, since hashing it costs far less than visiting Python objects).  When it
    is exhausted the walk stops, ``complete`` is False and ``digest`` None.  Pass the same
    ``session`` to every call of one monitoring pass (see :class:`FingerprintSession`).  Never
    raises for any user object.
    """
    keep: list[Any] = session._keep if session is not None else []
    w: _Walker | None = None
    try:
        w = _Walker(budget, keep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w.run(obj)
    except Exception as exc:  # an internal failure: report it as opaque, never raise into the cell
        if w is None:
            return Fingerprint(None, frozenset(), (), (f"nbmigrate:{type(exc).__name__}",), False, 0,
                               frozenset(), frozenset())  # fmt: skip
        w._mark_opaque(type(exc))
        w.complete = False
    spans = _merge(w.spans)
    digest = w.root.hexdigest() if (w.live and w.complete) else None
    nbytes = w.obj_bytes + w.extra_bytes + sum(e - s for s, e in spans)
    return Fingerprint(
        digest=digest,
        ids=frozenset(w.ids),
        spans=spans,
        opaque=tuple(w.opaque),
        complete=w.complete,
        nbytes=max(0, nbytes),
        modules=frozenset(w.modules),
        session_types=frozenset(w.session_types),
    )
