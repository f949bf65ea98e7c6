"""``compare``: nbmigrate side by side with the alternatives, migrating each benchmark notebook at its end.

Per notebook, the cells not tagged ``after_restore`` run in a *source* kernel; each method checkpoints
it, restores into a fresh kernel (same cwd), and the ``after_restore`` tail runs on the restored kernel.
A method is **correct** on a notebook when every source variable is back with the same type and the
same nbmigrate fingerprint digest, and the tail prints what it prints in the source kernel (run last,
after every checkpoint: the uninterrupted run). A method that restores wrongly is reported INCORRECT,
never timed as a success.

Methods that do not change the kernel they watch share a source run: nbmigrate with its three
preferences share the *monitored* one (nbmigrate loaded before the first cell); DumpSession and
PickleEach share a *plain* one (nothing loaded, as a dill user has it). Kishu and ElasticNotebook
instrument the kernel, so each gets a source run of its own. RerunAll does not run the notebook again:
its restore time is the monitored source run's wall time (the same cells in a fresh kernel), and it
needs no checkpoint. The plain and monitored runs are measured as the ``overhead`` benchmark measures
(per-cell round trips, process-tree CPU, peak RSS, exact time in the monitor's hooks), so one compare
also writes ``overhead.json`` beside its results: the full run needs no separate overhead runs.

A restore that takes longer than :data:`RESTORE_CAP` × RerunAll (re-running the whole notebook), or a
source run slower than :data:`SOURCE_CAP` × the monitored one, is stopped and reported as failed, so one
slow peer cannot hold the run up for many minutes.

Migration time = checkpoint + bytes / bandwidth + restore (kernel start-up excluded everywhere).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbmigrate.notebooks import Cell, code_cells, run_cells, split
from nbmigrate.remote import Kernel
from nbmigrate.reports import human_bytes

from . import overhead
from .common import finish, isolated_environment, log, machine, select_benchmark_notebooks
from .compare_report import RESTORE_CAP, SOURCE_CAP
from .overhead import Run, install_hooks, measure_cells
from .peers import kernels, venv
from .peers.base import Context, Method
from .peers.dill_methods import DumpSession, PickleEach
from .peers.elastic import ElasticKernel, ElasticNotebook
from .peers.kishu_method import Kishu
from .peers.nbmigrate_method import Nbmigrate

RERUN = "RerunAll"
FACTORIES: dict[str, Callable[[], Method]] = {
    "nbmigrate": Nbmigrate,
    "nbmigrate (restore)": lambda: Nbmigrate("restore"),
    "nbmigrate (checkpoint)": lambda: Nbmigrate("checkpoint"),
    "DumpSession": DumpSession,
    "PickleEach": PickleEach,
    "Kishu": Kishu,
    "ElasticNotebook": ElasticNotebook,
    "elastic-kernel": ElasticKernel,
}
ALL_METHODS = ["nbmigrate", "nbmigrate (restore)", "nbmigrate (checkpoint)", RERUN, *list(FACTORIES)[3:]]
BANDWIDTH_SWEEP = [50e6 / 8 * 2 ** (k / 2) for k in range(16)]
"""50 Mbit/s to ~9 Gbit/s in half-octave steps, plus 10 Gbit/s (appended below)."""
BANDWIDTH_SWEEP.append(10e9 / 8)
MONITORED, PLAIN = "shared", "plain"
"""The source-run keys whose runs make the overhead figures (see :attr:`bench.peers.base.Method.source`)."""


@dataclass
class Row:
    notebook: str
    method: str
    status: str = "ok"
    """ok, INCORRECT (restored, but differs from the source), FAILED (an error), skipped (cannot run here)."""
    checkpoint_seconds: float | None = None
    checkpoint_bytes: int | None = None
    restore_seconds: float | None = None
    migration_seconds: float | None = None
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def migration_at(self, bandwidth: float) -> float | None:
        if None in (self.checkpoint_seconds, self.checkpoint_bytes, self.restore_seconds):
            return None
        assert self.checkpoint_seconds is not None and self.checkpoint_bytes is not None
        assert self.restore_seconds is not None
        return self.checkpoint_seconds + self.checkpoint_bytes / bandwidth + self.restore_seconds


select_notebooks = select_benchmark_notebooks


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def _compare(before: dict[str, Any], after: dict[str, Any], lossy: set[str]) -> tuple[list[str], list[str]]:
    """(differences, notes): missing or changed variables are differences; extra names only notes.

    A digest difference of a name in ``lossy`` (its own pickling changes it, see probe_kernel.pickle_lossy)
    is a note, not a difference: its type and the after_restore output still count.
    """
    problems: list[str] = []
    changed_by_pickling: list[str] = []
    for name in sorted(before):
        if name not in after:
            problems.append(f"missing after restore: {name}")
        elif before[name][0] != after[name][0]:
            problems.append(f"type of {name}: {before[name][0]} -> {after[name][0]}")
        elif before[name][1] is not None and before[name][1] != after[name][1]:
            if name in lossy:
                changed_by_pickling.append(name)
            else:
                problems.append(f"value of {name} differs")
    extra = sorted(set(after) - set(before))
    notes = [f"extra names after restore: {', '.join(extra)}"] if extra else []
    if changed_by_pickling:
        notes.append(f"digest changed, as on a plain pickle round trip: {', '.join(changed_by_pickling)}")
    return problems, notes


def _tail(kernel: Kernel, tail: list[Cell], timeout: float) -> str:
    return "".join(r.text for r in run_cells(kernel, tail, timeout=timeout))


@dataclass(frozen=True)
class Caps:
    """Seconds a method's source run (all its cells) and its restore may take before they are stopped."""

    source: float
    restore: float

    @classmethod
    def after(cls, monitored: Run | None) -> Caps | None:
        """The caps for the runs after the monitored one (none before it, or if it failed)."""
        if monitored is None:
            return None
        return cls(source=max(120.0, SOURCE_CAP * monitored.wall_seconds),
                   restore=max(60.0, RESTORE_CAP * monitored.wall_seconds))


