"""The library coverage matrix: object kinds a notebook holds, and how each one is exercised.

Data for ``tests/kernel/test_coverage_matrix.py`` and the generator of ``docs/supported.md``.

Each :class:`Case` is one object kind living in one variable: a cell that creates it, a later cell
that changes it (in place where the type allows it, otherwise by rebinding the name: the column
"mutation" says which), and a *check*: an expression whose ``repr`` is printed in the source kernel
and in the restored kernel and must be identical. The check is run after the checkpoint, so a check
that advances an iterator (``next(gen)``) proves that the restored one continues where it was.

Cases are grouped in families (one notebook-like sequence per library family): the test runs all the
creation cells of a family in kernel A, then all its mutation cells, checkpoints twice (``--prefer
restore``, which stores whatever can be stored, and ``--prefer checkpoint``, which replays whatever can
be replayed), restores each checkpoint in a fresh kernel and compares every kind.

A kind that is knowingly not carried faithfully has ``xfail`` set to the reason: its test is a strict
xfail, so a fix shows up as an unexpected pass.

Regenerating the docs (after ``pytest tests/kernel/test_coverage_matrix.py``)::

    python -m tests.kernel.coverage_cases --write-docs [--results DIR] [--out docs/supported.md]

``--results`` defaults to the newest ``<basetemp>/coverage-matrix`` folder a pytest run wrote.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IN_PLACE = "in place"
REBIND = "rebind"
"""The type is immutable (or its state cannot be changed through its API): the name is rebound."""

MODES = ("restore", "checkpoint")
"""``--prefer`` values the matrix checkpoints with: store as much as possible / replay as much as possible."""

RESULTS_DIRNAME = "coverage-matrix"
MARKER = "# nbmigrate-coverage "


@dataclass(frozen=True)
class Case:
    kind: str
    var: str
    create: str
    mutate: str
    check: str
    mutation: str = IN_PLACE
    xfail: str | None = None
    """Why this kind is knowingly not restored faithfully (strict xfail), or None."""
    note: str = ""


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    setup: str
    cases: tuple[Case, ...]
    files: dict[str, bytes] = field(default_factory=dict)
    """Files written into the kernels' working directory before kernel A starts."""


def C(kind: str, var: str, create: str, mutate: str, check: str, **kw: Any) -> Case:
    return Case(kind, var, create.strip("\n"), mutate.strip("\n"), check, **kw)


NUMPY = Family("numpy", "NumPy", "import numpy as np", (
    C("bool array", "a_bool", "a_bool = np.array([True, False, True])", "a_bool[1] = True",
      "(a_bool.tolist(), a_bool.dtype.str)"),
    C("int8 array (wrap-around)", "a_i8", "a_i8 = np.arange(-4, 4, dtype=np.int8)", "a_i8 *= 60",
      "(a_i8.tolist(), a_i8.dtype.str)"),
    C("uint64 array", "a_u64", "a_u64 = np.array([0, 2**64 - 1, 7], dtype=np.uint64)", "a_u64[0] = 2**63",
      "(a_u64.tolist(), a_u64.dtype.str)"),
    C("float16 array with NaN", "a_f16", "a_f16 = np.linspace(0, 1, 5, dtype=np.float16)", "a_f16[2] = np.nan",
      "(a_f16.tobytes().hex(), a_f16.dtype.str)"),
    C("float64 2-D array", "a_f64", "a_f64 = np.arange(12.0).reshape(3, 4)", "a_f64[1] = -1",
      "(a_f64.tolist(), a_f64.shape)"),
    C("transposed view (shares memory)", "a_T", "a_T = a_f64.T", "a_T[0, 0] = 42",
      "(a_T.tolist(), np.shares_memory(a_T, a_f64), a_f64[0, 0])"),
    C("Fortran-order array", "a_fort", "a_fort = np.asfortranarray(np.arange(6).reshape(2, 3))",
      "a_fort[0, 0] = 100", "(a_fort.tolist(), a_fort.flags.f_contiguous)"),
    C("big-endian int32 array", "a_be", "a_be = np.array([1, 256], dtype='>i4')", "a_be[0] = 2",
      "(a_be.tolist(), a_be.dtype.str)"),
    C("complex128 array", "a_c128", "a_c128 = np.array([1 + 2j, -3j])", "a_c128.imag[0] = 9",
      "a_c128.tolist()"),
    C("complex64 array", "a_c64", "a_c64 = np.zeros(2, dtype=np.complex64)", "a_c64 += 1.5 - 0.5j",
      "(a_c64.tolist(), a_c64.dtype.str)"),
    C("datetime64[D] array", "a_dt", "a_dt = np.array(['2024-01-01', '2024-03-01'], dtype='datetime64[D]')",
      "a_dt[0] += np.timedelta64(1, 'D')", "(a_dt.astype(str).tolist(), a_dt.dtype.str)"),
    C("timedelta64[s] array", "a_td", "a_td = np.array([1, 2], dtype='timedelta64[s]')", "a_td *= 60",
      "(a_td.astype(int).tolist(), a_td.dtype.str)"),
    C("str_ (U) array", "a_str", "a_str = np.array(['alpha', 'be'])", "a_str[1] = 'gamma'",
      "(a_str.tolist(), a_str.dtype.str)"),
    C("bytes (S) array", "a_bytes", "a_bytes = np.array([b'ab', b'c'])", "a_bytes[0] = b'zz'",
      "(a_bytes.tolist(), a_bytes.dtype.str)"),
    C("StringDType array", "a_sdt", "a_sdt = np.array(['x', 'a longer string'], dtype=np.dtypes.StringDType())",
      "a_sdt[0] = 'changed'", "(a_sdt.tolist(), str(a_sdt.dtype))"),
    C("object array holding a list", "a_obj", "a_obj = np.empty(3, dtype=object)\na_obj[0] = [1]\na_obj[1] = 'x'",
      "a_obj[0].append(2)", "a_obj.tolist()"),
    C("slice view of a base array", "a_view", "a_base = np.arange(10.0)\na_view = a_base[2:5]",
      "a_view[:] = -1", "(a_base.tolist(), a_view.tolist(), np.shares_memory(a_base, a_view))"),
    C("structured array", "a_struct",
      "a_struct = np.array([(1, 2.0, b'a')], dtype=[('i', 'i4'), ('f', 'f8'), ('s', 'S3')])",
      "a_struct['f'][0] = 7.5", "(a_struct.tolist(), a_struct.dtype.descr)"),
    C("record array", "a_rec", "a_rec = np.rec.array([(1, 'x')], dtype=[('n', 'i8'), ('s', 'U2')])",
      "a_rec.n[0] = 5", "(type(a_rec).__name__, a_rec.tolist())"),
    C("masked array", "a_ma", "a_ma = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])",
      "a_ma[0] = np.ma.masked\na_ma.fill_value = -9", "(a_ma.tolist(), a_ma.mask.tolist(), int(a_ma.fill_value))"),
    C("memmap (file in cwd)", "a_mm", "a_mm = np.memmap('mm.dat', dtype='float32', mode='r+', shape=(4,))",
      "a_mm[:] = [1, 2, 3, 4]", "(type(a_mm).__name__, a_mm.tolist())",
      xfail="stored as an in-memory copy no longer backed by its file (the restore reports it as changed by its "
            "own pickling); it cannot be replayed either, since the session wrote the file after opening it"),
    C("0-d array", "a_0d", "a_0d = np.array(3.5)", "a_0d[()] = 7.25", "(a_0d.item(), a_0d.shape)"),
    C("empty array reshaped in place", "a_empty", "a_empty = np.zeros((0, 3))", "a_empty.shape = (3, 0)",
      "a_empty.shape"),
    C("np.matrix", "a_mat", "a_mat = np.matrix([[1, 2], [3, 4]])", "a_mat[0, 0] = 9",
      "(type(a_mat).__name__, a_mat.tolist())"),
    C("numpy scalar", "np_scalar", "np_scalar = np.float32(1.5)", "np_scalar = np_scalar * 2",
      "(repr(np_scalar), type(np_scalar).__name__)", mutation=REBIND),
    C("8 MB float64 array", "a_big", "a_big = np.arange(1_000_000, dtype=np.float64)", "a_big[::1000] = 0",
      "float(a_big.sum())"),
    C("np.random.Generator (seeded)", "rng", "rng = np.random.default_rng(42)", "rng.random(3);",
      "rng.random(2).tolist()"),
), files={"mm.dat": bytes(16)})


