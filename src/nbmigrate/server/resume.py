"""Resuming hibernated sessions: restore a notebook's checkpoint into the kernel started for it.

jupyter_server has no hook for "a kernel was started for this notebook", so the extension wraps its
session manager's ``create_session`` (the call behind ``POST /api/sessions``, which JupyterLab and
Notebook make when a notebook is opened): once the session exists, if the store holds a hibernation
record for the session's path, the checkpoint is restored into the session's kernel before the
request returns -- so before the frontend can even send the user's first cell. Keying on the
session's path, not on the kernel's start, also covers a kernel started with ``POST /api/kernels``
without a path (it runs in the server's folder): the restore is told to move to the notebook's folder
first.

A successful resume deletes the record (the checkpoint stays in the store). A failed one keeps both,
writes why into the record, logs how to retry, and leaves a notice that the user sees at the top of
their next cell's output; so does a successful one ("resumed ... from checkpoint ...").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from nbmigrate.errors import NbmigrateError

from .kernels import run_kernel_operation
from .records import HibernationRecord

if TYPE_CHECKING:
    from .hibernation import Elastic


class NothingToResume(NbmigrateError):
    """No hibernation record under that key in the store."""


class ResumeFailed(NbmigrateError):
    """The restore failed; the record and the checkpoint are kept for a retry."""


def retry_hint(elastic: Elastic, record: HibernationRecord) -> str:
    base = str(getattr(elastic.app.serverapp, "base_url", "/"))
    return (f"retry with POST {base}api/nbmigrate/hibernated/{quote(record.key, safe='')}/resume, or run "
            f"`%restore {record.url}` in a fresh kernel")


def _success_notice(record: HibernationRecord, report: dict[str, Any], seconds: float) -> str:
    variables = sum(len(report.get(k) or []) for k in ("verified", "unverified", "mismatched", "lossy"))
    text = (f"nbmigrate: resumed the session hibernated at {record.hibernated_at} ({record.reason}) from checkpoint "
            f"{record.checkpoint}: {variables} variables in {seconds:.1f} s ({len(report.get('loaded') or [])} "
            f"loaded, {len(report.get('replayed_cells') or [])} cells replayed)")
    if not report.get("ok"):
        text += "; NOT all verified: " + "; ".join(_problems(report))
    return text


def _problems(report: dict[str, Any]) -> list[str]:
    found = [f"{k}: {', '.join(report[k])}" for k in ("mismatched", "missing") if report.get(k)]
    return found + [str(p) for p in report.get("problems") or []] + [
        f"cell {f.get('cell')} failed" if isinstance(f, dict) else str(f) for f in report.get("failures") or []]


async def _notice(elastic: Elastic, kernel_id: str, text: str) -> None:
    """Leave ``text`` for the user's next cell; a kernel that cannot take it only costs the notice."""
    try:
        await run_kernel_operation(elastic.kernel_manager, kernel_id, "notice", timeout=60, text=text)
    except (NbmigrateError, TimeoutError) as exc:
        elastic.log.warning("nbmigrate: could not show the resume message in kernel %s: %s", kernel_id, exc)


async def resume(elastic: Elastic, key: str, kernel_id: str) -> dict[str, Any]:
    """Restore the checkpoint recorded under ``key`` into the server's kernel ``kernel_id``.

    Returns ``{"record", "report", "seconds"}``. Raises :class:`NothingToResume` or
    :class:`ResumeFailed` (the record then says why, and stays for a retry).
    """
    records = elastic.records()
    record = await asyncio.to_thread(records.read, key)
    if record is None:
        raise NothingToResume(f"no hibernated session {key!r} in {records.url}")
    cwd = elastic.kernel_manager.cwd_for_path(record.path) if record.path else None
    started = time.monotonic()
    elastic.busy.add(kernel_id)
    try:
        report = await run_kernel_operation(
            elastic.kernel_manager, kernel_id, "restore", timeout=float(elastic.app.operation_timeout),
            url=record.url, trust=False, partial=False, storage_options=dict(elastic.app.storage_options) or None,
            cwd=cwd)
    except (NbmigrateError, TimeoutError) as exc:
        record.last_error = f"{type(exc).__name__}: {exc}"
        await asyncio.to_thread(records.write, record)
        message = (f"could not resume {key} from checkpoint {record.checkpoint} into kernel {kernel_id}: "
                   f"{record.last_error}. The checkpoint and its record are kept: {retry_hint(elastic, record)}")
        elastic.log.error("nbmigrate: %s", message)
        await _notice(elastic, kernel_id, f"nbmigrate: {message}")
        raise ResumeFailed(message) from None
    finally:
        elastic.busy.discard(kernel_id)
    seconds = time.monotonic() - started
    if report.get("ok"):
        await asyncio.to_thread(records.delete, key)
        elastic.log.info("nbmigrate: resumed %s into kernel %s from checkpoint %s in %.2f s", key, kernel_id,
                         record.checkpoint, seconds)
    else:
        record.last_error = "restored, but not verified: " + "; ".join(_problems(report))
        await asyncio.to_thread(records.write, record)
        elastic.log.error("nbmigrate: resumed %s into kernel %s from checkpoint %s, but %s; the record is kept: %s",
                          key, kernel_id, record.checkpoint, record.last_error, retry_hint(elastic, record))
    await _notice(elastic, kernel_id, _success_notice(record, report, seconds))
    return {"record": record.to_dict(), "report": report, "seconds": seconds}


async def on_session_created(elastic: Elastic, model: dict[str, Any]) -> None:
    """After ``POST /api/sessions``: resume the notebook's hibernated session, or (``resume="manual"``)
    tell the user it exists. Never fails the session request: problems are logged and shown."""
    path, kernel_id = model.get("path"), (model.get("kernel") or {}).get("id")
    if not path or not kernel_id:
        return
    try:
        record = await asyncio.to_thread(elastic.records().read, path)
    except NbmigrateError as exc:
        elastic.log.error("nbmigrate: cannot look for a hibernated session of %s: %s", path, exc)
        return
    if record is None:
        return
    if elastic.app.resume == "manual":
        how = retry_hint(elastic, record).replace("retry", "resume it", 1)
        await _notice(elastic, kernel_id, f"nbmigrate: this notebook has a hibernated session (checkpoint "
                      f"{record.checkpoint}, {record.hibernated_at}): {how}")
        return
    with contextlib.suppress(NbmigrateError):  # logged, recorded and shown by resume()
        await resume(elastic, path, kernel_id)


def install_session_hook(elastic: Elastic) -> Any:
    """Wrap the server's ``session_manager.create_session`` (see the module docstring); returns the
    original, which starts a session without resuming anything."""
    manager = elastic.session_manager
    original = manager.create_session

    async def create_session(*args: Any, **kwargs: Any) -> dict[str, Any]:
        model: dict[str, Any] = await original(*args, **kwargs)
        await on_session_created(elastic, model)
        return model

    manager.create_session = create_session
    return original