def _source_run(notebook: Path, group: list[Method], rows: dict[str, Row], root: Path, specs: dict[str, str],
                timeout: float, bandwidth: float, caps: Caps | None) -> Run | None:
    """One source kernel serving ``group``: prepare, run the cells, checkpoint each, restore each, check.

    Returns the measured run of the notebook's cells (None if it failed). A source run or a restore over
    its ``caps`` is stopped and reported as failed. The reference digests are
    taken after the checkpoints (none of which changes a value), so a method that tracks accesses
    (Kishu) does not see the harness read every variable before its own commit. The source kernel runs
    the tail (the uninterrupted run's output) right then, before any restore: the checkpoints are
    written, and a restore that opens the same store (Kishu's ``.kishudb``) cannot disturb the source.
    """
    main, tail = split(code_cells(notebook))
    work = root / "work"
    work.mkdir(parents=True)
    lead = group[0]
    kernel_name = specs[lead.kernel_module]
    env: dict[str, str] = {}
    for m in group:
        m.setup_workdir(work, notebook)
        env.update(m.kernel_env(work))
    members = [m for m in group if m.name in rows]
    ctxs = {m.name: Context(notebook, work, root / "store" / m.name.replace(" ", "_"), kernel_name, timeout,
                            bandwidth, env) for m in group}
    with kernels.start(kernel_name, work, env) as source:
        for m in group:
            m.prepare(source, ctxs[m.name])
        install_hooks(source, load=False, timeout=timeout)
        deadline = time.monotonic() + (caps.source if caps is not None else float("inf"))

        def execute(cell: Cell) -> object:
            left = min(timeout, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError("no time left")
            return source.execute(lead.wrap(cell.source), timeout=left, allow_error=cell.may_raise)

        run = measure_cells(source, main, execute, monitored=lead.source == MONITORED)
        if run.error is not None:
            if caps is not None and time.monotonic() >= deadline:
                error = (f"source run stopped after {caps.source:.0f} s, over {SOURCE_CAP}× the monitored run "
                         f"(at cell {run.failed_cell})")
            else:
                error = f"source run failed: {run.error}"
            for m in members:
                rows[m.name].status, rows[m.name].error = "FAILED", error
            log(f"  {', '.join(m.name for m in members)}: {error}")
            return None
        log(f"  source run for {', '.join(m.name for m in group)}: {run.wall_seconds:.1f} s, "
            f"{sum(run.hook_seconds):.2f} s in cell hooks")
        done: list[Method] = []
        for m in members:
            row = rows[m.name]
            row.info["source_run_seconds"] = run.wall_seconds
            row.info["source_hook_seconds"] = sum(run.hook_seconds) if run.hook_seconds else None
            try:
                ckpt = m.checkpoint(source, ctxs[m.name])
            except Exception as exc:  # the method failed on this notebook: say so, go on with the others
                row.status, row.error = "FAILED", f"checkpoint: {_first_line(str(exc)) or type(exc).__name__}"
                row.info["error_detail"] = str(exc)[-4000:]
                log(f"  {m.name}: checkpoint FAILED: {row.error}")
                continue
            row.checkpoint_seconds, row.checkpoint_bytes = ckpt.seconds, ckpt.nbytes
            row.info.update(ckpt.info)
            done.append(m)
            log(f"  {m.name}: checkpoint {ckpt.seconds:.2f} s, {human_bytes(ckpt.nbytes)}")
        reference = kernels.probe(source, "summary", timeout=timeout) if done else {}
        lossy = set(kernels.probe(source, "pickle_lossy", timeout=timeout)) if done else set()
        try:
            expected = _tail(source, tail, timeout)
        except Exception as exc:  # the instrumented source itself broke: nothing to compare against
            for m in done:
                rows[m.name].status = "FAILED"
                rows[m.name].error = f"the source kernel could not run the after_restore cells: {_first_line(str(exc))}"
                rows[m.name].info["error_detail"] = str(exc)[-4000:]
            return run
        restored_tails: dict[str, str] = {}
        for m in done:
            row = rows[m.name]
            ctx = ctxs[m.name] if caps is None else dataclasses.replace(ctxs[m.name], timeout=caps.restore)
            t = time.perf_counter()
            try:
                restored = m.restore(ctx)
            except Exception as exc:  # as above
                if caps is not None and time.perf_counter() - t >= caps.restore:
                    row.status = "FAILED"
                    row.error = (f"restore stopped after {caps.restore:.0f} s, over {RESTORE_CAP}× RerunAll "
                                 "(re-running the notebook is faster)")
                    log(f"  {m.name}: {row.error}")
                    continue
                row.status, row.error = "FAILED", f"restore: {_first_line(str(exc)) or type(exc).__name__}"
                row.info["error_detail"] = str(exc)[-4000:]
                log(f"  {m.name}: restore FAILED: {row.error}")
                continue
            log(f"  {m.name}: restore {restored.seconds:.2f} s")
            with restored.kernel as r:
                row.restore_seconds = restored.seconds
                row.info.update(restored.info)
                after = kernels.probe(r, "summary", timeout=timeout)
                row.differences, row.notes = _compare(_without(reference, m.own_names), _without(after, m.own_names),
                                                      lossy)
                try:
                    restored_tails[m.name] = _tail(r, tail, timeout)
                except Exception as exc:  # raised, timed out, or the kernel stopped answering: not usable
                    row.differences.append(f"after_restore cells could not run: {type(exc).__name__}: "
                                           f"{_first_line(str(exc))}")
    for name, text in restored_tails.items():
        if text != expected:
            rows[name].differences.append("after_restore output differs from the source kernel's")
            rows[name].info["tail_diff"] = {"source": expected[-3000:], "restored": text[-3000:]}
    for m in done:
        row = rows[m.name]
        if row.status == "ok" and row.differences:
            row.status = "INCORRECT"
        row.migration_seconds = row.migration_at(bandwidth)
        log(f"  {m.name}: {row.status}, checkpoint {row.checkpoint_seconds or 0:.2f} s "
            f"({human_bytes(row.checkpoint_bytes or 0)}), restore {row.restore_seconds or 0:.2f} s")
    return run


def _without(summary: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in names}


def measure_notebook(notebook: Path, methods: list[Method], rerun: bool, specs: dict[str, str], timeout: float,
                     bandwidth: float) -> tuple[list[Row], dict[str, Any] | None]:
    """The rows of ``notebook``, and its overhead record when both the plain and the monitored run ran."""
    rows = {m.name: Row(notebook.name, m.name) for m in methods}
    groups: dict[str, list[Method]] = {}
    if rerun:
        groups[MONITORED] = []
    for m in methods:
        groups.setdefault(m.source, []).append(m)
    runs: dict[str, Run | None] = {}
    with tempfile.TemporaryDirectory(prefix="nbmigrate-compare-") as tmp:
        for i, (key, group) in enumerate(groups.items()):
            members = group or [_RunOnly()]
            caps = Caps.after(runs.get(MONITORED))
            try:
                runs[key] = _source_run(notebook, members, rows, Path(tmp) / str(i), specs, timeout, bandwidth, caps)
            except Exception as exc:  # a kernel that died or never started: these methods failed here
                log(traceback.format_exc())
                for m in group:
                    if rows[m.name].status == "ok":
                        rows[m.name].status, rows[m.name].error = "FAILED", _first_line(str(exc)) or type(exc).__name__
                runs[key] = None
    out = [rows[m.name] for m in methods]
    if rerun:
        run = runs.get(MONITORED)
        row = Row(notebook.name, RERUN, checkpoint_seconds=0.0, checkpoint_bytes=0,
                  restore_seconds=run.wall_seconds if run is not None else None,
                  notes=["restore = the monitored source run's wall time (the same cells, fresh kernel); not re-run"])
        if run is None:
            row.status, row.error = "FAILED", "the notebook did not run"
        row.migration_seconds = row.migration_at(bandwidth)
        out.insert(min(len(out), sum(1 for m in methods if m.name.startswith("nbmigrate"))), row)
    plain, monitored = runs.get(PLAIN), runs.get(MONITORED)
    record = None
    if plain is not None and monitored is not None and monitored.monitored:
        main, _tail = split(code_cells(notebook))
        order = ["monitored", "plain"] if list(groups).index(MONITORED) < list(groups).index(PLAIN) else \
            ["plain", "monitored"]
        record = overhead.entry(notebook, main, [plain], [monitored], [order])
    return out, record


class _RunOnly(Method):
    """The monitored source run with no method of its own (RerunAll asked for without nbmigrate)."""

    name = "_run_only"

    def prepare(self, kernel: Kernel, ctx: Context) -> None:
        kernel.execute("%load_ext nbmigrate")


def _methods(names: Sequence[str], peers: bool) -> tuple[list[Method], list[Row]]:
    """The methods that can run here, and a skipped row for each that cannot."""
    unknown = [n for n in names if n != RERUN and n not in FACTORIES]
    if unknown:
        raise SystemExit(f"bench compare: unknown method(s) {', '.join(unknown)}; known: {', '.join(ALL_METHODS)}")
    chosen, skipped = [], []
    for name in names:
        if name == RERUN:
            continue
        m = FACTORIES[name]()
        if m.needs_peers and not peers:
            skipped.append(Row("*", name, status="skipped", error="needs the peers' virtualenv"))
        else:
            chosen.append(m)
    return chosen, skipped


def _project_has(packages: Sequence[str]) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(p) is not None for p in packages)


