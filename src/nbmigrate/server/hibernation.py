"""Hibernating idle kernels: checkpoint to the store, record it there, then shut the kernel down.

The order is the point: the checkpoint is taken while the kernel is alive and idle, *before* the
server is asked to shut it down (a graceful shutdown sends SIGTERM after a few seconds and SIGKILL
soon after; a kernel asked to save itself while dying would be killed half-way). A hibernation that
cannot checkpoint leaves the kernel running and says why in the server log, naming the kernel and its
notebook; nothing is shut down unless its record is in the store.

"Idle" is what jupyter_server's own culler uses: the kernel's ``last_activity`` (any iopub message,
any message from a connected client) older than ``hibernate_after`` seconds and an ``execution_state``
that is not busy. A kernel that never loaded nbmigrate has no history to plan with: it is left
running (and logged once) unless ``hibernate_unmonitored`` asks for a best-effort checkpoint, which
then must store every variable, or the kernel keeps running.

:class:`Elastic` holds what hibernation, resume (:mod:`.resume`) and drain (:mod:`.drain`) share: the
server's kernel and session managers, the record store, and which kernels an operation of ours is
using right now. Everything runs on the server's event loop; store I/O goes through threads.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from nbmigrate.errors import NbmigrateError
from nbmigrate.reports import human_bytes

from .kernels import checkpoint_name, kernel_memory, run_kernel_operation
from .records import HibernationRecord, RecordStore, key_for

if TYPE_CHECKING:
    from .extension import NbmigrateExtension


class HibernationDeclined(NbmigrateError):
    """A kernel was not hibernated because doing so would lose part of its session."""


@dataclass
class Outcome:
    """What happened to one kernel in a hibernation or a drain."""

    kernel_id: str
    path: str | None
    status: str
    """``checkpointed``, ``hibernated``, ``failed``, ``declined`` or ``too late``."""
    detail: str = ""
    checkpoint: str | None = None
    memory: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_OWN_MESSAGES = datetime.timedelta(seconds=2)
"""The last iopub messages of our own request reach the server's activity tracker a little after the
request is over; activity within this margin is ours, not the user's."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Elastic:
    """The elastic-session machinery of one server (see the module docstring)."""

    def __init__(self, app: NbmigrateExtension) -> None:
        self.app = app
        self.log = app.log
        self.busy: set[str] = set()
        """Kernels an operation of ours is using: never hibernated meanwhile."""
        self.declined: dict[str, datetime.datetime] = {}
        """Kernels not hibernated, and when: not retried until they are used again."""
        self.drained: dict[str, tuple[str, datetime.datetime]] = {}
        """Kernels checkpointed by a drain that kept running: record key and last_activity at that time."""
        self.stopping = False
        self._check: asyncio.Future[list[Outcome]] | None = None

    @property
    def kernel_manager(self) -> Any:
        return self.app.serverapp.kernel_manager  # type: ignore[union-attr]

    @property
    def session_manager(self) -> Any:
        return self.app.serverapp.session_manager  # type: ignore[union-attr]

    def records(self) -> RecordStore:
        return RecordStore(str(self.app.store_url), dict(self.app.storage_options))

    async def sessions(self) -> dict[str, tuple[str, str]]:
        """kernel id -> (session id, notebook path) for every session with a kernel."""
        found: dict[str, tuple[str, str]] = {}
        for model in await self.session_manager.list_sessions():
            kernel = model.get("kernel") or {}
            if kernel.get("id") and model.get("path"):
                found[kernel["id"]] = (model["id"], model["path"])
        return found

    # -- checkpoint + record (shared with the drain) ------------------------------------------------

    async def checkpoint(self, kernel_id: str, path: str | None, reason: str, *,
                         best_effort: bool) -> tuple[HibernationRecord, dict[str, Any]]:
        """Checkpoint ``kernel_id`` into the store and write its record; the kernel keeps running."""
        kernel = self.kernel_manager.get_kernel(kernel_id)
        memory = kernel_memory(kernel)
        name = checkpoint_name(kernel_id)
        url = self.app.checkpoint_url(name)
        started = time.monotonic()
        self.busy.add(kernel_id)
        try:
            report = await run_kernel_operation(
                self.kernel_manager, kernel_id, "checkpoint", timeout=float(self.app.operation_timeout), url=url,
                bandwidth=None, prefer="balanced", best_effort=best_effort,
                storage_options=dict(self.app.storage_options) or None)
        finally:
            self.busy.discard(kernel_id)
        if report.get("missing") and reason == "idle":
            raise HibernationDeclined(f"the checkpoint cannot hold {', '.join(report['missing'])} (they can be "
                                      "neither stored nor recomputed), so the kernel keeps running")
        record = HibernationRecord(
            key=key_for(path, kernel_id), path=path, checkpoint=name, url=url,
            hibernated_at=_utcnow().isoformat(timespec="seconds"), reason=reason, kernel_id=kernel_id,
            kernel_name=str(getattr(kernel, "kernel_name", "") or "python3"), bytes=int(report.get("stored_bytes", 0)),
            memory_freed=memory, checkpoint_seconds=round(time.monotonic() - started, 3))
        await asyncio.to_thread(self.records().write, record)
        return record, report

    # -- hibernation ---------------------------------------------------------------------------------

    async def hibernate(self, kernel_id: str, session: tuple[str, str] | None) -> Outcome:
        """Checkpoint an idle kernel, record it, then shut it down (with its session). Never raises."""
        session_id, path = session if session else (None, None)
        label = f"kernel {kernel_id}" + (f" ({path})" if path else " (no notebook session)")
        started = time.monotonic()
        try:
            ping = await run_kernel_operation(self.kernel_manager, kernel_id, "ping", timeout=60)
            best_effort = not ping.get("monitoring")
            if best_effort and not self.app.hibernate_unmonitored:
                raise HibernationDeclined(
                    "its notebook never loaded nbmigrate, so its history is unknown and a checkpoint could not "
                    "promise a faithful resume; it keeps running (run `%load_ext nbmigrate` in it, `nbmigrate "
                    "install` once for every new kernel, or set NbmigrateExtension.hibernate_unmonitored=True)")
            record, _ = await self.checkpoint(kernel_id, path, "idle", best_effort=best_effort)
        except (NbmigrateError, TimeoutError) as exc:
            status = "declined" if isinstance(exc, HibernationDeclined) else "failed"
            self.log.warning("nbmigrate: not hibernating %s: %s", label, exc)
            self.declined[kernel_id] = _utcnow() + _OWN_MESSAGES
            return Outcome(kernel_id, path, status, str(exc), seconds=time.monotonic() - started)
        if await self._used_since(kernel_id, ping):
            # The user came back while we were checkpointing: their cell runs, the record is withdrawn.
            await asyncio.to_thread(self.records().delete, record.key)
            self.log.info("nbmigrate: not hibernating %s: it became busy during the checkpoint", label)
            return Outcome(kernel_id, path, "declined", "became busy", seconds=time.monotonic() - started)
        if session_id is not None:
            await self.session_manager.delete_session(session_id)  # also shuts the kernel down
        else:
            await self.kernel_manager.shutdown_kernel(kernel_id)
        memory = human_bytes(record.memory_freed) if record.memory_freed is not None else "an unknown amount"
        self.log.info("nbmigrate: hibernated %s after %.0f s idle: checkpoint %s (%s), %s of memory freed",
                      label, float(self.app.hibernate_after), record.checkpoint, human_bytes(record.bytes), memory)
        return Outcome(kernel_id, path, "hibernated", record.url, record.checkpoint, record.memory_freed,
                       time.monotonic() - started)

    async def _used_since(self, kernel_id: str, ping: dict[str, Any]) -> bool:
        """Whether a user's cell ran or is running since ``ping``. The server's ``execution_state`` alone
        misses a short cell that reached the kernel during the checkpoint and was over before the server
        read its status messages; a second ping is queued behind any such cell and returns the shell's
        execution count, which every user cell moves. A ping that cannot get through counts as used."""
        if getattr(self.kernel_manager.get_kernel(kernel_id), "execution_state", None) == "busy":
            return True
        try:
            now = await run_kernel_operation(self.kernel_manager, kernel_id, "ping", timeout=60)
        except (NbmigrateError, TimeoutError):
            return True
        return bool(now.get("execution_count") != ping.get("execution_count"))

    def tick(self) -> None:
        """The periodic check (a tornado PeriodicCallback): one idle check at a time, in the background."""
        if self.stopping or (self._check is not None and not self._check.done()):
            return
        self._check = asyncio.ensure_future(self.check_idle())

    async def check_idle(self) -> list[Outcome]:
        """Hibernate every kernel idle for longer than ``hibernate_after``, concurrently."""
        await self._forget_outdated_drains()
        limit = float(self.app.hibernate_after)
        if limit <= 0:
            return []
        now = _utcnow()
        sessions = await self.sessions()
        candidates = []
        for kernel_id in list(self.kernel_manager.list_kernel_ids()):
            kernel = self.kernel_manager.get_kernel(kernel_id)
            activity = getattr(kernel, "last_activity", None)
            if kernel_id in self.busy or activity is None or getattr(kernel, "execution_state", None) in (
                    "busy", "dead"):
                continue
            if kernel_id in self.declined and activity <= self.declined[kernel_id]:
                continue  # declined before and not used since: same answer
            if not self.app.hibernate_connected and self.kernel_manager.kernel_model(kernel_id).get("connections"):
                continue
            if (now - activity).total_seconds() <= limit:
                continue
            if kernel_id not in sessions:
                self.log.info("nbmigrate: kernel %s is idle but belongs to no notebook session, so nothing could "
                              "resume it: not hibernated", kernel_id)
                self.declined[kernel_id] = _utcnow()
                continue
            candidates.append(kernel_id)
        return list(await asyncio.gather(*(self.hibernate(k, sessions[k]) for k in candidates)))

    async def _forget_outdated_drains(self) -> None:
        """Withdraw the record of a drained kernel that kept running and was used since: resuming that
        checkpoint later would silently drop the newer work."""
        for kernel_id, (key, activity) in list(self.drained.items()):
            if kernel_id not in self.kernel_manager:
                del self.drained[kernel_id]  # shut down: the record is exactly its last state
                continue
            latest = getattr(self.kernel_manager.get_kernel(kernel_id), "last_activity", activity)
            if latest > activity + _OWN_MESSAGES:
                del self.drained[kernel_id]
                records = self.records()
                record = await asyncio.to_thread(records.read, key)
                if record is None or record.kernel_id != kernel_id or record.reason != "drain":
                    continue  # resumed, or replaced by a newer record: not ours to withdraw
                await asyncio.to_thread(records.delete, key)
                self.log.info("nbmigrate: kernel %s was used after the drain; its drain record %s is withdrawn",
                              kernel_id, key)
