"""The monitor: watches every cell through IPython's events and keeps the history graph up to date.

No per-cell magic, ever: ``load_ipython_extension`` registers :meth:`Monitor.pre_run_cell` and
:meth:`Monitor.post_run_cell`. For each cell:

* **reads** come from the cell's AST after ``shell.transform_cell`` (see :mod:`nbmigrate.access`),
  including globals reached through functions and classes defined in the session;
* **writes and deletes** come from the namespace before/after (a name created, rebound or deleted);
* **in-place mutations** come from the mutation detector: the fingerprint (content digest + identity
  graph + memory spans) of every name the cell may have reached — its reads plus their co-variables —
  is compared with the one taken when that name was last written. A variable nobody reached cannot
  have changed, so the per-cell cost does not grow with unrelated variables (invariant 6). A read
  that is only an operand of arithmetic on numeric arrays and frames (``r = mom[250] / vol60``) cannot
  change the value either: it is not re-fingerprinted unless a co-variable of another candidate
  (:mod:`nbmigrate.access.operands`, :mod:`nbmigrate.arithmetic_values`).

Worked example::

    cell 1: a = [1, 2]; d = {"k": a}     writes a@1, d@1 (co-variables: d holds a)
    cell 2: a.append(3)                  reads a@1; a and its co-variable d are re-fingerprinted:
                                         both changed -> writes a@2 and d@2, and reads d@1 too
                                         (a change in place builds the new version from the old)

Whatever goes wrong inside the monitor is caught: the user's cell always runs (invariant 3), and the
cell is recorded conservatively (it may have read and written every variable) with a hazard, so the
planner stores rather than replays what it touched.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import rng_state
from .access import CellAccess, analyze_cell
from .arithmetic_values import is_inert, leaf_value
from .covariables import group_covariables
from .files import GONE, FileActivity, FileRecorder, install_audit_hook, regular_files, stamp
from .fingerprint import Fingerprint, FingerprintSession, changed, fingerprint
from .history import PREEXISTING, CellExecution, HistoryGraph
from .namespace import user_items

if TYPE_CHECKING:
    from .reports import CheckpointReport, RestoreReport

log = logging.getLogger("nbmigrate")

OWN_MAGICS = frozenset({"checkpoint", "restore", "nbmigrate"})
"""Cells made only of these magics are nbmigrate's own work, not part of the user's history."""


@dataclass
class _PendingCell:
    source: str
    cell_id: str | None
    access: CellAccess
    before: dict[str, int]
    started: float
    t0: float = 0.0
    notes: list[str] = field(default_factory=list)
    failure: Exception | None = None
    """Why the analysis before the cell failed: the cell is then recorded conservatively."""
    rng: dict[str, Any] = field(default_factory=dict)
    """The global random generators' states before the cell (:func:`rng_state.global_states`)."""


def is_own_cell(transformed: str) -> bool:
    """True if every statement is ``get_ipython().run_line_magic('<one of OWN_MAGICS>', ...)``."""
    try:
        tree = ast.parse(transformed)
    except SyntaxError:
        return False
    if not tree.body:
        return False
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "run_line_magic"
            and call.args
            and isinstance(call.args[0], ast.Constant)
            and (call.args[0].value in OWN_MAGICS
                 or (call.args[0].value == "load_ext" and "nbmigrate" in ast.unparse(call)))
        ):
            return False
    return True


