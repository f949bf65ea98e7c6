"""Inert operand reads: the syntax half (nbmigrate.access.operands) and the value half
(nbmigrate.arithmetic_values). A name qualifies only if no occurrence could write to it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbmigrate.access.operands import NO_OPERANDS, operand_use
from nbmigrate.arithmetic_values import is_inert, leaf_value


def test_arithmetic_operands_qualify_with_their_trees() -> None:
    use = operand_use("r = mom[250] / vol60\nq = (-z).rank(axis=1) > 0.5\nok = a == 1")
    assert use.names == {"mom", "vol60", "z", "a"}
    assert (("mom", 250), ("vol60", None)) in use.trees
    assert (("z", None),) in use.trees


@pytest.mark.parametrize(
    "source",
    [
        "y = v * f(x)",  # a call among the operands: its result may be anything
        "y = v + 1\nv.fillna(0, inplace=True)",  # attribute base elsewhere
        "v /= 2",  # bound
        "y = v + 1\ndel v",
        "y = v + 1\nexec('v.sort()')",  # spelled in a string
        "y = v + 1\nns['v'].sort()",
        "import __main__\ny = v + __main__.v",  # back door / attribute name
        "y = v + 1\nget_ipython().run_line_magic('foo', '$v')",
        "y = v + 1\nw = v",  # an alias escapes
        "y = not v",  # calls __bool__
        "y = v in w",  # calls __contains__
        "y = v[k] + 1",  # a non-constant key
        "def f(v):\n    return v + 1",  # a parameter of the same name
        "y = v +",  # syntax error
    ],
)
def test_names_that_may_be_written_do_not_qualify(source: str) -> None:
    assert "v" not in operand_use(source).names


def test_without_drops_trees_with_function_reached_names() -> None:
    use = operand_use("y = v * k\nz = w + 1")
    assert use.without({"k"}).names == {"w"}
    assert operand_use("y = v + 1").without(set()).names == {"v"}
    assert NO_OPERANDS.without({"v"}) is NO_OPERANDS


def test_numeric_arrays_and_frames_are_inert() -> None:
    frame = pd.DataFrame(np.ones((3, 2)), columns=["a", "b"], index=pd.date_range("2020", periods=3))
    for value in (1, 2.5, True, np.float64(1), np.arange(3), frame, frame["a"],
                  pd.DataFrame({"x": [1]}, index=pd.MultiIndex.from_tuples([("a", 1)]))):  # fmt: skip
        assert is_inert(value), type(value)


def test_values_whose_arithmetic_may_run_user_code_are_not_inert() -> None:
    class Evil:
        def __radd__(self, other: object) -> object:
            return other

    labelled = pd.DataFrame({"x": [1.0]})
    labelled.attrs["note"] = Evil()
    for value in (Evil(), "text", [1], np.array([Evil()], dtype=object), np.ma.array([1.0]),
                  pd.DataFrame({"x": ["a"]}), pd.Series([1], dtype="Int64"), labelled,
                  pd.DataFrame({"x": [1]}, index=[Evil()])):  # fmt: skip
        assert not is_inert(value), type(value)


def test_leaf_value_reads_only_plain_containers() -> None:
    class Lookup(dict[int, int]):
        def __missing__(self, key: int) -> int:
            return 0

    ns = {"d": {1: "one"}, "t": (5, 6), "c": Lookup(), "x": 3}
    assert leaf_value(ns, "d", 1) == "one"
    assert leaf_value(ns, "t", -1) == 6
    assert leaf_value(ns, "t", 9) is None
    assert leaf_value(ns, "c", 1) is None
    assert leaf_value(ns, "x", None) == 3
    assert leaf_value(ns, "missing", None) is None
