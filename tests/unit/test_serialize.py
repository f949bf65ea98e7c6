"""Serializer: groups round-trip faithfully (values, aliasing, session code), fail loudly, no copies.

A session is simulated without a kernel: ``user_ns`` is a dict with ``__name__ == "__main__"``, cell
code is compiled with an ``<ipython-input-N>`` filename and exec'd in it, and each group is loaded
into a NEW dict standing for the fresh kernel's namespace. Most round trips go through
pack_parts -> one blob -> unpack_parts -> load_group, as the checkpoint and the restore do.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import os
import pickle
import pickletools
import subprocess
import sys
import textwrap
import time
import tracemalloc
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import cloudpickle.cloudpickle as cloudpickle_impl
import numpy as np
import pytest

from nbmigrate.errors import SerializationError
from nbmigrate.fingerprint import fingerprint
from nbmigrate.namespace import type_name
from nbmigrate.serialize import Part, SerializedGroup, dump_group, load_group, pack_parts, stream_format, unpack_parts
from nbmigrate.serialize import dump as serialize_dump
from nbmigrate.serialize import load as serialize_load
from nbmigrate.serialize import pickler as serialize_pickler

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pl = pytest.importorskip("polars")

MiB = 1024 * 1024


# -- helpers -------------------------------------------------------------------------------------


def new_ns() -> dict[str, Any]:
    return {"__name__": "__main__", "__builtins__": builtins}


def run_cell(ns: dict[str, Any], code: str, cell: int = 1) -> dict[str, Any]:
    exec(compile(textwrap.dedent(code), f"<ipython-input-{cell}>", "exec"), ns)
    return ns


def address(buffer: Any) -> int:
    return int(np.frombuffer(buffer, dtype=np.uint8).ctypes.data)


def store_and_read(group: SerializedGroup, compress: Any = "auto") -> tuple[memoryview, list[memoryview]]:
    """What checkpoint + store + restore do: pack, concatenate into one blob, slice, unpack."""
    parts = pack_parts(group, compress=compress)
    blob = bytearray(b"".join(p.payload for p in parts))
    view = memoryview(blob)
    sliced, offset = [], 0
    for p in parts:
        n = p.payload.nbytes
        sliced.append(Part(p.kind, p.codec, p.raw_length, view[offset : offset + n]))
        offset += n
    return unpack_parts(sliced, view)


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Forget the classes cloudpickle tracks, as a fresh kernel would not know them.

    In one process cloudpickle maps a pickled class back to the live original; a restore happens in
    a new process, where classes are rebuilt. Call this between dump and load.
    """

    def forget() -> None:
        monkeypatch.setattr(cloudpickle_impl, "_DYNAMIC_CLASS_TRACKER_BY_ID", weakref.WeakValueDictionary())
        monkeypatch.setattr(cloudpickle_impl, "_DYNAMIC_CLASS_TRACKER_BY_CLASS", weakref.WeakKeyDictionary())

    return forget


Roundtrip = Callable[..., tuple[SerializedGroup, dict[str, Any], dict[str, Any]]]


@pytest.fixture
def roundtrip(fresh_process: Callable[[], None]) -> Roundtrip:
    def go(
        ns: dict[str, Any], *names: str, target: dict[str, Any] | None = None, compress: Any = "auto"
    ) -> tuple[SerializedGroup, dict[str, Any], dict[str, Any]]:
        group = dump_group({n: ns[n] for n in names}, ns)
        fresh_process()
        target = new_ns() if target is None else target
        pickle_view, buffers = store_and_read(group, compress)
        return group, load_group(pickle_view, buffers, target), target

    return go


def main_stream(group: SerializedGroup) -> memoryview:
    stream, _header = serialize_load._split_envelope(memoryview(group.pickle))
    return stream


def globals_in(stream: bytes | memoryview) -> set[str]:
    """Every global ("module name") a pickle stream looks up, following the memo like the unpickler."""
    found: set[str] = set()
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(bytes(stream)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            stack.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo.get(arg))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{stack[-2]} {stack[-1]}")
            stack[-2:] = [None]
        elif op.name == "GLOBAL":
            found.add(arg)
            stack.append(None)
        else:
            stack.append(None)  # only the strings right before STACK_GLOBAL matter
    return found


def globals_referenced(group: SerializedGroup) -> set[str]:
    return globals_in(main_stream(group))


SESSION = """
import functools
import numpy as np

threshold = 10
big = np.zeros(2_000_000)          # 16 MB that no function should drag along

def above(x):
    return x > threshold

def total():
    return float(big.sum())

def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)

def make_counter():
    count = 0
    def step():
        nonlocal count
        count += 1
        return count
    return step

counter = make_counter()
counter(); counter()

def repeat(n):
    def deco(f):
        @functools.wraps(f)
        def wrapper(*a):
            return [f(*a) for _ in range(n)]
        return wrapper
    return deco

@repeat(3)
def hello(name):
    return "hi " + name

def append_to(x, acc=[]):
    acc.append(x)
    return acc

append_to(1)

def tagged():
    return tagged.calls
tagged.calls = 7

ops = {"double": lambda x: 2 * x, "neg": lambda x: -x}

class Point:
    dims = 2
    def __init__(self, x, y):
        self.x, self.y = x, y
    @property
    def norm(self):
        return (self.x ** 2 + self.y ** 2) ** 0.5
    @classmethod
    def origin(cls):
        return cls(0, 0)
    @staticmethod
    def limit():
        return threshold
    def scaled(self, k):
        return Point(self.x * k, self.y * k)

p = Point(3, 4)
"""


@pytest.fixture
def session() -> dict[str, Any]:
    return run_cell(new_ns(), SESSION)


# -- session functions and globals ---------------------------------------------------------------


def test_session_function_is_bound_to_the_target_namespace(
    session: dict[str, Any], roundtrip: Roundtrip
) -> None:
    _group, out, target = roundtrip(session, "above", "total", "fact")
    for name in ("above", "total", "fact"):
        assert out[name].__globals__ is target
        assert out[name].__module__ == "__main__"
    target.update(out)
    target["threshold"] = 5  # changed after the restore: the function reads the live value
    assert out["above"](7) is True
    target["threshold"] = 50
    assert out["above"](7) is False
    target["big"] = np.ones(4)
    assert out["total"]() == 4.0  # the live `big`, not a private copy
    assert out["fact"](6) == 720  # recursion through the target namespace


