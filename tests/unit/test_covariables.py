"""Tests of co-variable grouping on real library objects (numpy, pandas, torch, matplotlib/Agg...).

Values are built inside each test: module-level objects of an imported module count as library
singletons and are never recorded in fingerprint ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import torch

from nbmigrate.covariables import group_covariables
from nbmigrate.fingerprint import Fingerprint, FingerprintSession, fingerprint

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def groups(**values: Any) -> list[list[str]]:
    with FingerprintSession() as s:
        fps = {name: fingerprint(v, session=s) for name, v in values.items()}
    return group_covariables(fps)


def fp(ids: set[int] | None = None, spans: tuple[tuple[int, int], ...] = ()) -> Fingerprint:
    return Fingerprint("0", frozenset(ids or ()), spans, (), True, 0, frozenset(), frozenset())


@pytest.fixture
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


# --------------------------------------------------------------------------------------------------
# the worked examples of the module docstring


def test_list_inside_a_dict() -> None:
    a = [1]
    d = {"k": a}
    assert groups(a=a, d=d) == [["a", "d"]]


def test_array_and_its_view() -> None:
    arr = np.arange(9)
    v = arr[1:]
    assert groups(arr=arr, v=v) == [["arr", "v"]]


def test_figure_and_axes(close_figures: None) -> None:
    fig, ax = plt.subplots()
    (line,) = ax.plot([1, 2, 3])
    assert groups(fig=fig, ax=ax) == [["ax", "fig"]]
    assert groups(fig=fig, ax=ax, line=line) == [["ax", "fig", "line"]]


def test_equal_ints_and_shared_strings_stay_separate() -> None:
    x = 5
    y = 5
    s1 = "abc"
    s2 = s1
    assert groups(x=x, y=y, s1=s1, s2=s2) == [["s1"], ["s2"], ["x"], ["y"]]


# --------------------------------------------------------------------------------------------------
# shared memory


def test_numpy_views_of_every_shape() -> None:
    m = np.arange(36, dtype=np.float64).reshape(6, 6)
    views = {
        "row": m[1],
        "column": m[:, 1],
        "block": m[1:3, 2:5],
        "view_of_view": m[2:][:, 3][::2],
        "transposed": m.T,
        "reshaped": m.reshape(4, 9),
        "reversed": m[::-1, ::-1],
    }
    assert groups(m=m, **views) == [sorted(["m", *views])]
    other = np.arange(36, dtype=np.float64).reshape(6, 6)
    assert groups(m=m, other=other) == [["m"], ["other"]]


def test_views_link_through_their_common_base() -> None:
    base = np.zeros(100)
    a, b = base[:60], base[40:]
    c = base[60:]  # no byte in common with a, but the same base object
    assert groups(a=a, b=b) == [["a", "b"]]
    assert groups(a=a, c=c) == [["a", "c"]]


def test_two_arrays_over_one_bytearray() -> None:
    buf = bytearray(64)
    as_bytes = np.frombuffer(buf, dtype=np.uint8)
    as_floats = np.frombuffer(buf, dtype=np.float64)
    assert groups(as_bytes=as_bytes, as_floats=as_floats) == [["as_bytes", "as_floats"]]
    assert groups(buf=buf, as_floats=as_floats) == [["as_floats", "buf"]]
    alone = bytearray(8)
    fingerprint(alone)
    alone.extend(b"x")  # the walk released its buffer export: the bytearray can still be resized


def test_torch_from_numpy_and_tensor_views() -> None:
    a = np.arange(12, dtype=np.float32)
    t = torch.from_numpy(a)
    tv = t.view(3, 4)[:, 1]
    other = torch.arange(12, dtype=torch.float32)
    assert groups(a=a, t=t, tv=tv, other=other) == [["a", "t", "tv"], ["other"]]


def test_dataframe_and_its_columns() -> None:
    df = pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5.0) * 2, "s": list("vwxyz")})
    col = df["a"]
    strings = df["s"]
    # pandas 3 is copy-on-write: `col` and `strings` share df's buffers only until one of them is
    # written, so the sharing is invisible and not aliasing to keep.
    assert groups(df=df, col=col, strings=strings) == [["col"], ["df"], ["strings"]]


def test_polars_frame_and_its_column() -> None:
    df = pl.DataFrame({"x": [1, 2, 3], "s": ["a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", None]})
    x = df["x"]
    other = pl.DataFrame({"x": [1, 2, 3], "s": ["a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", None]})
    # polars (Arrow) buffers are immutable and copied on write: sharing them is not aliasing
    assert groups(df=df, x=x, other=other) == [["df"], ["other"], ["x"]]


# --------------------------------------------------------------------------------------------------
# shared identities


def test_list_shared_by_a_dict_and_another_list() -> None:
    shared = [1, 2]
    d = {"k": shared}
    outer = [0, shared]
    alone = [1, 2]
    assert groups(d=d, outer=outer, alone=alone) == [["alone"], ["d", "outer"]]


def test_session_class_and_its_instances() -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    Point.__module__ = "__main__"
    p = Point(1)
    q = Point(2)
    assert groups(Point=Point, p=p) == [["Point", "p"]]
    assert groups(p=p, q=q) == [["p", "q"]]  # one class object, pickled by value once


def test_library_class_instances_are_not_linked_through_their_class() -> None:
    a = pd.Series([1.0])
    b = pd.Series([2.0])
    c = torch.nn.Linear(2, 2)
    d = torch.nn.Linear(2, 2)
    assert groups(a=a, b=b, c=c, d=d) == [["a"], ["b"], ["c"], ["d"]]


# --------------------------------------------------------------------------------------------------
# no false links


def test_unrelated_dataframes() -> None:
    df1 = pd.DataFrame({"a": [1, 2], "s": ["x", "y"], "d": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    df2 = pd.DataFrame({"a": [1, 2], "s": ["x", "y"], "d": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    df3 = df1[["a", "d"]].copy()  # shares the (immutable) index objects, not the data
    assert groups(df1=df1, df2=df2, df3=df3) == [["df1"], ["df2"], ["df3"]]


def test_unrelated_arrow_tables_and_small_values() -> None:
    t1 = pa.table({"x": [1, 2], "s": ["a", None]})
    t2 = pa.table({"x": [1, 2], "s": ["a", None]})
    n1 = [None, True, 0, np.float64(1.0), pd.NA, np.dtype("int64")]
    n2 = [None, True, 0, np.float64(1.0), pd.NA, np.dtype("int64")]
    assert groups(t1=t1, t2=t2, n1=n1, n2=n2) == [["n1"], ["n2"], ["t1"], ["t2"]]


def test_unrelated_figures(close_figures: None) -> None:
    fig1, ax1 = plt.subplots()
    ax1.plot([1, 2])
    fig2, ax2 = plt.subplots()
    ax2.plot([1, 2])
    assert groups(fig1=fig1, fig2=fig2) == [["fig1"], ["fig2"]]


# --------------------------------------------------------------------------------------------------
# the algorithm itself


def test_output_shape_and_order() -> None:
    fps = {
        "zeta": fp({1}),
        "alpha": fp({2}),
        "mid": fp({1, 3}),
        "beta": fp(spans=((100, 200),)),
        "gamma": fp(spans=((150, 160),)),
        "delta": fp(spans=((200, 300),)),  # touches beta, no shared byte
        "empty": fp(spans=((50, 50),)),
    }
    assert group_covariables(fps) == [
        ["alpha"],
        ["beta", "gamma"],
        ["delta"],
        ["empty"],
        ["mid", "zeta"],
    ]
    assert group_covariables({}) == []


def test_transitive_chains_of_spans_and_ids() -> None:
    fps = {
        "a": fp(spans=((0, 10),)),
        "b": fp(spans=((5, 20),)),
        "c": fp(spans=((19, 30),), ids={7}),
        "d": fp(ids={7}),
        "e": fp(spans=((2, 3),)),
    }
    assert group_covariables(fps) == [["a", "b", "c", "d", "e"]]


def test_fifty_thousand_names_group_in_pairs() -> None:
    n = 50_000
    fps = {f"v{i:05d}": fp({i // 2}, ((i * 100, i * 100 + 50),)) for i in range(n)}
    result = group_covariables(fps)
    assert sum(map(len, result)) == n
    assert len(result) == n // 2