PANDAS = Family("pandas", "pandas", "import numpy as np\nimport pandas as pd", (
    C("DataFrame", "df", "df = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})",
      "df.loc[1, 'a'] = 20\ndf['c'] = df['a'] * 2", "(df.to_dict('list'), df.dtypes.astype(str).tolist())"),
    C("DataFrame.attrs", "df_attrs", "df_attrs = pd.DataFrame({'v': [1.0]})", "df_attrs.attrs['unit'] = 'm'",
      "df_attrs.attrs"),
    C("DataFrame, MultiIndex columns", "df_mi",
      "df_mi = pd.DataFrame(np.arange(4).reshape(2, 2), columns=pd.MultiIndex.from_tuples([('a', 'x'), ('a', 'y')]))",
      "df_mi[('b', 'z')] = [7, 8]", "(df_mi.columns.tolist(), df_mi.values.tolist())"),
    C("DataFrame, default str dtype", "df_str", "df_str = pd.DataFrame({'s': ['x', 'y'], 'n': [1.5, None]})",
      "df_str.loc[0, 's'] = 'zz'", "(df_str.astype(object).values.tolist(), df_str.dtypes.astype(str).tolist())"),
    C("Series", "ser", "ser = pd.Series([1.5, 2.5], index=['p', 'q'], name='s')", "ser['p'] = -1.0\n"
      "ser.name = 'renamed'",
      "(ser.to_dict(), ser.name)"),
    C("Index", "idx", "idx = pd.Index([3, 1, 2], name='i')", "idx.name = 'j'",
      "(idx.tolist(), idx.name, str(idx.dtype))"),
    C("MultiIndex", "midx", "midx = pd.MultiIndex.from_product([['a', 'b'], [1, 2]], names=['l', 'n'])",
      "midx.names = ['L', 'N']", "(midx.tolist(), list(midx.names))"),
    C("Categorical", "cat", "cat = pd.Categorical(['lo', 'hi', 'lo'], categories=['lo', 'hi'], ordered=True)",
      "cat[0] = 'hi'", "(cat.tolist(), cat.categories.tolist(), cat.ordered)"),
    C("tz-aware datetime Series", "ts_tz",
      "ts_tz = pd.Series(pd.date_range('2024-01-01', periods=3, freq='h', tz='Europe/Paris'))",
      "ts_tz.iloc[0] = pd.Timestamp('2023-12-31 23:00', tz='Europe/Paris')",
      "(ts_tz.astype(str).tolist(), str(ts_tz.dtype))"),
    C("DatetimeIndex with freq", "dti", "dti = pd.date_range('2024-01-01', periods=3, freq='D', name='d')",
      "dti.name = 'day'", "(dti.astype(str).tolist(), dti.freqstr, dti.name)"),
    C("Timestamp (tz)", "stamp", "stamp = pd.Timestamp('2024-05-01 12:00', tz='UTC')",
      "stamp = stamp + pd.Timedelta(hours=1)", "stamp.isoformat()", mutation=REBIND),
    C("Interval Series", "ivs", "ivs = pd.Series(pd.arrays.IntervalArray.from_breaks([0, 1, 2]))",
      "ivs.iloc[0] = pd.Interval(5, 6)", "(ivs.astype(str).tolist(), str(ivs.dtype))"),
    C("IntervalIndex", "ivi", "ivi = pd.interval_range(0, 3, name='bins')", "ivi.name = 'b'",
      "(ivi.astype(str).tolist(), ivi.closed, ivi.name)"),
    C("PeriodIndex", "per", "per = pd.period_range('2024-01', periods=3, freq='M')", "per.name = 'month'",
      "(per.astype(str).tolist(), per.freqstr, per.name)"),
    C("Int64 (nullable) Series", "nullable", "nullable = pd.Series([1, None, 3], dtype='Int64')", "nullable[1] = 7",
      "(nullable.astype(str).tolist(), str(nullable.dtype))"),
    C("string dtype Series with NA", "strs", "strs = pd.Series(['a', None, 'c'], dtype='string')",
      "strs[1] = 'b'\nstrs[2] = None", "(strs.astype(object).tolist(), str(strs.dtype))"),
    C("boolean (nullable) array", "bools", "bools = pd.array([True, None, False], dtype='boolean')",
      "bools[1] = False", "(bools.astype(str).tolist(), str(bools.dtype))"),
    C("groupby object", "gb", "gdf = pd.DataFrame({'k': ['a', 'b', 'a'], 'v': [1, 2, 3]})\ngb = gdf.groupby('k')",
      "gdf.loc[0, 'v'] = 100", "(gb.sum().to_dict(), gb.ngroups)",
      note="mutated through the DataFrame it groups"),
    C("Series from a DataFrame column", "col", "frame = pd.DataFrame({'u': [1.0, 2.0]})\ncol = frame['u']",
      "col.iloc[1] = -2.0", "(col.tolist(), frame['u'].tolist())",
      note="copy-on-write: writing the Series leaves the DataFrame unchanged"),
))


