"""Unit tests for nbmigrate.access: static analysis of one cell (no kernel)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("nbmigrate") is None:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from nbmigrate.access import CellAccess, analyze_cell, function_globals

ipy = pytest.importorskip("IPython.core.inputtransformer2")
_TM = ipy.TransformerManager()


def transformed(raw: str) -> str:
    """The cell as IPython hands it to the monitor (``shell.transform_cell``)."""
    return str(_TM.transform_cell(textwrap.dedent(raw)))


def cell(raw: str, ns: dict[str, Any] | None = None) -> CellAccess:
    return analyze_cell(transformed(raw), {} if ns is None else ns)


def session(code: str) -> dict[str, Any]:
    """A user namespace in which ``code`` ran, like IPython's ``user_ns`` (``__name__ == "__main__"``)."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(textwrap.dedent(code), ns)
    return ns


# --------------------------------------------------------------------------------------------------
# Plain Python: reads, bindings, scoping
# --------------------------------------------------------------------------------------------------


def test_reads_versus_writes() -> None:
    r = cell("x = a + b\ny = 1\n")
    assert {"a", "b"} <= r.reads
    assert "x" not in r.reads and "y" not in r.reads
    assert r.bound == {"x", "y"}
    assert not r.conservative and r.hazards == ()


def test_read_after_bind_in_same_cell_still_counts() -> None:
    r = cell("x = 1\nprint(x)\n")
    assert "x" in r.reads and "x" in r.bound


def test_augassign_reads_target() -> None:
    r = cell("total += 1\n")
    assert "total" in r.reads and "total" in r.bound


def test_attribute_and_subscript_stores_read_the_base() -> None:
    r = cell("a.b.c = 1\nd[0] = 2\ne.f[1] = 3\n")
    assert {"a", "d", "e"} <= r.reads
    assert r.bound == frozenset()


def test_del() -> None:
    r = cell("del a\ndel b[0]\ndel c.attr\n")
    assert "a" in r.bound and "a" not in r.reads
    assert {"b", "c"} <= r.reads
    assert "b" not in r.bound


def test_comprehension_targets_do_not_leak() -> None:
    r = cell("ys = [i * k for i in xs if i > lo]\nd = {kk: v for kk, v in pairs}\ng = sum(j for j in rng)\n")
    assert {"xs", "k", "lo", "pairs", "rng", "sum"} <= r.reads
    assert not {"i", "kk", "v", "j"} & (r.reads | r.bound)
    assert r.bound == {"ys", "d", "g"}


def test_nested_comprehension_and_shadowing_global() -> None:
    r = cell("m = [[x + y for y in row] for row in grid]\n")
    assert {"grid", "x"} <= r.reads  # x is free in both comprehensions: a global
    assert not {"y", "row"} & r.reads


def test_function_params_locals_and_free_names() -> None:
    r = cell(
        """
        def f(a, *args, b=1, **kw):
            c = a + b + outside
            return c, args, kw
        """
    )
    assert "outside" in r.reads
    assert not {"a", "b", "c", "args", "kw"} & r.reads
    assert r.bound == {"f"}


def test_closures_and_nonlocal() -> None:
    r = cell(
        """
        def outer():
            count = 0
            def inner():
                nonlocal count
                count += 1
                return count + step
            return inner
        """
    )
    assert "step" in r.reads
    assert "count" not in r.reads and "count" not in r.bound


def test_global_statement_in_def_reads_and_binds() -> None:
    r = cell(
        """
        def bump():
            global counter
            counter = counter + 1
        """
    )
    assert "counter" in r.reads
    assert r.bound == {"bump", "counter"}


def test_class_body() -> None:
    r = cell(
        """
        class K(Base, metaclass=Meta):
            size = default_size
            def method(self):
                return size_global + self.size
        """
    )
    assert {"Base", "Meta", "default_size", "size_global"} <= r.reads
    assert "self" not in r.reads
    assert r.bound == {"K"}


def test_lambda() -> None:
    r = cell("f = lambda x, y=dflt: x + y + z\n")
    assert {"dflt", "z"} <= r.reads
    assert not {"x", "y"} & r.reads


