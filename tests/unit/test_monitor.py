"""Unit tests for nbmigrate.monitor in a real, in-process IPython shell (no kernel process).

Each test gets a fresh ``InteractiveShell`` singleton with the extension loaded (``%load_ext
nbmigrate``) and drives cells through ``shell.run_cell(..., store_history=True)``, exactly the path a
kernel takes: IPython fires ``pre_run_cell``/``post_run_cell`` and the monitor records one cell
execution (CE) per cell in the history graph.
"""

from __future__ import annotations

import atexit
import builtins
import os
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from traitlets.config import Config

import nbmigrate.monitor as monitor_mod
from nbmigrate import files
from nbmigrate.extension import _MONITORS, current_monitor, unload
from nbmigrate.files import stamp
from nbmigrate.history import PREEXISTING, CellExecution
from nbmigrate.monitor import Monitor, is_own_cell
from nbmigrate.namespace import importable_module_name, is_user_name, type_name, user_items

# --------------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def ipshell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A fresh IPython shell (the class is a singleton: cleared before and after), cwd = tmp_path.

    IPython swaps ``sys.modules["__main__"]``, ``sys.displayhook`` and ``sys.excepthook`` and adds
    ``__IPYTHON__``/``display`` to builtins; all is put back so the rest of the suite sees a plain
    interpreter. The input history lives in memory (no SQLite file, no saving thread).
    """
    monkeypatch.chdir(tmp_path)
    saved = (sys.modules.get("__main__"), sys.displayhook, sys.excepthook)
    saved_builtins = set(vars(builtins))
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    atexit.unregister(shell.atexit_operations)
    try:
        yield shell
    finally:
        unload(shell)
        InteractiveShell.clear_instance()
        main, sys.displayhook, sys.excepthook = saved
        if main is not None:
            sys.modules["__main__"] = main
        for name in set(vars(builtins)) - saved_builtins:
            delattr(builtins, name)
        assert files._ACTIVE == [], "a file recorder was left running"


@pytest.fixture
def shell(ipshell: InteractiveShell) -> InteractiveShell:
    """The shell with nbmigrate loaded the way a user does it."""
    ipshell.run_line_magic("load_ext", "nbmigrate")
    return ipshell


def monitor() -> Monitor:
    return current_monitor()


def run(shell: InteractiveShell, source: str, *, ok: bool = True) -> CellExecution:
    """Run one cell and return the one CE it must have recorded."""
    history = monitor().history
    n = len(history.executions)
    result = shell.run_cell(textwrap.dedent(source), store_history=True)
    if ok:
        assert result.success, result.error_in_exec or result.error_before_exec
    assert len(history.executions) == n + 1, f"expected one CE for {source!r}"
    ce = history.executions[-1]
    assert ce.index == n
    return ce


def run_unrecorded(shell: InteractiveShell, source: str) -> ExecutionResult:
    """Run one cell that must not appear in the history."""
    n = len(monitor().history.executions)
    result = shell.run_cell(textwrap.dedent(source), store_history=True)
    assert len(monitor().history.executions) == n, f"{source!r} was recorded"
    return result


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def test_load_ext_registers_one_monitor(shell: InteractiveShell) -> None:
    m = monitor()
    assert _MONITORS[id(shell)] is m
    assert m.history.executions == [] and m.history.live == {}
    run_unrecorded(shell, "%load_ext nbmigrate")  # loading again: same monitor, not a cell of the history
    assert current_monitor() is m


def test_variables_defined_before_loading_are_preexisting(ipshell: InteractiveShell) -> None:
    ipshell.run_cell("early = [1, 2]\n_cache = {}", store_history=True)
    ipshell.run_line_magic("load_ext", "nbmigrate")
    assert monitor().history.live == {"early": PREEXISTING, "_cache": PREEXISTING}
    ce = run(ipshell, "late = len(early)")
    assert ce.reads == {"early": PREEXISTING}
    assert ce.writes == ["late"]


def test_unload_stops_monitoring(shell: InteractiveShell) -> None:
    m = monitor()
    run(shell, "a = 1")
    shell.run_line_magic("unload_ext", "nbmigrate")
    assert id(shell) not in _MONITORS
    shell.run_cell("b = 2", store_history=True)
    assert len(m.history.executions) == 1


# --------------------------------------------------------------------------------------------------
# Writes, deletes and reads
# --------------------------------------------------------------------------------------------------


def test_create_rebind_delete(shell: InteractiveShell) -> None:
    live = monitor().history.live
    ce = run(shell, "x = 1\ny = 'a'")
    assert (ce.writes, ce.deletes, ce.reads) == (["x", "y"], [], {})
    assert live == {"x": 0, "y": 0}

    ce = run(shell, "x = 2")
    assert (ce.writes, ce.deletes, ce.reads) == (["x"], [], {})
    assert live == {"x": 1, "y": 0}

    ce = run(shell, "del x")
    assert (ce.writes, ce.deletes) == ([], ["x"])
    assert live == {"y": 0}
    assert "x" not in monitor().fingerprints

    ce = run(shell, "y = y * 2")  # rebinding from itself reads the old version
    assert ce.reads == {"y": 0} and ce.writes == ["y"]
    assert live == {"y": 3}


def test_cell_records_source_and_timing(shell: InteractiveShell) -> None:
    import time

    t0 = time.time()
    ce = run(shell, "import time\ntime.sleep(0.02)")
    assert ce.source == "import time\ntime.sleep(0.02)"
    assert ce.duration >= 0.02
    assert t0 <= ce.started <= time.time()
    assert ce.raised is False and ce.hazards == []


def test_reads_record_the_version_seen(shell: InteractiveShell) -> None:
    run(shell, "a = [1, 2]")  # CE 0
    run(shell, "b = 10")  # CE 1
    run(shell, "b = 20")  # CE 2
    ce = run(shell, "c = len(a) + b")
    assert ce.reads == {"a": 0, "b": 2}
    assert ce.writes == ["c"]
    # Reads are limited to tracked variables: builtins, modules not bound, locals are not reads.
    ce = run(shell, "total = sum(v * k for v, k in zip(a, [1, 1]))")
    assert ce.reads == {"a": 0}


def test_a_read_of_a_name_created_in_the_same_cell_is_not_a_read_of_an_older_version(
    shell: InteractiveShell,
) -> None:
    run(shell, "x = 1")  # CE 0 wrote x@0 ...
    run(shell, "del x")  # ... which is gone now
    ce = run(shell, "x = 2\ny = x + 1")
    assert ce.reads == {}  # x@0 is not an input of this cell
    assert ce.writes == ["x", "y"]
    assert monitor().history.lineage({2}) == {2}  # so recomputing y does not replay CE 0
    ce = run(shell, "fresh = [0]\nfresh.append(1)\nn = len(fresh)")
    assert ce.reads == {}
    assert ce.writes == ["fresh", "n"]


def test_ipython_machinery_is_not_tracked(shell: InteractiveShell) -> None:
    run(shell, "1 + 1")  # fills _, _1, Out, _i...
    run(shell, "_private = 1\nid = 'user-17'")
    assert set(monitor().history.live) == {"_private", "id"}
    assert shell.user_ns["_1"] == 2


@pytest.mark.parametrize("name", ["In", "Out", "_", "__", "___", "_i", "_ii", "_iii", "_i12", "_12", "_oh", "_dh",
                                  "_ih", "exit", "quit", "get_ipython", "__name__", "__builtins__"])
def test_is_user_name_rejects_ipython_machinery(name: str) -> None:
    assert not is_user_name(name, object(), {})


@pytest.mark.parametrize("name", ["x", "_cache", "__hidden_note", "_i_x", "_1a", "id", "len", "Output"])
def test_is_user_name_accepts_user_names(name: str) -> None:
    assert is_user_name(name, object(), {})


def test_a_hidden_name_is_the_users_once_rebound() -> None:
    original, mine = object(), object()
    hidden = {"open": original}
    assert not is_user_name("open", original, hidden)
    assert is_user_name("open", mine, hidden)
    ns = {"open": original, "x": 1, "In": []}
    assert dict(user_items(ns, hidden)) == {"x": 1}


def test_importable_module_name_and_type_name() -> None:
    import collections
    import types

    assert importable_module_name(np) == "numpy"
    assert importable_module_name(collections.abc) == "collections.abc"
    assert importable_module_name(types.ModuleType("made_up")) is None  # not in sys.modules
    assert importable_module_name(sys.modules["__main__"]) is None
    assert importable_module_name(1) is None
    assert type_name(np.zeros(1)) == "numpy.ndarray"
    assert type_name({}) == "builtins.dict"


def test_function_and_class_definitions_are_variables(shell: InteractiveShell) -> None:
    ce = run(shell, "def f(v):\n    return v + 1\nclass K:\n    pass")
    assert ce.writes == ["K", "f"]
    ce = run(shell, "r = f(1)")
    assert ce.reads == {"f": 0}


# --------------------------------------------------------------------------------------------------
# In-place mutation
# --------------------------------------------------------------------------------------------------

MUTATIONS = [
    pytest.param("xs = [1, 2]", "xs", "xs.append(3)", "n = len(xs) + xs[0]", id="list.append"),
    pytest.param("cfg = {'a': 1}", "cfg", "cfg.update(b=2)", "n = cfg['a'] + len(cfg)", id="dict.update"),
    pytest.param("import numpy as np\narr = np.zeros(5)", "arr", "arr[1:3] = 7", "n = arr.sum() + arr[2]",
                 id="ndarray-slice"),
    pytest.param("import numpy as np\narr = np.zeros(5)", "arr", "np.add(arr, 1, out=arr)",
                 "n = np.add(arr, 1).sum()", id="ufunc-out"),
    pytest.param("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})", "df", "df['b'] = df['a'] * 2",
                 "n = df['a'].max() + len(df.describe())", id="dataframe-column"),
    pytest.param("class Point:\n    pass\np = Point()\np.x = 1", "p", "p.y = 2", "n = p.x + len(vars(p))",
                 id="session-instance-attr"),
    pytest.param("s = {1}", "s", "s.add(2)", "n = 1 in s", id="set.add"),
]


@pytest.mark.parametrize(("setup", "name", "mutate", "read"), MUTATIONS)
def test_in_place_mutation_is_a_write(shell: InteractiveShell, setup: str, name: str, mutate: str, read: str) -> None:
    if "pandas" in setup:
        pytest.importorskip("pandas")
    first = run(shell, setup)
    assert name in first.writes
    ce = run(shell, mutate)
    assert ce.reads[name] == first.index
    assert name in ce.writes
    assert monitor().history.live[name] == ce.index


@pytest.mark.parametrize(("setup", "name", "mutate", "read"), MUTATIONS)
def test_a_cell_that_only_reads_writes_nothing_else(
    shell: InteractiveShell, setup: str, name: str, mutate: str, read: str
) -> None:
    if "pandas" in setup:
        pytest.importorskip("pandas")
    first = run(shell, setup)
    ce = run(shell, read)
    assert ce.reads[name] == first.index
    assert ce.writes == ["n"]
    assert monitor().history.live[name] == first.index
    ce = run(shell, read)  # twice: a read does not change the fingerprint for the next cell either
    assert name not in ce.writes
    assert monitor().history.live[name] == first.index


def test_rebinding_to_the_same_object_is_not_a_mutation(shell: InteractiveShell) -> None:
    run(shell, "xs = [1]")
    ce = run(shell, "xs = xs")
    assert ce.writes == []
    assert monitor().history.live == {"xs": 0}


def test_mutation_in_a_cell_that_also_creates(shell: InteractiveShell) -> None:
    run(shell, "acc = []")
    ce = run(shell, "acc.extend([1, 2])\nsize = len(acc)")
    assert ce.writes == ["acc", "size"]
    assert ce.reads == {"acc": 0}


# --------------------------------------------------------------------------------------------------
# Co-variables: mutation through an alias
# --------------------------------------------------------------------------------------------------


def test_mutation_through_a_container_alias(shell: InteractiveShell) -> None:
    run(shell, "a = []")  # CE 0
    run(shell, "d = {'k': a}\nc = list(a)")  # CE 1: d holds a; c is a copy
    ce = run(shell, "a.append(1)")
    assert ce.reads == {"a": 0, "d": 1}  # d's new version is built from its old one
    assert ce.writes == ["a", "d"]
    assert monitor().history.live == {"a": 2, "d": 2, "c": 1}
    # Mutating the shared list through d changes a as well.
    ce = run(shell, "d['k'].append(2)")
    assert ce.writes == ["a", "d"]
    assert shell.user_ns["a"] == [1, 2]


def test_numpy_view_changes_with_its_base(shell: InteractiveShell) -> None:
    run(shell, "import numpy as np\nbase = np.arange(5)")  # CE 0
    run(shell, "v = base[1:]\ncopy = base.copy()")  # CE 1
    ce = run(shell, "base[1] = 9")
    assert ce.writes == ["base", "v"]
    assert int(shell.user_ns["v"][0]) == 9
    ce = run(shell, "v[-1] = -1")  # and the other way round
    assert ce.writes == ["base", "v"]
    live = monitor().history.live
    assert live["base"] == live["v"] == 3 and live["copy"] == 1


def test_a_change_through_an_alias_reads_the_previous_version(shell: InteractiveShell) -> None:
    """A mutation is read-modify-write: the new version of every name it changed is built from the old one.

    Without that read edge, recomputing ``a`` would replay CE 0, CE 2 and CE 3 and skip CE 1, which
    created ``t``: CE 3 (``t[0, 0] = 42``) would then fail with a NameError.
    """
    run(shell, "import numpy as np\na = np.arange(12.0).reshape(3, 4)")  # CE 0
    run(shell, "t = a.T")  # CE 1
    ce = run(shell, "a[1] = -1")  # CE 2
    assert ce.reads == {"a": 0, "t": 1}
    assert ce.writes == ["a", "t"]
    ce = run(shell, "t[0, 0] = 42")  # CE 3
    assert ce.reads == {"a": 2, "t": 2}
    history = monitor().history
    assert history.live == {"np": 0, "a": 3, "t": 3}
    assert history.lineage({history.writer("a")}) == {0, 1, 2, 3}


def test_figure_and_axes_style_pairs_are_covariables(shell: InteractiveShell) -> None:
    run(shell, "class Fig:\n    def __init__(self):\n        self.axes = [Ax(self)]\n"
               "class Ax:\n    def __init__(self, fig):\n        self.fig = fig\n        self.title = ''")
    run(shell, "fig = Fig()\nax = fig.axes[0]")
    ce = run(shell, "ax.title = 'hello'")
    assert ce.writes == ["ax", "fig"]


# --------------------------------------------------------------------------------------------------
# Globals reached through session functions
# --------------------------------------------------------------------------------------------------


def test_session_function_mutating_a_global(shell: InteractiveShell) -> None:
    run(shell, "data = []")  # CE 0
    run(shell, "def f():\n    data.append(1)")  # CE 1
    ce = run(shell, "f()")
    assert ce.reads == {"data": 0, "f": 1}
    assert ce.writes == ["data"]
    assert monitor().history.live["data"] == 2
    # Through two levels of session functions.
    run(shell, "def g():\n    f()")  # CE 3
    ce = run(shell, "g()")
    assert ce.reads["data"] == 2 and ce.reads["f"] == 1
    assert ce.writes == ["data"]


def test_global_statement_counter(shell: InteractiveShell) -> None:
    run(shell, "counter = 0")  # CE 0
    run(shell, "def bump():\n    global counter\n    counter += 1")  # CE 1
    ce = run(shell, "bump()")
    assert ce.reads == {"counter": 0, "bump": 1}
    assert ce.writes == ["counter"]
    ce = run(shell, "bump(); bump()")
    assert ce.reads["counter"] == 2
    assert ce.writes == ["counter"]
    assert shell.user_ns["counter"] == 3


def test_session_function_creating_a_global(shell: InteractiveShell) -> None:
    run(shell, "def make():\n    global made\n    made = [1]")
    ce = run(shell, "make()")
    assert ce.writes == ["made"]


# --------------------------------------------------------------------------------------------------
# Magics, shell commands, exec, output cache
# --------------------------------------------------------------------------------------------------


def test_capture_cell_magic_is_one_cell_execution(shell: InteractiveShell) -> None:
    run(shell, "base = 40")
    ce = run(shell, "%%capture out\nq = base + 2\nprint(q)\n")
    assert ce.source.startswith("%%capture out")
    assert ce.writes == ["out", "q"]
    assert ce.reads == {"base": 0}
    assert shell.user_ns["out"].stdout == "42\n"
    assert len(monitor().history.executions) == 2  # the nested run_cell made no CE of its own


def test_nested_run_cell_is_part_of_the_outer_cell(shell: InteractiveShell) -> None:
    ce = run(shell, "get_ipython().run_cell('inner = 1')\nouter = 2")
    assert ce.writes == ["inner", "outer"]
    assert len(monitor().history.executions) == 1
    run(shell, "after = 3")  # and the monitor is back at depth 0
    assert monitor().history.live == {"inner": 0, "outer": 0, "after": 1}


def test_time_line_magic(shell: InteractiveShell) -> None:
    run(shell, "y = 3")
    ce = run(shell, "%time x = y + 1")
    assert ce.source == "%time x = y + 1"
    assert ce.writes == ["x"]
    assert ce.reads == {"y": 0}
    assert ce.hazards == []


RNG_MODULE = """
import random

