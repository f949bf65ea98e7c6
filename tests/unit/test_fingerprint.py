"""Tests of the one-walk fingerprint: content digest, persistent identities, buffer spans.

Every value is built inside the test that uses it: module-level objects of an imported module count as
"library singletons" and are never recorded in ``ids`` (see ``nbmigrate.fingerprint.singletons._Registry``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import scipy.sparse as sp
import torch

from nbmigrate.fingerprint import Fingerprint, FingerprintSession, changed, fingerprint

SRC = Path(__file__).resolve().parents[2] / "src"


def digest(v: Any) -> str:
    d = fingerprint(v).digest
    assert d is not None, f"no digest for {type(v)}: {fingerprint(v).opaque}"
    return d


def session_ns() -> dict[str, Any]:
    """A fresh namespace whose functions and classes count as defined in the session."""
    return {"__name__": "__main__"}


def make_session_class(name: str = "Point") -> type:
    cls = type(name, (), {"__init__": lambda self, x, y: self.__dict__.update(x=x, y=y)})
    cls.__module__ = "__main__"
    return cls


# --------------------------------------------------------------------------------------------------
# equal values, built differently -> equal digests


def test_atoms_and_containers_built_differently() -> None:
    assert digest([1, 2, 3]) == digest(list(range(1, 4)))
    assert digest("".join(["ab", "c"])) == digest("abc")
    assert digest({"a": [1, {"b": (2, 3)}]}) == digest(dict([("a", [1, dict(b=(2, 3))])]))
    assert digest({"x", "y", "z"}) == digest(set(reversed(["x", "y", "z"])))
    assert digest(frozenset({(1, "a"), (2, "b")})) == digest(frozenset([(2, "b"), (1, "a")]))
    assert digest({1: [1], 2: [2]}) != digest({2: [2], 1: [1]})  # insertion order is observable
    assert digest(OrderedDict(a=1)) != digest({"a": 1})
    assert digest(deque([1, 2], maxlen=3)) != digest(deque([1, 2]))
    assert digest(1) != digest(1.0) != digest(True)
    assert digest(b"ab") != digest("ab") != digest(bytearray(b"ab"))
    assert digest(-0.0) != digest(0.0)
    assert digest(2**100) != digest(2**100 + 1)
    assert digest(["\ud800"]) == digest(["\ud800"])  # lone surrogates are hashed, not rejected


def test_sets_of_objects_digest_independently_of_iteration_order() -> None:
    cls = make_session_class()
    a = {cls(1, 2), cls(3, 4), cls(5, 6)}
    b = {cls(5, 6), cls(3, 4), cls(1, 2)}
    assert digest(a) == digest(b)
    assert digest(a) != digest({cls(1, 2), cls(3, 4), cls(5, 7)})


def test_aliasing_is_part_of_the_value() -> None:
    x = [1]
    assert digest([x, x]) != digest([[1], [1]])
    t = (1, 2)
    assert digest([t, t]) == digest([(1, 2), (1, 2)])  # immutable: aliasing not observable


def test_numpy_built_differently() -> None:
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert digest(a) == digest(np.array(a.tolist()))
    assert digest(np.asfortranarray(a)) == digest(a)  # same values in C order
    assert digest(a.T) == digest(np.ascontiguousarray(a.T))
    assert digest(a[:, 1]) == digest(np.array([1.0, 5.0, 9.0]))
    cube = np.arange(60).reshape(3, 4, 5).transpose(2, 0, 1)[::2, :, ::-1]
    assert digest(cube) == digest(cube.copy())
    assert digest(a) != digest(a.astype(np.float32))
    assert digest(a) != digest(a.reshape(4, 3))
    dates = np.array(["2020-01-01", "2021-06-01"], dtype="M8[D]")
    assert digest(dates[::-1]) == digest(dates[::-1].copy())
    objects = np.array(["a", None, [1]], dtype=object)
    assert digest(objects) == digest(np.array(["a", None, [1]], dtype=object))
    assert digest(np.float64(1.5)) != digest(1.5)
    assert digest(np.float64(1.5)) == digest(np.float64(1.5))


def test_pandas_built_differently() -> None:
    from_dict = pd.DataFrame({"a": [1.0, 3.0], "b": [2.0, 4.0]})
    from_2d = pd.DataFrame(np.array([[1.0, 2.0], [3.0, 4.0]]), columns=["a", "b"])
    assert digest(from_dict) == digest(from_2d)
    added = pd.DataFrame({"a": [1.0, 3.0]})
    added["b"] = [2.0, 4.0]
    assert len(added._mgr.blocks) != len(from_2d._mgr.blocks)  # different block layouts
    assert digest(added) == digest(from_dict)
    assert digest(from_dict.copy()) == digest(from_dict)
    s = pd.DataFrame({"s": ["x", "y", None], "n": [1, 2, 3]})
    assert digest(s) == digest(pd.concat([s.iloc[:1], s.iloc[1:]]).reset_index(drop=True))
    assert digest(s["s"]) == digest(pd.Series(["x", "y", None], name="s"))


def test_wide_frame_digest_depends_on_columns_not_blocks() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(50, 300))
    columns = [f"c{i}" for i in range(300)]
    wide = pd.DataFrame(values, columns=columns)  # one block, F-ordered (a view of ``values``)
    c_order = pd.DataFrame(np.ascontiguousarray(values.T).T, columns=columns)
    piecewise = pd.DataFrame({c: values[:, i] for i, c in enumerate(columns[:100])})
    for i, c in enumerate(columns[100:], start=100):  # ... then one block per added column
        piecewise[c] = values[:, i].copy()
    piecewise.insert(50, "text", ["x"] * 50)
    wide_text = wide.copy()
    wide_text.insert(50, "text", ["x"] * 50)
    assert len(piecewise._mgr.blocks) > 2 and len(wide_text._mgr.blocks) <= 3
    assert digest(wide) == digest(c_order) == digest(wide.copy())
    assert digest(piecewise) == digest(wide_text) == digest(piecewise.copy())
    assert digest(wide) != digest(wide_text)
    assert digest(wide) != digest(wide[columns[::-1]].set_axis(columns, axis=1))
    assert digest(wide) != digest(wide.astype(np.float32))
    before = fingerprint(wide)
    wide.iloc[49, 299] += 1.0  # the very last value of the frame
    assert changed(before, fingerprint(wide))


def test_torch_built_differently() -> None:
    t = torch.arange(6.0).reshape(2, 3)
    assert digest(t.T) == digest(t.T.contiguous())
    assert digest(t) == digest(torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]))
    assert digest(t) != digest(t.to(torch.float64))
    assert digest(t) != digest(t.clone().requires_grad_())
    b = torch.arange(4.0, dtype=torch.bfloat16)
    assert digest(b) == digest(torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.bfloat16))
    assert digest(torch.nn.Parameter(t.clone())) != digest(t)


def test_pyarrow_layout_does_not_matter() -> None:
    assert digest(pa.chunked_array([[1, 2], [3, None]])) == digest(pa.chunked_array([[1, 2, 3, None]]))
    assert digest(pa.array([0, 1, 2, 3]).slice(1, 2)) == digest(pa.array([1, 2]))
    strs = pa.array(["aa", "b", None, "cccc", ""])
    assert digest(strs.slice(2, 3)) == digest(pa.array([None, "cccc", ""]))
    assert digest(pa.chunked_array([strs[:2], strs[2:]])) == digest(pa.chunked_array([strs]))
    assert digest(pa.array([True, None, False]).slice(1)) == digest(pa.array([None, False]))
    assert digest(pa.array([1, 2])) != digest(pa.array([1, 2], type=pa.int32()))


def test_polars_built_differently() -> None:
    a = pl.DataFrame({"x": [1, 2, 3], "s": ["a", "bbbbbbbbbbbbbbbbbbbbb", None]})
    b = pl.concat([a[:1], a[1:]], rechunk=False)
    assert b["x"].n_chunks() == 2
    assert digest(a) == digest(b)
    assert digest(a["s"]) == digest(pl.Series("s", ["a", "bbbbbbbbbbbbbbbbbbbbb", None]))


def test_sparse_and_instances_built_differently() -> None:
    dense = np.array([[0.0, 2.0], [3.0, 0.0]])
    assert digest(sp.csr_matrix(dense)) == digest(sp.csr_matrix(sp.coo_matrix(dense)))
    cls = make_session_class()
    assert digest(cls(1, [2])) == digest(cls(1, [2]))
    assert digest(cls(1, [2])) != digest(cls(1, [3]))


def test_session_functions_hash_their_code() -> None:
    src = "def f(x, k=[1]):\n    return x + 1\n"
    ns1, ns2, ns3 = session_ns(), session_ns(), session_ns()
    exec(src, ns1)
    exec(src, ns2)
    exec(src.replace("x + 1", "x + 2"), ns3)
    assert digest(ns1["f"]) == digest(ns2["f"])
    assert digest(ns1["f"]) != digest(ns3["f"])
    fp = fingerprint(ns1["f"])
    assert fp.session_types == {"f"}
    assert id(ns1["f"]) in fp.ids and id(ns1["f"].__defaults__[0]) in fp.ids
    ns1["f"].__defaults__[0].append(2)  # a mutated default is a mutated function
    assert fingerprint(ns1["f"]).digest != fp.digest
    # closures: the cell contents count, globals never do
    exec("def outer():\n    box = []\n    def inner():\n        return box\n    return inner\n", ns1)
    inner = ns1["outer"]()
    before = fingerprint(inner)
    inner.__closure__[0].cell_contents.append(1)
    assert changed(before, fingerprint(inner))
    ns1["unrelated_global"] = [1, 2, 3]
    assert id(ns1["unrelated_global"]) not in fingerprint(ns1["f"]).ids


def test_library_functions_and_modules_by_name() -> None:
    fp = fingerprint([np.mean, pd.DataFrame, np, len, [].append])
    assert fp.digest is not None
    assert {"numpy", "pandas"} <= fp.modules
    assert "builtins" not in fp.modules and "__main__" not in fp.modules


# --------------------------------------------------------------------------------------------------
# any element change -> different digest


@pytest.mark.parametrize(
    ("make", "mutate"),
    [
        (lambda: [1, [2, 3]], lambda v: v[1].__setitem__(0, 9)),
        (lambda: {"a": {"b": {"c": 1}}}, lambda v: v["a"]["b"].__setitem__("c", 2)),
        (lambda: np.zeros((3, 3)), lambda v: v.__setitem__((2, 1), 1e-300)),
        (lambda: pd.DataFrame({"a": [1, 2], "s": ["x", "y"]}), lambda v: v.__setitem__("s", ["x", "z"])),
        (lambda: pd.DataFrame({"a": [1, 2]}), lambda v: setattr(v, "columns", ["b"])),
        (lambda: pd.DataFrame({"a": [1, 2]}), lambda v: setattr(v, "index", [0, 5])),
        (lambda: pd.DataFrame({"a": [1, 2]}), lambda v: v.__setitem__("a", v["a"].astype("float64"))),
        (lambda: pd.Series([1.0, 2.0]), lambda v: v.__setitem__(1, 3.0)),
        (lambda: torch.zeros(4), lambda v: v.__setitem__(3, 1.0)),
        (lambda: sp.csr_matrix(np.eye(3)), lambda v: v.__setitem__((1, 1), 5.0)),
        (lambda: pl.DataFrame({"x": [1, 2]}), lambda v: v.__setitem__((0, "x"), 7)),
        (lambda: [pa.table({"x": [1, 2]})], lambda v: v.__setitem__(0, pa.table({"x": [1, 3]}))),
        (lambda: make_session_class()(1, 2), lambda v: setattr(v, "y", 3)),
        (lambda: bytearray(b"abc"), lambda v: v.__setitem__(0, 65)),
    ],
)
def test_element_change_changes_digest(make: Any, mutate: Any) -> None:
    v = make()
    before = digest(v)
    mutate(v)
    assert digest(v) != before


def test_dataframe_cell_change_in_a_string_column_and_index_values() -> None:
    df = pd.DataFrame({"s": ["a", "b"]}, index=pd.Index(["r1", "r2"]))
    d0 = digest(df)
    df.loc["r2", "s"] = "c"
    d1 = digest(df)
    df.index = pd.Index(["r1", "r3"])
    assert len({d0, d1, digest(df)}) == 3


# --------------------------------------------------------------------------------------------------
# mutation detection


def _sort_values_inplace(df: pd.DataFrame) -> None:
    with warnings.catch_warnings():  # pandas 3.1 deprecates inplace=True (PDEP-8); still in use
        warnings.simplefilter("ignore")
        df.sort_values("a", inplace=True)


def _inplace_cases() -> list[tuple[str, Any, Any]]:
    cls = make_session_class()
    return [
        ("append", lambda: [3, 1, 2], lambda v: v.append(0)),
        ("sort", lambda: [3, 1, 2], lambda v: v.sort()),
        ("dict update", lambda: {"a": [1]}, lambda v: v["a"].append(2)),
        ("set add", lambda: {1, 2}, lambda v: v.add(3)),
        ("slice assign", lambda: np.arange(5.0), lambda v: v.__setitem__(slice(1, 3), 0)),
        ("ufunc out", lambda: np.arange(5.0), lambda v: np.add(v, 1, out=v)),
        ("column add", lambda: pd.DataFrame({"a": [1, 2]}), lambda v: v.__setitem__("b", 1)),
        ("loc write", lambda: pd.DataFrame({"a": [1, 2]}), lambda v: v.loc.__setitem__((0, "a"), 5)),
        ("sort_values", lambda: pd.DataFrame({"a": [2, 1]}), _sort_values_inplace),
        ("attribute", lambda: cls(1, 2), lambda v: setattr(v, "z", 0)),
        ("tensor add_", lambda: torch.zeros(3), lambda v: v.add_(1)),
        ("object column", lambda: pd.DataFrame({"o": [[1], [2]]}), lambda v: v["o"].iloc[0].append(5)),
    ]


@pytest.mark.parametrize(("name", "make", "mutate"), _inplace_cases(), ids=[c[0] for c in _inplace_cases()])
def test_changed_detects_in_place_mutation(name: str, make: Any, mutate: Any) -> None:
    v = make()
    before = fingerprint(v)
    assert not changed(before, fingerprint(v)), "a value that did not change must not look changed"
    mutate(v)
    assert changed(before, fingerprint(v))


def test_unchanged_values_are_stable_across_walks() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    model = torch.nn.Linear(3, 2)
    values: list[Any] = [
        fig,
        model,
        pd.DataFrame({"a": [1, 2], "s": ["x", None], "d": pd.to_datetime(["2020-01-01", "2021-01-01"])}),
        pl.DataFrame({"x": [1, 2], "s": ["a", None]}),
        sp.csr_matrix(np.eye(2)),
        pd.Categorical(["a", "b", "a"]),
    ]
    try:
        for v in values:
            a, b = fingerprint(v), fingerprint(v)
            assert a.digest is not None, (type(v), a.opaque)
            assert not changed(a, b), type(v)
    finally:
        plt.close(fig)


def test_reads_do_not_look_like_mutations() -> None:
    from sklearn.linear_model import LogisticRegression

    df = pd.DataFrame(
        {
            "c": pd.Categorical(["a", "b", "a"]),
            "d": pd.date_range("2020", periods=3, tz="UTC"),
            "s": ["x", "y", None],
            "i": pd.array([1, None, 3], dtype="Int64"),
            "f": [1.0, 2.0, 3.0],
        }
    )
    x = np.arange(20.0).reshape(10, 2)
    model = LogisticRegression().fit(x, np.arange(10) % 2)
    net = torch.nn.Linear(2, 2)
    matrix = sp.csr_matrix(np.eye(3))
    frame = pl.DataFrame({"x": [1, 2, None], "s": ["a", "b", "c"]})
    reads: list[tuple[Any, Any]] = [
        (df, lambda d: (d.values, d.describe(), d["c"].cat.codes, d.index.is_unique, repr(d), d.T)),
        (model, lambda m: (m.predict(x), m.score(x, np.arange(10) % 2), repr(m))),
        (net, lambda n: (n(torch.ones(1, 2)), n.state_dict())),
        (matrix, lambda m: (m.has_sorted_indices, m.sum(), m.toarray(), m @ np.ones(3))),
        (frame, lambda f: (f.describe(), f.to_pandas(), f.filter(pl.col("x") > 1))),
    ]
    for value, read in reads:
        before = fingerprint(value)
        read(value)
        assert not changed(before, fingerprint(value)), type(value)


def test_identity_change_with_equal_content_is_a_change() -> None:
    v = [[1], [2]]
    before = fingerprint(v)
    v[0] = [1]
    after = fingerprint(v)
    assert before.digest == after.digest
    assert before.ids != after.ids
    assert changed(before, after)


def test_changed_is_conservative_without_digest() -> None:
    fp = fingerprint(threading.Lock())
    assert fp.digest is None and changed(fp, fp)


# --------------------------------------------------------------------------------------------------
# opaque objects, cycles, budget, robustness


def test_library_state_reached_from_user_objects_is_not_an_identity() -> None:
    import matplotlib

    shared_default = matplotlib.rcParams["axes.formatter.limits"]  # one list, held by every formatter
    a, b = [shared_default], [shared_default]
    assert fingerprint(a).ids == {id(a)}
    assert not fingerprint(a).ids & fingerprint(b).ids


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
def test_array_subclasses() -> None:
    m = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    before = fingerprint(m)
    assert before.digest is not None
    m.mask = [0, 0, 0]
    assert changed(before, fingerprint(m))
    assert digest(np.matrix([[1, 2]])) != digest(np.array([[1, 2]]))


def test_generator_lock_and_file_are_opaque(tmp_path: Path) -> None:
    items = [1, 2, 3]
    gen = (i for i in items)
    fp = fingerprint(gen)
    assert fp.digest is None and fp.opaque == ("generator",)
    assert id(items) in fp.ids  # what the generator iterates is still reached

    sibling: list[int] = [4]
    holder = {"lock": threading.Lock(), "data": sibling}
    fp = fingerprint(holder)
    assert fp.digest is None and "_thread.lock" in fp.opaque
    assert {id(holder), id(sibling)} <= fp.ids

    with open(tmp_path / "f.txt", "w") as fh:
        fp = fingerprint({"f": fh, "rows": sibling})
    assert fp.digest is None and fp.opaque[0] == "_io.TextIOWrapper"
    assert id(sibling) in fp.ids


def test_self_referencing_structures_terminate_and_are_deterministic() -> None:
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert digest(a) == digest(b)
    c: list[Any] = [1, [1]]
    assert digest(a) != digest(c)
    d: dict[str, Any] = {}
    d["self"] = d
    cls = make_session_class()
    p = cls(1, 2)
    p.me = p
    assert fingerprint(d).complete and fingerprint(p).complete


def test_no_shared_ids_for_immutables_and_library_singletons() -> None:
    x, y = 5, 5
    assert fingerprint(x).ids == fingerprint(y).ids == frozenset()
    s1 = "abc"
    assert fingerprint(s1).ids == frozenset()
    for single in (None, True, np.dtype("float64"), np.float64(1.0), pd.NA, pd.NaT, np.mean, pd.DataFrame):
        a, b = [single], [single]
        assert fingerprint(a).ids == {id(a)}, single
        assert not fingerprint(a).ids & fingerprint(b).ids
    s_a, s_b = pd.Series([1.0]), pd.Series([2.0])
    assert not fingerprint(s_a).ids & fingerprint(s_b).ids


def test_budget_exhaustion() -> None:
    v = [[i] for i in range(1000)]
    fp = fingerprint(v, budget=50)
    assert not fp.complete and fp.digest is None
    assert changed(fp, fp)
    assert fingerprint(v).complete
    deep: list[Any] = []
    node = deep
    for _ in range(100_000):  # far deeper than the recursion limit
        node.append([])
        node = node[0]
    assert fingerprint(deep).complete


class _Hostile:
    """Every hook raises."""

    def __reduce_ex__(self, protocol: object) -> Any:
        raise RuntimeError("no")

    def __sizeof__(self) -> int:
        raise RuntimeError("no")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


class _BadState:
    def __getstate__(self) -> Any:
        raise ValueError("broken")


def test_never_raises_and_reports_the_failing_type() -> None:
    fp = fingerprint({"h": _Hostile(), "ok": [1]})
    assert fp.digest is None and any("_Hostile" in o for o in fp.opaque)
    fp = fingerprint([_BadState()])
    assert fp.digest is None and any("_BadState" in o for o in fp.opaque)
    weak = fingerprint(__import__("weakref").ref(_BadState))
    assert weak.digest is None and weak.opaque == ("weakref.ReferenceType",)


def test_opaque_list_is_deduplicated_and_bounded() -> None:
    fp = fingerprint([threading.Lock() for _ in range(5)] + [iter(range(3)), (i for i in [])])
    assert fp.opaque.count("_thread.lock") == 1
    many = [type(f"T{i}", (), {"__reduce_ex__": lambda self, p: 1 / 0})() for i in range(20)]
    assert len(fingerprint(many).opaque) == 10


def test_session_keeps_temporaries_alive() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    try:
        with FingerprintSession() as s:
            fingerprint(fig, session=s)
            assert s.held > 0
        assert s.held == 0
    finally:
        plt.close(fig)


def test_fields_modules_session_types_and_nbytes() -> None:
    cls = make_session_class("Widget")
    w = cls(np.zeros(1000), pd.DataFrame({"a": [1]}))
    fp = fingerprint(w)
    assert isinstance(fp, Fingerprint)
    assert fp.session_types == {"Widget"}
    assert id(cls) in fp.ids  # the class is defined in the session: instances link to it
    assert {"numpy", "pandas"} <= fp.modules
    assert fp.nbytes >= 8000
    view = np.zeros(1000)
    assert fingerprint([view, view[10:20]]).nbytes < 8000 + 2000  # shared memory counted once


def test_spans_are_real_buffers_and_merged() -> None:
    a = np.arange(100, dtype=np.int64)
    fp = fingerprint([a, a[10:20], a[::-1]])
    lo = a.__array_interface__["data"][0]
    assert fp.spans == ((lo, lo + 800),)
    t = torch.zeros(10)
    (start, end), = fingerprint(t).spans
    assert start == t.untyped_storage().data_ptr() and end - start == 40


# --------------------------------------------------------------------------------------------------
# determinism across processes

_DETERMINISM_SCRIPT = r"""
import json, sys, threading
import numpy as np, pandas as pd, pyarrow as pa, polars as pl, torch, scipy.sparse as sp
from nbmigrate.fingerprint import fingerprint

