"""Draining a server: checkpoint every live kernel within a deadline (eviction, pod stop, hub request).

On SIGTERM and SIGINT the server drains, then stops as usual (its cleanup shuts the kernels down).
SIGINT matters as much as SIGTERM: jupyter_server without a terminal exits on SIGINT straight from a
KeyboardInterrupt, without running any extension's cleanup, and JupyterHub stops single-user servers
with SIGINT first. A second signal during a drain stops the server at once.

Kernels are checkpointed concurrently (``drain_concurrency`` at a time), smallest resident memory
first: under a deadline, many small sessions saved beat one large one half-written. A kernel not
done when the deadline passes is reported "too late"; a kernel that never loaded nbmigrate gets a
best-effort checkpoint (what can be stored is, the rest is named in the log), since it is about to
be lost anyway. Each checkpoint gets a hibernation record, so the session resumes wherever its
notebook is opened next.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING

from nbmigrate.errors import NbmigrateError
from nbmigrate.reports import human_bytes

from .hibernation import Outcome
from .kernels import kernel_memory

if TYPE_CHECKING:
    from .hibernation import Elastic


async def drain(elastic: Elastic, deadline: float) -> list[Outcome]:
    """Checkpoint every kernel of the server within ``deadline`` seconds; the kernels keep running."""
    manager = elastic.kernel_manager
    sessions = await elastic.sessions()
    sized = sorted((kernel_memory(manager.get_kernel(k)) or 0, k) for k in list(manager.list_kernel_ids()))
    gate = asyncio.Semaphore(max(1, int(elastic.app.drain_concurrency)))
    started = time.monotonic()
    elastic.log.info("nbmigrate: draining %d kernels within %.0f s", len(sized), deadline)

    async def one(kernel_id: str) -> Outcome:
        path = sessions[kernel_id][1] if kernel_id in sessions else None
        async with gate:  # FIFO: the smallest kernels go first
            t = time.monotonic()
            try:
                record, report = await elastic.checkpoint(kernel_id, path, "drain", best_effort=True)
            except (NbmigrateError, TimeoutError) as exc:
                return Outcome(kernel_id, path, "failed", f"{type(exc).__name__}: {exc}",
                               seconds=time.monotonic() - t)
        activity = getattr(manager.get_kernel(kernel_id), "last_activity", None) if kernel_id in manager else None
        if activity is not None:
            elastic.drained[kernel_id] = (record.key, activity)
        missing = report.get("missing") or []
        detail = f"could not store {', '.join(missing)}" if missing else ""
        return Outcome(kernel_id, path, "checkpointed", detail, record.checkpoint, record.memory_freed,
                       time.monotonic() - t)

    tasks = [asyncio.ensure_future(one(kernel_id)) for _, kernel_id in sized]
    if tasks:
        await asyncio.wait(tasks, timeout=deadline)
    outcomes = []
    for task, (memory, kernel_id) in zip(tasks, sized, strict=True):
        if task.done() and not task.cancelled():
            outcomes.append(task.result())
        else:
            task.cancel()
            path = sessions[kernel_id][1] if kernel_id in sessions else None
            outcomes.append(Outcome(kernel_id, path, "too late", f"not done within {deadline:.0f} s",
                                    memory=memory or None, seconds=time.monotonic() - started))
    for o in outcomes:
        label = f"kernel {o.kernel_id}" + (f" ({o.path})" if o.path else "")
        if o.status == "checkpointed":
            elastic.log.info("nbmigrate: drain: %s checkpointed as %s in %.1f s (%s)%s", label, o.checkpoint,
                             o.seconds, human_bytes(o.memory) if o.memory else "memory unknown",
                             f"; {o.detail}" if o.detail else "")
        else:
            elastic.log.error("nbmigrate: drain: %s NOT checkpointed (%s): %s", label, o.status, o.detail)
    return outcomes


def install_signal_handlers(elastic: Elastic) -> None:
    """Drain, then stop the server, on SIGTERM and SIGINT (see the module docstring)."""
    serverapp = elastic.app.serverapp
    assert serverapp is not None
    loop = serverapp.io_loop.asyncio_loop  # type: ignore[attr-defined]
    running: list[asyncio.Future[None]] = []

    async def drain_and_stop(name: str) -> None:
        try:
            outcomes = await drain(elastic, float(elastic.app.drain_deadline))
            saved = sum(o.status == "checkpointed" for o in outcomes)
            elastic.log.warning("nbmigrate: %s: %d of %d kernels checkpointed; stopping the server", name, saved,
                                len(outcomes))
        except Exception:
            elastic.log.exception("nbmigrate: the drain on %s failed; stopping the server", name)
        finally:
            serverapp.stop()

    def on_signal(sig: signal.Signals) -> None:
        elastic.stopping = True
        if running:
            elastic.log.warning("nbmigrate: second %s during the drain: stopping now", sig.name)
            serverapp.stop()
            return
        elastic.log.warning("nbmigrate: received %s: checkpointing every kernel within %.0f s before stopping",
                            sig.name, float(elastic.app.drain_deadline))
        running.append(asyncio.ensure_future(drain_and_stop(sig.name)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError) as exc:  # Windows, not the main thread
            elastic.log.warning("nbmigrate: cannot drain on %s here (%s): kernels are not checkpointed when the "
                                "server is stopped", sig.name, exc)
