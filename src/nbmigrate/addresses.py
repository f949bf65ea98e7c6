"""Where a kernel is and where a checkpoint goes: the two kinds of address the command line takes.

A **kernel address** is one of:

* a connection file, by path (``./kernel-1234.json``, ``~/.local/share/jupyter/runtime/kernel-1234.json``)
  or by name inside Jupyter's runtime directory (``jupyter --runtime-dir``): ``kernel-1234.json``,
  the kernel id ``1234`` (file ``kernel-1234.json``), or a unique prefix of that id (``12``);
* a Jupyter server's REST URL: ``http(s)://host:port[/base]/api/kernels/<id>?token=...`` names one
  kernel, the bare server URL ``http(s)://host:port[/base]/?token=...`` names the server (a target
  kernel is started there). The URL a server prints at start-up (``.../lab?token=...``,
  ``.../tree?token=...``) is accepted as the bare server URL.

A **store URL** is anything fsspec opens: a local path, ``file://``, ``memory://`` (inside one
process only), ``s3://bucket/prefix``, ``simplecache::s3://...``. Local paths are made absolute
against the caller's working directory, because the kernel that writes them has its own.

Parsing checks form only, plus existence of connection files; it never connects. Errors are
:class:`AddressError` with a message that says what was expected, for the CLI to show as is.

Reaching a kernel (:func:`connect`) goes through the small :class:`KernelHandle` protocol, so the CLI
does not care whether a kernel is reached through ZeroMQ (a connection file, here) or through a Jupyter
server's REST API. REST kernels are served by ``nbmigrate.server.client``, the client half of the
server extension, which provides::

    connect(address: RestKernel, *, timeout: float) -> ContextManager[KernelHandle]

(a :class:`RestKernel` without a kernel id means: start a new kernel on that server, and shut it down
on exit only if the migration failed). Until that module exists, REST addresses parse but
:func:`connect` refuses them with a message saying what is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import queue
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from .errors import NbmigrateError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .remote import Kernel
    from .reports import Progress


class AddressError(NbmigrateError):
    """A kernel address or store URL is malformed, or names nothing (exit code 2 in the CLI)."""


# --------------------------------------------------------------------------------------------------
# Kernel addresses


@dataclass(frozen=True)
class ConnectionFile:
    """A kernel reached through its connection file (ZeroMQ ports and key), on this machine."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class RestKernel:
    """A kernel of a Jupyter server, or (``kernel_id`` None) the server itself, to start one on.

    ``server_url`` keeps the server's base path and ends with ``/``: ``http://h:8888/user/ann/``.
    """

    server_url: str
    kernel_id: str | None
    token: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        if self.kernel_id is None:
            return self.server_url
        return f"{self.server_url}api/kernels/{self.kernel_id}"


KernelAddress = ConnectionFile | RestKernel

_KERNEL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CONNECTION_KEYS = ("shell_port", "iopub_port", "control_port", "hb_port")
_UI_SUFFIXES = ("lab", "tree", "notebooks")
"""Last path segments of the URLs a server prints at start-up (JupyterLab, Notebook 7, classic)."""


def parse_kernel_address(text: str, *, runtime_dir: str | Path | None = None) -> KernelAddress:
    """Parse a kernel address (see the module docstring); raise :class:`AddressError` if it is not one.

    >>> parse_kernel_address("http://127.0.0.1:8888/api/kernels/ab-12?token=t")
    RestKernel(server_url='http://127.0.0.1:8888/', kernel_id='ab-12')
    """
    text = text.strip()
    if not text:
        raise AddressError("empty kernel address: expected a connection file (kernel-ID.json), a kernel id, "
                           "or a Jupyter server URL http://host:port/api/kernels/ID?token=...")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme is not None:
        if scheme.group(1).lower() in ("http", "https"):
            return _parse_rest(text)
        raise AddressError(f"{text!r} is not a kernel address: {scheme.group(1)}:// is not supported; expected "
                           "a connection file, a kernel id, or http(s)://host:port/api/kernels/ID?token=...")
    return _find_connection_file(text, runtime_dir)