SCIPY = Family("scipy", "SciPy sparse", "import numpy as np\nimport scipy.sparse as sp", (
    C("csr_matrix", "m_csr", "m_csr = sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 3]]))", "m_csr[0, 0] = 10",
      "(type(m_csr).__name__, m_csr.toarray().tolist(), m_csr.nnz)"),
    C("csc_matrix", "m_csc", "m_csc = sp.csc_matrix(np.array([[0, 4], [5, 0]]))", "m_csc.data *= 2",
      "(type(m_csc).__name__, m_csc.toarray().tolist())"),
    C("coo_matrix", "m_coo", "m_coo = sp.coo_matrix(([1.0, 2.0], ([0, 1], [1, 2])), shape=(2, 3))",
      "m_coo.data[0] = 5", "(type(m_coo).__name__, m_coo.toarray().tolist())"),
    C("lil_matrix", "m_lil", "m_lil = sp.lil_matrix((3, 3))", "m_lil[1, 2] = 4.5",
      "(type(m_lil).__name__, m_lil.toarray().tolist(), m_lil.rows.tolist())"),
    C("csr_array", "a_csr", "a_csr = sp.csr_array(np.eye(3))", "a_csr.data[1] = -1",
      "(type(a_csr).__name__, a_csr.toarray().tolist())"),
    C("dok_array", "a_dok", "a_dok = sp.dok_array((2, 2))", "a_dok[0, 1] = 3",
      "(type(a_dok).__name__, sorted(a_dok.items()))",
      xfail="scipy's own pickling also copies the entries into dok's unused dict base: same values, different "
            "digest when stored (the restore reports it as changed by its own pickling)"),
    C("sparse view sharing data", "m_shared", "m_src = sp.csr_matrix(np.eye(2))\nm_shared = sp.csr_matrix(\n"
      "    (m_src.data, m_src.indices, m_src.indptr), shape=m_src.shape, copy=False)",
      "m_src.data[0] = 7", "(m_shared.toarray().tolist(), np.shares_memory(m_src.data, m_shared.data))"),
))


ML = Family("ml", "scikit-learn, statsmodels",
            "import numpy as np\nimport pandas as pd\nimport statsmodels.api as sm\n"
            "import statsmodels.formula.api as smf\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "from sklearn.linear_model import LinearRegression, LogisticRegression\n"
            "from sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler\n"
            "X_ml = np.random.default_rng(0).normal(size=(40, 3))\n"
            "y_ml = X_ml @ np.array([1.0, -2.0, 0.5]) + 0.1\ny_cls = (y_ml > 0).astype(int)", (
    C("fitted LinearRegression", "lr", "lr = LinearRegression().fit(X_ml, y_ml)", "lr.fit(X_ml[:20], y_ml[:20] * 2)",
      "(np.round(lr.coef_, 8).tolist(), lr.predict(X_ml[:2]).round(8).tolist())"),
    C("fitted Pipeline", "pipe", "pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_ml, y_cls)",
      "pipe.set_params(logisticregression__C=0.1).fit(X_ml, y_cls)",
      "(pipe.predict_proba(X_ml[:3]).round(8).tolist(), pipe.get_params()['logisticregression__C'])"),
    C("StandardScaler (partial_fit)", "scaler", "scaler = StandardScaler().fit(X_ml)",
      "scaler.partial_fit(X_ml[:5] + 10)",
      "(scaler.mean_.round(10).tolist(), int(scaler.n_samples_seen_))"),
    C("RandomForestClassifier (warm start)", "forest",
      "forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X_ml, y_cls)",
      "forest.set_params(n_estimators=8, warm_start=True).fit(X_ml, y_cls)",
      "(len(forest.estimators_), forest.predict_proba(X_ml[:4]).round(8).tolist())"),
    C("statsmodels OLS results", "ols", "ols = sm.OLS(y_ml, sm.add_constant(X_ml)).fit()", "ols.remove_data()",
      "(np.round(ols.params, 8).tolist(), ols.model.exog is None)"),
    C("statsmodels formula results", "ols_f",
      "frame_ml = pd.DataFrame({'v': y_ml, 'w': X_ml[:, 0]})\nols_f = smf.ols('v ~ w', data=frame_ml).fit()",
      "ols_f.note = 'checked'", "(ols_f.params.round(8).to_dict(), ols_f.note, ols_f.model.formula)"),
))


