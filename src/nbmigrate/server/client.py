"""Driving kernels through nbmigrate's operations protocol: the async half for the server extension,
the blocking REST half for the CLI and scripts.

:func:`run_operation` is the asynchronous twin of :meth:`nbmigrate.remote.Kernel.operation`: one
silent execute request built by :func:`nbmigrate.ops.request_code`, events read from the kernel's
stdout by :class:`nbmigrate.ops.EventReader` (:func:`~nbmigrate.ops.parse_event`, errors re-raised by
:func:`~nbmigrate.ops.raise_for` as the exception class the kernel raised). The server extension runs
it through an async client of the kernel it manages.

:class:`RestKernelHandle` reaches a kernel of a Jupyter server that runs the extension, over REST
(``Authorization: token <t>``), and satisfies :class:`nbmigrate.addresses.KernelHandle`; errors come
back as the same exception classes as from a local kernel. :func:`start_kernel` starts one (inside a
notebook's session when given the notebook's path), :func:`connect` is what
:func:`nbmigrate.addresses.connect` calls for a REST address.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from nbmigrate.errors import NbmigrateError
from nbmigrate.ops import EventReader, raise_for, request_code

if TYPE_CHECKING:
    import requests
    from jupyter_client.asynchronous.client import AsyncKernelClient

    from nbmigrate.addresses import RestKernel
    from nbmigrate.reports import Progress

    from .archive import ReceivedCheckpoint

API = "api/nbmigrate"
BytesProgress = Callable[[int, int], None]
"""progress(done, total) in archive bytes, for downloads and uploads."""
CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a server to accept a connection (operations themselves may run for an hour)."""