torch.manual_seed(0)
ns = {"__name__": "__main__"}
exec("class Point:\n    def __init__(self, x):\n        self.x = x\n"
     "def f(a, b=(1, 'k')):\n    return {'s': {a, b}}\n", ns)
values = {
    "strings": {f"word{i}" for i in range(50)},
    "dict": {"b": [1, 2.5, None], "a": {"nested": ("t", b"raw", frozenset({"x", "y", 3}))}, 3: True},
    "objects_set": {ns["Point"](i) for i in range(5)},
    "array": np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2],
    "frame": pd.DataFrame({"n": [1, 2, 3], "s": ["a", None, "c"], "c": pd.Categorical(["u", "v", "u"])}),
    "tensor": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
    "polars": pl.DataFrame({"x": [1, None], "s": ["long string over twelve bytes", "b"]}),
    "arrow": pa.table({"x": [1, 2], "s": ["p", None]}),
    "sparse": sp.csr_matrix(np.eye(3)),
    "function": ns["f"],
    "class": ns["Point"],
    "instance": ns["Point"]([1, {"k": "v"}]),
    "polars_objects": pl.Series([1, "a", None], dtype=pl.Object),
    "module": torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()),
}
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
ax.set_title("t")
values["figure"] = fig
from sklearn.feature_extraction.text import CountVectorizer
values["vectorizer"] = CountVectorizer().fit(["alpha beta", "beta gamma"])  # remembers id(stop_words): an address
print(json.dumps({k: fingerprint(v).digest for k, v in values.items()}))
"""


def _digests_in_subprocess(seed: str) -> dict[str, str | None]:
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(SRC))
    out = subprocess.run(
        [sys.executable, "-c", _DETERMINISM_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, str | None] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_never_imports_a_library_the_user_did_not_import() -> None:
    code = (
        "import sys\n"
        "from nbmigrate.fingerprint import fingerprint\n"
        "fingerprint([1, {'a': 2.5}, bytearray(3), (i for i in []), {'s'}])\n"
        "heavy = ('numpy', 'pandas', 'torch', 'pyarrow', 'polars', 'scipy', 'matplotlib', 'sklearn')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_digests_are_identical_across_processes_and_hash_seeds() -> None:
    first = _digests_in_subprocess("1")
    second = _digests_in_subprocess("12345")
    assert all(d is not None for d in first.values()), first
    assert first == second


_ROUNDTRIP_SCRIPT = r"""
import json, pickle, sys
import __main__
import cloudpickle, numpy as np, pandas as pd, pyarrow as pa, polars as pl, torch, scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from nbmigrate.fingerprint import fingerprint