def _parse_rest(text: str) -> RestKernel:
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise AddressError(f"{text!r}: the port is not a number between 0 and 65535") from None
    if not parts.hostname:
        raise AddressError(f"{text!r}: no host name (expected http(s)://host:port/...)")
    query = parse_qs(parts.query, keep_blank_values=True)
    tokens = query.get("token", [])
    if len(tokens) > 1:
        raise AddressError(f"{text!r}: more than one token= in the URL")
    token = tokens[0] if tokens else None
    if token == "":
        raise AddressError(f"{text!r}: token= is empty")

    segments = [s for s in parts.path.split("/") if s]
    kernel_id: str | None = None
    if "api" in segments:
        at = segments.index("api")
        rest = segments[at + 1:]
        if len(rest) != 2 or rest[0] != "kernels":
            raise AddressError(f"{text!r}: a kernel URL ends with /api/kernels/<kernel id>, "
                               f"not /api/{'/'.join(rest)}")
        kernel_id = rest[1]
        if not _KERNEL_ID_RE.fullmatch(kernel_id):
            raise AddressError(f"{text!r}: {kernel_id!r} is not a kernel id")
        base = segments[:at]
    else:
        base = segments[:-1] if segments and segments[-1] in _UI_SUFFIXES else segments
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        netloc = f"[{parts.hostname}]" + ("" if port is None else f":{port}")
    path = "/" + "".join(s + "/" for s in base)
    return RestKernel(server_url=f"{parts.scheme.lower()}://{netloc}{path}", kernel_id=kernel_id, token=token)


def _find_connection_file(text: str, runtime_dir: str | Path | None) -> ConnectionFile:
    given = Path(text).expanduser()
    if given.is_file():
        return ConnectionFile(_checked_connection_file(given))
    if given.exists():
        raise AddressError(f"{text!r} is not a file (expected a kernel connection file, kernel-ID.json)")
    if os.sep in text or (os.altsep and os.altsep in text):
        raise AddressError(f"no kernel connection file at {given}")

    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    folder = Path(runtime_dir)
    for name in (text, f"kernel-{text}.json", f"{text}.json"):
        if (folder / name).is_file():
            return ConnectionFile(_checked_connection_file(folder / name))
    stem = text.removeprefix("kernel-").removesuffix(".json")
    matches = sorted(folder.glob(f"kernel-{glob_escape(stem)}*.json")) if folder.is_dir() and stem else []
    if len(matches) == 1:
        return ConnectionFile(_checked_connection_file(matches[0]))
    if len(matches) > 1:
        names = ", ".join(m.name for m in matches[:5]) + (" ..." if len(matches) > 5 else "")
        raise AddressError(f"{text!r} matches {len(matches)} kernels in {folder}: {names}; give more of the id")
    raise AddressError(f"no kernel {text!r}: not a file here, and no kernel-{stem}.json in Jupyter's runtime "
                       f"directory {folder} (give the connection file's path, or a server URL)")


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped, so a kernel id is matched literally."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _checked_connection_file(path: Path) -> Path:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AddressError(f"{path} is not a kernel connection file: {exc}") from None
    if not isinstance(info, dict) or not all(k in info for k in _CONNECTION_KEYS):
        raise AddressError(f"{path} is not a kernel connection file (no {'/'.join(_CONNECTION_KEYS)} entries)")
    return path.resolve()


# --------------------------------------------------------------------------------------------------
# Store URLs


@dataclass(frozen=True)
class StoreUrl:
    """A checkpoint location: ``url`` as handed to fsspec (local paths made absolute), its protocols."""

    url: str
    protocols: tuple[str, ...]

    @property
    def in_process_only(self) -> bool:
        """``memory://`` lives in one process: a kernel cannot hand it to another one."""
        return "memory" in self.protocols

    def __str__(self) -> str:
        return self.url


_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)