class Monitor:
    """Per-kernel state: the history graph, the last fingerprint of every live variable."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.history = HistoryGraph()
        self.fingerprints: dict[str, Fingerprint] = {}
        self.paused = False
        self.env_baseline = dict(os.environ)
        self.sys_path_baseline = list(sys.path)
        self._recorder = FileRecorder()
        self._pending: _PendingCell | None = None
        self._depth = 0
        self.last_report: CheckpointReport | RestoreReport | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Register the events and adopt the variables that already exist as pre-existing."""
        install_audit_hook()
        with FingerprintSession() as session:  # one pass: ids stay comparable across variables
            for name, value in self.user_vars().items():
                self.history.live.setdefault(name, PREEXISTING)
                self.fingerprints[name] = fingerprint(value, session=session)
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)

    def stop(self) -> None:
        for event, callback in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            with contextlib.suppress(ValueError):  # never registered (start() failed half-way)
                self.shell.events.unregister(event, callback)
        self._recorder.stop()

    def adopt(self, history: HistoryGraph, fingerprints: dict[str, Fingerprint]) -> None:
        """Continue monitoring from a restored history (chained migration A -> B -> C)."""
        self.history = history
        self.fingerprints = dict(fingerprints)

    def user_vars(self) -> dict[str, Any]:
        return dict(user_items(self.shell.user_ns, self.shell.user_ns_hidden))

    # -- events ----------------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        # Cell magics such as %%capture run their body through a nested run_cell, which fires these
        # events again: only the outermost cell is a cell execution of the history.
        self._depth += 1
        if self._depth > 1:
            return
        self._pending = None
        if self.paused:
            return
        try:
            raw = info.raw_cell or ""
            if not raw.strip():
                return
            transformed = self.shell.transform_cell(raw)
            if is_own_cell(transformed):
                return
            ns = self.shell.user_ns
            access = analyze_cell(transformed, ns)
            before = {name: id(value) for name, value in user_items(ns, self.shell.user_ns_hidden)}
            self._pending = _PendingCell(
                source=raw, cell_id=getattr(info, "cell_id", None), access=access, before=before,
                started=time.time(), rng=rng_state.global_states(),
            )
            self._recorder.start()
            self._pending.t0 = time.perf_counter()
        except Exception as exc:  # the user's cell must run whatever happens here; it is still recorded
            log.warning("nbmigrate: could not analyse the cell before it ran: %r", exc)
            self._pending = _PendingCell(
                source=str(getattr(info, "raw_cell", "") or ""), cell_id=getattr(info, "cell_id", None),
                access=CellAccess(frozenset(), frozenset(), True, (), frozenset()),
                before=dict.fromkeys(self.history.live, 0), started=time.time(), t0=time.perf_counter(),
                failure=exc,
            )

    def post_run_cell(self, result: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth > 0:
            return
        pending, self._pending = self._pending, None
        if pending is None:
            return
        duration = time.perf_counter() - pending.t0
        activity = self._recorder.stop()  # even if the cell paused monitoring: never leave it running
        if self.paused:
            return
        if getattr(result, "error_before_exec", None) is not None:
            return  # the cell never ran (syntax error): nothing happened to record
        raised = getattr(result, "error_in_exec", None)
        failure = pending.failure
        if failure is None:
            try:
                ce = self._record(pending, duration, raised, activity)
            except Exception as exc:
                log.warning("nbmigrate: monitoring failed for this cell, recording it conservatively: %r", exc)
                failure = exc
        if failure is not None:
            ce = self._record_conservatively(pending, duration, raised, failure)
        self.history.executions.append(ce)

    # -- recording -------------------------------------------------------------------------------
    def _record(self, p: _PendingCell, duration: float, raised: Any, activity: FileActivity) -> CellExecution:
        index = len(self.history.executions)
        after = self.user_vars()
        live_before = dict(self.history.live)
        created = [n for n in after if n not in p.before]
        deleted = [n for n in p.before if n not in after]
        rebound = [n for n in after if n in p.before and id(after[n]) != p.before[n]]

        if p.access.conservative:
            reads = dict(live_before)
        else:
            reads = {n: live_before[n] for n in p.access.reads if n in live_before}
        candidates = self._mutation_candidates(reads, after, p.access, p.before)
        written: set[str] = set(created) | set(rebound)
        new_fps: dict[str, Fingerprint] = {}
        with FingerprintSession() as session:
            for name in sorted(written | candidates):
                if name not in after:
                    continue
                fp = fingerprint(after[name], session=session)
                old = self.fingerprints.get(name)
                if name in written or old is None or changed(old, fp):
                    written.add(name)
                new_fps[name] = fp
        # A change in place is read-modify-write: the new version is built from the old one, so the cell
        # also read the version the name had, even when it changed it only through an alias. Without
        # that edge a replay could skip the cell that created the alias.
        for name in written - set(created) - set(rebound):
            if name in live_before:
                reads.setdefault(name, live_before[name])

        hazards = list(p.access.hazards)
        if raised is not None:
            hazards.append(f"raised {type(raised).__name__}")
        hazards.extend(f"unseeded randomness: {rng_state.FAMILIES[family]}'s global generator, drawn inside a call"
                       for family in rng_state.drawn(p.rng, rng_state.global_states(), p.access.seeded))
        hazards.extend(f"network: {target}" for target in activity.network[:3])
        if not p.access.hazards and activity.subprocess:
            hazards.append(f"subprocess: {activity.subprocess[0]}")
        # A read of a file that does not exist after the cell (and that the cell did not remove) was an
        # open that failed: a library probing for a file, not an input of the cell.
        files_read = [st for st in map(stamp, activity.external_reads) if st.size != GONE]
        cwd = os.getcwd()
        seen = set(activity.read) | set(activity.written)
        files_read.extend(stamp(path) for path in regular_files(p.access.paths, cwd) if path not in seen)
        hazards.extend(f"read {path}, then wrote it in the same cell" for path in activity.read_then_written[:3])
        files_written = [stamp(path) for path in activity.written]

        for name in written:
            self.history.live[name] = index
            self.fingerprints[name] = new_fps[name]
        for name in deleted:
            self.history.live.pop(name, None)
            self.fingerprints.pop(name, None)
        for name, fp in new_fps.items():
            if name not in written:
                self.fingerprints[name] = fp
        return CellExecution(
            index=index, source=p.source, cell_id=p.cell_id, started=p.started, duration=duration,
            reads=reads, writes=sorted(written), deletes=sorted(deleted), raised=raised is not None,
            hazards=hazards, files_read=files_read, files_written=files_written,
        )

    def _mutation_candidates(
        self, reads: dict[str, int], after: dict[str, Any], access: CellAccess, before: dict[str, int]
    ) -> set[str]:
        """Names whose value the cell may have changed in place: its reads (but inert operands) and
        their co-variables."""
        if access.conservative:
            return set(after)
        reached = {n for n in reads if n in after} - self._inert_operands(access, after, before)
        # Names the cell assigned to that existed before (``x = x`` may leave the same object).
        reached |= {n for n in access.bound if n in after and n in self.fingerprints}
        if not reached:
            return reached
        fps = {n: fp for n, fp in self.fingerprints.items() if n in after}
        return reached | set(self._covariables_of(reached, fps))

    @staticmethod
    def _inert_operands(access: CellAccess, after: dict[str, Any], before: dict[str, int]) -> set[str]:
        """Reads that were only operands of arithmetic on inert values: the cell cannot have changed them.

        Every operand of every tree holding such a name must be the same object before and after the
        cell (so it is the value the operation saw) and inert (:func:`is_inert`).
        """
        use = access.operands
        if not use.names:
            return set()
        bad: set[str] = set()
        for tree in use.trees:
            for name, key in tree:
                value = after.get(name)
                if before.get(name) != id(value) or name not in after or not is_inert(leaf_value(after, name, key)):
                    bad.update(n for n, _ in tree)
                    break
        return set(use.names) - bad

    @staticmethod
    def _covariables_of(names: Iterable[str], fps: dict[str, Fingerprint]) -> set[str]:
        """Names sharing an object or a memory span with any of ``names`` (as last fingerprinted)."""
        wanted = set(names)
        ids: set[int] = set()
        spans: list[tuple[int, int]] = []
        for n in wanted:
            fp = fps.get(n)
            if fp is not None:
                ids |= fp.ids
                spans.extend(fp.spans)
        found: set[str] = set()
        for n, fp in fps.items():
            if n in wanted:
                continue
            if not ids.isdisjoint(fp.ids) or any(
                s < e2 and s2 < e for s, e in spans for s2, e2 in fp.spans
            ):
                found.add(n)
        return found

    def _record_conservatively(
        self, p: _PendingCell, duration: float, raised: Any, exc: BaseException
    ) -> CellExecution:
        index = len(self.history.executions)
        after = self.user_vars()
        reads = dict(self.history.live)
        for name in list(self.history.live):
            if name not in after:
                self.history.live.pop(name)
                self.fingerprints.pop(name, None)
        for name in after:
            self.history.live[name] = index
            self.fingerprints.pop(name, None)
        hazards = [f"monitor failed: {type(exc).__name__}: {exc}"[:200]]
        if raised is not None:
            hazards.append(f"raised {type(raised).__name__}")
        return CellExecution(
            index=index, source=p.source, cell_id=p.cell_id, started=p.started, duration=duration,
            reads=reads, writes=sorted(after), deletes=sorted(set(p.before) - set(after)),
            raised=raised is not None, hazards=hazards,
        )

    # -- queries ---------------------------------------------------------------------------------
    def refresh(self) -> dict[str, Fingerprint]:
        """Fingerprint every live variable now (one pass) and reconcile with the history.

        A variable whose fingerprint differs from the one recorded when it was last written was changed
        outside any monitored cell (a background thread, a cell run while monitoring was paused): no
        cell can reproduce it, so it is marked pre-existing, which forces the planner to store it.
        """
        current = self.user_vars()
        fps: dict[str, Fingerprint] = {}
        with FingerprintSession() as session:
            for name, value in current.items():
                fps[name] = fingerprint(value, session=session)
        for name in list(self.history.live):
            if name not in current:
                self.history.live.pop(name)
        for name, fp in fps.items():
            old = self.fingerprints.get(name)
            if name not in self.history.live:
                self.history.live[name] = PREEXISTING
            elif old is not None and old.digest is not None and fp.digest is not None and changed(old, fp):
                log.info("nbmigrate: %s changed outside a monitored cell; it will be stored", name)
                self.history.live[name] = PREEXISTING
            self.fingerprints[name] = fp
        return fps

    def groups(self, fps: dict[str, Fingerprint]) -> list[list[str]]:
        return group_covariables(fps)
