"""``python -m bench scalability``: history-graph memory and plan time of long synthetic sessions.

A notebook used for a working day accumulates thousands of cell executions (CEs). The monitor keeps
every one in the history graph (it travels in the manifest and the planner walks it at every
checkpoint), so both must stay small and fast as the history grows. Real notebooks that long are not
at hand, so :func:`synthetic_history` makes sessions with the shapes real ones have:

* **chains**: a frame rebound step by step (``df = clean(df)``), each step reading the previous one,
  which goes dead: recomputing the last version needs the whole chain;
* **fan-in**: a summary cell reads many live variables at once (``report = combine(a, b, c, ...)``);
* **re-assignments**: a cell run again rebinds its names (new version, old one dead), and some cells
  mutate what they read (``xs.append(...)``: read and write of the same name);
* **co-variable groups**: names that share memory (a dict holding an array, a view) are one group;
* deletions, and a few cells with hazards (unseeded randomness) that must be stored, not replayed.

The graph is built through the real data model (:class:`~nbmigrate.history.CellExecution`,
:class:`~nbmigrate.history.HistoryGraph`, as the monitor records them) with tracemalloc running, so
its memory is what those objects cost; the plan is the real :func:`~nbmigrate.plan.make_plan` with the
default cost model, timed as the median of a few runs.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nbmigrate.costs import CostModel
from nbmigrate.history import CellExecution, FileStamp, HistoryGraph
from nbmigrate.plan import GroupSpec, make_plan

from .common import finish, log, machine, plot_path, source_line, table, write_csv, write_outputs

SIZES = (500, 2_000, 5_000, 10_000)
MAX_VARIABLES = 10_000
TARGETS_MS = {2_000: 50.0, 10_000: 300.0}
"""Issue 4: plan time below these many milliseconds at these many CEs."""
SOURCE = "# step {i}: {what}\n{lhs} = transform({rhs})\nsummary_{i} = describe({lhs})\n"
"""Cell text of a typical length (the source of every CE is kept, so its size counts)."""


@dataclass
class Point:
    """One history size: what the graph costs in memory and what planning it costs in time."""

    executions: int
    live_variables: int
    groups: int
    reads: int
    graph_bytes: int
    """tracemalloc: bytes still held after building the graph (and the group specs the planner takes)."""
    graph_peak_bytes: int
    manifest_bytes: int
    """The history's JSON as it goes into the manifest."""
    plan_ms: list[float]
    plan_ms_median: float
    plan_cpu_ms_median: float
    """CPU time of the same runs (``time.process_time``): what the wall time would be on an idle machine,
    since planning is single-threaded; on 2 shared cores the wall median varies 2× with the load."""
    replayed: int
    stored: int
    infeasible: int


