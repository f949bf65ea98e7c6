"""The generic walk: driver, bookkeeping, builtin containers, functions, classes, instances, reducibles.

Library types (numpy, pandas, pyarrow, polars, torch, matplotlib) are walked by handler methods of
subclasses in sibling modules; :class:`nbmigrate.fingerprint.walker._Walker` composes them. A handler is
found by name: :mod:`.dispatch` resolves a type to ``name`` and the walk calls ``self._h_<name>``.
"""

from __future__ import annotations

import collections
import contextlib
import copyreg
import gc
import itertools
import marshal
import pickle
import sys
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import xxhash

from .buffers import _np_bounds
from .dispatch import _TYPE_CACHE, _resolve, _slot_descriptors
from .singletons import _REG
from .state_fixes import _CACHE_ATTRS, _state_fixer
from .tokens import (
    _ATOM_BASES,
    _ATOMS,
    _EXCLUDED_MODULES,
    _MARSHALABLE,
    _is_session_module,
    _len,
    _noop,
    _Op,
    _qual,
    _str,
    _tok_int,
)

_FORMAT = b"nbmigrate-fingerprint/1\x00"


_MARSHAL_CHUNK = 1 << 15
"""Elements per marshal call on the bulk path (bounds the temporary bytes object)."""
_MAX_OPAQUE = 10
_STR_ONLY = frozenset({str})
_SIZE_SAMPLE = 1024
"""Elements whose ``sys.getsizeof`` is summed to estimate the size of a larger bulk-encoded sequence."""


def _count_nul(data: bytes) -> int:
    """Zero bytes in ``data``: through numpy when the user imported it (a vectorised compare is ~4x
    faster than ``bytes.count`` on tens of megabytes of text), never importing it."""
    np = sys.modules.get("numpy")
    if np is None:
        return data.count(0)
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == 0))


def _sized(seq: Sequence[Any]) -> int:
    """Estimated ``sys.getsizeof`` total of the elements: exact up to 4 samples' worth, then from an
    evenly strided sample (summing millions of sizes cost more than hashing the content)."""
    n = len(seq)
    if n <= 4 * _SIZE_SAMPLE:
        return sum(map(sys.getsizeof, seq))
    sample = seq[:: n // _SIZE_SAMPLE]
    return sum(map(sys.getsizeof, sample)) * n // len(sample)


_Handler = Callable[[Any, type], None]


class _WalkerBase:
    """One fingerprint computation (not reusable, not thread-safe): the library-independent part."""

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

    def _marshal(self, seq: Sequence[Any], only_str: bool) -> None:
        n = len(seq)
        self.count += n
        self.obj_bytes += _sized(seq)
        if not self.live:
            return
        if only_str and self._joined_str(seq):
            return
        items: Any = seq
        if n <= _MARSHAL_CHUNK:
            self.emit(b"M" + marshal.dumps(items, 2))
        else:
            emit = self.emit
            emit(b"M")
            for i in range(0, n, _MARSHAL_CHUNK):
                emit(marshal.dumps(items[i : i + _MARSHAL_CHUNK], 2))

    def _joined_str(self, seq: Sequence[Any]) -> bool:
        """Encode exact ``str`` elements as NUL-joined UTF-8, chunk by chunk; False if one holds a NUL.

        ``marshal`` (version 2) builds a new bytes object per string; one ``join`` and one ``encode``
        per chunk cost a fraction of that (a 4-million-token object array: ~2.5x faster). Unambiguous:
        no element holds the separator (checked by counting it), each chunk is length-prefixed and
        ``surrogatepass`` UTF-8 is injective, so equal digests still mean equal strings.
        """
        n = len(seq)
        parts: list[bytes] = []
        for i in range(0, n, _MARSHAL_CHUNK):
            chunk = seq[i : i + _MARSHAL_CHUNK]
            data = "\x00".join(chunk).encode("utf-8", "surrogatepass")
            if _count_nul(data) != len(chunk) - 1:  # only U+0000 encodes to a zero byte
                return False
            parts.append(_len(len(data)))
            parts.append(data)
        emit = self.emit
        emit(b"Ms" + _len(n))
        for part in parts:
            emit(part)
        return True

    def _bulk(self, seq: Sequence[Any]) -> bool:
        """Encode ``seq`` in one go if its elements allow it (all plain atoms, or all scalars of one
        library type that a handler packs into one buffer); False if they must be walked one by one.

        Which encoding is used depends on the element types only, so it is a function of the content.
        """
        types = set(map(type, seq))
        if types <= _MARSHALABLE:
            self._marshal(seq, types == _STR_ONLY)
            return True
        return len(types) == 1 and self._scalar_run(seq, types.pop())

    def _scalar_run(self, seq: Sequence[Any], t: type) -> bool:
        """Encode a non-empty sequence of scalars all of exact type ``t`` in bulk; False if ``t`` has no
        bulk encoding (the library handler mixins override this)."""
        return False

    def _seq_body(self, seq: Sequence[Any], rec: bool | None = None) -> None:
        """Elements of an ordered container; bulk-encoded when their types allow it (see :meth:`_bulk`)."""
        if not seq or self._bulk(seq):
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
            self.obj_bytes += _sized(list(d)) + _sized(list(d.values()))
            if self.live:
                self.emit(b"{D" + marshal.dumps(d, 2))
            return
        self._dict_body(list(d), list(d.values()))

    def _dict_body(self, keys: list[Any], values: list[Any]) -> None:
        n = len(keys)
        self.emit(b"{" + _len(n))
        if n == 0:
            return
        key_types = set(map(type, keys))
        if key_types <= _MARSHALABLE:
            self._marshal(keys, key_types == _STR_ONLY)
            if not self._bulk(values):
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
        self._schedule([o.__code__, o.__defaults__, o.__kwdefaults__, o.__closure__, _Op(self._op_attrs, d or {})])

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
    _CLASS_SKIP = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "_abc_impl", "__slotnames__"})

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