def test_walrus_binds_module_name_even_in_comprehension() -> None:
    r = cell("if (n := len(xs)) > 3:\n    pass\nys = [last := v for v in xs]\n")
    assert {"n", "last", "ys"} <= r.bound
    assert "xs" in r.reads and "v" not in r.reads


def test_walrus_inside_function_is_local() -> None:
    r = cell("def f():\n    if (m := g()) is not None:\n        return m\n")
    assert "m" not in r.bound and "m" not in r.reads
    assert "g" in r.reads


def test_imports_bind() -> None:
    r = cell("import os.path\nimport numpy as np\nfrom a.b import c as d, e\n")
    assert r.bound == {"os", "np", "d", "e"}
    assert r.reads == frozenset()


def test_for_with_except_match_targets_bind() -> None:
    r = cell(
        """
        for i, (j, *rest) in items:
            pass
        with open(p) as fh:
            pass
        try:
            pass
        except ValueError as err:
            pass
        match point:
            case (px, py):
                pass
        """
    )
    assert {"i", "j", "rest", "fh", "err", "px", "py"} <= r.bound
    assert {"items", "open", "p", "ValueError", "point"} <= r.reads


def test_fstrings() -> None:
    r = cell("msg = f'{name!r} has {count:>{width}} items'\n")
    assert {"name", "count", "width"} <= r.reads


def test_decorators_defaults_annotations_evaluated_at_def_time() -> None:
    r = cell(
        """
        @register(tag)
        def h(x: InType = default_x, *, y=kwdefault) -> OutType:
            return x
        """
    )
    assert {"register", "tag", "InType", "default_x", "kwdefault", "OutType"} <= r.reads
    assert "x" not in r.reads


def test_builtins_are_reported_like_any_free_name() -> None:
    assert "len" in cell("n = len(xs)\n").reads


# --------------------------------------------------------------------------------------------------
# Session functions and classes
# --------------------------------------------------------------------------------------------------


def test_session_function_reads_its_globals() -> None:
    ns = session("def f(v):\n    return v * scale\n")
    r = analyze_cell("y = f(3)\n", ns)
    assert {"f", "scale"} <= r.reads


def test_session_function_transitive() -> None:
    ns = session(
        """
        def helper(v):
            return v + offset
        def f(v):
            return helper(v) * scale
        """
    )
    assert {"f", "helper", "offset", "scale"} <= analyze_cell("f(1)\n", ns).reads
    assert function_globals(ns["f"], ns) == {"helper", "offset", "scale"}


def test_bytecode_ignores_attribute_names() -> None:
    ns = session("def f(df):\n    return df.groupby(key).mean()\n")
    got = function_globals(ns["f"], ns)
    assert got == {"key"}


def test_recursive_function_terminates() -> None:
    ns = session("def fact(n):\n    return 1 if n == 0 else n * fact(n - 1) * base\n")
    assert function_globals(ns["fact"], ns) == {"fact", "base"}


def test_mutual_recursion_terminates() -> None:
    ns = session(
        """
        def even(n):
            return True if n == 0 else odd(n - 1)
        def odd(n):
            return False if n == 0 else even(n - 1) and flag
        """
    )
    assert {"even", "odd", "flag"} <= analyze_cell("even(4)\n", ns).reads


def test_function_writing_a_global_counts_as_read() -> None:
    ns = session("def bump():\n    global counter\n    counter += 1\n")
    assert "counter" in analyze_cell("bump()\n", ns).reads


def test_main_module_function_with_another_globals_dict() -> None:
    ns = session("")
    other: dict[str, Any] = {"__name__": "__main__"}
    exec("def restored():\n    return hidden_global\n", other)
    assert other["restored"].__globals__ is not ns
    ns["restored"] = other["restored"]
    assert "hidden_global" in analyze_cell("restored()\n", ns).reads


