"""Real Jupyter servers (subprocesses) with the nbmigrate extension, each its own "machine".

Every server gets its own root, runtime, config and data directories (so its own store and its own
kernel connection files) and its own token; it inherits the rest of the environment, so the kernels
it starts see the isolated NBMIGRATE_SECRET_FILE and IPYTHONDIR of tests/conftest.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
import requests

from nbmigrate.remote import Kernel
from nbmigrate.server.launch import LocalServer, start_local_server


@dataclass
class JupyterServer(LocalServer):
    """A :class:`~nbmigrate.server.launch.LocalServer` with what the tests do to it."""

    kernels: list[Kernel] = field(default_factory=list)

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
        super().stop()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60,
               detail: Callable[[], str] | None = None) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds, with what
    ``detail`` says then (state that explains the wait, e.g. the server's log)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            more = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{more}")
        time.sleep(0.2)


def start_server(home: Path, *args: str, extension: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 60) -> JupyterServer:
    """Start ``python -m jupyter_server`` in ``home`` and wait until ``GET /api/status`` answers."""
    local = start_local_server(home, *args, extension=extension, env=env, timeout=timeout)
    return JupyterServer(**{f.name: getattr(local, f.name) for f in fields(LocalServer)})


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