PLOTS = Family("plots", "matplotlib, networkx",
               "import hashlib\nimport io\nimport matplotlib.pyplot as plt\nimport networkx as nx\n"
               "import numpy as np", (
    C("matplotlib Figure", "fig", "fig = plt.figure(figsize=(4, 3), dpi=50)", "fig.set_size_inches(5, 2)\n"
      "fig.suptitle('S')",
      "(fig.get_size_inches().tolist(), fig.get_suptitle(), len(fig.axes))"),
    C("matplotlib Axes", "ax", "ax = fig.add_subplot()", "ax.set_title('T')\nax.set_xlim(0, 10)",
      "(ax.get_title(), ax.get_xlim(), ax.figure is fig)"),
    C("matplotlib Line2D", "line", "line, = ax.plot([1, 2, 3], [4, 5, 6])", "line.set_ydata([6, 5, 4])\n"
      "line.set_color('red')",
      "(np.asarray(line.get_ydata(), dtype=float).tolist(), line.get_color(), line.axes is ax)"),
    C("matplotlib AxesImage", "im", "fig2, ax2 = plt.subplots(figsize=(2, 2), dpi=40)\nim = ax2.imshow(np.eye(3))",
      "im.set_data(np.ones((3, 3)) * 0.5)\nim.set_cmap('gray')",
      "(np.asarray(im.get_array()).tolist(), im.get_cmap().name)"),
    C("rendered figure pixels", "fig3", "fig3, ax3 = plt.subplots(figsize=(2, 2), dpi=30)\nax3.plot([0, 1], [0, 1])",
      "ax3.plot([0, 1], [1, 0], color='k')",
      "hashlib.sha256((lambda b: (fig3.savefig(b, format='rgba'), b.getvalue())[1])(io.BytesIO())).hexdigest()"),
    C("networkx Graph", "G", "G = nx.Graph()\nG.add_edges_from([(1, 2), (2, 3)])", "G.add_edge(3, 4, weight=2.5)\n"
      "G.nodes[1]['color'] = 'red'",
      "(sorted(G.edges(data=True)), sorted(G.nodes(data=True)))"),
    C("networkx DiGraph", "DG", "DG = nx.DiGraph([(1, 2), (2, 3)])", "DG.remove_edge(1, 2)\nDG.add_edge(3, 1)\n"
      "DG.graph['name'] = 'd'",
      "(sorted(DG.edges()), DG.graph, nx.is_directed_acyclic_graph(DG), sorted(nx.simple_cycles(DG)))"),
    C("networkx MultiGraph", "MG", "MG = nx.MultiGraph()\nMG.add_edge('a', 'b', key=0)",
      "MG.add_edge('a', 'b', key=1, w=3)",
      "sorted(MG.edges(keys=True, data=True))"),
))


ARROW = Family("arrow", "polars, pyarrow", "import polars as pl\nimport pyarrow as pa\nimport pandas as pd", (
    C("polars DataFrame", "pl_df", "pl_df = pl.DataFrame({'a': [1, 2, 3], 's': ['x', 'y', 'z']})",
      "pl_df[0, 'a'] = 10\npl_df.extend(pl.DataFrame({'a': [4], 's': ['w']}))",
      "(pl_df.to_dict(as_series=False), pl_df.schema == {'a': pl.Int64, 's': pl.String}, pl_df.n_chunks())"),
    C("polars Series", "pl_s", "pl_s = pl.Series('n', [1, 2, 3])", "pl_s[0] = 9\npl_s.append(pl.Series('n', [4]))",
      "(pl_s.name, pl_s.to_list(), str(pl_s.dtype))"),
    C("polars LazyFrame", "pl_lazy", "pl_lazy = pl.DataFrame({'a': [1, 2, 3]}).lazy().filter(pl.col('a') > 1)",
      "pl_lazy = pl_lazy.with_columns((pl.col('a') * 2).alias('b'))", "pl_lazy.collect().to_dict(as_series=False)",
      mutation=REBIND),
    C("pyarrow Table", "pa_tbl", "pa_tbl = pa.table({'x': [1, 2], 'y': ['a', 'b']})",
      "pa_tbl = pa_tbl.append_column('z', pa.array([0.5, 1.5]))", "(pa_tbl.to_pydict(), str(pa_tbl.schema))",
      mutation=REBIND),
    C("pyarrow Array with nulls", "pa_arr", "pa_arr = pa.array([1, None, 3])",
      "pa_arr = pa.concat_arrays([pa_arr, pa.array([4])])", "(pa_arr.to_pylist(), str(pa_arr.type), pa_arr.null_count)",
      mutation=REBIND),
    C("pyarrow ChunkedArray", "pa_chunked", "pa_chunked = pa.chunked_array([[1, 2], [3]])",
      "pa_chunked = pa.chunked_array(pa_chunked.chunks + [pa.array([4, 5])])",
      "(pa_chunked.num_chunks, pa_chunked.to_pylist())", mutation=REBIND),
    C("pyarrow RecordBatch (sliced)", "pa_batch", "pa_batch = pa.record_batch({'k': [1, 2, 3]})",
      "pa_batch = pa_batch.slice(1)", "(pa_batch.to_pydict(), pa_batch.num_rows)", mutation=REBIND),
    C("pyarrow dictionary array", "pa_dict", "pa_dict = pa.array(['a', 'b', 'a']).dictionary_encode()",
      "pa_dict = pa.array(['c', 'a']).dictionary_encode()", "(pa_dict.to_pylist(), str(pa_dict.type))",
      mutation=REBIND),
    C("pandas Series, pyarrow dtype", "pd_arrow", "pd_arrow = pd.Series([1, 2], dtype='int64[pyarrow]')",
      "pd_arrow.iloc[0] = 5", "(pd_arrow.tolist(), str(pd_arrow.dtype))"),
))