mode, path = sys.argv[1], sys.argv[2]
if mode == "dump":
    exec("class Point:\n    def __init__(self, x):\n        self.x = x\n"
         "def area(w, h=2):\n    return w * h\n", __main__.__dict__)
    torch.manual_seed(0)
    frame = pd.DataFrame({"s": ["a", "b", None, "d"] * 3, "n": range(12)})
    X = np.arange(20.0).reshape(10, 2)
    values = {
        "frame": pd.DataFrame({
            "s": ["a", None, "c"], "n": [1, 2, 3], "c": pd.Categorical(["u", "v", "u"]),
            "t": pd.date_range("2020", periods=3, tz="UTC"), "i": pd.array([1, None, 3], dtype="Int64"),
        }),
        "concatenated": pd.concat([frame.iloc[:5], frame.iloc[7:]]),
        "sliced_strings": frame["s"].iloc[2:9],
        "array_view": np.arange(12.0).reshape(3, 4).T,
        "tensor_view": torch.arange(6.0).reshape(2, 3).T,
        "module": torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(X, np.arange(10) % 2),
        "polars": pl.DataFrame({"x": [1, None], "s": ["long string over twelve bytes", "b"]}),
        "arrow_slice": pa.chunked_array([pa.array(["a", "bb", "ccc", None]).slice(1, 3)]),
        "sparse": sp.csr_matrix(np.eye(3)),
        "session_class": __main__.Point,
        "session_instance": __main__.Point([1, "x"]),
        "session_function": __main__.area,
        "mixed": {"k": [1, (2, "x")], "s": {1, "a", 2.5}},
        "vocabulary": {f"w{i}": np.int64(i) for i in range(40_000)},
        "token_array": np.array([f"t{i % 97}\u00e9" for i in range(40_000)], dtype=object),
    }
    with open(path, "wb") as fh:
        pickle.dump({k: (fingerprint(v).digest, cloudpickle.dumps(v)) for k, v in values.items()}, fh)
