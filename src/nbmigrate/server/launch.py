"""A private Jupyter server in a subprocess: a stand-in for "another machine" on this one.

The demo and the benchmarks move sessions between two such servers, exactly as between two hosts:
each has its own root, runtime, config and data directories (so its own store and kernel connection
files), its own port and token, and loads nbmigrate's extension. They share nothing but what the
caller passes in ``env`` (a signing secret, S3 credentials).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from nbmigrate.errors import NbmigrateError

EXTENSION_FLAG = "--ServerApp.jpserver_extensions=nbmigrate.server=True"


class ServerStartError(NbmigrateError):
    """A private Jupyter server exited or did not answer in time (its log's tail is in the message)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    """A running ``jupyter server`` subprocess listening on 127.0.0.1."""

    home: Path
    token: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def address(self) -> str:
        """The server's URL with its token, as ``nbmigrate migrate --to`` takes it."""
        return f"{self.url}?token={self.token}"

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def runtime(self) -> Path:
        """Where the server writes its kernels' connection files (``kernel-<id>.json``)."""
        return self.home / "runtime"

    @property
    def store(self) -> Path:
        """The extension's default store: ``<jupyter data dir>/nbmigrate/checkpoints``."""
        return self.home / "data" / "nbmigrate" / "checkpoints"

    @property
    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``path`` relative to the server URL, authenticated with the server's token."""
        kwargs.setdefault("timeout", 120)
        return requests.request(method, self.url + path, headers={"Authorization": f"token {self.token}"}, **kwargs)

    def stop(self) -> None:
        """Shut the server's kernels down (a killed server would leave them running), then the server."""
        if self.process.poll() is None:
            try:
                for model in self.request("GET", "api/kernels", timeout=10).json():
                    self.request("DELETE", f"api/kernels/{model['id']}", timeout=30)
            except (requests.RequestException, ValueError):
                pass
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def start_local_server(home: Path, *args: str, extension: bool = True, env: Mapping[str, str] | None = None,
                       timeout: float = 60) -> LocalServer:
    """Start ``python -m jupyter_server`` with everything under ``home``; return once it answers.

    ``env`` is added to this process's environment (the kernels the server starts inherit it);
    ``args`` are extra server options (``--NbmigrateExtension.store_url=...``).
    """
    for sub in ("root", "runtime", "config", "data"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    port = free_port()
    environment = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_PLATFORM_DIRS": "1",
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home / 'root'}",
        "--no-browser", *([EXTENSION_FLAG] if extension else []), *args,
    ]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=home)
    server = LocalServer(home=home, token=token, port=port, process=process)
    try:
        _wait_until_up(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_up(server: LocalServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise ServerStartError(f"jupyter server in {server.home} exited with {server.process.returncode}:\n"
                                   f"{server.log[-4000:]}")
        try:
            if server.request("GET", "api/status", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"jupyter server in {server.home} did not answer within {timeout:.0f} s:\n"
                                   f"{server.log[-4000:]}")
        time.sleep(0.1)