TORCH = Family("torch", "PyTorch", "import numpy as np\nimport torch", (
    C("float tensor", "t_float", "t_float = torch.arange(6, dtype=torch.float32).reshape(2, 3)", "t_float.add_(1)",
      "(t_float.tolist(), str(t_float.dtype))"),
    C("int64 tensor", "t_int", "t_int = torch.tensor([1, 2, 3])", "t_int[0] = -5", "t_int.tolist()"),
    C("bfloat16 tensor", "t_bf16", "t_bf16 = torch.ones(3, dtype=torch.bfloat16)", "t_bf16.mul_(1.5)",
      "(t_bf16.float().tolist(), str(t_bf16.dtype))"),
    C("tensor view", "t_view", "t_base = torch.zeros(4, 4)\nt_view = t_base[1]", "t_view.fill_(3)",
      "(t_base.sum().item(), t_view.tolist(), t_view.data_ptr() - t_base.data_ptr(),\n"
      " t_view.untyped_storage().data_ptr() == t_base.untyped_storage().data_ptr())",
      note="storage shared; `t_view._base` (autograd's view link) is not restored"),
    C("tensor from numpy (shared)", "t_np", "np_src = np.arange(3.0)\nt_np = torch.from_numpy(np_src)",
      "np_src[0] = 7", "(t_np.tolist(), np.shares_memory(np_src, t_np.numpy()))"),
    C("nn.Parameter", "param", "param = torch.nn.Parameter(torch.ones(2))",
      "with torch.no_grad():\n    param.mul_(4)", "(type(param).__name__, param.tolist(), param.requires_grad)"),
    C("leaf tensor with .grad", "t_grad", "t_grad = torch.tensor([1.0, 2.0], requires_grad=True)",
      "(t_grad ** 2).sum().backward()", "(t_grad.tolist(), t_grad.grad.tolist())"),
    C("nn.Module", "net", "torch.manual_seed(0)\nnet = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())",
      "with torch.no_grad():\n    net[0].bias.fill_(0.5)\nnet.eval()",
      "([(k, v.round(decimals=6).tolist()) for k, v in net.state_dict().items()], net.training)"),
    C("optimizer with state (Adam)", "opt",
      "torch.manual_seed(1)\nopt_model = torch.nn.Linear(2, 1)\nopt = torch.optim.Adam(opt_model.parameters(), lr=0.1)",
      "opt_model(torch.ones(4, 2)).sum().backward()\nopt.step()",
      "([v.round(decimals=6).tolist() for v in opt.state_dict()['state'][0].values()], "
      "opt_model.weight.round(decimals=6).tolist(), opt.param_groups[0]['params'][0] is opt_model.weight)"),
    C("LR scheduler", "sched",
      "opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)\n"
      "sched = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)",
      "opt2.step()\nsched.step()",
      "(sched.get_last_lr(), opt2.param_groups[0]['lr'], sched.last_epoch, sched.optimizer is opt2)"),
    C("torch.Generator", "tgen", "tgen = torch.Generator().manual_seed(1)", "torch.rand(2, generator=tgen);",
      "torch.rand(2, generator=tgen).tolist()"),
))