def parse_store_url(text: str, *, cwd: str | Path | None = None) -> StoreUrl:
    """Check a store URL's form and that fsspec knows its protocol; absolutize local paths.

    ``s3:/bucket`` (one slash) and ``foo://x`` are errors: fsspec would take the first for a local
    folder named ``s3:`` and fail on the second only inside the kernel.

    >>> parse_store_url("s3://bucket/ckpt").protocols
    ('s3',)
    """
    import fsspec

    text = text.strip()
    if not text:
        raise AddressError("empty store URL: expected a folder, or a URL such as s3://bucket/prefix")
    known = set(fsspec.available_protocols())
    protocols: list[str] = []
    *wrappers, last = text.split("::")
    for link in wrappers:  # simplecache::s3://bucket/x: the links before the last are protocol names
        name = link.removesuffix("://").lower()
        if not re.fullmatch(r"[a-z][a-z0-9+.-]*", name):
            raise AddressError(f"{text!r}: {link or 'an empty part'!r} in a chained URL must be a protocol "
                               "name such as simplecache")
        protocols.append(name)
    match = _SCHEME_RE.fullmatch(last)
    if not last:
        raise AddressError(f"{text!r}: nothing after the last ::")
    if match is None or len(match.group(1)) == 1:  # no scheme, or a Windows drive (C:\ckpt)
        protocols.append("file")
    else:
        scheme, rest = match.group(1).lower(), match.group(2)
        if not rest.startswith("//"):
            raise AddressError(f"{text!r} is not a URL: write {scheme}://{rest.lstrip('/')} "
                               "(a protocol is followed by two slashes)")
        protocols.append(scheme)
    for name in protocols:
        if name not in known:
            raise AddressError(f"{text!r}: unknown storage protocol {name!r} (fsspec knows e.g. file, memory, "
                               "s3, gcs, az, sftp; install the package that provides it)")
    if protocols[-1] == "file" and "://" not in last:
        base = Path(cwd) if cwd is not None else Path.cwd()
        last = str((base / Path(last).expanduser()).absolute())
    elif protocols[-1] in ("file", "local") and last.startswith(("file://", "local://")):
        path = last.split("://", 1)[1]
        if not path or not path.startswith("/"):
            raise AddressError(f"{text!r}: a file:// URL needs an absolute path (file:///home/ann/ckpt)")
    return StoreUrl(url="::".join([*wrappers, last]), protocols=tuple(protocols))


# --------------------------------------------------------------------------------------------------
# Reaching a kernel


@runtime_checkable
class KernelHandle(Protocol):
    """What the CLI needs from a kernel, however it is reached.

    ``operation`` runs one nbmigrate operation in the kernel (:mod:`nbmigrate.ops`) and returns its
    result dict, raising the kernel's :class:`~nbmigrate.errors.NbmigrateError` on failure;
    ``shutdown`` stops the kernel. :class:`nbmigrate.remote.Kernel` (started here) satisfies it.
    """

    def operation(self, op: str, *, on_progress: Progress | None = None, **params: Any) -> dict[str, Any]: ...

    def shutdown(self) -> None: ...


@dataclass
class Scratch:
    """A temporary checkpoint folder next to a kernel, for a migration streamed through the client.

    ``kernel_url`` is how the kernel names it; ``client_url`` and ``client_options`` how this process
    reaches the same files through fsspec (the same local path for a kernel on this machine).
    """

    kernel_url: str
    client_url: str
    client_options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class StreamingHandle(KernelHandle, Protocol):
    """A kernel next to which the client can make a :class:`Scratch` folder (for ``migrate`` without --via)."""

    def scratch(self) -> AbstractContextManager[Scratch]: ...


@runtime_checkable
class ArchiveHandle(KernelHandle, Protocol):
    """A kernel of a Jupyter server with the nbmigrate extension: its checkpoints go to the server's store
    (a checkpoint without ``url`` answers with a ``name``), and :meth:`send_checkpoint` streams one
    from that store into another such server's store as a tar archive, through this process only.

    :class:`nbmigrate.server.client.RestKernelHandle` satisfies it (``migrate`` without --via).
    """

    def send_checkpoint(self, name: str, target: Any, *,
                        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]: ...