def test_library_wrapper_is_followed_but_not_walked() -> None:
    import dataclasses

    ns = session(
        """
        import dataclasses
        @dataclasses.dataclass
        class Config:
            name: str
            def label(self):
                return prefix + self.name
        cfg = Config("x")
        """
    )
    # dataclasses' repr wrapper claims __module__ == "__main__" (functools.wraps) and calls id().
    assert ns["Config"].__repr__.__module__ == "__main__"
    assert ns["Config"].__repr__.__globals__ is vars(dataclasses)
    r = analyze_cell("print(cfg)\n", ns)
    assert "prefix" in r.reads and r.hazards == ()

    lib: dict[str, Any] = {"__name__": "somelib"}
    exec(
        "import functools\n"
        "def retry(fn):\n"
        "    @functools.wraps(fn)\n"
        "    def wrapper(*a):\n"
        "        return fn(*a)\n"
        "    return wrapper\n",
        lib,
    )
    ns = session("def job():\n    return job_global\n")
    ns["job"] = lib["retry"](ns["job"])
    assert "job_global" in analyze_cell("job()\n", ns).reads


def test_library_function_is_not_walked() -> None:
    import json

    ns = session("import json\n")
    r = analyze_cell("s = json.dumps(obj)\ndumps = json.dumps\n", ns)
    assert r.reads == {"json", "obj"}
    assert function_globals(json.dumps, ns) == frozenset()


def test_session_class_methods_via_instance() -> None:
    ns = session(
        """
        class Model:
            def __init__(self):
                self.w = init_w
            def predict(self, x):
                return x * self.w + bias
            @property
            def p(self):
                return prop_global
            @staticmethod
            def s():
                return static_global
            @classmethod
            def c(cls):
                return cls_global
        class Sub(Model):
            def extra(self):
                return sub_global
        m = Sub.__new__(Sub)
        """
    )
    r = analyze_cell("out = m.predict(1)\n", ns)
    assert {"m", "bias", "prop_global", "static_global", "cls_global", "sub_global"} <= r.reads
    assert "init_w" not in r.reads  # m exists: __init__ does not run again
    assert "init_w" in analyze_cell("m2 = Sub()\n", ns).reads
    assert function_globals(ns["Model"], ns) >= {"init_w", "bias", "prop_global"}


def test_bound_method_in_namespace() -> None:
    ns = session("class K:\n    def run(self):\n        return runner_global\nrun = K().run\n")
    assert "runner_global" in analyze_cell("run()\n", ns).reads


def test_partial_and_lru_cache_and_wraps() -> None:
    ns = session(
        """
        import functools
        def g(a, b):
            return a + b + partial_global
        pf = functools.partial(g, 1)
        @functools.lru_cache
        def cached(n):
            return n + lru_global
        def deco(fn):
            @functools.wraps(fn)
            def wrapper(*a):
                return fn(*a)
            return wrapper
        @deco
        def decorated():
            return wrapped_global
        """
    )
    assert "partial_global" in analyze_cell("pf(2)\n", ns).reads
    assert "lru_global" in analyze_cell("cached(1)\n", ns).reads
    assert "wrapped_global" in analyze_cell("decorated()\n", ns).reads


def test_closure_and_default_functions_are_followed() -> None:
    ns = session(
        """
        def leaf():
            return leaf_global
        def make():
            def inner():
                return leaf()
            return inner
        closure = make()
        def with_default(cb=leaf):
            return cb()
        """
    )
    assert "leaf_global" in analyze_cell("closure()\n", ns).reads
    assert "leaf_global" in analyze_cell("with_default()\n", ns).reads


def test_namespace_need_not_be_a_dict() -> None:
    from types import MappingProxyType

    ns = session("def f():\n    return g_value\n")
    r = analyze_cell("f()\n", MappingProxyType(ns))  # not the globals dict, but __module__ is __main__
    assert "g_value" in r.reads


# --------------------------------------------------------------------------------------------------
# Magics (sources produced by IPython's own transformer)
# --------------------------------------------------------------------------------------------------


def test_transformer_forms_are_what_we_expect() -> None:
    assert transformed("%time x = f(y)\n") == "get_ipython().run_line_magic('time', 'x = f(y)')\n"
    assert transformed("!ls\n") == "get_ipython().system('ls')\n"


def test_time_line_magic() -> None:
    r = cell("%time x = f(y)\n")
    assert {"f", "y"} <= r.reads and "x" in r.bound
    assert r.hazards == ()


def test_time_cell_magic() -> None:
    r = cell("%%time\nz = g(w)\n")
    assert {"g", "w"} <= r.reads and "z" in r.bound
    assert r.hazards == ()