STDLIB = Family("stdlib", "standard library values",
                "import array, collections, dataclasses, datetime as dt, decimal, enum, fractions, ipaddress, math\n"
                "import pathlib, re, types, uuid, zoneinfo", (
    C("datetime (tz-aware)", "when", "when = dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone.utc)",
      "when = when.replace(year=2028)", "when.isoformat()", mutation=REBIND),
    C("date", "day", "day = dt.date(2024, 1, 31)", "day += dt.timedelta(days=1)", "day.isoformat()", mutation=REBIND),
    C("timedelta", "span", "span = dt.timedelta(hours=1)", "span *= 3", "span.total_seconds()", mutation=REBIND),
    C("timezone", "tz", "tz = dt.timezone(dt.timedelta(hours=5, minutes=30), 'IST')",
      "tz = dt.timezone(-dt.timedelta(hours=3))",
      "(tz.tzname(None), str(tz.utcoffset(None)))", mutation=REBIND),
    C("zoneinfo.ZoneInfo", "zone", "zone = zoneinfo.ZoneInfo('Europe/Paris')", "zone = zoneinfo.ZoneInfo('Asia/Tokyo')",
      "(zone.key, str(dt.datetime(2024, 7, 1, tzinfo=zone).utcoffset()))", mutation=REBIND),
    C("Decimal", "dec", "dec = decimal.Decimal('1.10')", "dec = dec * 3", "str(dec)", mutation=REBIND),
    C("decimal.Context", "ctx", "ctx = decimal.Context(prec=5)", "ctx.prec = 8\nctx.traps[decimal.Inexact] = True",
      "(ctx.prec, ctx.traps[decimal.Inexact])"),
    C("Fraction", "frac", "frac = fractions.Fraction(1, 3)", "frac += fractions.Fraction(1, 6)", "repr(frac)",
      mutation=REBIND),
    C("Counter", "counts", "counts = collections.Counter('abracadabra')", "counts['z'] += 2",
      "list(counts.items())"),
    C("deque (maxlen)", "dq", "dq = collections.deque([1, 2, 3], maxlen=5)", "dq.appendleft(0)\ndq.rotate(2)",
      "(list(dq), dq.maxlen)"),
    C("OrderedDict (reordered)", "od", "od = collections.OrderedDict(a=1, b=2, c=3)", "od.move_to_end('a')",
      "list(od.items())"),
    C("defaultdict(list)", "dd_list", "dd_list = collections.defaultdict(list)", "dd_list['k'].append(1)",
      "(dict(dd_list), dd_list['new'])"),
    C("defaultdict(lambda)", "dd_lambda", "dd_lambda = collections.defaultdict(lambda: 'dflt')",
      "dd_lambda['x'] = 1\ndd_lambda['y']", "(dict(dd_lambda), dd_lambda['new'])"),
    C("ChainMap", "layers", "layers = collections.ChainMap({'a': 1}, {'a': 0, 'b': 2})",
      "layers['c'] = 3\nlayers.maps[1]['b'] = 20", "(layers.maps, dict(layers))"),
    C("namedtuple (session class)", "pt", "Point = collections.namedtuple('Point', 'x y')\npt = Point(1, 2)",
      "pt = pt._replace(x=10)", "(repr(pt), pt._fields, type(pt) is Point)", mutation=REBIND),
    C("dataclass", "rec",
      "@dataclasses.dataclass\nclass Rec:\n    name: str\n"
      "    tags: list = dataclasses.field(default_factory=list)\n\n\n"
      "rec = Rec('r')", "rec.tags.append('new')\nrec.name = 'R'", "(repr(rec), rec == Rec('R', ['new']))"),
    C("frozen dataclass", "fz",
      "@dataclasses.dataclass(frozen=True)\nclass Frozen:\n    x: int\n    items: tuple = ()\n\n\n"
      "fz = Frozen(1, (1, 2))",
      "object.__setattr__(fz, 'x', 2)", "(repr(fz), hash(fz) == hash(Frozen(2, (1, 2))))",
      note="mutated with object.__setattr__"),
    C("Enum member", "color", "class Color(enum.Enum):\n    RED = 1\n    GREEN = 2\n\n\ncolor = Color.RED",
      "color = Color.GREEN", "(repr(color), color is Color.GREEN)", mutation=REBIND),
    C("IntFlag", "perm", "class Perm(enum.IntFlag):\n    R = 4\n    W = 2\n    X = 1\n\n\nperm = Perm.R",
      "perm |= Perm.W", "(repr(perm), int(perm), Perm.W in perm)", mutation=REBIND),
    C("pathlib.Path", "path", "path = pathlib.Path('data') / 'file.csv'", "path = path.with_suffix('.parquet')",
      "(str(path), type(path).__name__)", mutation=REBIND),
    C("re.Pattern", "pat", "pat = re.compile(r'(\\w+)@(\\w+)\\.com', re.I)",
      "pat = re.compile(pat.pattern + '$', pat.flags)",
      "(pat.pattern, pat.flags, bool(pat.search('x@y.COM')))", mutation=REBIND),
    C("re.Match", "match", "match = pat.search('mail: Bob@Example.com')", "match = re.search(r'\\d+', 'abc 123 def')",
      "(match.group(0), match.span(), match.re.pattern)", mutation=REBIND),
    C("bytearray", "buf", "buf = bytearray(b'hello')", "buf.extend(b' world')\nbuf[0] = ord('H')", "bytes(buf)"),
    C("memoryview of a bytearray", "mv", "mv_src = bytearray(b'abcdef')\nmv = memoryview(mv_src)[1:4]",
      "mv[0] = ord('X')", "(bytes(mv), bytes(mv_src), mv.obj is mv_src)"),
    C("array.array", "arr", "arr = array.array('d', [1.0, 2.0])", "arr.append(3.5)", "(arr.typecode, arr.tolist())"),
    C("set", "items", "items = {3, 1, 2}", "items.add(10)\nitems.discard(1)", "sorted(items)"),
    C("frozenset", "frozen", "frozen = frozenset({'a', 'b'})", "frozen = frozen | {'c'}", "sorted(frozen)",
      mutation=REBIND),
    C("complex number", "z", "z = complex(1.5, -2)", "z = z ** 2", "repr(z)", mutation=REBIND),
    C("range", "rrange", "rrange = range(0, 20, 3)", "rrange = rrange[1:]", "repr(rrange)", mutation=REBIND),
    C("slice", "sl", "sl = slice(1, None, 2)", "sl = slice(sl.start, 9, sl.step)", "repr(sl)", mutation=REBIND),
    C("NaN / inf / -0.0 floats", "specials", "specials = [float('nan'), float('inf'), -0.0]",
      "specials.append(float('-inf'))", "([repr(v) for v in specials], math.copysign(1, specials[2]))"),
    C("self-referencing list", "loop", "loop = [1, 2]\nloop.append(loop)", "loop.append({'back': loop})",
      "(len(loop), loop[2] is loop, loop[3]['back'] is loop)"),
    C("nested dict (deep mutation)", "cfg", "cfg = {'a': {'b': [1, {'c': 2}]}}", "cfg['a']['b'][1]['c'] = 3", "cfg"),
    C("tuple holding a list", "tup", "tup = (1, [2, 3])", "tup[1].append(4)", "tup"),
    C("list shared by two dict values", "pair", "shared = [1]\npair = {'x': shared, 'y': shared}", "shared.append(2)",
      "(pair, pair['x'] is pair['y'], pair['x'] is shared)"),
    C("types.SimpleNamespace", "ns", "ns = types.SimpleNamespace(a=1)", "ns.b = [2]\nns.a += 1", "repr(ns)"),
    C("uuid.UUID", "uid", "uid = uuid.UUID('12345678-1234-5678-1234-567812345678')", "uid = uuid.uuid5(uid, 'x')",
      "str(uid)", mutation=REBIND),
    C("ipaddress network", "net4", "net4 = ipaddress.ip_network('10.0.0.0/24')", "net4 = net4.supernet()",
      "(str(net4), net4.num_addresses)", mutation=REBIND),
    C("ipaddress IPv6 address", "addr6", "addr6 = ipaddress.ip_address('::1')", "addr6 = addr6 + 255",
      "(str(addr6), addr6.version)", mutation=REBIND),
    C("big int", "big", "big = 2 ** 200", "big = big * -3 + 1", "big", mutation=REBIND),
    C("str (non-ASCII)", "text", "text = 'héllo'", "text += ' wörld ✓'", "text", mutation=REBIND),
))