class LocalKernel:
    """A kernel on this machine reached through its connection file (a :class:`StreamingHandle`).

    :class:`~nbmigrate.remote.Kernel` does the messaging; this adds what only makes sense for a kernel
    we did not start: ``shutdown`` asks the kernel itself to exit (there is no manager here), and
    ``close`` lets go of it, leaving it running.
    """

    def __init__(self, kernel: Kernel, address: ConnectionFile) -> None:
        self.kernel = kernel
        self.address = address

    def operation(self, op: str, *, on_progress: Progress | None = None, **params: Any) -> dict[str, Any]:
        return self.kernel.operation(op, on_progress=on_progress, **params)

    def shutdown(self, timeout: float = 15) -> None:
        """Ask the kernel to exit and wait for its reply, which it sends once it is done (atexit).

        A kernel that a Jupyter server manages is restarted by that server when it exits behind its
        back: such a kernel is shut down through the server (its REST address) instead.
        """
        client = self.kernel.client
        msg_id = client.shutdown()
        deadline = time.monotonic() + timeout
        with contextlib.suppress(Exception):  # queue.Empty, or a kernel gone before its reply reached us
            while time.monotonic() < deadline:
                reply = client.get_control_msg(timeout=max(0.1, deadline - time.monotonic()))
                if reply["parent_header"].get("msg_id") == msg_id:
                    break

    def close(self) -> None:
        self.kernel.client.stop_channels()

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Scratch]:
        folder = tempfile.mkdtemp(prefix="nbmigrate-")
        try:
            yield Scratch(kernel_url=folder, client_url=folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _answers(client: Any, timeout: float) -> bool:
    """Whether the kernel answers a ``kernel_info_request`` on its control channel within ``timeout``.

    The control channel answers while a cell runs, unlike the shell channel that jupyter_client's
    ``wait_for_ready`` asks (so a busy kernel would pass for a dead one). The request's status message
    on iopub must arrive too: then our subscription is live and no event of the next request is lost.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = client.session.msg("kernel_info_request")
        client.control_channel.send(request)
        msg_id = request["header"]["msg_id"]
        if _reply(client.get_control_msg, msg_id, min(1.0, max(0.1, deadline - time.monotonic()))) and \
                _reply(client.get_iopub_msg, msg_id, 0.5):
            return True
    return False


def _reply(get: Any, msg_id: str, wait: float) -> bool:
    """Read messages with ``get`` until one answers ``msg_id`` (True) or ``wait`` seconds pass (False)."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = get(timeout=left)
        except queue.Empty:
            return False
        if msg["parent_header"].get("msg_id") == msg_id:
            return True
    return False


@contextlib.contextmanager
def connect(address: KernelAddress, *, timeout: float = 10, path: str | None = None) -> Iterator[KernelHandle]:
    """A handle on the kernel at ``address``, released on exit (the kernel keeps running).

    ``path`` (a notebook's path relative to the server's root) is only for an address naming a server
    without a kernel: the new kernel is started in that notebook's session. Raises
    :class:`AddressError` if nothing answers there within ``timeout`` seconds, or for a ``path`` given
    with any other address.
    """
    if path is not None and not (isinstance(address, RestKernel) and address.kernel_id is None):
        raise AddressError(f"--path {path}: a notebook path only goes with a server URL (a new kernel is started "
                           f"in that notebook's session there), not with the kernel {address}")
    if isinstance(address, RestKernel):
        try:
            rest = importlib.import_module("nbmigrate.server.client")
        except ModuleNotFoundError as exc:
            if exc.name not in ("nbmigrate.server", "nbmigrate.server.client"):
                raise
            raise AddressError(
                f"{address}: REST kernels need the nbmigrate server extension on that server, and its "
                "client (nbmigrate.server.client) here, which this nbmigrate does not have; use the "
                "kernel's connection file instead") from None
        with rest.connect(address, timeout=timeout, path=path) as handle:
            yield handle
        return

    from jupyter_client.blocking.client import BlockingKernelClient

    from .remote import Kernel

    try:
        client = BlockingKernelClient(connection_file=str(address.path))
        client.load_connection_file()
        client.start_channels()
    except (OSError, ValueError, KeyError) as exc:
        raise AddressError(f"cannot connect to the kernel of {address.path}: {exc}") from None
    try:
        if not _answers(client, timeout):
            raise AddressError(f"no kernel answers at {address.path} within {timeout:.0f} s (has it stopped? a "
                               "connection file can outlive its kernel)")
    except BaseException:
        client.stop_channels()
        raise
    kernel = Kernel(client)
    handle = LocalKernel(kernel, address)
    try:
        yield handle
    finally:
        handle.close()
