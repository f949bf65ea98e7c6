"""REST endpoints of the nbmigrate server extension, under ``<base_url>/api/nbmigrate/``.

Authentication and XSRF are the server's own (``APIHandler``, ``@web.authenticated``, and
jupyter_server's ``authorized`` on resource ``kernels``/action ``execute`` for anything that runs
code in a kernel, resource ``nbmigrate`` with read/write for the store)::

    GET  /api/nbmigrate                                   {"version", "store_url"}
    POST /api/nbmigrate/kernels/<id>/checkpoint           {"url"?, "bandwidth"?, "prefer"?, "best_effort"?,
                                                           "storage_options"?} -> CheckpointReport + "url"
                                                           (+ "name" when it went to the store)
    POST /api/nbmigrate/kernels/<id>/restore              {"url" | "name", "trust"?, "partial"?,
                                                           "storage_options"?} -> RestoreReport (+ "ok")
    GET  /api/nbmigrate/kernels/<id>/plan?bandwidth=&prefer=   {"text"}
    GET  /api/nbmigrate/kernels/<id>/status               {"text"}
    GET  /api/nbmigrate/kernels/<id>/ping                 {"version", "monitoring", "execution_count"}
    GET  /api/nbmigrate/checkpoints                       {"store_url", "checkpoints": [{"name", "url"}]}
    GET  /api/nbmigrate/checkpoints/<name>/archive        the checkpoint as a tar stream (archive.py)
    PUT  /api/nbmigrate/checkpoints/<name>/archive        a tar stream -> checkpoint <name> in the store
    POST /api/nbmigrate/drain                             {"deadline"?} -> {"deadline", "kernels": [outcome]}
    GET  /api/nbmigrate/hibernated                        {"url", "hibernated": [record]}
    POST /api/nbmigrate/hibernated/<path>/resume          {"kernel_id"?} -> {"kernel_id", "session_id",
                                                           "record", "report", "seconds"}

Errors are JSON ``{"message": ...}``: 400 for a malformed request (unknown field, bad checkpoint name,
an archive member that has no place in a checkpoint), 404 for an unknown kernel or checkpoint; an
nbmigrate error raised in the kernel is 409 (500 for an unexpected one) with ``"type"``, its
exception class, so a client re-raises it as such (:func:`nbmigrate.ops.raise_for`).

A checkpoint without a URL goes to ``<store_url>/<kernel id>-<UTC time>``. Checkpoint names are
``[A-Za-z0-9._-]{1,128}`` but not ``.`` or ``..``: a name is one path segment in the store, never more.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from nbmigrate import __version__
from nbmigrate.costs import parse_bandwidth
from nbmigrate.errors import IntegrityError, ManifestError, NbmigrateError, StoreError
from nbmigrate.remote import KernelError

from .archive import CONTENT_TYPE, ArchiveError, ArchiveReceiver, ArchiveSource
from .drain import drain
from .kernels import KernelNotAnswering, UnknownKernel, checkpoint_name, run_kernel_operation
from .resume import NothingToResume, ResumeFailed, resume

if TYPE_CHECKING:
    from .extension import NbmigrateExtension

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PREFER = ("balanced", "restore", "checkpoint")
_KERNEL_OPS = {"checkpoint": "POST", "restore": "POST", "plan": "GET", "status": "GET", "ping": "GET"}


class ApiError(web.HTTPError):
    """An error answered as JSON ``{"message", "type"?}`` with the message exactly as given."""

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(status)  # no log_message: tornado would %-format it, and it may hold user text
        self.message = message
        self.error_type = error_type


def check_name(name: str) -> str:
    """``name`` if it is a valid checkpoint name (one path segment), else a 400."""
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ApiError(400, f"invalid checkpoint name {name!r}: use 1 to 128 letters, digits, '.', '_' or '-' "
                       "(not '.' or '..')")
    return name


class NbmigrateHandler(ExtensionHandlerMixin, APIHandler):
    """Common parts: the extension's configuration, JSON errors, strict JSON bodies."""

    auth_resource = "nbmigrate"

    @property
    def app(self) -> NbmigrateExtension:
        return cast("NbmigrateExtension", self.extensionapp)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(exc, ApiError):
            super().write_error(status_code, **kwargs)
            return
        body: dict[str, Any] = {"message": exc.message}
        if exc.error_type is not None:
            body["type"] = exc.error_type
        self.log.warning("nbmigrate: %s %s -> %d: %s", self.request.method, self.request.path, status_code,
                         exc.message)
        self.finish(json.dumps(body))

    def json_body(self, allowed: tuple[str, ...]) -> dict[str, Any]:
        """The request's JSON object (``{}`` when empty), with only the ``allowed`` keys."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise ApiError(400, f"unknown field {unknown[0]!r} (accepted: {', '.join(allowed)})")
        return body


Method = TypeVar("Method", bound=Callable[..., Any])


def _authorized_execute(method: Method) -> Method:
    """jupyter_server's ``@authorized(action="execute")`` (typed): these requests run code in the kernel."""
    decorator: Callable[[Method], Method] = authorized(action="execute")
    return decorator(method)


