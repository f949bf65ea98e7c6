"""Checkpoint: fingerprint -> group -> probe by pickling -> plan -> write blobs -> write manifest.

Runs inside the kernel being checkpointed. Every group is pickled up front (out-of-band buffers make
this cheap: numeric data is not copied), which both measures its real size for the cost model and
probes its picklability, so a group that cannot be pickled is routed to recomputation instead of
failing the checkpoint. Only the groups the plan stores are written.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import time
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from . import __version__
from .costs import CostModel, Prefer
from .covariables import group_covariables
from .environment import capture
from .errors import PlanError, SerializationError
from .files import GONE, same_content, stamp
from .fingerprint import Fingerprint
from .history import FileStamp, HistoryGraph
from .manifest import GroupRecord, Manifest, ModuleBinding, PlanRecord, VariableRecord
from .monitor import Monitor
from .namespace import importable_module_name, type_name
from .plan import GroupSpec, ReplicationPlan, make_plan
from .reports import CheckpointReport, GroupOutcome, Progress
from .serialize import SerializedGroup, dump_group, pack_parts
from .store import BlobFinisher, CheckpointStore, StagedBlob, stage_blob


def importable(module: str) -> bool:
    """Whether ``module`` names something a restore can import (not e.g. Cython's ``_cython_3_2_4``)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def file_hazards(history: HistoryGraph) -> dict[int, list[str]]:
    """Per CE, why its file accesses make it unsafe to replay now (see :mod:`nbmigrate.files`)."""
    now: dict[str, FileStamp] = {}

    def current(path: str) -> FileStamp:
        if path not in now:
            now[path] = stamp(path)
        return now[path]

    hazards: dict[int, list[str]] = {}
    for ce in history.executions:
        found: list[str] = []
        for st in ce.files_read:
            if st.size == GONE:
                found.append(f"read {st.path}, which no longer existed when the cell finished")
            elif not same_content(st, current(st.path)):
                found.append(f"read {st.path}, which has changed since")
        for st in ce.files_written:
            if not same_content(st, current(st.path)):
                found.append(f"wrote {st.path}, which has changed since (a replay would overwrite it)")
        if found:
            hazards[ce.index] = found
    return hazards


def planning_view(history: HistoryGraph, extra: dict[int, list[str]]) -> HistoryGraph:
    """A copy of the history with hazards that only hold now (changed files) added to its CEs."""
    if not extra:
        return history
    view = copy.copy(history)
    view.executions = [
        dataclasses.replace(ce, hazards=ce.hazards + extra[ce.index]) if ce.index in extra else ce
        for ce in history.executions
    ]
    return view


@dataclass
class _Probe:
    specs: list[GroupSpec]
    serialized: dict[int, SerializedGroup]


def _probe_groups(groups: list[list[str]], values: dict[str, object], fps: dict[str, Fingerprint],
                  user_ns: dict[str, object]) -> _Probe:
    specs: list[GroupSpec] = []
    serialized: dict[int, SerializedGroup] = {}
    for key, names in enumerate(groups):
        try:
            sg = dump_group({n: values[n] for n in names}, user_ns)
        except SerializationError as exc:
            estimate = sum(fps[n].nbytes for n in names)
            specs.append(GroupSpec(key=key, names=tuple(names), nbytes=estimate, storable=False,
                                   unstorable_reason=str(exc)))
            continue
        serialized[key] = sg
        specs.append(GroupSpec(key=key, names=tuple(names), nbytes=sg.nbytes))
    return _Probe(specs, serialized)


def _infeasible_message(plan: ReplicationPlan) -> str:
    lines = ["these variables can be neither stored nor faithfully recomputed:"]
    lines += [f"  {', '.join(d.names)}: {d.reason}" for d in plan.infeasible]
    lines.append("Delete them, make them picklable, or checkpoint with --best-effort to carry everything else.")
    return "\n".join(lines)


@dataclass
class Prepared:
    """Everything a checkpoint decides before it writes a byte (also what ``%nbmigrate plan`` shows)."""

    values: dict[str, object]
    fingerprints: dict[str, Fingerprint]
    bindings: dict[str, str]
    probe: _Probe
    plan: ReplicationPlan


def prepare(monitor: Monitor, costs: CostModel) -> Prepared:
    """Fingerprint, group, probe picklability and plan, without writing anything."""
    fps = monitor.refresh()
    values = monitor.user_vars()
    bindings = {n: m for n, v in values.items() if (m := importable_module_name(v)) is not None}
    data_fps = {n: fp for n, fp in fps.items() if n not in bindings}
    probe = _probe_groups(group_covariables(data_fps), values, fps, monitor.shell.user_ns)
    # A module binding is re-imported at restore whatever the plan says, so the planner sees it as a
    # free stored group: cells that read `np` then never need the import cell replayed.
    first = len(probe.specs)
    specs = probe.specs + [GroupSpec(key=first + i, names=(n,), nbytes=0) for i, n in enumerate(sorted(bindings))]
    history = monitor.history
    plan = make_plan(planning_view(history, file_hazards(history)), specs, costs)
    return Prepared(values, fps, bindings, probe, plan)


def _staged_blobs(keys: list[int], serialized: dict[int, SerializedGroup], bandwidth: float
                  ) -> Generator[StagedBlob, None, None]:
    """The blobs of the groups ``keys``, in order, each packed and hashed while the previous one is written.

    Compression and SHA-256 release the GIL, as do file writes and fsync: staging group k+1 in a
    worker thread while the caller writes group k overlaps them instead of adding them up. One
    group of look-ahead bounds the memory held by compressed copies.
    """

    def stage(key: int) -> StagedBlob:
        parts = pack_parts(serialized[key], bandwidth=bandwidth)
        return stage_blob([(p.kind, p.codec, p.raw_length, p.payload) for p in parts])

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbmigrate-stage") as pool:
        pending: Future[StagedBlob] | None = None
        for key in keys:
            upcoming = pool.submit(stage, key)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()


def checkpoint(
    monitor: Monitor,
    destination: str,
    *,
    bandwidth: float | None = None,
    prefer: Prefer = "balanced",
    best_effort: bool = False,
    storage_options: dict[str, object] | None = None,
    progress: Progress | None = None,
) -> CheckpointReport:
    """Checkpoint the monitored session to ``destination`` (a path or any fsspec URL)."""
    t0 = time.perf_counter()
    store = CheckpointStore(destination, storage_options=storage_options)
    measured = bandwidth if bandwidth is not None else store.measure_bandwidth()
    prepared = prepare(monitor, CostModel(bandwidth=measured, prefer=prefer))
    plan, probe, fps, values, bindings = (prepared.plan, prepared.probe, prepared.fingerprints,
                                          prepared.values, prepared.bindings)
    history = monitor.history
    if plan.infeasible and not best_effort:
        raise PlanError(_infeasible_message(plan))

    decisions = {d.key: d for d in plan.decisions if d.key < len(probe.specs)}
    infeasible = {d.key: d for d in plan.infeasible}
    to_store = [s.key for s in probe.specs if s.key not in infeasible and decisions[s.key].stored]
    storing = set(to_store)
    total = sum(probe.serialized[k].nbytes for k in to_store)
    done = 0
    group_records: list[GroupRecord] = []
    outcomes: list[GroupOutcome] = []
    written = 0
    staged = _staged_blobs(to_store, probe.serialized, measured)
    with BlobFinisher() as finisher, contextlib.closing(staged):
        for spec in probe.specs:
            decision = decisions.get(spec.key) or infeasible[spec.key]
            modules = sorted(m for m in set().union(*(fps[n].modules for n in spec.names)) if importable(m))
            blob = None
            group_written = 0
            if spec.key in storing:

                def on_bytes(n: int) -> None:
                    nonlocal done, group_written
                    done += n
                    group_written += n
                    if progress is not None:
                        progress("write", done, total)

                blob = store.put_blob(next(staged), progress=on_bytes, finisher=finisher)
                written += group_written
            stored = blob is not None
            group_records.append(GroupRecord(key=spec.key, names=list(spec.names), stored=stored,
                                             reason=decision.reason, modules=modules, blob=blob))
            outcomes.append(GroupOutcome(names=list(spec.names), stored=stored, reason=decision.reason,
                                         nbytes=spec.nbytes, written_bytes=group_written))
        finisher.wait()  # every blob durable before the manifest can reference it
    probe.serialized.clear()

    group_of = {n: r.key for r in group_records for n in r.names}
    stored_names = {n for r in group_records if r.stored for n in r.names}
    variables = [
        VariableRecord(name=n, type=type_name(values[n]), nbytes=fps[n].nbytes, digest=fps[n].digest,
                       group=group_of[n], writer=history.live.get(n, -1), stored=n in stored_names)
        for n in sorted(group_of)
    ]
    replay_seconds = sum(history.executions[i].duration for i in plan.replay)
    environment = capture(monitor.env_baseline)
    # Only the sys.path entries the session added travel (like env vars): the rest came with this
    # kernel (its venv, PYTHONPATH), and a restore puts recorded entries first on the target's path,
    # where another environment's site-packages would shadow the target's own packages.
    environment.sys_path = [p for p in environment.sys_path if p not in monitor.sys_path_baseline]
    manifest = Manifest(
        nbmigrate_version=__version__,
        created=time.time(),
        environment=environment,
        history=history.to_dict(),
        groups=group_records,
        variables=variables,
        modules=[ModuleBinding(name=n, module=m) for n, m in sorted(bindings.items())],
        plan=PlanRecord(replay=list(plan.replay), prefer=prefer, bandwidth=measured,
                        est_checkpoint_seconds=plan.est_checkpoint_seconds,
                        est_restore_seconds=plan.est_restore_seconds, solver=plan.solver,
                        solve_seconds=plan.solve_seconds),
    )
    store.write_manifest(manifest)
    return CheckpointReport(
        destination=store.url,
        variables=len(values) - len(bindings),
        groups=outcomes,
        modules=sorted(bindings),
        replay_cells=list(plan.replay),
        est_replay_seconds=replay_seconds,
        est_restore_seconds=plan.est_restore_seconds,
        stored_bytes=sum(o.nbytes for o in outcomes if o.stored),
        written_bytes=written,
        seconds=time.perf_counter() - t0,
        plan_seconds=plan.solve_seconds,
        bandwidth=measured,
        prefer=prefer,
        missing=sorted(n for d in plan.infeasible for n in d.names),
    )