def test_timeit_line_with_options() -> None:
    r = cell("%timeit -o -q -n 5 -r 3 f(x)\n")
    assert {"f", "x"} <= r.reads
    assert not {"o", "q", "n", "r"} & r.reads
    assert r.hazards == ("timing magic: %timeit",)


def test_timeit_result_and_saved_variable() -> None:
    r = cell("res = %timeit -o f(x)\n")
    assert "res" in r.bound and "timing magic: %timeit" in r.hazards
    r = cell("%timeit -v saved f(x)\n")
    assert "saved" in r.bound


def test_timeit_cell_setup_and_body_bind_nothing() -> None:
    r = cell("%%timeit -n 3 s = setup_src\nt = s + body_src\n")
    assert {"setup_src", "body_src"} <= r.reads
    assert not {"s", "t"} & r.bound
    assert r.hazards == ("timing magic: %timeit",)


def test_prun() -> None:
    r = cell("%prun -s cumulative out = f(x)\n")
    assert {"f", "x"} <= r.reads and "out" in r.bound
    assert "cumulative" not in r.reads


def test_capture_binds_output_and_reads_body() -> None:
    r = cell("%%capture captured\nprint(a)\nb = compute(c)\n")
    assert "captured" in r.bound and "b" in r.bound
    assert {"a", "compute", "c"} <= r.reads


def test_capture_with_flags_and_magics_in_body() -> None:
    r = cell("%%capture --no-stderr cap\n%time v = h(u)\n!echo hi\n")
    assert {"cap", "v"} <= r.bound
    assert {"h", "u"} <= r.reads
    assert "shell command: echo hi" in r.hazards


def test_shell_interpolation_reads() -> None:
    r = cell("!echo {n * 7} $n $obj.attr $$literal\n")
    assert {"n", "obj"} <= r.reads
    assert "literal" not in r.reads
    assert r.hazards == ("shell command: echo {n * 7} $n $obj.attr $$literal",)


def test_getoutput_assignment() -> None:
    r = cell("files = !ls nb_tmp\n")
    assert "files" in r.bound
    assert r.hazards == ("shell command: ls nb_tmp",)


def test_shell_hazard_is_truncated_to_60_chars() -> None:
    r = cell("!echo " + "x" * 200 + "\n")
    assert r.hazards == ("shell command: echo " + "x" * 55,)


@pytest.mark.parametrize("magic", ["bash", "sh", "script bash"])
def test_shell_cell_magics(magic: str) -> None:
    r = cell(f"%%{magic}\nls data/raw\n")
    assert r.hazards == ("shell command: ls data/raw",)
    assert "data/raw" in r.paths
    assert "ls" not in r.reads


def test_writefile_has_no_hazard_and_a_path() -> None:
    r = cell("%%writefile out.txt\nprint(not_python_reads)\n")
    assert r.hazards == ()
    assert "out.txt" in r.paths
    assert "not_python_reads" not in r.reads


def test_env_and_pwd() -> None:
    r = cell("%env MY_VAR=1\nv = %env MY_VAR\n%pwd\n")
    assert r.hazards == () and not r.conservative
    assert "v" in r.bound


@pytest.mark.parametrize("raw", ["%who_ls\n", "%who\n", "%whos\n", "%store x\n", "%reset -f\n", "%xdel x\n"])
def test_namespace_magics_are_conservative(raw: str) -> None:
    assert cell(raw).conservative


def test_unknown_magic_is_harmless() -> None:
    r = cell("%matplotlib inline\n")
    assert not r.conservative and r.hazards == ()


def test_alias_magic_is_a_shell_command() -> None:
    assert cell("%ls data\n").hazards == ("shell command: ls data",)


def test_run_magic_path() -> None:
    r = cell("%run scripts/prepare.py\n")
    assert "scripts/prepare.py" in r.paths and not r.conservative
    assert cell("%run -i scripts/prepare.py\n").conservative


# --------------------------------------------------------------------------------------------------
# exec / eval / globals()
# --------------------------------------------------------------------------------------------------


def test_exec_literal_is_parsed() -> None:
    r = cell("exec('z = q + 1')\n")
    assert "q" in r.reads and "z" in r.bound
    assert not r.conservative


def test_eval_literal_is_parsed() -> None:
    r = cell("v = eval('a * b')\n")
    assert {"a", "b"} <= r.reads and not r.conservative