def _typed(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ApiError(400, f"{key!r} must be {what}, got {json.dumps(value)[:80]}")
    return value


def _bandwidth(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_bandwidth(value)
        except ValueError as exc:
            raise ApiError(400, f"'bandwidth': {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ApiError(400, f"'bandwidth' must be a positive number of bytes per second or a string like "
                       f"'100MB/s', got {json.dumps(value)[:80]}")
    return float(value)


def _prefer(value: Any) -> str | None:
    if value is not None and value not in _PREFER:
        raise ApiError(400, f"'prefer' must be one of {', '.join(_PREFER)}, got {json.dumps(value)[:80]}")
    return cast("str | None", value)


def _status_for(exc: NbmigrateError) -> int:
    """409 for an nbmigrate error with a cause the user can act on; 500 for anything unexpected."""
    return 500 if type(exc) in (NbmigrateError, KernelError) else 409


class KernelOperationHandler(NbmigrateHandler):
    """``/api/nbmigrate/kernels/<id>/<op>``: one operation (:mod:`nbmigrate.ops`) in a server's kernel."""

    auth_resource = "kernels"

    @web.authenticated
    @_authorized_execute
    async def post(self, kernel_id: str, op: str) -> None:
        self._method_for(op, "POST")
        if op == "checkpoint":
            body = self.json_body(("url", "bandwidth", "prefer", "best_effort", "storage_options"))
            params, name = self._checkpoint_params(kernel_id, body)
            report = await self._run(kernel_id, op, params)
            report["url"] = params["url"]
            if name is not None:
                report["name"] = name
        else:
            body = self.json_body(("url", "name", "trust", "partial", "storage_options"))
            report = await self._run(kernel_id, op, self._restore_params(body))
        self.finish(json.dumps(report))

    @web.authenticated
    @_authorized_execute
    async def get(self, kernel_id: str, op: str) -> None:
        self._method_for(op, "GET")
        params: dict[str, Any] = {}
        if op == "plan":
            bandwidth = _bandwidth(self.get_query_argument("bandwidth", None))
            prefer = _prefer(self.get_query_argument("prefer", None))
            params = {k: v for k, v in (("bandwidth", bandwidth), ("prefer", prefer)) if v is not None}
        self.finish(json.dumps(await self._run(kernel_id, op, params)))

    def _method_for(self, op: str, method: str) -> None:
        if _KERNEL_OPS[op] != method:
            raise ApiError(405, f"{op} is a {_KERNEL_OPS[op]} request")

    def _checkpoint_params(self, kernel_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        url = _typed(body, "url", str, "a store URL")
        options = _typed(body, "storage_options", dict, "an object")
        name = None
        if not url:
            name = check_name(checkpoint_name(kernel_id))
            url = self.app.checkpoint_url(name)
            if options is None and self.app.storage_options:
                options = dict(self.app.storage_options)
        params = {
            "url": url,
            "bandwidth": _bandwidth(body.get("bandwidth")),
            "prefer": _prefer(body.get("prefer")) or "balanced",
            "best_effort": bool(_typed(body, "best_effort", bool, "true or false")),
            "storage_options": options,
        }
        return params, name

    def _restore_params(self, body: dict[str, Any]) -> dict[str, Any]:
        url = _typed(body, "url", str, "a store URL")
        name = _typed(body, "name", str, "a checkpoint name")
        options = _typed(body, "storage_options", dict, "an object")
        if bool(url) == bool(name):
            raise ApiError(400, "give the checkpoint to restore as 'url' (any store URL) or 'name' (a checkpoint "
                           "in this server's store), not both")
        if name:
            url = self.app.checkpoint_url(check_name(name))
            if options is None and self.app.storage_options:
                options = dict(self.app.storage_options)
        return {
            "url": url,
            "trust": bool(_typed(body, "trust", bool, "true or false")),
            "partial": bool(_typed(body, "partial", bool, "true or false")),
            "storage_options": options,
        }

    async def _run(self, kernel_id: str, op: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await run_kernel_operation(self.kernel_manager, kernel_id, op,
                                              timeout=float(self.app.operation_timeout), **params)
        except UnknownKernel as exc:
            raise ApiError(404, str(exc)) from None
        except KernelNotAnswering as exc:
            raise ApiError(409, str(exc)) from None
        except TimeoutError as exc:
            raise ApiError(504, str(exc)) from None
        except NbmigrateError as exc:
            raise ApiError(_status_for(exc), str(exc), type(exc).__name__) from None


class InfoHandler(NbmigrateHandler):
    """``/api/nbmigrate``: the extension is here, and the token works."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"version": __version__, "store_url": self.app.store_url}))


class CheckpointsHandler(NbmigrateHandler):
    """``/api/nbmigrate/checkpoints``: the checkpoints in the server's store."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from nbmigrate.store import CheckpointStore

        base = str(self.app.store_url).rstrip("/")

        def listing() -> list[str]:
            # Listing reads no manifest, so it needs no signing key (and must not create one).
            return CheckpointStore(base, storage_options=self.app.storage_options, key=b"").list_checkpoints()

        try:
            urls = await asyncio.to_thread(listing)
        except StoreError as exc:
            raise ApiError(500, str(exc), type(exc).__name__) from None
        found = [{"name": url[len(base) + 1:], "url": url} for url in urls if url.startswith(base + "/")]
        self.finish(json.dumps({"store_url": base, "checkpoints": found}))


def _archive_status(exc: Exception) -> int:
    if isinstance(exc, ArchiveError | ManifestError):
        return 400
    return 500


@web.stream_request_body
class ArchiveHandler(NbmigrateHandler):
    """``/api/nbmigrate/checkpoints/<name>/archive``: a checkpoint out (GET) or in (PUT) as a tar stream.

    PUT streams the body into the store as it arrives (:class:`~.archive.ArchiveReceiver`), so the
    checks that must come before the first byte is written -- authentication, authorization, name,
    size -- are made in :meth:`prepare`: ``@web.authenticated`` on ``put`` only runs once the whole
    body has been received.
    """

    _receiver: ArchiveReceiver | None = None
    _error: ApiError | None = None
    _lock: asyncio.Lock | None = None

    async def prepare(self, *, _redirect_to_login: bool = True) -> None:
        # (the keyword is JupyterHandler's; APIHandler, our base, never redirects to a login page)
        await super().prepare()
        if self.request.method != "PUT":
            return
        user = self.current_user
        if not user:
            raise web.HTTPError(403)
        if not await ensure_async(self.authorizer.is_authorized(self, user, "write", self.auth_resource)):
            raise web.HTTPError(403, "User is not authorized to write on resource: nbmigrate.")
        name = check_name(self.path_kwargs["name"])
        limit = int(self.app.max_archive_bytes)
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the archive is {declared} bytes; this server accepts at most {limit} "
                           "(NbmigrateExtension.max_archive_bytes)")
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):  # always, for a request with a body; HTTP/2 is not served
            connection.set_max_body_size(limit)
        try:
            self._receiver = ArchiveReceiver(self.app.checkpoint_url(name), storage_options=self.app.storage_options)
        except StoreError as exc:
            raise ApiError(500, str(exc), type(exc).__name__) from None
        self._lock = asyncio.Lock()

    async def data_received(self, chunk: bytes) -> None:
        receiver, lock = self._receiver, self._lock
        if receiver is None or lock is None or self._error is not None:
            return  # after a rejected member the rest of the body is read and dropped, then put() answers
        async with lock:
            try:
                await asyncio.to_thread(receiver.feed, chunk)
            except Exception as exc:
                await self._fail(exc)

    async def _fail(self, exc: Exception) -> None:
        receiver = self._receiver
        if isinstance(exc, NbmigrateError):
            self._error = ApiError(_archive_status(exc), str(exc), type(exc).__name__)
        else:
            self.log.exception("nbmigrate: receiving a checkpoint archive failed")
            self._error = ApiError(500, f"receiving the archive failed: {type(exc).__name__}: {exc}")
        if receiver is not None:
            await asyncio.to_thread(receiver.abort)

    def on_connection_close(self) -> None:
        super().on_connection_close()
        receiver, lock = self._receiver, self._lock
        if receiver is None or lock is None or self._error is not None:
            return

        async def abort() -> None:  # after the feed in progress, if any
            async with lock:
                await asyncio.to_thread(receiver.abort)

        self._abort_task = asyncio.ensure_future(abort())

    @web.authenticated
    async def put(self, name: str) -> None:
        receiver, lock = self._receiver, self._lock
        assert receiver is not None and lock is not None  # set by prepare() for every PUT
        async with lock:
            if self._error is None:
                try:
                    received = await asyncio.to_thread(receiver.finish)
                except Exception as exc:
                    await self._fail(exc)
        if self._error is not None:
            raise self._error
        self.log.info("nbmigrate: received checkpoint %s (%d files, %d bytes written)", received.url,
                      received.files, received.bytes)
        self.finish(json.dumps({"name": name, "url": received.url, "files": received.files,
                                "bytes": received.bytes, "skipped": received.skipped}))

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        source = ArchiveSource(self.app.checkpoint_url(check_name(name)), storage_options=self.app.storage_options)
        try:
            await asyncio.to_thread(source.open)
        except (IntegrityError, ManifestError) as exc:
            raise ApiError(409, f"checkpoint {name} cannot be sent: {exc}", type(exc).__name__) from None
        except StoreError as exc:
            missing = "not found" in str(exc)
            status = 404 if missing else 500
            message = f"no checkpoint {name} in {self.app.store_url}" if missing else str(exc)
            raise ApiError(status, message, None if missing else type(exc).__name__) from None
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Content-Length", str(source.size))
        self.set_header("Content-Disposition", f'attachment; filename="{name}.tar"')
        chunks = source.chunks()
        try:
            while (piece := await asyncio.to_thread(next, chunks, None)) is not None:
                self.write(piece)
                await self.flush()
        except StreamClosedError:
            return  # the client went away
        except Exception as exc:
            # The status line is gone; cutting the connection short of Content-Length is how the client
            # learns that this archive is not whole (it also checks every blob's hash itself).
            self.log.error("nbmigrate: sending checkpoint %s failed: %s", name, exc)
            if isinstance(self.request.connection, HTTP1Connection):
                self.request.connection.close()
            return
        finally:
            chunks.close()
        self.finish(set_content_type=CONTENT_TYPE)


class DrainHandler(NbmigrateHandler):
    """``POST /api/nbmigrate/drain``: checkpoint every kernel now, as on SIGTERM, without stopping."""

    auth_resource = "kernels"

    @web.authenticated
    @_authorized_execute
    async def post(self) -> None:
        body = self.json_body(("deadline",))
        deadline = _typed(body, "deadline", (int, float), "a number of seconds")
        if deadline is None:
            deadline = float(self.app.drain_deadline) or 25.0
        if not math.isfinite(deadline) or deadline <= 0:
            raise ApiError(400, f"'deadline' must be a positive number of seconds, got {deadline}")
        outcomes = await drain(self.app.elastic, float(deadline))
        self.finish(json.dumps({"deadline": deadline, "kernels": [o.to_dict() for o in outcomes]}))


class HibernatedHandler(NbmigrateHandler):
    """``GET /api/nbmigrate/hibernated``: the hibernation records in the store."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        records = self.app.elastic.records()
        try:
            found = await asyncio.to_thread(records.records)
        except StoreError as exc:
            raise ApiError(500, str(exc), type(exc).__name__) from None
        self.finish(json.dumps({"url": records.url, "hibernated": [r.to_dict() for r in found]}))


class ResumeHandler(NbmigrateHandler):
    """``POST /api/nbmigrate/hibernated/<key>/resume``: restore a hibernated session now.

    Into ``"kernel_id"`` when given; else into the kernel of the notebook's session (one is started,
    in the notebook's folder, when there is none), or a new kernel for a session-less record.
    """

    auth_resource = "kernels"

    @web.authenticated
    @_authorized_execute
    async def post(self, key: str) -> None:
        body = self.json_body(("kernel_id",))
        kernel_id = _typed(body, "kernel_id", str, "a kernel id")
        elastic = self.app.elastic
        record = await asyncio.to_thread(elastic.records().read, key)
        if record is None:
            raise ApiError(404, f"no hibernated session {key!r} in {self.app.store_url}")
        session_id = None
        if kernel_id is None and record.path:
            for model in await elastic.session_manager.list_sessions():
                if model.get("path") == record.path and model.get("kernel"):
                    session_id, kernel_id = model["id"], model["kernel"]["id"]
            if kernel_id is None:
                model = await self.app.create_session_plainly(path=record.path, type="notebook",
                                                              kernel_name=record.kernel_name)
                session_id, kernel_id = model["id"], model["kernel"]["id"]
        elif kernel_id is None:
            kernel_id = await ensure_async(self.kernel_manager.start_kernel(kernel_name=record.kernel_name))
        try:
            result = await resume(elastic, key, str(kernel_id))
        except NothingToResume as exc:
            raise ApiError(404, str(exc)) from None
        except UnknownKernel as exc:
            raise ApiError(404, str(exc)) from None
        except ResumeFailed as exc:
            raise ApiError(409, str(exc), type(exc).__name__) from None
        self.finish(json.dumps({"kernel_id": kernel_id, "session_id": session_id, **result}))


def routes() -> list[tuple[str, type, dict[str, Any]]]:
    """The URL patterns (before the server's base URL is prepended) and their handlers."""
    return [
        (r"/api/nbmigrate/?", InfoHandler, {}),
        (rf"/api/nbmigrate/kernels/(?P<kernel_id>[^/]+)/(?P<op>{'|'.join(_KERNEL_OPS)})", KernelOperationHandler, {}),
        (r"/api/nbmigrate/checkpoints/?", CheckpointsHandler, {}),
        (r"/api/nbmigrate/checkpoints/(?P<name>[^/]+)/archive", ArchiveHandler, {}),
        (r"/api/nbmigrate/drain", DrainHandler, {}),
        (r"/api/nbmigrate/hibernated/?", HibernatedHandler, {}),
        (r"/api/nbmigrate/hibernated/(?P<key>.+)/resume", ResumeHandler, {}),
    ]
