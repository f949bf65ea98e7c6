"""Type resolution: which handler walks an instance of a type, and whether its instances are recordable."""

from __future__ import annotations

import collections
import copyreg
import enum
import functools
import io
import sys
import threading
import types
import weakref
from typing import Any

from .tokens import _ATOM_BASES

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