def test_exec_of_variable_is_conservative() -> None:
    assert cell("exec(code)\n").conservative
    assert cell("v = eval(expr)\n").conservative


@pytest.mark.parametrize("src", ["g = globals()\n", "l = locals()\n", "v = vars()\n"])
def test_namespace_introspection_is_conservative(src: str) -> None:
    assert cell(src).conservative


def test_vars_with_argument_is_fine() -> None:
    assert not cell("d = vars(obj)\n").conservative


def test_exec_in_uncalled_def_is_deferred_to_the_caller() -> None:
    assert not cell("def f():\n    exec(code)\n").conservative
    assert cell("def f():\n    exec(code)\nf()\n").conservative
    ns = session("def f():\n    exec(code)\n")
    assert analyze_cell("f()\n", ns).conservative


def test_syntax_error_is_conservative() -> None:
    r = analyze_cell("x = (\n", {})
    assert r.conservative
    assert r.reads == frozenset() and r.hazards == ()


# --------------------------------------------------------------------------------------------------
# Hazards
# --------------------------------------------------------------------------------------------------


def np_ns() -> dict[str, Any]:
    np = pytest.importorskip("numpy")
    return {"np": np}


def test_numpy_legacy_draw() -> None:
    r = analyze_cell("a = np.random.rand(3)\n", np_ns())
    assert r.hazards == ("unseeded randomness: numpy.random.rand",)


def test_numpy_default_rng_seeded_or_not() -> None:
    ns = np_ns()
    assert analyze_cell("g = np.random.default_rng()\n", ns).hazards == (
        "unseeded randomness: numpy.random.default_rng()",
    )
    assert analyze_cell("g = np.random.default_rng(None)\n", ns).hazards != ()
    assert analyze_cell("g = np.random.default_rng(42)\n", ns).hazards == ()
    assert analyze_cell("g = np.random.RandomState(0)\n", ns).hazards == ()


def test_from_import_resolves_by_identity() -> None:
    pytest.importorskip("numpy")
    from numpy.random import rand

    want = ("unseeded randomness: numpy.random.rand",)
    assert analyze_cell("x = rand(3)\n", {"rand": rand}).hazards == want
    assert analyze_cell("x = r(3)\n", {"r": rand}).hazards == want


def test_import_in_the_same_cell_resolves_by_name() -> None:
    r = analyze_cell("from numpy.random import rand\nx = rand(3)\n", {})
    assert r.hazards == ("unseeded randomness: numpy.random.rand",)


def test_seed_earlier_in_cell_cancels_draw() -> None:
    ns = np_ns()
    assert analyze_cell("np.random.seed(0)\na = np.random.rand(3)\n", ns).hazards == ()
    assert analyze_cell("a = np.random.rand(3)\nnp.random.seed(0)\n", ns).hazards != ()
    assert analyze_cell("np.random.seed()\n", ns).hazards == ("unseeded randomness: numpy.random.seed()",)


def test_stdlib_random() -> None:
    import random

    ns = {"random": random}
    assert analyze_cell("x = random.random()\n", ns).hazards == ("unseeded randomness: random.random",)
    assert analyze_cell("r = random.Random()\n", ns).hazards == ("unseeded randomness: random.Random()",)
    assert analyze_cell("r = random.Random(3)\n", ns).hazards == ()
    assert analyze_cell("random.seed(1)\nx = random.choice(xs)\n", ns).hazards == ()
    assert analyze_cell("s = random.SystemRandom()\n", ns).hazards == (
        "unseeded randomness: random.SystemRandom",
    )


def test_random_method_bound_to_hidden_instance() -> None:
    import random

    assert analyze_cell("x = shuffle(xs)\n", {"shuffle": random.shuffle}).hazards == (
        "unseeded randomness: random.shuffle",
    )


def test_torch_without_importing_torch() -> None:
    had_torch = "torch" in sys.modules
    r = analyze_cell("import torch\nx = torch.randn(3)\ny = torch.rand(2, generator=g)\n", {})
    assert r.hazards == ("unseeded randomness: torch.randn",)
    assert analyze_cell("import torch\ntorch.manual_seed(0)\nx = torch.randn(3)\n", {}).hazards == ()
    r = analyze_cell("import torch.nn as nn\nm = nn.Linear(3, 4)\nnn.init.zeros_(m.weight)\n", {})
    assert r.hazards == ("unseeded randomness: torch.nn.Linear",)
    assert ("torch" in sys.modules) == had_torch