else:
    with open(path, "rb") as fh:
        stored = pickle.load(fh)
    pairs = {k: [d, fingerprint(cloudpickle.loads(blob)).digest] for k, (d, blob) in stored.items()}
    print(json.dumps(pairs))
"""


def test_digest_survives_pickling_into_another_process(tmp_path: Path) -> None:
    """What restore verification relies on (DESIGN.md invariant 2)."""
    path = str(tmp_path / "values.pkl")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    for mode, seed in (("dump", "3"), ("load", "4")):
        out = subprocess.run(
            [sys.executable, "-c", _ROUNDTRIP_SCRIPT, mode, path],
            env=dict(env, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            check=True,
        )
    pairs = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(before is not None for before, _ in pairs.values()), pairs
    assert {k: after for k, (_, after) in pairs.items()} == {k: before for k, (before, _) in pairs.items()}


# --------------------------------------------------------------------------------------------------
# size


def test_big_array() -> None:
    big = np.ones(300_000_000 // 8)
    fp = fingerprint(big)
    assert fp.digest is not None and fp.nbytes >= 300_000_000 and len(fp.spans) == 1
    big[-1] = 2.0
    assert fingerprint(big).digest != fp.digest


def test_many_strings_and_large_frame() -> None:
    strings = [f"item-{i}" for i in range(100_000)]
    assert fingerprint(strings).digest is not None
    n = 600_000
    names = [f"name{i % 997}" for i in range(n)]
    df = pd.DataFrame({"x": np.arange(n), "y": np.linspace(0, 1, n), "s": names})
    assert fingerprint(df).digest is not None


# --------------------------------------------------------------------------------------------------
# bulk encodings: equal for equal content however built, changed by one element


def test_many_strings_bulk_encoding() -> None:
    n = 3 * 2**15 + 5  # several chunks
    built = [f"w{i}\u00e9" for i in range(n)]
    joined = "|".join(f"w{i}\u00e9" for i in range(n)).split("|")
    assert digest(built) == digest(joined) == digest(np.array(joined, dtype=object).tolist())
    assert digest(np.array(built, dtype=object)) == digest(np.array(joined, dtype=object))
    one_off = list(built)
    one_off[-1] = "w\u00e9"
    assert digest(one_off) != digest(built)
    # element boundaries are part of the content, including strings holding the separator
    assert len({digest(["ab", "c"]), digest(["a", "bc"]), digest(["a\x00bc"]), digest(["a", "\x00bc"])}) == 4
    assert digest(["a\x00b", "c"]) == digest(["a\x00b", "c"])
    # a str subclass is not a str
    sub = type("Sub", (str,), {})
    assert digest(["a", "b"]) != digest(["a", sub("b")])
    # dict keys take the same path
    vocab = {w: i for i, w in enumerate(built)}
    assert digest(vocab) == digest(dict(zip(joined, range(n), strict=True)))
    vocab[built[7]] = -1
    assert digest(vocab) != digest(dict(zip(joined, range(n), strict=True)))


def test_numpy_scalars_bulk_encoding() -> None:
    values = [np.int64(i) for i in range(50_000)]
    assert digest(values) == digest(list(np.arange(50_000))) == digest([*np.arange(50_000)])
    changed_one = list(values)
    changed_one[123] = np.int64(-1)
    assert digest(changed_one) != digest(values)
    assert digest([np.int64(1), np.int64(2)]) != digest([np.int32(1), np.int32(2)])
    assert digest([np.int64(1), np.int64(2)]) != digest([1, 2])
    assert digest([np.float64(0.0)]) != digest([np.float64(-0.0)])
    mixed = [np.int64(1), np.int32(2)]
    assert digest(mixed) == digest([np.int64(1), np.int32(2)]) != digest([np.int64(1), np.int64(2)])
    # a vectorizer's vocabulary_: str keys, numpy int values
    vocab = {f"term {i}": np.int64(i) for i in range(40_000)}
    same = dict(zip([f"term {i}" for i in range(40_000)], np.arange(40_000), strict=True))
    assert digest(vocab) == digest(same)
    vocab["term 5"] = np.int64(6)
    assert digest(vocab) != digest(same)
    # types whose values carry their own unit are walked one by one, still by content
    days = [np.datetime64("2020-01-01", "D"), np.datetime64("2020-01-02", "D")]
    assert digest(days) != digest([np.datetime64("2020-01-01", "s"), np.datetime64("2020-01-02", "D")])


def test_bulk_size_estimate_is_close() -> None:
    strings = [f"item-{i}" * (1 + i % 3) for i in range(200_000)]
    exact = sum(map(sys.getsizeof, strings))
    assert abs(fingerprint(strings).nbytes - exact) < exact * 0.05


def test_arrays_contiguous_along_the_first_axis_hash_like_their_c_order_copy() -> None:
    rows = np.random.default_rng(1).random((300, 1000))
    block = rows.T  # how pandas holds a frame built from a row-major array
    for view in (block, block[37:901], np.asfortranarray(rows), block.astype(np.float32)[3:70]):
        assert digest(view) == digest(np.ascontiguousarray(view))
    frame = pd.DataFrame(rows)
    assert digest(frame) == digest(pd.DataFrame({c: rows[:, c].copy() for c in range(rows.shape[1])}))
    changed_one = block.copy(order="F")
    changed_one[999, 299] += 1.0
    assert digest(changed_one) != digest(block)