def test_referenced_globals_are_not_pickled_with_the_function(session: dict[str, Any]) -> None:
    group = dump_group({"total": session["total"]}, session)
    assert group.buffers == []
    assert group.nbytes < 10_000  # `big` is 16 MB
    # plain cloudpickle would carry `big` inside the function
    assert len(cloudpickle.dumps(session["total"])) > 16_000_000


def test_functions_missing_globals_fail_at_call_time_not_load_time(
    session: dict[str, Any], roundtrip: Roundtrip
) -> None:
    _group, out, _target = roundtrip(session, "above")
    with pytest.raises(NameError, match="threshold"):
        out["above"](1)


def test_builtins_are_not_clobbered(session: dict[str, Any], roundtrip: Roundtrip) -> None:
    target = new_ns()
    _group, out, _ = roundtrip(session, "above", "Point", "p", target=target)
    assert target["__builtins__"] is builtins
    assert set(target) == {"__name__", "__builtins__"}  # load_group binds nothing itself
    bare: dict[str, Any] = {"__name__": "__main__"}
    _group, out, _ = roundtrip(session, "fact", target=bare)
    assert "__builtins__" not in bare
    bare["fact"] = out["fact"]
    assert out["fact"](4) == 24  # builtins still reachable (captured at function creation)


def test_reference_to_the_namespace_itself_maps_to_the_target(roundtrip: Roundtrip) -> None:
    ns = run_cell(new_ns(), "g = globals()\nholder = {'ns': g}")
    _group, out, target = roundtrip(ns, "g", "holder")
    assert out["g"] is target
    assert out["holder"]["ns"] is target