class RestError(NbmigrateError):
    """A Jupyter server refused or failed a request (not an nbmigrate error inside the kernel)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------------
# The operations protocol, asynchronously (server side)


async def run_operation(client: AsyncKernelClient, op: str, *, timeout: float = 3600,
                        on_progress: Progress | None = None, alive: Callable[[], Awaitable[bool]] | None = None,
                        **params: Any) -> dict[str, Any]:
    """Run an nbmigrate operation in the kernel behind ``client`` and return its result.

    ``client`` has its channels started and the kernel answered (``wait_for_ready``): the iopub
    subscription must be live before the request is sent, or its output is lost. Raises the kernel's
    error as its nbmigrate exception class, :class:`nbmigrate.remote.KernelError` when the kernel
    printed no result (nbmigrate missing there) or stopped meanwhile, TimeoutError after ``timeout``
    seconds. ``alive()`` says whether the kernel that got the request still runs (default: the
    client's heartbeat/process check; a server passes one that also notices an automatic restart).
    """
    from nbmigrate.remote import KernelError

    msg_id = client.execute(request_code(op, **params), silent=True, store_history=False)
    reader = EventReader(on_progress)
    error: str | None = None
    deadline = time.monotonic() + timeout
    silent_and_dead = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"nbmigrate {op} did not finish within {timeout:.0f} s")
        try:
            msg = await client.get_iopub_msg(timeout=min(remaining, 1))
        except queue.Empty:
            # A kernel that died (OOM-killed, crashed) never goes idle: notice it rather than wait out the
            # timeout. Checked a few times in a row, since a heartbeat can miss once under load.
            silent_and_dead = 0 if await (alive or client.is_alive)() else silent_and_dead + 1
            if silent_and_dead >= 3:
                raise KernelError(f"nbmigrate {op} did not finish: the kernel stopped (its process exited, "
                                  "or it was restarted)") from None
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            break
        if kind == "stream" and content["name"] == "stdout":
            reader.feed(content["text"])
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
    if reader.result is None:
        raise KernelError(f"nbmigrate {op} returned no result" + (f": {error}" if error else
                          " (is nbmigrate installed in the kernel's environment?)"))
    return reader.result


# --------------------------------------------------------------------------------------------------
# The REST client (blocking)


def _session(token: str | None) -> requests.Session:
    import requests

    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"token {token}"
    return session


def _base(server_url: str) -> str:
    return server_url if server_url.endswith("/") else server_url + "/"


def _message(response: requests.Response) -> tuple[str, str | None, bool]:
    """The server's error message; for a kernel-side error, its exception class name; whether the
    answer came from nbmigrate's handlers (JSON with a message) rather than the server itself."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        kind = body.get("type")
        return body["message"], kind if isinstance(kind, str) else None, True
    return (response.reason or f"HTTP {response.status_code}"), None, False


def _check(response: requests.Response, what: str) -> requests.Response:
    """``response`` if it succeeded; else the kernel's exception (409/500 with a type) or RestError."""
    if response.ok:
        return response
    message, kind, ours = _message(response)
    if kind is not None:
        raise_for({"type": kind, "message": message})
    if response.status_code == 403:
        message += " (is the token right? give it as ?token=... in the server URL)"
    elif response.status_code == 404 and not ours:
        message += (" (does the server run the nbmigrate extension? "
                    "`jupyter server extension enable nbmigrate.server`, then restart it)")
    raise RestError(f"{what}: HTTP {response.status_code}: {message}", response.status_code)


@dataclass
class RestServer:
    """A Jupyter server running the nbmigrate extension, reached with a token."""

    url: str
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.url = _base(self.url)
        self.http = _session(self.token)

    def endpoint(self, *parts: str) -> str:
        return self.url + "/".join([API, *(quote(p, safe="") for p in parts)])

    def request(self, method: str, url: str, what: str, *, timeout: float | None = None,
                **kwargs: Any) -> requests.Response:
        import requests

        try:
            response = self.http.request(method, url, timeout=(CONNECT_TIMEOUT, timeout), **kwargs)
        except requests.ConnectionError as exc:
            raise RestError(f"{what}: cannot reach the server at {self.url}: {exc}") from None
        except requests.Timeout:
            raise RestError(f"{what}: the server at {self.url} did not answer within {timeout} s") from None
        return _check(response, what)

    def info(self) -> dict[str, Any]:
        """``{"version", "store_url"}``: also proves the extension is there and the token right."""
        result: dict[str, Any] = self.request("GET", self.url + API, "nbmigrate server info",
                                              timeout=30).json()
        return result

    def list_checkpoints(self) -> list[dict[str, str]]:
        """``[{"name", "url"}]`` of the checkpoints in the server's store."""
        body = self.request("GET", self.endpoint("checkpoints"), "list checkpoints", timeout=300).json()
        return list(body["checkpoints"])

    def download_checkpoint(self, name: str, dest_url: str, *, storage_options: Mapping[str, Any] | None = None,
                            progress: BytesProgress | None = None) -> ReceivedCheckpoint:
        """Copy the server's checkpoint ``name`` to ``dest_url`` (any fsspec URL), verified.

        The archive is checked on the way as a server checks an upload (member names, blob hashes)
        and the manifest is written last, so ``dest_url`` never holds half a checkpoint.
        ``progress(done, total)`` counts archive bytes.
        """
        import requests

        from .archive import SLICE, ArchiveReceiver

        receiver = ArchiveReceiver(dest_url, storage_options=storage_options)
        what = f"download checkpoint {name}"
        try:
            with self._archive(name, what) as response:
                total, done = int(response.headers.get("Content-Length") or 0), 0
                try:
                    for chunk in response.iter_content(SLICE):
                        receiver.feed(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                except requests.RequestException as exc:
                    raise RestError(f"{what}: the server cut the transfer short (see its log): {exc}") from None
            return receiver.finish()
        except BaseException:
            receiver.abort()
            raise

    def upload_checkpoint(self, src_url: str, name: str, *, storage_options: Mapping[str, Any] | None = None,
                          progress: BytesProgress | None = None) -> dict[str, Any]:
        """Send the checkpoint at ``src_url`` into the server's store as ``name``.

        Returns ``{"name", "url", "files", "bytes", "skipped"}`` (``url`` as the server's kernels see it).
        Every blob is hashed on the way out: a damaged source stops the upload before that blob is whole.
        """
        from .archive import ArchiveSource

        source = ArchiveSource(src_url, storage_options=storage_options)
        source.open()
        return self._put_archive(name, source.chunks(), source.size, progress)

    def send_checkpoint(self, name: str, target: RestServer, target_name: str | None = None, *,
                        progress: BytesProgress | None = None) -> dict[str, Any]:
        """Pipe checkpoint ``name`` from this server's store into ``target``'s, through this process only
        (nothing is written here); ``target`` checks the archive as any upload. Returns its answer."""
        import requests

        what = f"copy checkpoint {name} to {target.url}"
        with self._archive(name, what) as response:
            from .archive import SLICE

            def chunks() -> Iterator[bytes]:
                try:
                    yield from response.iter_content(SLICE)
                except requests.RequestException as exc:
                    raise RestError(f"{what}: {self.url} cut the transfer short (see its log): {exc}") from None

            size = int(response.headers.get("Content-Length") or 0)
            return target._put_archive(target_name or name, chunks(), size, progress)

    def _archive(self, name: str, what: str) -> requests.Response:
        return self.request("GET", self.endpoint("checkpoints", name, "archive"), what, timeout=300, stream=True)

    def _put_archive(self, name: str, chunks: Iterator[bytes], size: int,
                     progress: BytesProgress | None) -> dict[str, Any]:
        from .archive import CONTENT_TYPE

        def counted() -> Iterator[bytes]:
            done = 0
            for chunk in chunks:
                yield chunk
                done += len(chunk)
                if progress is not None:
                    progress(done, size)

        result: dict[str, Any] = self.request(
            "PUT", self.endpoint("checkpoints", name, "archive"), f"upload checkpoint {name}", timeout=3600,
            data=_SizedBody(counted(), size), headers={"Content-Type": CONTENT_TYPE}).json()
        return result

    def start_kernel(self, path: str | None = None, kernel_name: str = "python3") -> RestKernelHandle:
        """A new kernel on this server; see :func:`start_kernel`."""
        if path is None:
            model = self.request("POST", self.url + "api/kernels", "start a kernel", timeout=120,
                                 json={"name": kernel_name}).json()
            return RestKernelHandle(self, model["id"], started=True)
        existing = self.request("GET", self.url + "api/sessions", "list sessions", timeout=30).json()
        for session in existing:
            if session.get("path") == path and session.get("kernel"):
                return RestKernelHandle(self, session["kernel"]["id"], session_id=session["id"], started=False)
        model = self.request("POST", self.url + "api/sessions", f"start a kernel for {path}", timeout=120,
                             json={"path": path, "type": "notebook", "kernel": {"name": kernel_name}}).json()
        return RestKernelHandle(self, model["kernel"]["id"], session_id=model["id"], started=True)


class _SizedBody:
    """An iterable request body of known length: sent with Content-Length rather than chunked."""

    def __init__(self, chunks: Iterator[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


_OPERATION_METHODS = {"checkpoint": "POST", "restore": "POST", "plan": "GET", "status": "GET", "ping": "GET"}


class RestKernelHandle:
    """One kernel of a Jupyter server running the nbmigrate extension (a ``KernelHandle``).

    ``started`` says whether this client started the kernel (so :func:`connect` may shut it down
    again if what it was started for fails); ``session_id`` is the notebook session it runs in.
    """

    def __init__(self, server: RestServer, kernel_id: str, *, session_id: str | None = None,
                 started: bool = False) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.session_id = session_id
        self.started = started

    def __repr__(self) -> str:
        return f"RestKernelHandle({self.server.url}api/kernels/{self.kernel_id})"

    @property
    def url(self) -> str:
        """The kernel's REST address (without the token), as the CLI accepts it."""
        return f"{self.server.url}api/kernels/{self.kernel_id}"

    def operation(self, op: str, *, on_progress: Progress | None = None, timeout: float = 3600,
                  **params: Any) -> dict[str, Any]:
        """Run an nbmigrate operation in the kernel through the server; see :mod:`nbmigrate.ops`.

        Progress is not streamed over REST: ``on_progress`` is called once, at the end, with the
        totals. A checkpoint without ``url`` goes to the server's store; its result then carries
        ``name`` and ``url``. Errors raised in the kernel are re-raised as the same classes.
        """
        method = _OPERATION_METHODS.get(op)
        if method is None:
            raise ValueError(f"unknown nbmigrate operation {op!r} (one of {', '.join(_OPERATION_METHODS)})")
        url = self.server.endpoint("kernels", self.kernel_id, op)
        what = f"nbmigrate {op} in kernel {self.kernel_id}"
        if method == "POST":
            body = {k: v for k, v in params.items() if v is not None}
            response = self.server.request("POST", url, what, timeout=timeout, json=body)
        else:
            query = {k: str(v) for k, v in params.items() if v is not None}
            response = self.server.request("GET", url, what, timeout=timeout, params=query)
        result: dict[str, Any] = response.json()
        if on_progress is not None:
            _final_progress(op, result, on_progress)
        return result

    def shutdown(self) -> None:
        """Stop the kernel (``DELETE /api/kernels/<id>``)."""
        self.server.request("DELETE", f"{self.server.url}api/kernels/{quote(self.kernel_id, safe='')}",
                            f"shut down kernel {self.kernel_id}", timeout=60)

    def download_checkpoint(self, name: str, dest_url: str, *, storage_options: Mapping[str, Any] | None = None,
                            progress: BytesProgress | None = None) -> ReceivedCheckpoint:
        """Copy checkpoint ``name`` from the server's store to ``dest_url`` (:meth:`RestServer.download_checkpoint`)."""
        return self.server.download_checkpoint(name, dest_url, storage_options=storage_options, progress=progress)

    def upload_checkpoint(self, src_url: str, name: str, *, storage_options: Mapping[str, Any] | None = None,
                          progress: BytesProgress | None = None) -> dict[str, Any]:
        """Copy the checkpoint at ``src_url`` into the server's store (:meth:`RestServer.upload_checkpoint`)."""
        return self.server.upload_checkpoint(src_url, name, storage_options=storage_options, progress=progress)


    def send_checkpoint(self, name: str, target: RestKernelHandle, *,
                        progress: BytesProgress | None = None) -> dict[str, Any]:
        """Copy checkpoint ``name`` from this kernel's server's store into ``target``'s server's store,
        under the same name, streamed through this process (:meth:`RestServer.send_checkpoint`).

        Returns the target server's answer ``{"name", "url", "files", "bytes", "skipped"}``; when both
        kernels belong to the same server nothing moves (``files`` and ``bytes`` are 0).
        """
        if target.server.url == self.server.url:
            return {"name": name, "url": None, "files": 0, "bytes": 0, "skipped": 0}
        return self.server.send_checkpoint(name, target.server, progress=progress)


def _final_progress(op: str, result: Mapping[str, Any], on_progress: Callable[[str, int, int], None]) -> None:
    if op == "checkpoint":
        n = int(result.get("written_bytes") or 0)
        on_progress("write", n, n)
    elif op == "restore":
        n = int(result.get("loaded_bytes") or 0)
        on_progress("read", n, n)
        cells = len(result.get("replayed_cells") or [])
        on_progress("replay", cells, cells)


def start_kernel(server_url: str, token: str | None, path: str | None = None, *,
                 kernel_name: str = "python3") -> RestKernelHandle:
    """Start a kernel on the Jupyter server at ``server_url``.

    With ``path`` (a notebook's path relative to the server's root), the kernel is started in that
    notebook's session (``POST /api/sessions``): it runs in the notebook's directory, so relative
    file names in replayed cells resolve as they did, and the notebook, when opened, attaches to it.
    If the notebook already has a session, its kernel is used (``started`` is then False).
    """
    return RestServer(server_url, token).start_kernel(path, kernel_name)


@contextlib.contextmanager
def connect(address: RestKernel, *, timeout: float = CONNECT_TIMEOUT,
            path: str | None = None) -> Iterator[RestKernelHandle]:
    """A handle on the kernel at ``address`` (or on a new kernel there if it names only a server: in
    the session of the notebook at ``path`` when given, see :func:`start_kernel`).

    A kernel started here is shut down again if the block fails, and kept otherwise (it holds the
    migrated session). Raises :class:`nbmigrate.addresses.AddressError` when the server does not
    answer, rejects the token, lacks the extension, or has no such kernel.
    """
    from nbmigrate.addresses import AddressError

    server = RestServer(address.server_url, address.token)
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.info()
            break
        except RestError as exc:
            if exc.status is not None or time.monotonic() >= deadline:
                raise AddressError(f"{address}: {exc}") from None
            time.sleep(0.5)
    if address.kernel_id is None:
        try:
            handle = server.start_kernel(path)
        except RestError as exc:
            raise AddressError(f"{address}: {exc}") from None
    else:
        if path is not None:
            raise AddressError(f"{address}: a notebook path only goes with a server URL, not with a kernel's")
        handle = RestKernelHandle(server, address.kernel_id)
        try:
            server.request("GET", f"{server.url}api/kernels/{quote(address.kernel_id, safe='')}",
                           f"kernel {address.kernel_id}", timeout=30)
        except RestError as exc:
            if exc.status == 404:
                raise AddressError(f"no kernel {address.kernel_id} on the server at {server.url}") from None
            raise AddressError(f"{address}: {exc}") from None
    try:
        yield handle
    except BaseException:
        if handle.started:
            with contextlib.suppress(Exception):
                handle.shutdown()
        raise
