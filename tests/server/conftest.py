"""Real Jupyter servers (subprocesses) with the nbmigrate extension, each its own "machine".

Every server gets its own root, runtime, config and data directories (so its own store and its own
kernel connection files) and its own token; it inherits the rest of the environment, so the kernels
it starts see the isolated NBMIGRATE_SECRET_FILE and IPYTHONDIR of tests/conftest.py.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from nbmigrate.remote import Kernel

EXTENSION_FLAG = "--ServerApp.jpserver_extensions=nbmigrate.server=True"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterServer:
    home: Path
    token: str
    port: int
    process: subprocess.Popen[bytes]
    kernels: list[Kernel] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def store(self) -> Path:
        """The extension's default store: <jupyter data dir>/nbmigrate/checkpoints."""
        return self.home / "data" / "nbmigrate" / "checkpoints"

    @property
    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def request(self, method: str, path: str, *, token: str | None = "", **kwargs: Any) -> requests.Response:
        """``path`` relative to the server URL; the server's token unless ``token`` says otherwise."""
        headers = dict(kwargs.pop("headers", {}))
        token = self.token if token == "" else token
        if token is not None:
            headers["Authorization"] = f"token {token}"
        kwargs.setdefault("timeout", 120)
        return requests.request(method, self.url + path, headers=headers, **kwargs)

    def kernel(self, kernel_id: str) -> Kernel:
        """A jupyter_client connection to one of this server's kernels (to run cells in it)."""
        kernel = Kernel.connect(str(self.home / "runtime" / f"kernel-{kernel_id}.json"), timeout=60)
        self.kernels.append(kernel)
        return kernel

    def session(self, path: str, kernel_id: str | None = None) -> dict[str, Any]:
        """``POST /api/sessions`` for the notebook at ``path`` (as a frontend opening it does), in a new
        kernel or in the existing ``kernel_id``; the session's model."""
        kernel = {"id": kernel_id} if kernel_id else {"name": "python3"}
        response = self.request("POST", "api/sessions", json={"path": path, "type": "notebook", "kernel": kernel})
        assert response.status_code == 201, response.text
        model: dict[str, Any] = response.json()
        self.wait_idle(model["kernel"]["id"])
        return model

    def wait_idle(self, kernel_id: str) -> None:
        """Wait until the kernel answers (through the extension's ping): a kernel that has just been
        started can take seconds to answer its first request on a loaded machine."""
        response = self.request("GET", f"api/nbmigrate/kernels/{kernel_id}/ping")
        assert response.ok, response.text

    def kernel_ids(self) -> list[str]:
        return [k["id"] for k in self.request("GET", "api/kernels").json()]

    def stop(self) -> None:
        for kernel in self.kernels:
            kernel.client.stop_channels()
        if self.process.poll() is None:
            try:  # shut its kernels down first: a killed server would leave them running
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


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def start_server(home: Path, *args: str, extension: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 60) -> JupyterServer:
    """Start ``python -m jupyter_server`` in ``home`` and wait until ``GET /api/status`` answers."""
    for sub in ("root", "runtime", "config", "data"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    port = _free_port()
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
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=home)
    server = JupyterServer(home=home, token=token, port=port, process=process)
    try:
        _wait_until_up(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_up(server: JupyterServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter server exited with {server.process.returncode}:\n{server.log[-4000:]}")
        try:
            if server.request("GET", "api/status", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"jupyter server did not answer within {timeout:.0f} s:\n{server.log[-4000:]}")
        time.sleep(0.1)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """``start(name, *args)``: a new server under tmp_path/name, stopped at teardown (in this test's env)."""
    started: list[JupyterServer] = []

    def start(name: str, *args: str, **kwargs: Any) -> JupyterServer:
        server = start_server(tmp_path / name, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """One server shared by a module's tests that start no kernels (its secret and profile isolated here)."""
    home = tmp_path_factory.mktemp("server")
    isolated = {"NBMIGRATE_SECRET_FILE": str(home / "secret"), "IPYTHONDIR": str(home / "ipython")}
    started = start_server(home, env=isolated)
    yield started
    started.stop()