@pytest.mark.parametrize(
    ("src", "hazard"),
    [
        ("import time\nt = time.time()\n", "clock: time.time"),
        ("import time\nt = time.perf_counter()\n", "clock: time.perf_counter"),
        ("import datetime\nd = datetime.datetime.now()\n", "clock: datetime.datetime.now"),
        ("from datetime import datetime\nd = datetime.now()\n", "clock: datetime.datetime.now"),
        ("from datetime import date\nd = date.today()\n", "clock: datetime.date.today"),
        ("import uuid\nu = uuid.uuid4()\n", "uuid: uuid.uuid4"),
        ("import os\nb = os.urandom(8)\n", "entropy: os.urandom"),
        ("import secrets\ntok = secrets.token_hex(8)\n", "entropy: secrets.token_hex"),
        ("h = hash('x')\n", "process hash: hash()"),
        ("a = id(obj)\n", "process address: id()"),
        ("import subprocess\nsubprocess.run(['ls'])\n", "shell command: subprocess.run"),
    ],
)
def test_hazard_families(src: str, hazard: str) -> None:
    assert analyze_cell(src, {}).hazards == (hazard,)


def test_hazard_families_resolved_from_namespace() -> None:
    import datetime
    import os
    import uuid

    ns = {"time": time, "datetime": datetime, "uuid": uuid, "os": os, "dt": datetime.datetime}
    r = analyze_cell("a = time.time()\nb = dt.now()\nc = uuid.uuid4()\nd = os.urandom(8)\n", ns)
    assert r.hazards == (
        "clock: time.time",
        "clock: datetime.datetime.now",
        "uuid: uuid.uuid4",
        "entropy: os.urandom",
    )


def test_deterministic_relatives_are_not_hazards() -> None:
    src = "import uuid, time, os\nu = uuid.uuid5(ns, 'x')\ns = time.sleep\np = os.path.join('a', 'b')\n"
    assert analyze_cell(src, {}).hazards == ()


def test_referencing_builtin_id_without_calling_it_is_fine() -> None:
    assert analyze_cell("print(id, hash)\n", {}).hazards == ()


def test_shadowed_builtins_are_not_hazards() -> None:
    assert analyze_cell("id = 3\nprint(id)\n", {}).hazards == ()
    assert analyze_cell("print(id)\n", {"id": 3}).hazards == ()
    assert analyze_cell("def f(id):\n    return hash\nf(1)\n", {"hash": 5}).hazards == ()


@pytest.mark.parametrize("name", ["_", "__", "___", "_3", "Out", "_oh"])
def test_output_cache(name: str) -> None:
    assert analyze_cell(f"y = {name}\n", {}).hazards == (f"output cache: {name}",)


def test_output_cache_bound_in_cell_is_not_a_hazard() -> None:
    assert analyze_cell("_ = 5\nprint(_)\n", {}).hazards == ()


def test_hazard_inside_session_function() -> None:
    np = pytest.importorskip("numpy")
    ns = session("import numpy as np\ndef noise():\n    return np.random.rand(3)\n")
    assert ns["np"] is np
    r = analyze_cell("x = noise()\n", ns)
    assert r.hazards == ("unseeded randomness: numpy.random.rand",)
    assert analyze_cell("np.random.seed(0)\nx = noise()\n", ns).hazards == ()


def test_hazard_inside_session_method_and_transitive() -> None:
    ns = session(
        """
        import time
        from uuid import uuid4
        def stamp():
            return time.time()
        class Job:
            def run(self):
                return stamp(), uuid4()
        job = Job()
        """
    )
    assert set(analyze_cell("job.run()\n", ns).hazards) == {"clock: time.time", "uuid: uuid.uuid4"}