def run(notebooks: list[Path], out: Path, *, quick: bool, timeout: float, bandwidth: float = 274e6,
        methods: Sequence[str] | None = None, peers: bool = True) -> str:
    """Compare, write ``out`` (JSON) and compare.{csv,md} + PNG plots beside it; return the markdown.

    ``methods`` picks from :data:`ALL_METHODS` (default: all). ``peers=False`` never makes the peers'
    virtualenv: kernels then run the project's Python and methods needing peer packages are skipped.
    """
    names = list(methods) if methods is not None else ALL_METHODS
    wanted = [FACTORIES[n]() for n in names if n in FACTORIES]
    needs_venv = any(m.needs_peers or not _project_has(m.needs) for m in wanted)
    interpreter = venv.ensure() if peers and needs_venv else None
    chosen, skipped = _methods(names, interpreter is not None)
    if interpreter is None:
        keep = [m for m in chosen if _project_has(m.needs)]
        skipped += [Row("*", m.name, status="skipped", error=f"needs {', '.join(m.needs)} in the kernel's environment")
                    for m in chosen if m not in keep]
        chosen = keep
    python = str(interpreter) if interpreter is not None else kernels.project_python()
    rows: list[Row] = []
    records: list[dict[str, Any]] = []
    md = ""
    modules = ["ipykernel_launcher", *(m.kernel_module for m in chosen)]
    with isolated_environment(), kernels.kernelspecs(python, modules) as specs:
        meta = machine()
        meta["kernel_python"] = python
        meta["versions"] = venv.versions(python)
        for nb in notebooks:
            log(f"{nb.name}: comparing {', '.join(m.name for m in chosen)}" + (f", {RERUN}" if RERUN in names else ""))
            got, record = measure_notebook(nb, chosen, RERUN in names, specs, timeout, bandwidth)
            rows.extend(got)
            md = _write(out, meta, quick, timeout, bandwidth, names, skipped, rows)  # a killed run keeps its notebooks
            if record is not None:
                records.append(record)
                overhead.write(out.parent / "overhead.json", meta, records,
                               {"quick": quick, "timeout": timeout, "repeat": 1, "source": "compare"})
    log(f"wrote {out} and its .md/.csv/.png companions" + (" and overhead.json" if records else ""))
    return md


def _write(out: Path, meta: dict[str, Any], quick: bool, timeout: float, bandwidth: float, names: list[str],
           skipped: list[Row], rows: list[Row]) -> str:
    from . import compare_report

    data = {"machine": finish(meta),
            "settings": {"quick": quick, "timeout": timeout, "bandwidth": bandwidth, "methods": names},
            "skipped": [asdict(r) for r in skipped], "rows": [asdict(r) for r in rows]}
    return compare_report.write(out, data, rows, bandwidth)