RUNTIME = Family("runtime", "standard library runtime objects",
                 "import functools, io, itertools, queue, random, re, socket, sqlite3, threading, weakref", (
    C("io.StringIO", "sio", "sio = io.StringIO('start\\n')", "sio.seek(0, 2)\nsio.write('more\\n')",
      "(sio.getvalue(), sio.tell())"),
    C("io.BytesIO", "bio", "bio = io.BytesIO(b'\\x00\\x01')", "bio.write(b'\\xff')", "(bio.getvalue(), bio.tell())"),
    C("functools.partial (keywords mutated)", "pow2",
      "def power(base, exp):\n    return base ** exp\n\n\npow2 = functools.partial(power, exp=2)",
      "pow2.keywords['exp'] = 3", "(pow2(2), pow2.keywords)"),
    C("functools.lru_cache function", "sq", "@functools.lru_cache\ndef sq(n):\n    return n * n\n\n\nsq(3)",
      "sq(4)\nsq(3)", "tuple(sq.cache_info())",
      xfail="calls are not mutations: the cache is not tracked, so after a restore the function returns the "
            "same values but cache_info() differs (the cache refills lazily)"),
    C("function with mutable default", "append_to",
      "def append_to(x, bucket=[]):\n    bucket.append(x)\n    return bucket\n\n\nappend_to(1)", "append_to(2)",
      "append_to.__defaults__"),
    C("function attribute", "tally", "def tally():\n    return tally.calls\n\n\ntally.calls = 0", "tally.calls += 1",
      "tally()"),
    C("closure over a list", "acc",
      "def make_acc():\n    total = [0]\n\n    def add(v):\n        total[0] += v\n        return total[0]\n"
      "    return add\n\n\n"
      "acc = make_acc()", "acc(5)", "acc(0)"),
    C("closure over nonlocal int", "inc",
      "def make_counter():\n    n = 0\n\n    def bump():\n        nonlocal n\n        n += 1\n        return n\n"
      "    return bump\n\n\n"
      "inc = make_counter()", "inc()", "inc()"),
    C("session class instance", "acct",
      "class Account:\n    def __init__(self):\n        self.balance = 0\n\n    def deposit(self, v):\n"
      "        self.balance += v\n\n\n"
      "acct = Account()", "acct.deposit(10)", "(acct.balance, type(acct).__qualname__, isinstance(acct, Account))"),
    C("session class (class attribute)", "Config", "class Config:\n    level = 1", "Config.level = 2", "Config.level"),
    C("instance of a class defined in a function", "local_inst",
      "def make_local(tag):\n    class Local:\n        def __init__(self):\n            self.items = []\n\n"
      "        def show(self):\n            return tag\n    return Local\n\n\n"
      "local_inst = make_local('loc')()",
      "local_inst.items.append(1)", "(type(local_inst).__qualname__, local_inst.show(), local_inst.items)"),
    C("class with __slots__", "slotted",
      "class Slotted:\n    __slots__ = ('a', 'b')\n\n    def __init__(self):\n        self.a = 1\n\n\n"
      "slotted = Slotted()",
      "slotted.b = [2]\nslotted.a = 5", "(slotted.a, slotted.b, hasattr(slotted, '__dict__'))"),
    C("weakref.ref", "wref", "class Target:\n    pass\n\n\ntarget = Target()\ntarget.v = 1\nwref = weakref.ref(target)",
      "target.v = 2", "(wref() is target, wref().v)", note="mutated through its referent"),
    C("itertools.count", "counter_it", "counter_it = itertools.count(10, 5)", "next(counter_it)", "next(counter_it)"),
    C("itertools.cycle", "cyc", "cyc = itertools.cycle('ab')", "next(cyc)", "[next(cyc) for _ in range(3)]"),
    C("itertools.chain", "chained", "chained = itertools.chain([1], [2, 3])", "next(chained)", "list(chained)"),
    C("generator", "gen", "def squares(n):\n    for i in range(n):\n        yield i * i\n\n\ngen = squares(6)",
      "next(gen)\nnext(gen)", "list(gen)"),
    C("generator expression", "genexp", "genexp = (c.upper() for c in 'xyz')", "next(genexp)", "list(genexp)"),
    C("zip iterator", "zipped", "zipped = zip([1, 2, 3], 'abc')", "next(zipped)", "list(zipped)"),
    C("map iterator", "mapped", "mapped = map(str, range(5))", "next(mapped)", "list(mapped)"),
    C("list iterator", "lit", "lit = iter([5, 6, 7])", "next(lit)", "list(lit)"),
    C("random.Random (seeded)", "pyrng", "pyrng = random.Random(7)", "pyrng.random()", "pyrng.random()"),
    C("threading.Lock (held)", "lock", "lock = threading.Lock()", "lock.acquire()", "lock.locked()"),
    C("threading.RLock (held twice)", "rlock", "rlock = threading.RLock()", "rlock.acquire()\nrlock.acquire()",
      "(rlock._is_owned(), re.search(r'count=(\\d+)', repr(rlock)).group(1))"),
    C("threading.Event (set)", "event", "event = threading.Event()", "event.set()", "event.is_set()"),
    C("threading.Semaphore", "sem", "sem = threading.Semaphore(3)", "sem.acquire()", "sem._value"),
    C("queue.Queue", "jobs", "jobs = queue.Queue()", "jobs.put('a')\njobs.put('b')",
      "(jobs.qsize(), jobs.get_nowait())"),
    C("sqlite3 connection", "conn", "conn = sqlite3.connect(':memory:')\nconn.execute('create table t (x int)')",
      "conn.execute('insert into t values (1), (2), (3)')\nconn.commit()",
      "conn.execute('select sum(x) from t').fetchone()"),
    C("sqlite3 cursor (mid-iteration)", "cur", "cur = conn.cursor()", "cur.execute('select x from t order by x')\n"
      "cur.fetchone()",
      "cur.fetchall()"),
    C("open text file (read position)", "ftext", "ftext = open('lines.txt')", "ftext.readline()",
      "(ftext.readline(), ftext.tell())"),
    C("open binary file (seeked)", "fbin", "fbin = open('blob.bin', 'rb')", "fbin.seek(3)",
      "(fbin.read(2), fbin.tell())"),
    C("file opened for append", "flog", "flog = open('log.txt', 'a')", "flog.write('entry\\n')\nflog.flush()",
      "(flog.tell(), flog.mode)",
      xfail="not carried: a file open for writing cannot be pickled, and replaying the cells would write "
            "the file again; the checkpoint refuses it by name (--best-effort carries the rest)"),
    C("socket pair", "sock_a", "sock_a, sock_b = socket.socketpair()", "sock_a.setblocking(False)",
      "(sock_a.getblocking(), sock_a.family.name)"),
), files={"lines.txt": b"first\nsecond\nthird\n", "blob.bin": bytes(range(16))})


FAMILIES: tuple[Family, ...] = (NUMPY, PANDAS, SCIPY, ML, PLOTS, ARROW, TORCH, STDLIB, RUNTIME)


def all_cases() -> list[tuple[Family, Case]]:
    return [(f, c) for f in FAMILIES for c in f.cases]