def test_using_an_instance_does_not_rerun_its_constructor() -> None:
    ns = session(
        """
        import random
        class Net:
            def __init__(self):
                self.w = random.random()
            def forward(self, x):
                return x * self.w + shift
        net = Net.__new__(Net)
        """
    )
    r = analyze_cell("y = net.forward(2)\n", ns)
    assert "shift" in r.reads and r.hazards == ()
    r = analyze_cell("other = Net()\ny = net.forward(2)\n", ns)
    assert r.hazards == ("unseeded randomness: random.random",)
    r = analyze_cell("random.seed(0)\nother = Net()\n", ns)
    assert r.hazards == ()


def test_uncalled_definition_has_no_hazard() -> None:
    import random

    ns = {"random": random}
    assert analyze_cell("def f():\n    return random.random()\n", ns).hazards == ()
    assert analyze_cell("def f():\n    return random.random()\nx = f()\n", ns).hazards == (
        "unseeded randomness: random.random",
    )


def test_hazards_are_deduplicated_in_source_order() -> None:
    r = analyze_cell("import time, uuid\na = uuid.uuid4()\nb = time.time()\nc = uuid.uuid4()\n", {})
    assert r.hazards == ("uuid: uuid.uuid4", "clock: time.time")


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------


def test_paths_from_constants() -> None:
    r = cell(
        """
        df = pd.read_csv('data/train.csv')
        open("model.pkl", "wb")
        label = "hello world"
        url = "https://example.com/x.csv"
        msg = "two\\nlines/x"
        """
    )
    assert r.paths == {"data/train.csv", "model.pkl"}


def test_paths_from_shell_and_magics() -> None:
    r = cell("!cp data/a.csv /tmp/b.csv > logs/cp.log\n%load_ext autoreload\n%run tools/run.py\n")
    assert {"data/a.csv", "/tmp/b.csv", "logs/cp.log", "tools/run.py"} <= r.paths
    assert "autoreload" not in r.paths


def test_fstring_fragments_are_not_paths() -> None:
    assert cell("p = f'data/{i}.csv'\n").paths == frozenset()


def test_magic_code_string_is_not_itself_a_path() -> None:
    r = cell("%time df = load('data/x.csv')\n")
    assert r.paths == {"data/x.csv"}


# --------------------------------------------------------------------------------------------------
# Robustness and speed
# --------------------------------------------------------------------------------------------------


class _Hostile:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


def test_namespace_values_that_raise_on_getattr() -> None:
    ns: dict[str, Any] = {"h": _Hostile(), "m": _Hostile}
    r = analyze_cell("h.x.y = h.z()\nprint(h)\nv = h.a.b.c\nm.attr\n", ns)
    assert {"h", "m"} <= r.reads
    assert not r.conservative and r.hazards == ()


def test_session_class_that_raises_on_getattr() -> None:
    ns = session(
        """
        class Weird:
            def __getattr__(self, name):
                raise RuntimeError(name)
            def method(self):
                return weird_global
        w = Weird()
        """
    )
    r = analyze_cell("w.method()\nw.anything\n", ns)
    assert "weird_global" in r.reads and r.hazards == ()


def test_mapping_that_raises() -> None:
    class Bad(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise KeyError(key)

    r = analyze_cell("y = f(x)\n", Bad())
    assert {"f", "x"} <= r.reads


def test_internal_failure_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbmigrate.access import session as access_session

    def boom(*_a: Any, **_k: Any) -> Any:
        raise ZeroDivisionError

    monkeypatch.setattr(access_session, "_finish_hazards", boom)
    r = analyze_cell("y = a + 1\n", {})
    assert r.conservative
    assert r.hazards == ("analysis failed: ZeroDivisionError",)
    assert "a" in r.reads and "y" in r.bound


def test_function_globals_never_raises() -> None:
    assert function_globals(_Hostile(), {}) == frozenset()
    assert function_globals(42, {}) == frozenset()


def test_a_cell_is_parsed_once_per_source() -> None:
    from nbmigrate.access import syntax

    ns = session("import math\ndef f(v):\n    return math.sqrt(abs(v)) + offset\n")
    src = "\n".join(f"x{i} = f(sum([v * {i} for v in data_{i}])) + x{max(i - 1, 0)}" for i in range(50))
    first = analyze_cell(src, ns)
    hits = syntax._facts_for.cache_info().hits
    for _ in range(3):
        assert analyze_cell(src, ns) == first
    assert syntax._facts_for.cache_info().hits >= hits + 3  # parse results are cached per source