import numpy as np


def shuffle_order(n):
    return np.random.permutation(n)


def coin():
    return random.random() < 0.5
"""


def test_a_draw_inside_a_library_call_is_a_hazard(shell: InteractiveShell, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A library drawing from a global generator (as LinearSVC() does) is invisible to the hazard table:
    the generator's state moving during the cell marks it, unless the cell seeded that generator."""
    (tmp_path / "rngmod.py").write_text(RNG_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    run(shell, "import numpy as np\nimport rngmod")
    ce = run(shell, "order = rngmod.shuffle_order(10)")
    assert ce.hazards == ["unseeded randomness: numpy.random's global generator, drawn inside a call"]
    ce = run(shell, "flip = rngmod.coin()")
    assert ce.hazards == ["unseeded randomness: random's global generator, drawn inside a call"]
    ce = run(shell, "np.random.seed(3)\norder = rngmod.shuffle_order(10)")
    assert ce.hazards == []  # seeded in the cell: a replay draws the same
    ce = run(shell, "total = int(order.sum())")
    assert ce.hazards == []


def test_shell_command_is_a_hazard(shell: InteractiveShell) -> None:
    ce = run(shell, "!echo hi")
    assert "shell command: echo hi" in ce.hazards
    ce = run(shell, "n = 7\n!echo {n * 6}")
    assert any(h.startswith("shell command: echo") for h in ce.hazards)
    assert "n" in ce.writes


def test_exec_of_a_literal_is_analysed(shell: InteractiveShell) -> None:
    run(shell, "a = 1")
    ce = run(shell, 'exec("z = a + 1")')
    assert ce.writes == ["z"]
    assert ce.reads == {"a": 0}
    assert shell.user_ns["z"] == 2


def test_exec_of_dynamic_code_reads_everything(shell: InteractiveShell) -> None:
    run(shell, "a = [1]\nb = 2")
    run(shell, "code = 'w = b * 2'")
    live_before = dict(monitor().history.live)
    ce = run(shell, "exec(code)")
    assert ce.reads == live_before  # conservative: every tracked variable may have been read
    assert ce.writes == ["w"]  # ...but only what really changed is written
    assert shell.user_ns["w"] == 4


def test_output_cache_is_a_hazard(shell: InteractiveShell) -> None:
    run(shell, "1 + 1")
    ce = run(shell, "y = _")
    assert "output cache: _" in ce.hazards
    assert ce.writes == ["y"]
    assert shell.user_ns["y"] == 2


def test_own_magics_and_empty_cells_are_not_recorded(shell: InteractiveShell) -> None:
    run(shell, "x = 1")
    result = run_unrecorded(shell, "%nbmigrate status")
    assert result.success
    run_unrecorded(shell, "")
    run_unrecorded(shell, "   \n\n")
    # A cell that mixes an own magic with user code is the user's.
    ce = run(shell, "%nbmigrate status\ny = x")
    assert ce.writes == ["y"]


def test_is_own_cell() -> None:
    def line(name: str, arg: str) -> str:
        return f"get_ipython().run_line_magic({name!r}, {arg!r})\n"

    assert is_own_cell(line("nbmigrate", "status"))
    assert is_own_cell(line("checkpoint", "/tmp/ck") + line("restore", "/tmp/ck"))
    assert is_own_cell(line("load_ext", "nbmigrate"))
    assert not is_own_cell(line("load_ext", "autoreload"))
    assert not is_own_cell(line("time", "x = 1"))
    assert not is_own_cell(line("nbmigrate", "status") + "x = 1\n")
    assert not is_own_cell("")
    assert not is_own_cell("x y")


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_a_cell_that_raises_is_recorded_with_its_partial_effects(shell: InteractiveShell) -> None:
    run(shell, "xs = []")
    ce = run(shell, "p = 5\nxs.append(p)\n1 / 0\nnever = 1", ok=False)
    assert ce.raised is True
    assert "raised ZeroDivisionError" in ce.hazards
    assert ce.writes == ["p", "xs"]
    assert "never" not in shell.user_ns
    assert monitor().history.live == {"xs": 1, "p": 1}


def test_a_syntax_error_is_not_recorded(shell: InteractiveShell) -> None:
    run(shell, "a = 1")
    result = run_unrecorded(shell, "x y")
    assert result.error_before_exec is not None
    ce = run(shell, "b = a")
    assert ce.index == 1
    assert ce.reads == {"a": 0}


def test_fingerprint_failure_never_breaks_the_cell(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant 3: the user's cell runs and gives its result; the CE is recorded conservatively."""
    run(shell, "a = [1, 2]\nkeep = 'k'")  # CE 0

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("fingerprint exploded")

    monkeypatch.setattr(monitor_mod, "fingerprint", boom)
    ce = run(shell, "b = sum(a) + 1\na.append(b)\ndel keep")
    assert shell.user_ns["b"] == 4
    assert shell.user_ns["a"] == [1, 2, 4]
    assert ce.hazards == ["monitor failed: RuntimeError: fingerprint exploded"]
    assert ce.reads == {"a": 0, "keep": 0}  # everything it may have read
    assert ce.writes == ["a", "b"]  # everything that is left
    assert ce.deletes == ["keep"]
    assert monitor().history.live == {"a": 1, "b": 1}

    ce = run(shell, "a.append(0)\n1 / 0", ok=False)
    assert ce.raised
    assert ce.hazards == ["monitor failed: RuntimeError: fingerprint exploded", "raised ZeroDivisionError"]

    monkeypatch.undo()
    ce = run(shell, "c = len(a)")
    assert ce.hazards == []
    assert "c" in ce.writes
    assert shell.user_ns["c"] == 4


def test_analysis_failure_never_breaks_the_cell(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure before the cell runs is recorded conservatively too: never skipped (DESIGN.md)."""
    run(shell, "a = [1]\ngone = 0")  # CE 0

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("analysis exploded")

    monkeypatch.setattr(monitor_mod, "analyze_cell", boom)
    ce = run(shell, "a.append(2)\nb = 1\ndel gone")
    assert shell.user_ns["a"] == [1, 2]
    assert ce.hazards == ["monitor failed: RuntimeError: analysis exploded"]
    assert ce.writes == ["a", "b"]
    assert ce.deletes == ["gone"]
    assert ce.reads == {"a": 0, "gone": 0}
    monkeypatch.undo()
    # The next cell is analysed normally again and reads the version the failed cell left.
    ce = run(shell, "n = len(a)")
    assert ce.reads == {"a": 1}
    assert ce.hazards == []
    assert "n" in ce.writes


def test_unused_big_array_is_never_fingerprinted(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant 6 (behaviour): a cell that cannot reach a variable does not pay for it."""
    run(shell, "import numpy as np\nbig = np.zeros(10**7)\nsmall = [1, 2]")
    big_id = id(shell.user_ns["big"])
    seen = _spy_fingerprints(monkeypatch)
    ce = run(shell, "y = 1")
    assert ce.writes == ["y"]
    assert seen == [id(shell.user_ns["y"])]
    run(shell, "small.append(3)")
    run(shell, "z = len(small) + y")
    assert big_id not in seen
    ce = run(shell, "big[0] = 1")  # reached: fingerprinted, and the mutation is seen
    assert big_id in seen
    assert ce.writes == ["big"]


def _spy_fingerprints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = monitor_mod.fingerprint

    def spy(obj: Any, **kwargs: Any) -> Any:
        seen.append(id(obj))
        return real(obj, **kwargs)

    monkeypatch.setattr(monitor_mod, "fingerprint", spy)
    return seen


def test_an_arithmetic_read_of_a_numeric_value_is_not_refingerprinted(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``r = frames[1] / a`` cannot write to its operands: it reads them without re-hashing them."""
    run(shell, "import numpy as np, pandas as pd\na = np.ones(1000)\nframes = {1: pd.DataFrame({'x': a})}")
    seen = _spy_fingerprints(monkeypatch)
    ce = run(shell, "r = frames[1] / 2 + 1\nq = -a > 0.5 * a")
    assert {"frames", "a"} <= set(ce.reads)
    assert id(shell.user_ns["a"]) not in seen and id(shell.user_ns["frames"]) not in seen
    assert sorted(ce.writes) == ["q", "r"]


@pytest.mark.parametrize(
    ("setup", "cell"),
    [
        ("view = a[:2]", "y = a + 1\nview[0] = 5"),  # a co-variable of another candidate
        ("def bump():\n    a[0] = 5", "y = a + 1\nbump()"),  # a session function reaches it
        (
            "class Evil:\n    __array_ufunc__ = None\n"
            "    def __radd__(self, other):\n        other[0] = 5\n        return 0\nevil = Evil()",
            "y = a + evil",  # an operand whose arithmetic runs user code
        ),
        ("d = {0: a}", "y = a * 2\nd[0][0] = 5"),  # written through a container that holds it
    ],
)
def test_a_mutation_next_to_an_arithmetic_read_is_still_seen(shell: InteractiveShell, setup: str, cell: str) -> None:
    run(shell, "import numpy as np\na = np.zeros(3)")
    run(shell, setup)
    ce = run(shell, cell)
    assert "a" in ce.writes


# --------------------------------------------------------------------------------------------------
# Files, network, subprocesses
# --------------------------------------------------------------------------------------------------


def test_reading_a_file_records_a_stamp(shell: InteractiveShell, tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("hello")
    ce = run(shell, f"txt = open({str(path)!r}).read()")
    assert ce.files_read == [stamp(os.path.realpath(path))]
    assert ce.files_written == []
    assert ce.hazards == []


def test_reading_a_file_through_a_variable(shell: InteractiveShell, tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("hello")
    run(shell, f"import pathlib\np = pathlib.Path({str(path)!r})")
    ce = run(shell, "txt = p.read_text()")
    assert [st.path for st in ce.files_read] == [os.path.realpath(path)]


def test_a_path_literal_of_an_existing_file_is_a_read(shell: InteractiveShell, tmp_path: Path) -> None:
    """Files read by C code never reach Python's open: the literal naming them is the other source."""
    (tmp_path / "data.bin").write_bytes(b"\0" * 8)
    ce = run(shell, "import os\nsize = os.path.getsize('data.bin')")
    assert [st.path for st in ce.files_read] == [os.path.realpath(tmp_path / "data.bin")]


def test_a_failed_open_is_not_a_read(shell: InteractiveShell, tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    ce = run(shell, f"try:\n    open({str(missing)!r})\nexcept OSError:\n    pass")
    assert ce.files_read == []


def test_writing_a_file_records_a_stamp(shell: InteractiveShell, tmp_path: Path) -> None:
    ce = run(shell, "with open('out.txt', 'w') as fh:\n    fh.write('x')")
    out = os.path.realpath(tmp_path / "out.txt")
    assert ce.files_written == [stamp(out)]
    assert ce.files_read == []
    assert ce.hazards == []


def test_write_then_read_in_the_same_cell_is_not_a_hazard(shell: InteractiveShell, tmp_path: Path) -> None:
    ce = run(shell, "with open('own.txt', 'w') as fh:\n    fh.write('x')\nback = open('own.txt').read()")
    assert [st.path for st in ce.files_written] == [os.path.realpath(tmp_path / "own.txt")]
    assert ce.files_read == []
    assert ce.hazards == []


def test_read_then_write_in_the_same_cell_is_a_hazard(shell: InteractiveShell, tmp_path: Path) -> None:
    path = tmp_path / "both.txt"
    path.write_text("v1")
    ce = run(shell, "old = open('both.txt').read()\nwith open('both.txt', 'w') as fh:\n    fh.write(old + 'v2')")
    real = os.path.realpath(path)
    assert ce.hazards == [f"read {real}, then wrote it in the same cell"]
    assert ce.files_read == []  # its content came partly from the cell itself
    assert ce.files_written == [stamp(real)]


def test_subprocess_outside_the_cell_text_is_a_hazard(shell: InteractiveShell) -> None:
    run(shell, "import functools, subprocess, sys\n"
               "runner = functools.partial(subprocess.run, [sys.executable, '-c', 'pass'])")
    ce = run(shell, "done = runner()")
    assert any(h.startswith("subprocess: ") for h in ce.hazards), ce.hazards


def test_network_connection_is_a_hazard(shell: InteractiveShell) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        ce = run(shell, f"import socket\nconn = socket.create_connection(('127.0.0.1', {port}))\nconn.close()")
    assert any(h.startswith("network: ") and str(port) in h for h in ce.hazards), ce.hazards


def test_files_opened_by_other_threads_are_ignored(shell: InteractiveShell, tmp_path: Path) -> None:
    (tmp_path / "bg.txt").write_text("b")
    ce = run(shell, "import threading\n"
                    "t = threading.Thread(target=lambda: open('bg.txt').read())\n"
                    "t.start()\nt.join()")
    # 'bg.txt' is a literal naming an existing file, so it is a (conservative) read through the
    # paths route, but the thread's own open did not mark it as read through the audit hook.
    assert [st.path for st in ce.files_read] == [os.path.realpath(tmp_path / "bg.txt")]
    run(shell, "name = 'bg' + '.txt'")
    ce = run(shell, "t = threading.Thread(target=lambda: open(name).read())\nt.start()\nt.join()")
    assert ce.files_read == []


# --------------------------------------------------------------------------------------------------
# refresh() and pausing
# --------------------------------------------------------------------------------------------------


def test_refresh_marks_changes_outside_monitored_cells_preexisting(shell: InteractiveShell) -> None:
    run(shell, "x = [1]\ny = [2]\nz = 0")  # CE 0
    m = monitor()
    shell.user_ns["x"].append(99)  # behind the monitor's back
    shell.user_ns["new"] = "injected"
    del shell.user_ns["z"]
    fps = m.refresh()
    assert m.history.live == {"x": PREEXISTING, "y": 0, "new": PREEXISTING}
    assert set(fps) == {"x", "y", "new"}
    # The fingerprints are the new reference: a later read-only cell writes nothing.
    ce = run(shell, "n = len(x)")
    assert ce.reads == {"x": PREEXISTING}
    assert ce.writes == ["n"]


def test_cells_run_while_paused_are_not_recorded(shell: InteractiveShell) -> None:
    run(shell, "xs = [1]")
    m = monitor()
    m.paused = True
    shell.run_cell("xs.append(2)\nmore = 1", store_history=True)
    m.paused = False
    assert len(m.history.executions) == 1
    m.refresh()
    assert m.history.live == {"xs": PREEXISTING, "more": PREEXISTING}


def test_a_cell_that_pauses_the_monitor_leaves_no_recorder_running(shell: InteractiveShell) -> None:
    shell.run_cell("from nbmigrate.extension import current_monitor\ncurrent_monitor().paused = True",
                   store_history=True)
    assert files._ACTIVE == []
    monitor().paused = False
    ce = run(shell, "x = 1")
    assert ce.writes == ["x"]


def test_monitor_fingerprints_track_the_namespace(shell: InteractiveShell) -> None:
    run(shell, "import numpy as np\narr = np.arange(3)\nlst = [1]")
    fps = monitor().fingerprints
    assert set(fps) == {"np", "arr", "lst"}
    assert fps["arr"].digest is not None
    run(shell, "del lst")
    assert set(fps) == {"np", "arr"}
    assert isinstance(shell.user_ns["arr"], np.ndarray)