def test_namespace_nested_in_a_value_is_found_by_the_second_pass(
    roundtrip: Roundtrip, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = run_cell(new_ns(), "g = globals()\nholder = {'ns': g, 'n': 1}")
    passes = count_intercepting_passes(monkeypatch)
    _group, out, target = roundtrip(ns, "holder")
    assert out["holder"]["ns"] is target and out["holder"]["n"] == 1
    assert passes == [1]


def count_intercepting_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times dump_group had to use the pickler with a persistent_id hook."""
    passes: list[int] = []

    class Spy(serialize_dump._InterceptingPickler):
        def __init__(self, *args: Any) -> None:
            passes.append(1)
            super().__init__(*args)

    monkeypatch.setattr(serialize_dump, "_InterceptingPickler", Spy)
    return passes


def test_common_groups_use_the_pickler_without_persistent_id(
    session: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    passes = count_intercepting_passes(monkeypatch)
    values = {"floats": {str(i): float(i) for i in range(1000)}, "a": np.arange(10.0), "raw": bytearray(5)}
    dump_group({**values, "above": session["above"], "p": session["p"]}, session)
    assert passes == []  # a lone bytearray needs no hook: nothing else shares its memory
    assert all("persistent_id" not in vars(c) for c in (serialize_pickler._GroupPickler, cloudpickle.Pickler))


def test_plain_pickle_cannot_load_a_group_silently_wrong(session: dict[str, Any]) -> None:
    group = dump_group({"above": session["above"]}, session)
    with pytest.raises(TypeError, match="_SessionNamespace"):
        pickle.loads(main_stream(group))
    group = dump_group({"a": np.arange(100_000.0)}, session)
    with pytest.raises(pickle.UnpicklingError, match="load_group"):
        pickle.loads(main_stream(group), buffers=group.buffers)


def test_closures_decorators_defaults_attributes_lambdas(
    session: dict[str, Any], roundtrip: Roundtrip
) -> None:
    _group, out, target = roundtrip(session, "counter", "hello", "append_to", "tagged", "ops")
    target.update(out)
    assert out["counter"]() == 3  # closure state continues
    assert out["hello"]("bob") == ["hi bob"] * 3
    assert out["hello"].__name__ == "hello"
    assert out["hello"].__wrapped__.__globals__ is target
    assert out["append_to"](2) == [1, 2]  # the mutable default came along
    assert out["tagged"].calls == 7
    assert out["tagged"]() == 7
    assert out["ops"]["double"](4) == 8
    assert out["ops"]["neg"].__globals__ is target


def test_classes_instances_methods_properties(session: dict[str, Any], roundtrip: Roundtrip) -> None:
    _group, out, target = roundtrip(session, "Point", "p", "above")
    target.update(out)
    point_cls, p = out["Point"], out["p"]
    assert point_cls is not session["Point"]  # rebuilt, as in a fresh kernel
    assert isinstance(p, point_cls)
    assert p.norm == 5.0
    assert point_cls.origin().x == 0
    assert point_cls.dims == 2
    assert point_cls.__dict__["scaled"].__globals__ is target
    assert isinstance(p.scaled(2), point_cls)  # the method finds `Point` in the target namespace
    target["threshold"] = 3
    assert point_cls.limit() == 3


def test_dataclass_enum_namedtuple(roundtrip: Roundtrip) -> None:
    ns = run_cell(
        new_ns(),
        """
        import dataclasses, enum
        from typing import NamedTuple

        class Color(enum.Enum):
            RED = 1
            GREEN = 2

        @dataclasses.dataclass
        class Item:
            name: str
            qty: int = 0
            tags: list = dataclasses.field(default_factory=list)

        class Pair(NamedTuple):
            left: int
            right: int

        fav = Color.RED
        palette = [Color.RED, Color.GREEN, Color.RED]
        item = Item("apple", 3)
        pair = Pair(1, 2)
        """,
    )
    _group, out, _ = roundtrip(ns, "Color", "fav", "palette", "Item", "item", "Pair", "pair")
    color = out["Color"]
    assert out["fav"] is color.RED
    assert out["palette"][0] is out["palette"][2] is color.RED
    assert out["palette"][1] is color.GREEN
    assert out["item"] == out["Item"]("apple", 3)
    assert dataclasses.is_dataclass(out["item"])
    assert out["item"].tags == []
    assert out["pair"] == (1, 2)
    assert out["pair"].right == 2
    assert isinstance(out["pair"], out["Pair"])


def test_redefined_class_keeps_old_instances_on_the_old_class(roundtrip: Roundtrip) -> None:
    define = "class A:\n    version = {v}\n    def who(self):\n        return '{w}'\n{w} = A()\n"
    ns = run_cell(new_ns(), define.format(v=1, w="old"))
    run_cell(ns, define.format(v=2, w="new"), cell=2)
    _group, out, _ = roundtrip(ns, "A", "old", "new")
    assert type(out["new"]) is out["A"]
    assert type(out["old"]) is not out["A"]
    assert out["old"].version == 1 and out["old"].who() == "old"
    assert out["new"].version == 2 and out["new"].who() == "new"
    assert type(out["old"]).__qualname__ == "A"


def test_classes_keep_their_qualname_in_a_new_process(roundtrip: Roundtrip) -> None:
    # cloudpickle drops __qualname__ (the type holds it, not the class __dict__): a restore that loaded
    # these instead of replaying their cell saw `Local` instead of `make.<locals>.Local`, and failed
    # verification on the type name and the digest (tests/kernel/test_chain.py, when the planner
    # happened to store the corpus' make_local_class).
    ns = run_cell(
        new_ns(),
        """
        import dataclasses, enum
        from typing import NamedTuple

        def make(tag):
            class Local:
                def show(self):
                    return tag

            class Slotted:
                __slots__ = ("v",)

            @dataclasses.dataclass
            class Data:
                x: int = 1

            class Pair(NamedTuple):
                a: int

            class Color(enum.Enum):
                RED = 1

            return Local, Slotted, Data, Pair, Color

        class Outer:
            class Inner:
                pass

        Local, Slotted, Data, Pair, Color = make("loc")
        objs = [Local(), Slotted(), Data(), Pair(1), Color.RED, Outer.Inner()]
        """,
    )
    names = ("Local", "Slotted", "Data", "Pair", "Color", "Outer", "objs")
    before = {n: (type_name(ns[n]), fingerprint(ns[n]).digest) for n in names}
    _group, out, target = roundtrip(ns, *names)
    target.update(out)
    assert [type(o).__qualname__ for o in out["objs"]] == [
        "make.<locals>.Local", "make.<locals>.Slotted", "make.<locals>.Data", "make.<locals>.Pair",
        "make.<locals>.Color", "Outer.Inner",
    ]  # fmt: skip
    assert out["Local"] is not ns["Local"]  # rebuilt, as in a fresh kernel
    assert out["objs"][0].show() == "loc"
    assert repr(out["objs"][2]) == "make.<locals>.Data(x=1)"
    assert not hasattr(out["objs"][1], "__dict__")  # still slotted
    assert {n: (type_name(out[n]), fingerprint(out[n]).digest) for n in names} == before  # what restore verifies


def test_session_code_is_pickled_by_value_whatever_sys_modules_main_is(
    session: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under pytest, __main__ is pytest's module, which has no `above` or `Point`.
    assert getattr(sys.modules["__main__"], "Point", None) is not session["Point"]
    group = dump_group({n: session[n] for n in ("above", "Point", "p", "ops")}, session)
    assert not any(ref.startswith("__main__") for ref in globals_referenced(group))

    # In a kernel, sys.modules["__main__"] IS the user namespace: still by value.
    kernel_main = types.ModuleType("__main__")
    run_cell(kernel_main.__dict__, SESSION)
    monkeypatch.setitem(sys.modules, "__main__", kernel_main)
    ns = kernel_main.__dict__
    group = dump_group({n: ns[n] for n in ("above", "Point", "p", "ops")}, ns)
    assert not any(ref.startswith("__main__") for ref in globals_referenced(group))
    assert "cloudpickle.cloudpickle _make_function" in globals_referenced(group)  # by value


# -- by-reference-to-__main__ objects and other failures -----------------------------------------

LRU = """
import functools

@functools.lru_cache(maxsize=None)
def slow_square(x):
    return x * x

slow_square(3)
cache_holder = {"f": slow_square}

class Singleton:
    def __reduce__(self):
        return "THE_ONE"

THE_ONE = Singleton()
"""


def test_lru_cache_wrapper_is_rejected_naming_the_variable() -> None:
    ns = run_cell(new_ns(), LRU)
    with pytest.raises(SerializationError) as info:
        dump_group({"slow_square": ns["slow_square"]}, ns)
    assert str(info.value) == (
        "`slow_square` (functools._lru_cache_wrapper defined in the session) "
        "can only be pickled by reference to __main__"
    )
    with pytest.raises(SerializationError) as info:
        dump_group({"cache_holder": ns["cache_holder"]}, ns)
    assert str(info.value).startswith("`cache_holder` holds `slow_square` (functools._lru_cache_wrapper")


def test_lru_cache_is_rejected_even_where_plain_pickle_would_silently_succeed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel_main = types.ModuleType("__main__")
    run_cell(kernel_main.__dict__, LRU)
    monkeypatch.setitem(sys.modules, "__main__", kernel_main)
    ns = kernel_main.__dict__
    # The hazard: plain cloudpickle writes "look up __main__.slow_square" and succeeds here.
    assert "__main__ slow_square" in globals_in(cloudpickle.dumps(ns["slow_square"]))
    with pytest.raises(SerializationError, match=r"`slow_square` \(functools\._lru_cache_wrapper"):
        dump_group({"slow_square": ns["slow_square"]}, ns)


def test_any_object_reducing_to_a_main_name_is_rejected() -> None:
    ns = run_cell(new_ns(), LRU)
    with pytest.raises(SerializationError, match=r"`THE_ONE` \(Singleton defined in the session\)"):
        dump_group({"THE_ONE": ns["THE_ONE"]}, ns)


def test_loader_refuses_main_lookups() -> None:
    ns = run_cell(new_ns(), "x = 1")
    group = dump_group({"x": 1}, ns)
    _stream, (names, n_oob, regions, refs) = serialize_load._split_envelope(memoryview(group.pickle))
    # {"x": __main__.y}, written by hand: our pickler never emits such a lookup
    crafted = b"\x80\x05}\x94\x8c\x01x\x94\x8c\x08__main__\x94\x8c\x01y\x94\x93\x94s."
    header = pickle.dumps((1, names, n_oob, tuple(regions), tuple(refs)), protocol=5)
    blob = crafted + header + stream_format._TRAILER.pack(len(header), stream_format._MAGIC)
    with pytest.raises(SerializationError, match=r"refusing to look up __main__\.y"):
        load_group(blob, [], new_ns())


def test_generator_is_rejected_naming_the_variable_and_type() -> None:
    ns = run_cell(new_ns(), "squares = (i * i for i in range(5))\nnext(squares)\nok = [1]\nbox = [squares]")
    with pytest.raises(SerializationError) as info:
        dump_group({"squares": ns["squares"]}, ns)
    expected = "cannot pickle `squares` (generator): TypeError: cannot pickle 'generator' object"
    assert str(info.value) == expected
    # In a group, the culprit is found by trying names one by one; the healthy name is not blamed.
    with pytest.raises(SerializationError) as info:
        dump_group({"ok": ns["ok"], "squares": ns["squares"]}, ns)
    assert str(info.value).startswith("cannot pickle `squares` (generator)")
    assert "`ok`" not in str(info.value)
    with pytest.raises(SerializationError, match=r"cannot pickle `box` \(generator inside list\)"):
        dump_group({"box": ns["box"]}, ns)
    assert next(ns["squares"]) == 1  # nothing consumed or changed


def test_several_culprits_are_all_named() -> None:
    ns = run_cell(new_ns(), "import threading\ng = (i for i in [])\nlock = threading.Lock()\nfine = 3")
    with pytest.raises(SerializationError) as info:
        dump_group({"g": ns["g"], "fine": 3, "lock": ns["lock"]}, ns)
    message = str(info.value)
    assert "`g` (generator)" in message and "`lock` (_thread.lock)" in message
    assert "`fine`" not in message


def test_a_reduce_that_raises_is_reported_with_its_type() -> None:
    code = "class Bad:\n    def __reduce__(self):\n        raise ValueError('no')\nbad = {'k': Bad()}"
    ns = run_cell(new_ns(), code)
    with pytest.raises(SerializationError, match=r"cannot pickle `bad` \(Bad inside dict\): ValueError: no"):
        dump_group({"bad": ns["bad"]}, ns)


def test_load_failure_is_a_serialization_error_and_restores_builtins(
    fresh_process: Callable[[], None],
) -> None:
    ns = run_cell(new_ns(), "def f():\n    return 1\nclass C:\n    pass\nc = C()")
    group = dump_group({"f": ns["f"], "c": ns["c"]}, ns)
    fresh_process()
    target = new_ns()
    with pytest.raises(SerializationError, match=r"cannot load `f`, `c`: .*expected 0 buffers, got 1"):
        load_group(group.pickle, [memoryview(bytearray(3))], target)
    broken = group.pickle.replace(b"_make_skeleton_class", b"_make_skeleton_clazz")
    with pytest.raises(SerializationError, match=r"cannot load `f`, `c`: AttributeError"):
        load_group(broken, [], target)
    assert target["__builtins__"] is builtins
    assert set(target) == {"__name__", "__builtins__"}


@pytest.mark.parametrize("blob", [b"", b"short", b"x" * 40 + stream_format._TRAILER.pack(10, b"NOPE")])
def test_garbage_is_refused(blob: bytes) -> None:
    with pytest.raises(SerializationError, match="not a stored nbmigrate group"):
        load_group(blob, [], new_ns())


def test_header_may_not_reference_globals() -> None:
    header = pickle.dumps((1, ("x",), 0, (), (), os.system), protocol=5)
    blob = pickle.dumps({"x": 1}) + header + stream_format._TRAILER.pack(len(header), stream_format._MAGIC)
    with pytest.raises(SerializationError, match="unreadable group header"):
        load_group(blob, [], new_ns())


# -- pinned cloudpickle internals ----------------------------------------------------------------


def test_pinned_cloudpickle_internals() -> None:
    """What serialize.py relies on; if an upgrade breaks one of these, update _GroupPickler."""
    ns = run_cell(new_ns(), "y = 2\ndef f(x):\n    return x + y\n")
    pickler = cloudpickle.Pickler(io.BytesIO(), protocol=5)
    newargs = pickler._function_getnewargs(ns["f"])
    assert isinstance(newargs, tuple) and len(newargs) == 5
    assert newargs[0] is ns["f"].__code__ and isinstance(newargs[1], dict)
    rv = pickler._dynamic_function_reduce(ns["f"])
    assert rv[0] is cloudpickle_impl._make_function and rv[5] is cloudpickle_impl._function_setstate
    assert rv[2][1]["__globals__"] == {"y": 2}  # the captured globals we drop
    assert callable(cloudpickle.Pickler.reducer_override)
    assert isinstance(cloudpickle.Pickler.dispatch_table.get(types.CodeType), types.FunctionType)
    # cloudpickle writes __builtins__ into the globals it rebuilds functions over (why we restore it)
    rebuilt: dict[str, Any] = {}
    cloudpickle_impl._make_function(ns["f"].__code__, rebuilt, "f", None, None)
    assert "__builtins__" in rebuilt
    # class tracking, used by the fresh_process fixture
    assert isinstance(cloudpickle_impl._DYNAMIC_CLASS_TRACKER_BY_ID, weakref.WeakValueDictionary)


def test_incompatible_cloudpickle_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_cell(new_ns(), "def f():\n    return 1\n")
    original = cloudpickle.Pickler._function_getnewargs
    monkeypatch.setattr(cloudpickle.Pickler, "_function_getnewargs", lambda self, f: original(self, f)[:4])
    with pytest.raises(SerializationError, match=r"cloudpickle .* changed the internals"):
        dump_group({"f": ns["f"]}, ns)
    monkeypatch.undo()
    original_reduce = cloudpickle.Pickler._dynamic_function_reduce

    def no_globals_in_state(self: Any, func: Any) -> Any:
        rv = original_reduce(self, func)
        return (rv[0], rv[1], (rv[2][0], {}), *rv[3:])

    monkeypatch.setattr(cloudpickle.Pickler, "_dynamic_function_reduce", no_globals_in_state)
    with pytest.raises(SerializationError, match="changed the internals"):
        dump_group({"f": ns["f"]}, ns)


def test_rebuild_functions_are_referenced_by_name(fresh_process: Callable[[], None]) -> None:
    ns = new_ns()
    group = dump_group({"a": np.arange(10.0)}, ns)
    assert "nbmigrate.serialize _rebuild_ndarray" in globals_referenced(group)


# -- aliasing of plain objects -------------------------------------------------------------------


def test_aliasing_inside_a_group(roundtrip: Roundtrip) -> None:
    ns = run_cell(
        new_ns(),
        """
        shared = [1, 2, 3]
        alias = shared
        container = {"items": shared, "nested": [shared, {"again": shared}]}
        d = {"a": 1, "b": [10, 20]}
        pair = (d, d["b"])
        cycle = ["head"]
        cycle.append(cycle)
        class Item:
            def __init__(self, name):
                self.name = name
        items = [Item("a"), Item("b")]
        by_name = {it.name: it for it in items}
        """,
    )
    _group, out, _ = roundtrip(ns, "shared", "alias", "container", "d", "pair", "cycle", "items", "by_name")
    assert out["alias"] is out["shared"]
    assert out["container"]["nested"][1]["again"] is out["shared"]
    out["alias"].append(4)
    assert out["container"]["items"] == [1, 2, 3, 4]
    assert out["pair"][0] is out["d"] and out["pair"][1] is out["d"]["b"]
    assert out["cycle"][1] is out["cycle"]
    assert out["by_name"]["a"] is out["items"][0]


def test_empty_group_and_empty_objects(roundtrip: Roundtrip) -> None:
    group = dump_group({}, new_ns())
    assert load_group(group.pickle, [], new_ns()) == {}
    ns = {**new_ns(), "e": np.empty((0, 3)), "b": bytearray(), "s": "", "t": torch.empty(0)}
    _group, out, _ = roundtrip(ns, "e", "b", "s", "t")
    assert out["e"].shape == (0, 3) and out["b"] == bytearray() and out["t"].numel() == 0


# -- numpy: views, bytearrays, no copies ---------------------------------------------------------


def test_numpy_views_share_memory_with_their_base_after_load(roundtrip: Roundtrip) -> None:
    ns = run_cell(
        new_ns(),
        """
        import numpy as np
        base = np.arange(24, dtype=np.float64).reshape(4, 6)
        row_view = base[1]
        col_view = base[:, 2]
        block_view = base[1:3, 2:5]
        flat_view = base.reshape(-1)
        transposed = base.T
        reversed_view = base[::-1, ::2]
        view_of_view = block_view[:, 1]
        fancy_copy = base[[0, 2]]
        """,
    )
    names = ("base", "row_view", "col_view", "block_view", "flat_view", "transposed", "reversed_view",
             "view_of_view", "fancy_copy")
    group, out, _ = roundtrip(ns, *names)
    for name in names:
        np.testing.assert_array_equal(out[name], ns[name])
        assert out[name].flags.writeable
    for name in names[1:-1]:
        assert np.shares_memory(out["base"], out[name]), name
    assert not np.shares_memory(out["base"], out["fancy_copy"])
    assert out["row_view"].base is not None
    out["base"][1, :] = 99.0
    out["base"][0, 2] = -7.0
    assert out["row_view"].tolist() == [99.0] * 6
    assert out["col_view"].tolist() == [-7.0, 99.0, 14.0, 20.0]
    assert out["view_of_view"].tolist() == [99.0, 15.0]
    assert out["transposed"][2, :2].tolist() == [-7.0, 99.0]
    assert out["reversed_view"][2].tolist() == [99.0, 99.0, 99.0]
    assert out["fancy_copy"][0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert group.nbytes < 4000  # the base stored once (in band: it is small)


def test_arrays_over_one_bytearray_share_it_after_load(
    roundtrip: Roundtrip, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = run_cell(
        new_ns(),
        """
        import numpy as np
        raw = bytearray(range(16))
        u8 = np.frombuffer(raw, dtype=np.uint8)
        u16 = np.frombuffer(raw, dtype=np.uint16)
        """,
    )
    passes = count_intercepting_passes(monkeypatch)
    _group, out, _ = roundtrip(ns, "u8", "raw", "u16")
    assert passes == [1]  # the first pass stopped at u8's bytearray
    raw = out["raw"]
    assert type(raw) is bytearray and raw == ns["raw"]
    raw[0], raw[1] = 255, 1
    assert int(out["u8"][0]) == 255
    assert int(out["u16"][0]) == 511
    assert out["u16"].shape == (8,)
    # the dump took a snapshot, it holds no export on the user's bytearray
    plain = bytearray(b"abc")
    group = dump_group({"plain": plain}, new_ns())
    plain.extend(b"def")
    assert group.nbytes > 0


def test_small_view_of_an_unreachable_base_stores_only_what_it_uses(roundtrip: Roundtrip) -> None:
    ns = run_cell(new_ns(), "import numpy as np\nhead = np.arange(1e7)[:8]\ncol = np.ones((999, 999))[:, 0]")
    group, out, _ = roundtrip(ns, "head")
    assert group.nbytes < 2000
    assert out["head"].tolist() == list(range(8))
    group, out, _ = roundtrip(ns, "col")  # a strided column spans nearly its whole base
    np.testing.assert_array_equal(out["col"], np.ones(999))


def test_broadcast_and_sliding_windows_are_not_materialised(roundtrip: Roundtrip) -> None:
    ns = run_cell(
        new_ns(),
        """
        import numpy as np
        src = np.arange(10.0)
        wide = np.broadcast_to(src, (1_000_000, 10))
        windows = np.lib.stride_tricks.sliding_window_view(src, 3)
        """,
    )
    group, out, _ = roundtrip(ns, "wide", "windows")
    assert group.nbytes < 2000  # not 80 MB
    np.testing.assert_array_equal(out["wide"][123_456], np.arange(10.0))
    assert out["windows"][2].tolist() == [2.0, 3.0, 4.0]
    assert not out["wide"].flags.writeable and not out["windows"].flags.writeable


def test_dtypes_and_flags_round_trip(roundtrip: Roundtrip) -> None:
    frozen = np.arange(100_000)
    frozen.flags.writeable = False
    ns = {
        **new_ns(),
        "objects": np.array([{"a": 1}, [1, 2], None], dtype=object),
        "records": np.zeros(3, dtype=[("a", "i4"), ("b", "f8"), ("s", "U5")]),
        "stamps": np.arange(200_000).astype("datetime64[s]"),
        "deltas": np.arange(5).astype("timedelta64[ms]"),
        "fortran": np.asfortranarray(np.arange(200_000.0).reshape(400, 500)),
        "swapped": np.arange(20_000, dtype=">i4"),
        "frozen": frozen,
        "scalar": np.float32(2.5),
        "zero_d": np.array(3.0),
    }
    _group, out, _ = roundtrip(ns, *[k for k in ns if not k.startswith("__")])
    for key in ("objects", "records", "stamps", "deltas", "fortran", "swapped", "frozen", "zero_d"):
        np.testing.assert_array_equal(out[key], ns[key])
        assert out[key].dtype == ns[key].dtype
    assert out["fortran"].flags.f_contiguous
    assert not out["frozen"].flags.writeable
    assert out["stamps"].flags.writeable
    assert out["scalar"] == np.float32(2.5)


def test_loaded_arrays_are_writable_views_of_the_given_buffers() -> None:
    a = np.linspace(0.0, 1.0, 1_000_000)
    group = dump_group({"a": a, "v": a[10:20]}, new_ns())
    buffers = [memoryview(bytearray(b)) for b in group.buffers]
    out = load_group(group.pickle, buffers, new_ns())
    assert out["a"].flags.writeable
    assert np.shares_memory(out["a"], np.frombuffer(buffers[0], dtype=np.uint8))
    assert np.shares_memory(out["a"], out["v"])
    # read-only buffers are copied, so the arrays are still writable
    out = load_group(group.pickle, [memoryview(bytes(b)) for b in group.buffers], new_ns())
    assert out["a"].flags.writeable
    out["a"][10] = 5.0
    assert out["v"][0] == 5.0


def test_many_small_arrays_stay_in_band() -> None:
    group = dump_group({"parts": [np.full(100, i) for i in range(1000)]}, new_ns())
    assert group.buffers == []


def test_big_array_is_not_copied_at_dump() -> None:
    """300 MB of float64: the out-of-band buffer IS the array's memory; dump takes well under 50 ms."""
    big = np.linspace(0.0, 1.0, 300 * MiB // 8)
    tracemalloc.start()
    t0 = time.perf_counter()
    group = dump_group({"big": big}, new_ns())
    seconds = time.perf_counter() - t0
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(group.buffers) == 1
    assert address(group.buffers[0]) == big.ctypes.data and group.buffers[0].nbytes == big.nbytes
    assert peak < 1 * MiB  # numpy reports its allocations to tracemalloc: no copy was made
    assert len(group.pickle) < 1000
    assert group.seconds <= seconds < 0.5  # typically < 1 ms; generous for loaded CI machines


def test_redump_after_restore_stores_only_the_regions(roundtrip: Roundtrip) -> None:
    """A -> B -> C: arrays restored over a big blob must not drag the whole blob into the next dump."""
    ns = {**new_ns(), "a": np.arange(1_000_000.0), "b": np.ones(500_000), "small": np.arange(10)}
    first, out, target = roundtrip(ns, "a", "b", "small", compress="never")
    second = dump_group(out, target)
    assert second.nbytes <= first.nbytes + 256
    out2 = load_group(second.pickle, [memoryview(bytearray(b)) for b in second.buffers], new_ns())
    np.testing.assert_array_equal(out2["a"], ns["a"])


# -- torch ---------------------------------------------------------------------------------------


def test_plain_torch_pickling_copies_and_loses_aliasing() -> None:
    """Why serialize.py reduces torch storages itself: torch's reducer torch.save()s the whole storage
    in band, once per tensor, so a view no longer aliases its base after loading."""
    t = torch.arange(100_000, dtype=torch.float64)
    buffers: list[pickle.PickleBuffer] = []
    blob = cloudpickle.dumps((t, t[10:20]), protocol=5, buffer_callback=buffers.append)
    assert buffers == [] and len(blob) > 2 * t.nbytes
    t2, v2 = pickle.loads(blob)
    v2[0] = -1
    assert t2[10].item() == 10.0


def test_torch_tensor_and_view_share_memory_after_load(roundtrip: Roundtrip) -> None:
    t = torch.arange(1_000_000, dtype=torch.float32)
    half = torch.zeros(3, dtype=torch.bfloat16)
    ns = {**new_ns(), "t": t, "v": t[10:20], "m": t.view(1000, 1000)[:, 3], "b": half}
    group, out, _ = roundtrip(ns, "t", "v", "m", "b", compress="never")
    assert len(group.buffers) == 1 and group.buffers[0].nbytes == t.nbytes  # the storage, once
    assert torch.equal(out["t"], t) and torch.equal(out["m"], ns["m"]) and out["b"].dtype == torch.bfloat16
    out["t"][10] = -1.0
    out["t"][3003] = -2.0
    assert out["v"][0].item() == -1.0
    assert out["m"][3].item() == -2.0
    assert out["v"].untyped_storage().data_ptr() == out["t"].untyped_storage().data_ptr()


def test_torch_storage_goes_out_of_band_without_copy() -> None:
    t = torch.randn(4 * MiB // 4)
    group = dump_group({"t": t}, new_ns())
    assert len(group.buffers) == 1
    assert address(group.buffers[0]) == t.data_ptr()
    assert len(group.pickle) < 2000


def test_torch_and_numpy_sharing_memory_stay_shared(roundtrip: Roundtrip) -> None:
    x = np.arange(200_000, dtype=np.float32)
    ns = {**new_ns(), "x": x, "xt": torch.from_numpy(x).unsqueeze(1), "back": torch.ones(5).numpy()}
    group, out, _ = roundtrip(ns, "x", "xt", "back")
    assert len(group.buffers) == 1  # one region for x and xt
    assert np.shares_memory(out["xt"].numpy(), out["x"])
    out["x"][7] = -3.0
    assert out["xt"][7, 0].item() == -3.0
    assert out["back"].tolist() == [1.0] * 5


def test_torch_module_optimizer_and_parameters(roundtrip: Roundtrip) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(16, 4)).sum().backward()
    opt.step()
    ns = {**new_ns(), "model": model, "opt": opt, "w": model[0].weight}
    _group, out, _ = roundtrip(ns, "model", "opt", "w")
    m2, o2 = out["model"], out["opt"]
    assert o2.param_groups[0]["params"][0] is m2[0].weight is out["w"]
    assert isinstance(out["w"], torch.nn.Parameter) and out["w"].requires_grad
    for a, b in zip(model.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    batch = torch.randn(2, 4)
    assert torch.equal(model(batch), m2(batch))
    m2(batch).sum().backward()
    o2.step()  # the restored optimizer keeps working on the restored parameters


def test_restored_torch_storage_is_not_resizable() -> None:
    """Documented limitation: tensors are rebuilt over the given buffer (zero copy), so their storage
    cannot grow in place (``t.resize_`` to a larger size)."""
    group = dump_group({"t": torch.ones(100_000)}, new_ns())
    out = load_group(group.pickle, [memoryview(bytearray(b)) for b in group.buffers], new_ns())
    out["t"].add_(1)
    assert out["t"][0].item() == 2.0
    with pytest.raises(RuntimeError):
        out["t"].resize_(200_000)


# -- pandas, polars, pyarrow ---------------------------------------------------------------------


def test_pandas_frame_with_string_categorical_tz_columns(roundtrip: Roundtrip) -> None:
    n = 1000
    df = pd.DataFrame(
        {
            "i": np.arange(n),
            "f": np.linspace(0, 1, n),
            "s": pd.array([f"s{i % 7}" for i in range(n)], dtype="str"),
            "c": pd.Categorical([("lo", "hi")[i % 2] for i in range(n)], ["lo", "hi"], ordered=True),
            "t": pd.date_range("2024-01-01", periods=n, freq="h", tz="Europe/Paris"),
            "n": pd.array([None if i % 5 == 0 else i for i in range(n)], dtype="Int64"),
        }
    ).set_index(["c", "i"])
    _group, out, _ = roundtrip({**new_ns(), "df": df}, "df")
    pd.testing.assert_frame_equal(out["df"], df)
    assert out["df"]["t"].dt.tz is not None


def test_pandas_copy_on_write_semantics_survive(roundtrip: Roundtrip) -> None:
    df = pd.DataFrame({"x": np.arange(6), "y": np.linspace(0.0, 1.0, 6), "g": list("aabbcc")})
    ns = {**new_ns(), "df": df, "df_alias": df, "s_x": df["x"], "head": df.iloc[:3], "frames": {"m": df}}
    _group, out, _ = roundtrip(ns, "df", "df_alias", "s_x", "head", "frames")
    assert out["df_alias"] is out["df"] and out["frames"]["m"] is out["df"]
    out["df_alias"].loc[0, "x"] = 100
    assert out["df"].loc[0, "x"] == 100
    assert out["s_x"].tolist() == [0, 1, 2, 3, 4, 5]  # a CoW copy, not a view, as in pandas 3
    out["head"].iloc[1, 1] = -5.0
    assert out["df"]["y"].iloc[1] == 0.2


def test_large_frame_numeric_columns_go_out_of_band() -> None:
    n = 3_000_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.standard_normal(n),
            "y": rng.random(n).astype(np.float32),
            "s": pd.array(rng.choice(["a", "bb", "ccc"], n), dtype="str"),
            "t": pd.date_range("2024-01-01", periods=n, freq="s", tz="UTC"),
        }
    )
    group = dump_group({"df": df}, new_ns())
    assert len(group.pickle) < 100_000  # everything big went out of band, strings and timestamps too
    addresses = {address(b) for b in group.buffers}
    for column in ("id", "x", "y"):
        block = df._mgr.blocks[df._mgr.blknos[df.columns.get_loc(column)]].values
        assert block.ctypes.data in addresses, column  # zero copy: the buffer is the column's memory
    out = load_group(group.pickle, [memoryview(bytearray(b)) for b in group.buffers], new_ns())
    pd.testing.assert_frame_equal(out["df"], df)


def test_polars_and_pyarrow(roundtrip: Roundtrip) -> None:
    frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    table = pa.table({"a": np.arange(100_000), "b": ["q"] * 100_000})
    ns = {**new_ns(), "frame": frame, "lazy": frame.lazy().filter(pl.col("a") > 1), "table": table,
          "column": table.column("a"), "batches": table.to_batches()}
    group, out, _ = roundtrip(ns, "frame", "lazy", "table", "column", "batches", compress="never")
    assert out["frame"].equals(frame)
    assert out["lazy"].collect().equals(ns["lazy"].collect())
    assert out["table"].equals(table) and out["column"].equals(table.column("a"))
    assert pa.Table.from_batches(out["batches"]).equals(table)
    assert any(b.nbytes == 800_000 for b in group.buffers)  # arrow's int64 buffer went out of band


# -- pack / unpack -------------------------------------------------------------------------------


def group_of(*buffers: bytes | np.ndarray[Any, Any], pickle_bytes: bytes = b"p") -> SerializedGroup:
    views = [memoryview(np.ascontiguousarray(b)).cast("B") if isinstance(b, np.ndarray) else memoryview(b)
             for b in buffers]
    return SerializedGroup(names=("x",), pickle=pickle_bytes, buffers=views, seconds=0.0)


def test_compression_decisions() -> None:
    rng = np.random.default_rng(1)
    zeros = np.zeros(2 * MiB // 8)
    ramp = np.arange(2 * MiB // 8, dtype=np.float64)
    linspace = np.linspace(0.0, 1.0, 2 * MiB // 8)
    noise = rng.standard_normal(2 * MiB // 8)
    small_noise = rng.bytes(20_000)
    parts = pack_parts(group_of(zeros, ramp, linspace, noise, pickle_bytes=b"abc" * 3000))
    codecs = [p.codec for p in parts]
    assert codecs == ["zstd", "zstd", "zstd", "zstd", "none"]
    assert parts[1].payload.nbytes < zeros.nbytes / 100
    assert parts[4].payload.nbytes == noise.nbytes and address(parts[4].payload) == noise.ctypes.data
    sources = (zeros, ramp, linspace, noise)
    assert all(p.raw_length == b.nbytes for p, b in zip(parts[1:], sources, strict=True))
    small = pack_parts(group_of(pickle_bytes=small_noise))
    assert small[0].codec == "none"  # > 4 KiB but incompressible
    tiny = pack_parts(group_of(pickle_bytes=b"a" * 4000))
    assert tiny[0].codec == "none"  # not worth it under 4 KiB
    assert [p.codec for p in pack_parts(group_of(zeros), compress="never")] == ["none", "none"]
    assert [p.codec for p in pack_parts(group_of(noise), compress="always")] == ["zstd", "zstd"]
    with pytest.raises(ValueError):
        pack_parts(group_of(zeros), compress="sometimes")  # type: ignore[arg-type]


def test_compression_pays_only_when_it_beats_the_write_it_saves() -> None:
    # Bandwidths far from any real compression speed, so the machine's load cannot flip the choice.
    ramp = np.arange(2 * MiB // 8, dtype=np.float64)
    fast_link = pack_parts(group_of(ramp), bandwidth=1e13)
    assert [p.codec for p in fast_link] == ["none", "none"]
    assert address(fast_link[1].payload) == ramp.ctypes.data  # still the zero-copy view
    slow_link = pack_parts(group_of(ramp), bandwidth=1e3)
    assert [p.codec for p in slow_link] == ["none", "zstd"]


def test_pack_unpack_round_trip_is_writable_and_zero_copy_for_raw_parts() -> None:
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(MiB // 8)
    zeros = np.zeros(MiB // 8)
    group = group_of(noise, zeros, pickle_bytes=b"header" * 2000)
    parts = pack_parts(group)
    blob = bytearray(b"".join(p.payload for p in parts))
    view = memoryview(blob)
    sliced, offset = [], 0
    for p in parts:
        sliced.append(Part(p.kind, p.codec, p.raw_length, view[offset : offset + p.payload.nbytes]))
        offset += p.payload.nbytes
    pickle_view, buffers = unpack_parts(sliced, view)
    assert bytes(pickle_view) == b"header" * 2000
    assert bytes(buffers[0]) == noise.tobytes() and bytes(buffers[1]) == zeros.tobytes()
    assert all(not b.readonly for b in [pickle_view, *buffers])
    raw_start = parts[0].payload.nbytes
    assert address(buffers[0]) == address(view) + raw_start  # the raw part is a slice of the blob
    # read-only payloads inside a writable blob are re-sliced from the blob, not copied
    readonly = [Part(p.kind, p.codec, p.raw_length, p.payload.toreadonly()) for p in sliced]
    _, again = unpack_parts(readonly, view)
    assert not again[0].readonly and address(again[0]) == address(buffers[0])
    # and copied when they are not
    outside = [Part(p.kind, p.codec, p.raw_length, memoryview(bytes(p.payload))) for p in parts]
    _, copied = unpack_parts(outside, view)
    assert not copied[0].readonly and bytes(copied[0]) == noise.tobytes()


def test_unpack_rejects_bad_parts() -> None:
    good = pack_parts(group_of(np.zeros(MiB // 8)))
    data = memoryview(bytearray(16))
    with pytest.raises(SerializationError, match="one pickle part"):
        unpack_parts(good[1:], data)
    with pytest.raises(SerializationError, match="raw_length"):
        unpack_parts([Part("pickle", "none", 5, memoryview(b"abc"))], data)
    corrupt = bytearray(good[1].payload)
    corrupt[len(corrupt) // 2] ^= 0xFF
    with pytest.raises(SerializationError, match="part 1"):
        unpack_parts([good[0], Part("buffer", "zstd", good[1].raw_length, memoryview(corrupt))], data)
    with pytest.raises(SerializationError, match="different length"):
        unpack_parts([good[0], Part("buffer", "zstd", good[1].raw_length + 1, good[1].payload)], data)
    with pytest.raises(SerializationError, match="unknown codec"):
        unpack_parts([Part("pickle", "lz4", 1, memoryview(b"a"))], data)  # type: ignore[arg-type]


# -- a real fresh process ------------------------------------------------------------------------

CHILD = """
import builtins, json, pickle, sys
import numpy as np
from nbmigrate.serialize import load_group

pickle_bytes = open(sys.argv[1], "rb").read()
buffers = [memoryview(bytearray(open(path, "rb").read())) for path in sys.argv[2:]]
ns = {"__name__": "__main__", "__builtins__": builtins}
values = load_group(pickle_bytes, buffers, ns)
ns.update(values)
ns["threshold"] = 5
values["base"][0, 0] = 42.0
print(json.dumps({
    "globals_is_ns": values["above"].__globals__ is ns,
    "method_globals_is_ns": type(values["p"]).scaled.__globals__ is ns,
    "above_7": values["above"](7),
    "isinstance": isinstance(values["p"], values["Point"]),
    "scaled_is_point": isinstance(values["p"].scaled(2), values["Point"]),
    "norm": values["p"].norm,
    "counter": values["counter"](),
    "view_sees_write": float(values["row"][0]),
    "shares": bool(np.shares_memory(values["base"], values["row"])),
    "builtins_kept": ns["__builtins__"] is builtins,
}))
"""


def test_round_trip_into_a_fresh_process(session: dict[str, Any], tmp_path: Path) -> None:
    session["base"] = np.arange(200_000.0).reshape(1000, 200)
    session["row"] = session["base"][0]
    group = dump_group({n: session[n] for n in ("above", "Point", "p", "counter", "base", "row")}, session)
    (tmp_path / "pickle").write_bytes(group.pickle)
    paths = []
    for i, buffer in enumerate(group.buffers):
        path = tmp_path / f"buffer{i}"
        path.write_bytes(buffer)
        paths.append(str(path))
    package_root = Path(serialize_dump.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), os.environ.get("PYTHONPATH", "")])}
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "pickle"), *paths],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {
        "globals_is_ns": True,
        "method_globals_is_ns": True,
        "above_7": True,
        "isinstance": True,
        "scaled_is_point": True,
        "norm": 5.0,
        "counter": 3,
        "view_sees_write": 42.0,
        "shares": True,
        "builtins_kept": True,
    }


def test_helpers_are_self_consistent() -> None:
    """The test helpers above must not hide problems: the blob simulation slices in order."""
    group = dump_group({"a": np.zeros(MiB // 8), "b": [1, 2]}, new_ns())
    pickle_view, buffers = store_and_read(group)
    assert bytes(pickle_view) == group.pickle
    assert [bytes(b) for b in buffers] == [bytes(b) for b in group.buffers]