def check_unique() -> None:
    """Kinds and variables are unique within a family (the test relies on it)."""
    for f in FAMILIES:
        kinds = [c.kind for c in f.cases]
        names = [c.var for c in f.cases]
        assert len(set(kinds)) == len(kinds), f"duplicate kind in {f.name}"
        assert len(set(names)) == len(names), f"duplicate variable in {f.name}"


# -- docs ------------------------------------------------------------------------------------------

def default_results_dir() -> Path:
    """The newest ``<basetemp>/coverage-matrix`` of this user's pytest runs.

    Not ``pytest-current``: any other pytest run moves that link. pytest keeps only its last three
    base folders, so to keep results around run ``pytest --basetemp DIR`` and pass ``--results``.
    """
    base = Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    found = sorted(base.glob(f"pytest-*/{RESULTS_DIRNAME}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else base / "pytest-current" / RESULTS_DIRNAME


def load_results(folder: Path) -> list[dict[str, Any]]:
    """The per-family JSON files a test run wrote, in :data:`FAMILIES` order."""
    out: list[dict[str, Any]] = []
    for f in FAMILIES:
        path = folder / f"{f.name}.json"
        if path.exists():
            out.append(json.loads(path.read_text()))
    return out


def _yes(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def render_markdown(runs: list[dict[str, Any]]) -> str:
    """``docs/supported.md`` from the results of a test run."""
    rows: list[str] = []
    total = faithful_all = detected = 0
    paths = {"stored": 0, "recomputed": 0}
    both = 0
    xfails: list[tuple[str, str]] = []
    seconds = 0.0
    for run in runs:
        seconds += run.get("seconds", 0.0)
        for k in run["kinds"]:
            total += 1
            per_mode = k["modes"]
            how = sorted({m["path"] for m in per_mode.values()})
            for p in how:
                if p in paths:
                    paths[p] += 1
            if {"stored", "recomputed"} <= set(how):
                both += 1
            faithful = all(m["faithful"] for m in per_mode.values())
            faithful_all += faithful
            detected += bool(k["mutation_detected"])
            cells = []
            for mode in MODES:
                m = per_mode.get(mode)
                if m is None:
                    cells.append("—")
                    continue
                text = m["path"]
                if not m["faithful"]:
                    text += " ✗"
                cells.append(text)
            verified = "digest" if all(m["digest_verified"] for m in per_mode.values()) else "check only"
            note = k.get("note", "")
            if k.get("xfail"):
                xfails.append((k["kind"], k["xfail"]))
                note = (note + "; " if note else "") + "known: " + k["xfail"]
            elif not faithful:
                note = (note + "; " if note else "") + "; ".join(
                    f"{mode}: {'; '.join(m['problems'])}" for mode, m in per_mode.items() if not m["faithful"])
            rows.append(
                f"| {k['kind']} | {run['family']} | {' / '.join(cells)} | {k['mutation']} | "
                f"{_yes(k['mutation_detected'])} | {_yes(faithful)} | {verified} | {note} |"
            )
    lines = [
        "# Supported object kinds",
        "",
        "Generated from a run of `tests/kernel/test_coverage_matrix.py` by "
        "`python -m tests.kernel.coverage_cases --write-docs`; do not edit by hand.",
        "",
        "Every kind is created in one cell and changed in a later one (in place where the type allows "
        "it, otherwise by rebinding the name), in a session of the same library family. The session is "
        "checkpointed twice: with `--prefer restore` (store what can be stored) and with `--prefer "
        "checkpoint` (replay what can be replayed); each checkpoint is restored in a fresh kernel.",
        "",
        "- **how it travels**: what the checkpoint did with the kind's co-variable group, under `--prefer "
        "restore` / `--prefer checkpoint` (`stored` = pickled into the checkpoint, `recomputed` = its cells "
        "replayed at restore); ✗ marks a run where it did not come back faithfully;",
        "- **mutation detected**: the monitor listed the variable among the writes of the mutating cell;",
        "- **faithful**: in both restored kernels the variable exists with the same type, the same content "
        "digest (when the value has one) and a kind-specific check prints the same as in the source kernel "
        "(the check runs after the checkpoint, so `next(gen)` shows an iterator continues where it was);",
        "- **verified by**: `digest` when the restore could compare content digests, `check only` for opaque "
        "objects (generators, locks, files, connections ...) that nbmigrate checks by type.",
        "",
        f"**{faithful_all} of {total} kinds restored faithfully** in both modes; mutation detected for "
        f"{detected} of {total}; {paths['stored']} kinds travelled stored and {paths['recomputed']} recomputed in "
        f"at least one mode ({both} both ways). {len(runs)} families, {seconds:.0f} s of kernel time.",
        "",
        "| kind | family | how it travels (restore / checkpoint) | mutation | mutation detected | faithful | "
        "verified by | notes |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    if xfails:
        lines += ["", "## Known limits", ""]
        lines += [f"- **{kind}**: {why}" for kind, why in xfails]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kernel.coverage_cases", description=__doc__.split("\n")[0])
    parser.add_argument("--write-docs", action="store_true", help="write docs/supported.md from a test run's results")
    parser.add_argument("--results", type=Path, default=None, help="folder of the per-family JSON results")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "docs" / "supported.md")
    parser.add_argument("--list", action="store_true", help="list the kinds")
    args = parser.parse_args(argv)
    check_unique()
    if args.list:
        for f, c in all_cases():
            print(f"{f.name:8} {c.kind}")
        print(f"{len(all_cases())} kinds in {len(FAMILIES)} families")
        return 0
    if args.write_docs:
        folder = args.results or default_results_dir()
        runs = load_results(folder)
        if not runs:
            print(f"no results in {folder}: run pytest tests/kernel/test_coverage_matrix.py first", file=sys.stderr)
            return 1
        missing = [f.name for f in FAMILIES if f.name not in {r["family"] for r in runs}]
        if missing:
            print(f"warning: no results for {', '.join(missing)}", file=sys.stderr)
        args.out.write_text(render_markdown(runs))
        print(f"wrote {args.out} from {folder}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