def synthetic_history(n: int, *, max_variables: int = MAX_VARIABLES, seed: int = 4
                      ) -> tuple[HistoryGraph, list[GroupSpec]]:
    """A session of ``n`` CEs with chains, fan-in, re-assignments, mutations and co-variable groups."""
    rng = random.Random(seed)
    version: dict[str, int] = {}
    recent: list[str] = []
    chains = [f"df{k}" for k in range(max(1, n // 500))]
    executions: list[CellExecution] = []
    for i in range(n):
        reads: dict[str, int] = {}
        writes: list[str] = []
        deletes: list[str] = []
        roll = rng.random()
        if roll < 0.25:  # one step of a chain: df = transform(df)
            name = rng.choice(chains)
            if name in version:
                reads[name] = version[name]
            writes.append(name)
            what = "chain"
        elif roll < 0.32 and len(recent) > 10:  # fan-in: combine many live results
            for name in rng.sample(recent[-200:], min(len(recent[-200:]), rng.randint(8, 40))):
                reads[name] = version[name]
            what = "fan-in"
        elif roll < 0.45 and recent:  # re-run a cell: rebind a recent name
            name = rng.choice(recent[-50:])
            reads.update({r: version[r] for r in rng.sample(recent[-30:], min(len(recent[-30:]), 2))})
            writes.append(name)
            what = "re-assignment"
        elif roll < 0.55 and recent:  # in-place mutation: reads and writes the same name
            name = rng.choice(recent[-100:])
            reads[name] = version[name]
            writes.append(name)
            what = "mutation"
        else:  # a new result from a few recent ones
            pool = recent[-30:]
            reads.update({r: version[r] for r in rng.sample(pool, min(len(pool), rng.randint(0, 3)))})
            what = "new"
        if len(version) < max_variables:
            writes.append(f"v{i}")
            if rng.random() < 0.1 and len(version) + 1 < max_variables:
                writes.append(f"v{i}_view")  # co-variable of v{i} (see the grouping below)
        if recent and rng.random() < 0.02:
            victim = rng.choice(recent)
            if victim not in writes and victim not in chains:
                deletes.append(victim)
        hazards = ["unseeded randomness: numpy.random.rand"] if rng.random() < 0.01 else []
        files = [FileStamp(f"data/part-{i % 37}.parquet", 1 << 20, 1_700_000_000 + i, f"{i:016x}")] \
            if rng.random() < 0.05 else []
        lhs = writes[0] if writes else "_"
        executions.append(CellExecution(
            index=i, source=SOURCE.format(i=i, what=what, lhs=lhs, rhs=", ".join(reads) or "()"),
            cell_id=f"cell-{i % 300:04x}", started=1_700_000_000.0 + i, duration=rng.lognormvariate(-3, 2),
            reads=reads, writes=writes, deletes=deletes, hazards=hazards, files_read=files))
        for name in deletes:
            del version[name]
            recent.remove(name)
        for name in writes:
            if name not in version and name not in chains:
                recent.append(name)
            version[name] = i
    history = HistoryGraph(executions=executions, live=dict(version))
    return history, _groups(history, rng)


def _groups(history: HistoryGraph, rng: random.Random) -> list[GroupSpec]:
    """One group per live name, except ``v{i}`` and ``v{i}_view`` which share memory (one group)."""
    groups: list[GroupSpec] = []
    seen: set[str] = set()
    for name in sorted(history.live):
        if name in seen:
            continue
        names = (name, f"{name}_view") if f"{name}_view" in history.live else (name,)
        seen.update(names)
        groups.append(GroupSpec(key=len(groups), names=names, nbytes=int(10 ** rng.uniform(2, 9)),
                                storable=rng.random() > 0.02, unstorable_reason="cannot pickle a generator"))
    return groups


def measure(n: int, *, repeat: int, max_variables: int = MAX_VARIABLES) -> Point:
    gc.collect()
    tracemalloc.start()
    history, groups = synthetic_history(n, max_variables=max_variables)
    graph_bytes, graph_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times: list[float] = []
    cpu: list[float] = []
    plan = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        plan = make_plan(history, groups, CostModel())
        times.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    assert plan is not None
    return Point(
        executions=n, live_variables=len(history.live), groups=len(groups),
        reads=sum(len(ce.reads) for ce in history.executions),
        graph_bytes=graph_bytes, graph_peak_bytes=graph_peak,
        manifest_bytes=len(json.dumps(history.to_dict(), separators=(",", ":"))),
        plan_ms=times, plan_ms_median=statistics.median(times), plan_cpu_ms_median=statistics.median(cpu),
        replayed=len(plan.replay), stored=len(plan.stored_keys), infeasible=len(plan.infeasible))


def targets(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue-4 plan-time targets against the measured medians (only the sizes that were measured)."""
    by_size = {p["executions"]: p for p in points}
    return [{"executions": n, "limit_ms": limit, "plan_ms": by_size[n]["plan_ms_median"],
             "plan_cpu_ms": by_size[n]["plan_cpu_ms_median"], "met": by_size[n]["plan_ms_median"] < limit}
            for n, limit in TARGETS_MS.items() if n in by_size]


def run(out: Path, *, sizes: tuple[int, ...] = SIZES, repeat: int = 5, max_variables: int = MAX_VARIABLES) -> str:
    """Measure every size, write ``out`` (JSON), ``.md``, ``.csv`` and ``.png``; return the markdown."""
    meta = machine()
    points = []
    for n in sizes:
        log(f"scalability: {n} cell executions...")
        point = measure(n, repeat=repeat, max_variables=max_variables)
        log(f"  {point.live_variables} live variables, graph {point.graph_bytes / 2**20:.1f} MiB, "
            f"plan {point.plan_ms_median:.0f} ms")
        points.append(asdict(point))
    data = {"machine": finish(meta), "settings": {"sizes": list(sizes), "repeat": repeat,
                                                 "max_variables": max_variables},
            "points": points, "targets": targets(points)}
    md = render(data)
    write_outputs(out, data, md)
    write_csv(out.with_suffix(".csv"), [{k: v for k, v in p.items() if k != "plan_ms"} for p in points])
    plot(data, plot_path(out))
    log(f"wrote {out} (+ .md, .csv, .png)")
    return md


def render(data: dict[str, Any]) -> str:
    rows = [[p["executions"], p["live_variables"], p["groups"], p["reads"], f"{p['graph_bytes'] / 2**20:.1f}",
             f"{p['manifest_bytes'] / 2**20:.1f}", f"{p['plan_ms_median']:.0f}", f"{p['plan_cpu_ms_median']:.0f}",
             f"{p['replayed']} / {p['stored']} / {p['infeasible']}"] for p in data["points"]]
    met = "; ".join(f"< {t['limit_ms']:.0f} ms at {t['executions']:,} CEs: **{'met' if t['met'] else 'MISSED'}** "
                    f"({t['plan_ms']:.0f} ms)" for t in data["targets"])
    m = data["machine"]
    return "\n".join([
        "## Scalability of the history graph and the planner\n",
        f"{m['date']}, {source_line(m)}, Python {m['python']}. Synthetic sessions "
        "(chains, fan-in, re-assignments, in-place mutations, co-variable groups, deletions, a few hazards; "
        f"at most {data['settings']['max_variables']:,} variables). *Graph* is what tracemalloc saw the "
        "history's objects hold; *manifest* its JSON; plan time is the median of "
        f"{data['settings']['repeat']} runs of `make_plan` (default cost model), *plan CPU ms* the median CPU time of "
        f"the same runs (what an idle machine would show; load average {m['load_average'][0]} at the start). "
        f"Targets (on the wall-clock median): {met or 'none measured'}.\n",
        table(["cell executions", "live variables", "groups", "reads", "graph MiB", "manifest JSON MiB",
               "plan ms", "plan CPU ms", "replayed CEs / stored / infeasible groups"], rows),
    ])


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = data["points"]
    xs = [p["executions"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(xs, [p["plan_ms_median"] for p in points], "o-", label="plan time (median wall)")
    left.plot(xs, [p["plan_cpu_ms_median"] for p in points], "^:", label="plan CPU time (median)")
    for n, limit in TARGETS_MS.items():
        left.plot([n], [limit], "rv", label=f"target at {n:,} CEs")
    left.set(xlabel="cell executions", ylabel="ms", title="make_plan time")
    left.legend()
    right.plot(xs, [p["graph_bytes"] / 2**20 for p in points], "o-", label="history objects (tracemalloc)")
    right.plot(xs, [p["manifest_bytes"] / 2**20 for p in points], "s--", label="history JSON in the manifest")
    right.set(xlabel="cell executions", ylabel="MiB", title="history graph size")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
