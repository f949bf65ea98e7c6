"""``python -m bench overhead``: what monitoring costs on realistic notebooks.

Each notebook's non-``after_restore`` cells run twice, each time in a fresh kernel with an empty temp
directory as cwd: once plain, once with nbmigrate loaded. The order alternates between notebooks so slow
drift of the machine's load spreads over both sides. Per run: wall seconds of the cells (sum of
per-cell round trips), kernel-tree CPU seconds, peak RSS of the kernel (see :mod:`bench.probe`).

Two small timing hooks are put in *both* kernels around the extension's own ``pre_run_cell`` /
``post_run_cell`` callbacks (first and last in IPython's callback lists, which it calls in order), so
the time spent inside the monitor's hooks is measured exactly, per cell, free of run-to-run noise.
What the monitor costs *during* a cell (its audit hook watching file opens) shows only in the
monitored − plain difference. :func:`measure_cells` is shared with ``compare``, whose plain and
monitored source runs give the full run's overhead figures.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbmigrate.notebooks import Cell, code_cells, run_cells, split
from nbmigrate.remote import Kernel, KernelError

from .common import (
    QUIET,
    code_span,
    finish,
    fmt_pct,
    fmt_seconds,
    isolated_environment,
    log,
    machine,
    mib,
    pct,
    plot_path,
    select_benchmark_notebooks,
    source_line,
    table,
    write_csv,
    write_outputs,
)
from .peers.kernels import silent_eval, silent_exec
from .probe import Probe

HOOKS = r'''
import json
import time

from IPython import get_ipython

_state = {"depth": 0, "source": "", "t0": None, "t1": None, "t2": None}
_cells = []


def _pre_outer(info):
    _state["depth"] += 1
    if _state["depth"] == 1:
        _state["source"] = getattr(info, "raw_cell", "") or ""
        _state["t0"] = time.perf_counter()


def _pre_inner(info):
    if _state["depth"] == 1 and _state["t0"] is not None:
        _state["t1"] = time.perf_counter()


def _post_outer(result):
    if _state["depth"] == 1 and _state["t1"] is not None:
        _state["t2"] = time.perf_counter()


def _post_inner(result):
    depth = _state["depth"]
    _state["depth"] = max(0, depth - 1)
    if depth != 1 or _state["t2"] is None:
        return
    t0, t1, t2, t3 = _state["t0"], _state["t1"], _state["t2"], time.perf_counter()
    _state["t0"] = _state["t1"] = _state["t2"] = None
    if _state["source"].strip():
        _cells.append({"pre": t1 - t0, "cell": t2 - t1, "post": t3 - t2})


def setup(load):
    """Wrap every pre/post_run_cell callback registered so far (after loading nbmigrate if ``load``)."""
    shell = get_ipython()
    if load:
        shell.extension_manager.load_extension("nbmigrate")  # exactly what %load_ext does
    shell.events.callbacks["pre_run_cell"].insert(0, _pre_outer)
    shell.events.callbacks["post_run_cell"].insert(0, _post_outer)
    shell.events.register("pre_run_cell", _pre_inner)
    shell.events.register("post_run_cell", _post_inner)


def status():
    return json.dumps({"monitored": "nbmigrate" in get_ipython().extension_manager.loaded})


def take():
    out = list(_cells)
    _cells.clear()
    return json.dumps(out)
'''


def _setup_code(monitored: bool) -> str:
    """One cell that defines the hooks in a private module (nothing lands in the user's namespace)."""
    return (
        "__import__('sys').modules['_nbmigrate_bench'] = __import__('types').ModuleType('_nbmigrate_bench')\n"
        f"exec({HOOKS!r}, __import__('sys').modules['_nbmigrate_bench'].__dict__)\n"
        f"__import__('_nbmigrate_bench').setup({monitored!r})\n"
    )


@dataclass
class Run:
    monitored: bool
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_sampled: int = 0
    peak_rss_hwm: int | None = None
    rss_samples: int = 0
    cell_seconds: list[float] = field(default_factory=list)
    """Round trip of each cell as the driver saw it (execute request -> kernel idle)."""
    hook_seconds: list[float] = field(default_factory=list)
    """Time inside the monitor's pre+post_run_cell callbacks, per cell (≈0 in the plain run)."""
    error: str | None = None
    failed_cell: int | None = None

    @property
    def peak_rss(self) -> int:
        return self.peak_rss_hwm if self.peak_rss_hwm is not None else self.peak_rss_sampled


def install_hooks(kernel: Kernel, *, load: bool, timeout: float = 900) -> bool:
    """Put the timing hooks around the callbacks the kernel has now (loading nbmigrate first if ``load``);
    return whether nbmigrate is loaded in the kernel.

    Silent requests only: IPython fires no cell events for them, so neither the hooks nor a watching method
    see them (an empty non-silent request would fire ``post_run_cell`` without ``pre_run_cell``).
    """
    silent_exec(kernel, _setup_code(load), timeout=timeout)
    loaded: bool = silent_eval(kernel, "__import__('_nbmigrate_bench').status()", timeout=timeout)["monitored"]
    if load and not loaded:
        raise RuntimeError("kernel should be monitored, but nbmigrate is not loaded")
    return loaded


def measure_cells(kernel: Kernel, cells: list[Cell], execute: Callable[[Cell], object], *, monitored: bool) -> Run:
    """Run ``cells`` one by one through ``execute`` under a :class:`Probe`; hooks must be installed.

    Stops at the first cell that fails (``Run.error``, ``Run.failed_cell``).
    """
    run = Run(monitored)
    pid = kernel.pid
    if pid is None:
        raise RuntimeError("cannot find the kernel's process id")
    with Probe(pid) as probe:
        for cell in cells:
            t = time.perf_counter()
            try:
                execute(cell)
            except (KernelError, TimeoutError) as exc:
                run.error = str(exc).splitlines()[0][:300]
                run.failed_cell = cell.index
                break
            run.cell_seconds.append(time.perf_counter() - t)
    if run.error is None:
        hooks = silent_eval(kernel, "__import__('_nbmigrate_bench').take()")
        run.hook_seconds = [h["pre"] + h["post"] for h in hooks]
        if len(run.hook_seconds) != len(cells):  # nested or skipped cells: do not guess the pairing
            log(f"  note: {len(hooks)} hook timings for {len(cells)} cells; ignored")
            run.hook_seconds = []
    usage = probe.usage
    assert usage is not None
    run.wall_seconds = sum(run.cell_seconds)
    run.cpu_seconds = usage.cpu_seconds
    run.peak_rss_sampled = usage.peak_rss_sampled
    run.peak_rss_hwm = usage.peak_rss_hwm
    run.rss_samples = usage.samples
    return run


def _run(cells: list[Cell], *, monitored: bool, timeout: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="nbmigrate-bench-") as cwd, \
            Kernel.start(cwd=cwd, extra_arguments=QUIET) as kernel:
        if install_hooks(kernel, load=monitored, timeout=timeout) and not monitored:
            raise RuntimeError("the plain kernel has nbmigrate loaded (an IPython profile loading extensions?)")
        return measure_cells(kernel, cells, lambda c: run_cells(kernel, [c], timeout=timeout), monitored=monitored)


def _first_line(source: str) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def _best(runs: list[Run]) -> Run:
    """Several runs of one side as one: the fastest total (and fastest of each cell), the larger peak.

    Contention from other processes only ever adds time, so the minimum is the least noisy estimate;
    memory does not suffer from contention, and the larger peak is the conservative figure.
    """
    if len(runs) == 1:
        return runs[0]
    ok = [r for r in runs if r.error is None] or runs
    failed = next((r for r in runs if r.error is not None), None)
    fastest = min(ok, key=lambda r: r.wall_seconds)
    hwms = [r.peak_rss_hwm for r in ok]
    n_cells = min(len(r.cell_seconds) for r in ok)
    with_hooks = [r for r in ok if r.hook_seconds]
    return Run(
        monitored=runs[0].monitored,
        wall_seconds=fastest.wall_seconds,
        cpu_seconds=min(r.cpu_seconds for r in ok),
        peak_rss_sampled=max(r.peak_rss_sampled for r in ok),
        peak_rss_hwm=None if None in hwms else max(h for h in hwms if h is not None),
        rss_samples=sum(r.rss_samples for r in ok),
        cell_seconds=[min(r.cell_seconds[i] for r in ok) for i in range(n_cells)],
        hook_seconds=[min(hs) for hs in zip(*(r.hook_seconds for r in with_hooks), strict=True)]
        if len(with_hooks) == len(ok) else [],
        error=failed.error if failed else None,
        failed_cell=failed.failed_cell if failed else None,
    )


def measure_notebook(notebook: Path, position: int, timeout: float, repeat: int = 1) -> dict[str, Any]:
    """Run ``notebook`` ``repeat`` times on each side; who goes first alternates by notebook and round."""
    cells, _tail = split(code_cells(notebook))
    runs: dict[bool, list[Run]] = {False: [], True: []}
    orders: list[list[str]] = []
    for round_ in range(repeat):
        order = [False, True] if (position + round_) % 2 == 0 else [True, False]
        orders.append(["monitored" if m else "plain" for m in order])
        for monitored in order:
            label = "monitored" if monitored else "plain"
            log(f"{notebook.name}: {label} run ({len(cells)} cells)" + (f", round {round_ + 1}/{repeat}" if repeat > 1
                                                                      else "") + "...")
            run = _run(cells, monitored=monitored, timeout=timeout)
            runs[monitored].append(run)
            if run.error:
                log(f"  FAILED at cell {run.failed_cell}: {run.error}")
            else:
                log(f"  {run.wall_seconds:.1f} s wall, {run.cpu_seconds:.1f} s CPU, peak {mib(run.peak_rss)} MiB")
    return entry(notebook, cells, runs[False], runs[True], orders)


def entry(notebook: Path, cells: list[Cell], plain_runs: list[Run], monitored_runs: list[Run],
          orders: list[list[str]]) -> dict[str, Any]:
    """One notebook's overhead record from its plain and monitored runs (best of each side)."""
    plain, mon = _best(plain_runs), _best(monitored_runs)
    repeat = max(len(plain_runs), len(monitored_runs))
    per_cell = []
    for i, cell in enumerate(cells):
        row: dict[str, Any] = {"index": cell.index, "first_line": _first_line(cell.source)}
        row["plain_s"] = plain.cell_seconds[i] if i < len(plain.cell_seconds) else None
        row["monitored_s"] = mon.cell_seconds[i] if i < len(mon.cell_seconds) else None
        row["hooks_s"] = mon.hook_seconds[i] if i < len(mon.hook_seconds) else None
        if row["plain_s"] is not None and row["monitored_s"] is not None:
            row["overhead_s"] = row["monitored_s"] - row["plain_s"]
        per_cell.append(row)
    complete = plain.error is None and mon.error is None
    return {
        "notebook": notebook.name,
        "path": str(notebook),
        "cells": len(cells),
        "order": orders,
        "plain": asdict(plain),
        "monitored": asdict(mon),
        "plain_runs": [asdict(r) for r in plain_runs] if repeat > 1 else None,
        "monitored_runs": [asdict(r) for r in monitored_runs] if repeat > 1 else None,
        "complete": complete,
        "wall_overhead_pct": pct(mon.wall_seconds, plain.wall_seconds) if complete else None,
        "cpu_overhead_pct": pct(mon.cpu_seconds, plain.cpu_seconds) if complete else None,
        "mem_overhead_pct": pct(mon.peak_rss, plain.peak_rss) if complete else None,
        "mem_sampled_overhead_pct": pct(mon.peak_rss_sampled, plain.peak_rss_sampled) if complete else None,
        "hooks_seconds": sum(mon.hook_seconds) if mon.hook_seconds else None,
        "per_cell": per_cell,
    }


def _stats(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    return {"median": statistics.median(present) if present else None, "worst": max(present, default=None)}


select_notebooks = select_benchmark_notebooks


def run(notebooks: list[Path], out: Path, *, quick: bool, timeout: float, repeat: int = 1) -> str:
    """Measure, write ``out`` (JSON) and ``out.md``, return the markdown."""
    results = []
    with isolated_environment():
        meta = machine()
        for position, nb in enumerate(notebooks):
            results.append(measure_notebook(nb, position, timeout, repeat))
    return write(out, meta, results, {"quick": quick, "timeout": timeout, "repeat": repeat})


def write(out: Path, meta: dict[str, Any], results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """``out`` (JSON), .md, .csv and .png from the per-notebook :func:`entry` records; return the markdown."""
    summary = {
        key: _stats([r[key] for r in results])
        for key in ("wall_overhead_pct", "cpu_overhead_pct", "mem_overhead_pct", "mem_sampled_overhead_pct")
    }
    cells = [dict(c, notebook=r["notebook"]) for r in results for c in r["per_cell"]]
    worst = sorted((c for c in cells if c.get("overhead_s") is not None),
                   key=lambda c: -c["overhead_s"])[:5]
    worst_hooks = sorted((c for c in cells if c.get("hooks_s") is not None), key=lambda c: -c["hooks_s"])[:5]
    data = {"machine": finish(meta), "settings": {**settings, "rss_sample_interval": 0.05},
            "notebooks": results, "summary": summary, "worst_cells": worst, "worst_hook_cells": worst_hooks}
    md = render(data)
    path = write_outputs(out, data, md)
    write_csv(out.with_suffix(".csv"), csv_rows(data))
    plot(data, plot_path(out))
    log(f"wrote {out}, {path} and the .csv/.png beside them")
    return md


def csv_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per notebook: both sides' totals and the overheads (the per-cell detail stays in the JSON)."""
    rows = []
    for r in data["notebooks"]:
        p, mo = r["plain"], r["monitored"]
        rows.append({
            "notebook": r["notebook"], "cells": r["cells"], "complete": r["complete"],
            "wall_plain_s": p["wall_seconds"], "wall_monitored_s": mo["wall_seconds"],
            "wall_overhead_pct": r["wall_overhead_pct"],
            "cpu_plain_s": p["cpu_seconds"], "cpu_monitored_s": mo["cpu_seconds"],
            "cpu_overhead_pct": r["cpu_overhead_pct"],
            "peak_rss_plain_bytes": p["peak_rss_hwm"] or p["peak_rss_sampled"],
            "peak_rss_monitored_bytes": mo["peak_rss_hwm"] or mo["peak_rss_sampled"],
            "peak_rss_overhead_pct": r["mem_overhead_pct"], "hooks_s": r["hooks_seconds"],
            "error": "; ".join(e for e in (p["error"], mo["error"]) if e) or None,
        })
    return rows


def plot(data: dict[str, Any], path: Path) -> None:
    """Per notebook: runtime and peak-RSS overhead (%) against the targets, and the seconds in the hooks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = csv_rows(data)
    names = [r["notebook"].removesuffix(".ipynb") for r in rows]
    xs = range(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.4
    left.bar([x - width / 2 for x in xs], [r["wall_overhead_pct"] or 0.0 for r in rows], width, label="runtime (wall)")
    left.bar([x + width / 2 for x in xs], [r["peak_rss_overhead_pct"] or 0.0 for r in rows], width, label="peak RSS")
    for limit, style, label in ((0.5, ":", "target: runtime median 0.5 %"), (1.5, "--", "target: runtime worst 1.5 %"),
                                (3.0, "-.", "target: peak memory 3 %")):
        left.axhline(limit, color="red", linestyle=style, linewidth=1, label=label)
    left.axhline(0, color="black", linewidth=0.5)
    left.set_xticks(list(xs), names, rotation=20, ha="right")
    left.set(ylabel="monitored vs plain, %", title="Monitoring overhead per notebook")
    left.legend(fontsize="small")
    right.bar(list(xs), [r["hooks_s"] or 0.0 for r in rows], color="#2ca02c")
    right.set_xticks(list(xs), names, rotation=20, ha="right")
    right.set(ylabel="seconds", title="Time inside the monitor's hooks (whole notebook)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell_rows(cells: list[dict[str, Any]]) -> list[list[object]]:
    return [[c["notebook"], c["index"], fmt_seconds(c["plain_s"], 2), fmt_seconds(c["monitored_s"], 2),
             f"{c['overhead_s']:+.2f}" if c.get("overhead_s") is not None else "n/a",
             fmt_seconds(c["hooks_s"], 3), code_span(c["first_line"])] for c in cells]


def _how(settings: dict[str, Any]) -> str:
    repeat = settings.get("repeat", 1)
    if settings.get("source") == "compare":
        return ("Measured in `compare`'s source runs, each in a fresh kernel: the plain one (DumpSession and "
                "PickleEach's source, nothing loaded) and the monitored one (nbmigrate's source), once each.")
    if repeat == 1:
        return "Each notebook ran once plain and once monitored, each in a fresh kernel."
    return (f"Each notebook ran {repeat}× plain and {repeat}× monitored, each in a fresh kernel, alternating "
            "which side went first; times are the best of the runs (per cell: the fastest run of that cell), "
            "peak RSS the larger.")


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    rows: list[list[object]] = []
    for r in data["notebooks"]:
        p, mo = r["plain"], r["monitored"]
        rows.append([
            r["notebook"], r["cells"],
            fmt_seconds(p["wall_seconds"]), fmt_seconds(mo["wall_seconds"]), fmt_pct(r["wall_overhead_pct"]),
            fmt_seconds(p["cpu_seconds"]), fmt_seconds(mo["cpu_seconds"]), fmt_pct(r["cpu_overhead_pct"]),
            mib(p["peak_rss_hwm"] or p["peak_rss_sampled"]), mib(mo["peak_rss_hwm"] or mo["peak_rss_sampled"]),
            fmt_pct(r["mem_overhead_pct"]), fmt_seconds(r["hooks_seconds"], 2),
        ])
    s = data["summary"]
    for label in ("median", "worst"):
        rows.append([f"**{label}**", "", "", "", fmt_pct(s["wall_overhead_pct"][label]), "", "",
                     fmt_pct(s["cpu_overhead_pct"][label]), "", "", fmt_pct(s["mem_overhead_pct"][label]), ""])
    header = ["notebook", "cells", "wall plain s", "wall monitored s", "wall overhead", "CPU plain s",
              "CPU monitored s", "CPU overhead", "peak RSS plain MiB", "peak RSS monitored MiB",
              "peak RSS overhead", "in monitor hooks s"]
    out = [
        "## Monitoring overhead\n",
        f"{m['date']}, {source_line(m)}, "
        f"Python {m['python']}, {m['cpus']} CPUs, load average {m['load_average'][0]} at start, "
        f"{m['load_average_end'][0]} at end. {_how(data['settings'])} "
        "Peak RSS is the kernel's VmHWM; CPU counts the kernel and its worker processes.\n",
        table(header, rows),
        "\n### Cells with the largest overhead (monitored − plain wall seconds)\n",
        "Differences of a few percent on long cells are within run-to-run noise; "
        "*hooks s* is the exact time spent in the monitor's pre/post_run_cell callbacks for that cell.\n",
        table(["notebook", "cell", "plain s", "monitored s", "overhead s", "hooks s", "first line"],
              _cell_rows(data["worst_cells"])),
        "\n### Cells with the most time in the monitor's hooks\n",
        table(["notebook", "cell", "plain s", "monitored s", "overhead s", "hooks s", "first line"],
              _cell_rows(data["worst_hook_cells"])),
    ]
    failures = [(r["notebook"], side, r[side]) for r in data["notebooks"] for side in ("plain", "monitored")
                if r[side]["error"]]
    if failures:
        out.append("\n### Failures\n")
        out.extend(f"- {nb} ({side}): cell {run['failed_cell']}: {run['error']}\n" for nb, side, run in failures)
    return "\n".join(out)
