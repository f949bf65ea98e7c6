"""Restore: verify everything, then load stored groups and replay cells in their original order.

Order of work, and why:

1. Read the manifest and check its signature (:mod:`nbmigrate.store`): nothing else is trusted before.
2. Check the environment: every module the stored groups and module bindings need must import here
   with the same major version; problems are reported by package and variable before anything runs.
3. Check the files the replayed cells read: a cell that read ``sales.csv`` is only replayed if the
   file here is the one it read.
4. Read and verify every needed blob (checksums) — still nothing unpickled (invariant 5).
5. Walk the history in order. A stored variable is *injected* right after the CE that wrote its live
   version; a replayed CE runs when its turn comes. Worked example::

       CE 0: df = load()            (replayed: cheap)
       CE 1: model = fit(df)        (stored: slow)       -> injected after CE 1
       CE 2: pred = model.predict(df)  (replayed)        -> sees df from CE 0 and model injected

   Stored groups are unpickled once (one stream per group, so aliasing inside a group survives) and
   each name is bound at its own point; at the end every stored name is bound again, in case a
   replayed cell rebound it on the way.
6. Drop names that replay created but that were not live at checkpoint time, verify every variable's
   digest against the checkpoint, re-install the history so monitoring continues (A -> B -> C).

With ``partial``, a stored group whose blob is missing or corrupt is recomputed instead when its
whole lineage can be replayed here (no hazard, inputs available, files unchanged); its digest is
verified like any recomputed variable. Otherwise its variables are reported missing, by name.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Iterator
from typing import Any

from .environment import apply_process_state, check
from .errors import EnvironmentMismatchError, IntegrityError, RestoreError, SerializationError
from .files import rebase, same_content, stamp
from .fingerprint import Fingerprint, FingerprintSession, fingerprint
from .history import PREEXISTING, HistoryGraph
from .manifest import GroupRecord, Manifest
from .monitor import Monitor
from .namespace import is_user_name, type_name
from .reports import Progress, ReplayFailure, RestoreReport
from .serialize import load_group, unpack_parts
from .store import CheckpointStore


class _Restorer:
    def __init__(self, monitor: Monitor, store: CheckpointStore, manifest: Manifest, *, partial: bool,
                 progress: Progress | None) -> None:
        self.monitor = monitor
        self.shell = monitor.shell
        self.ns: dict[str, Any] = monitor.shell.user_ns
        self.store = store
        self.manifest = manifest
        self.partial = partial
        self.progress = progress
        self.history = HistoryGraph.from_dict(manifest.history)
        self.problems: list[str] = []
        self.failures: list[ReplayFailure] = []
        self.broken: set[str] = set()
        self.lost: set[str] = set()
        """Stored variables whose blob could not be read (missing, truncated, corrupt)."""
        self.recovery: dict[str, set[int]] = {}
        """Lost variables recomputed instead (``partial``): the cells that recompute each."""
        self.blobs: dict[int, memoryview] = {}
        self.loaded: dict[int, dict[str, Any]] = {}
        self.loaded_bytes = 0
        self.replay_seconds = 0.0
        self.replayed: list[int] = []

    # -- checks before anything runs ---------------------------------------------------------------
    def check_environment(self) -> None:
        needs: dict[str, set[str]] = {}
        for g in self.manifest.groups:
            if g.stored:
                for module in g.modules:
                    needs.setdefault(module, set()).update(g.names)
        for binding in self.manifest.modules:
            needs.setdefault(binding.module, set()).add(binding.name)
        problems = check(self.manifest.environment, needs)
        if problems and not self.partial:
            raise EnvironmentMismatchError(
                "this kernel cannot restore the checkpoint:\n" + "\n".join(f"  {p}" for p in problems)
                + "\nInstall what is missing, or restore with --partial to restore everything else.")
        for p in problems:
            self.problems.append(str(p))
            self.broken.update(p.variables)

    def needed_by(self, cells: set[int]) -> list[str]:
        """Live names of recomputed groups whose recomputation needs any of ``cells``."""
        names: list[str] = []
        for g in self.manifest.groups:
            if g.stored:
                continue
            writers = {self.history.live.get(n, PREEXISTING) for n in g.names}
            if self.history.lineage(writers) & cells:
                names.extend(g.names)
        return sorted(names)

    def file_problems(self, cells: list[int]) -> dict[int, list[str]]:
        """Per cell of ``cells``, the files it read that are missing or different here."""
        src_cwd = self.manifest.environment.cwd
        here = os.getcwd()
        found: dict[int, list[str]] = {}
        for index in cells:
            for st in self.history.executions[index].files_read:
                path = rebase(st.path, src_cwd, here)
                now = stamp(path)
                if not same_content(st, now):
                    what = "is missing" if now.size < 0 else "differs from the one it read"
                    found.setdefault(index, []).append(f"cell {index} reads {path}, which {what} here")
        return found

    def check_files(self) -> set[int]:
        """Replayed cells whose input files differ here; returns the cells that cannot be replayed."""
        found = self.file_problems(list(self.manifest.plan.replay))
        for messages in found.values():
            self.problems.extend(messages)
        bad = set(found)
        if bad and not self.partial:
            raise RestoreError("cannot replay the cells that recompute some variables:\n"
                               + "\n".join(f"  {p}" for p in self.problems)
                               + "\nRestore the files, or restore with --partial to restore everything else.")
        return bad

    def read_blobs(self) -> None:
        stored = [g for g in self.manifest.groups if g.stored and g.blob is not None]
        total = sum(g.blob.size for g in stored if g.blob is not None)
        wanted = [g for g in stored if not set(g.names) & self.broken]
        done = 0

        def on_bytes(n: int) -> None:
            nonlocal done
            done += n
            if self.progress is not None:
                self.progress("read", done, total)

        results = self.store.read_blobs([g.blob for g in wanted if g.blob is not None], progress=on_bytes)
        for g, result in zip(wanted, results, strict=True):
            if not isinstance(result, IntegrityError):
                self.blobs[g.key] = result
                continue
            message = f"{result} (holds {', '.join(g.names)})"
            if not self.partial:
                raise IntegrityError(message) from result
            self.problems.append(message)
            self.broken.update(g.names)
            self.lost.update(g.names)

    def recover(self) -> set[int]:
        """Cells to replay so that stored groups lost with their blob are recomputed instead (``partial``).

        A group qualifies when every cell of its lineage can be replayed here: no hazard, no read of a
        version that only an unusable variable or the time before monitoring holds, input files as
        they were. Returns those cells; the others stay missing, and the report says why.
        """
        cells: set[int] = set()
        for g in self.manifest.groups:
            if not (g.stored and self.lost.intersection(g.names)):
                continue
            writers = {self.history.live.get(n, PREEXISTING) for n in g.names}
            need = self.history.lineage(writers)
            unusable = self.broken - set(g.names)
            why = "it was set before monitoring began" if PREEXISTING in writers else None
            for index in sorted(need):
                if why is not None:
                    break
                ce = self.history.executions[index]
                if ce.hazards or ce.raised:
                    why = f"cell {index} cannot be replayed ({'; '.join(ce.hazards) or 'raised'})"
                    break
                for name, version in ce.reads.items():
                    live = self.history.live.get(name)
                    if (version == PREEXISTING and live != PREEXISTING) or (version == live and name in unusable):
                        why = f"cell {index} reads `{name}`, which cannot be restored"
                        break
            files = self.file_problems(sorted(need)) if why is None else {}
            if files:
                why = next(iter(files.values()))[0]
            names = ", ".join(g.names)
            if why is not None:
                self.problems.append(f"{names} cannot be recomputed instead: {why}")
                continue
            self.problems.append(f"{names} recomputed instead, by replaying cells {sorted(need)}")
            cells |= need
            for name in g.names:
                self.recovery[name] = need
        return cells

    # -- the timeline ----------------------------------------------------------------------------
    def group_values(self, g: GroupRecord) -> dict[str, Any] | None:
        if g.key in self.loaded:
            return self.loaded[g.key]
        data = self.blobs.pop(g.key, None)
        if data is None or g.blob is None:
            return None
        pickle_bytes, buffers = unpack_parts(
            [_part_from_record(p, data) for p in g.blob.parts], data)
        try:
            values = load_group(pickle_bytes, buffers, self.ns)
        except SerializationError as exc:
            self.problems.append(str(exc))
            self.broken.update(g.names)
            return None
        self.loaded[g.key] = values
        self.loaded_bytes += g.blob.size
        return values

    def inject(self, name: str) -> None:
        if name in self.broken:
            return  # already reported (environment check, bad blob, failed import): once is enough
        binding = self.module_of.get(name)
        if binding is not None:
            try:
                self.ns[name] = importlib.import_module(binding)
            except Exception as exc:
                self.problems.append(f"could not import {binding} for `{name}`: {exc!r}")
                self.broken.add(name)
            return
        g = self.group_of[name]
        values = self.group_values(g)
        if values is not None and name in values:
            self.ns[name] = values[name]

    def replay(self, index: int) -> None:
        from IPython.utils.capture import capture_output

        ce = self.history.executions[index]
        t = time.perf_counter()
        with capture_output(display=True), _quiet_tracebacks(self.shell):
            result = self.shell.run_cell(ce.source, store_history=False, silent=True)
        self.replay_seconds += time.perf_counter() - t
        error = result.error_in_exec or result.error_before_exec
        if error is not None:
            affected = sorted(set(self.needed_by({index})) | {n for n, c in self.recovery.items() if index in c})
            self.failures.append(ReplayFailure(cell=index, error=f"{type(error).__name__}: {error}",
                                               variables=affected))
            self.broken.update(affected)

    def run(self) -> RestoreReport:
        t0 = time.perf_counter()
        m = self.manifest
        self.module_of = {b.name: b.module for b in m.modules}
        self.group_of = {n: g for g in m.groups for n in g.names}
        # sys.path entries first: a module the session imported from a folder it added to sys.path
        # (`sys.path.insert(0, "nb_tmp")`) is only importable once that entry is back.
        apply_process_state(m.environment, self.monitor.env_baseline)
        self.check_environment()
        skip = self.check_files()
        if skip:
            self.broken.update(self.needed_by(skip))
        self.read_blobs()
        recovered = self.recover() if self.lost else set()

        before = set(self.ns)
        injections = sorted(
            [(self.history.live.get(n, PREEXISTING), n) for g in m.groups if g.stored for n in g.names]
            + [(self.history.live.get(b.name, PREEXISTING), b.name) for b in m.modules]
        )
        replay = sorted((set(m.plan.replay) | recovered) - skip)
        self.replayed = replay
        self.monitor.paused = True
        try:
            k = 0
            for done, index in enumerate(replay):
                while k < len(injections) and injections[k][0] < index:
                    self.inject(injections[k][1])
                    k += 1
                self.replay(index)
                if self.progress is not None:
                    self.progress("replay", done + 1, len(replay))
            for _, name in injections:
                self.inject(name)  # bind every stored name again: a replayed cell may have rebound it
            live = set(self.history.live)
            hidden = self.shell.user_ns_hidden
            for name in set(self.ns) - before - live:
                if is_user_name(name, self.ns[name], hidden):
                    del self.ns[name]
            return self.verify(t0)
        finally:
            self.monitor.paused = False

    def verify(self, t0: float) -> RestoreReport:
        verified: list[str] = []
        unverified: list[str] = []
        mismatched: list[str] = []
        lossy: list[str] = []
        missing: list[str] = []
        fps: dict[str, Fingerprint] = {}
        with FingerprintSession() as session:
            for rec in self.manifest.variables:
                if rec.name not in self.ns:
                    missing.append(rec.name)
                    continue
                value = self.ns[rec.name]
                fp = fingerprint(value, session=session)
                fps[rec.name] = fp
                if type_name(value) != rec.type:
                    mismatched.append(f"{rec.name} (type {type_name(value)}, expected {rec.type})")
                elif rec.digest is None:
                    unverified.append(rec.name)
                elif fp.digest == rec.digest:
                    verified.append(rec.name)
                elif rec.stored and rec.name not in self.recovery:
                    # Loaded from verified bytes, yet different: the type's own pickling drops state
                    # (e.g. scikit-learn's Bunch discards its __dict__). Reported, not fatal.
                    lossy.append(rec.name)
                else:
                    mismatched.append(rec.name)
        for b in self.manifest.modules:
            if b.name not in self.ns:
                missing.append(b.name)
        history = self.history
        for name in missing:
            history.live.pop(name, None)
        self.monitor.adopt(history, fps)
        loaded = sorted(n for values in self.loaded.values() for n in values)
        return RestoreReport(
            source=self.store.url, loaded=loaded, loaded_bytes=self.loaded_bytes,
            replayed_cells=sorted(set(self.manifest.plan.replay) | set(self.replayed)),
            replay_seconds=self.replay_seconds,
            reimported=sorted(b.name for b in self.manifest.modules if b.name in self.ns),
            verified=sorted(verified), unverified=sorted(unverified), mismatched=sorted(mismatched),
            lossy=sorted(lossy),
            missing=sorted(missing), failures=self.failures, problems=self.problems,
            seconds=time.perf_counter() - t0,
        )


@contextlib.contextmanager
def _quiet_tracebacks(shell: Any) -> Iterator[None]:
    """A replayed cell that raises is reported by the restore (REPLAY FAILED, with its variables).

    ``capture_output`` does not catch tracebacks: a kernel publishes them as an error of the cell that
    runs ``%restore``, which would look failed even when ``--partial`` restored everything else.
    """
    saved = {name: shell.__dict__.get(name) for name in ("showtraceback", "showsyntaxerror")}
    shell.showtraceback = shell.showsyntaxerror = lambda *args, **kwargs: None
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                shell.__dict__.pop(name, None)
            else:
                setattr(shell, name, value)


def _part_from_record(part: Any, data: memoryview) -> Any:
    from .serialize import Part

    view = memoryview(data)[part.offset: part.offset + part.length]
    return Part(kind=part.kind, codec=part.codec, raw_length=part.raw_length, payload=view)


def restore(
    monitor: Monitor,
    source: str,
    *,
    trust: bool = False,
    partial: bool = False,
    storage_options: dict[str, object] | None = None,
    progress: Progress | None = None,
) -> RestoreReport:
    """Restore the checkpoint at ``source`` into the monitored kernel and verify it."""
    store = CheckpointStore(source, storage_options=storage_options)
    manifest = store.read_manifest(trust=trust)
    return _Restorer(monitor, store, manifest, partial=partial, progress=progress).run()
