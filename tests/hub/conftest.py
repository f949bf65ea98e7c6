"""A real JupyterHub on 127.0.0.1 running the recipe of docs/hub.md (examples/hub/jupyterhub_config.py).

The hub, its configurable-http-proxy (installed with npm into a cache folder outside the repository,
once) and every user's single-user server (SimpleLocalProcessSpawner: same OS user, a home under
the test's tmp dir) are real processes. The test drives them as a user and an operator would:
the hub's REST API with an admin service token, the user's server through the proxy with the same
token, cells over the kernel's websocket (what a notebook does), never through kernel files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cli.conftest import moto_endpoint, s3_bucket  # noqa: F401  (the S3 store's fixtures, shared)

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "examples" / "hub" / "jupyterhub_config.py"
CHP_VERSION = "5.3.0"
ADMIN_SERVICE = "nbmigrate-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def proxy_command() -> str:
    """configurable-http-proxy, installed with npm into ~/.cache/nbmigrate-tests/chp on first use
    (into a temporary folder renamed into place, so an interrupted install is never taken as done)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the hub test needs it to install configurable-http-proxy")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nbmigrate-tests"
    folder = cache / f"chp-{CHP_VERSION}"
    command = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    if not command.exists():
        cache.mkdir(parents=True, exist_ok=True)
        staging = cache / f"chp-{uuid.uuid4().hex}"
        staging.mkdir()
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(staging),
             f"configurable-http-proxy@{CHP_VERSION}"], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"npm install configurable-http-proxy failed:\n{result.stderr[-3000:]}")
        try:
            staging.rename(folder)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return str(command)


@dataclass
class Hub:
    """One running JupyterHub; ``token`` belongs to an admin service that may also use every server."""

    home: Path
    url: str
    token: str
    process: subprocess.Popen[bytes]
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.http.headers["Authorization"] = f"token {self.token}"

    @property
    def log(self) -> str:
        return (self.home / "hub.log").read_text(errors="replace")

    def user_home(self, user: str) -> Path:
        return self.home / "homes" / user

    def server_log_tail(self) -> str:
        """The end of the hub's log (the user servers log there too), without the test's own polling."""
        lines = [line for line in self.log.splitlines() if f"({ADMIN_SERVICE}@" not in line]
        return "\n".join(lines[-60:])

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``path`` under ``/hub/api/``."""
        kwargs.setdefault("timeout", 60)
        return self.http.request(method, f"{self.url}hub/api/{path}", **kwargs)

    def user_server(self, user: str) -> dict[str, Any] | None:
        """The hub's model of the user's default server, None when it has none."""
        response = self.api("GET", f"users/{user}")
        response.raise_for_status()
        server: dict[str, Any] | None = response.json().get("servers", {}).get("")
        return server

    def start_server(self, user: str, timeout: float = 180) -> str:
        """Spawn the user's server (creating the user if needed) and return its URL through the proxy."""
        if self.api("GET", f"users/{user}").status_code == 404:
            self.api("POST", f"users/{user}").raise_for_status()
        response = self.api("POST", f"users/{user}/server")
        assert response.status_code in (201, 202), f"spawn {user}: {response.status_code} {response.text}"
        self.wait(lambda: bool((s := self.user_server(user)) and s.get("ready")), timeout, f"{user}'s server to start")
        return f"{self.url}user/{user}/"

    def stop_server(self, user: str, timeout: float = 180) -> None:
        """Stop the user's server as the idle culler does (``DELETE /hub/api/users/<u>/server``)."""
        response = self.api("DELETE", f"users/{user}/server", timeout=timeout)
        assert response.status_code in (202, 204), f"stop {user}: {response.status_code} {response.text}"
        self.wait_stopped(user, timeout)

    def wait_stopped(self, user: str, timeout: float) -> None:
        self.wait(lambda: self.user_server(user) is None, timeout, f"{user}'s server to stop")

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub exited with {self.process.returncode}:\n{self.server_log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}; hub log:\n{self.server_log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM: the hub stops every user's server (cleanup_servers) and its proxy, then exits."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


TEST_CONFIG = """\
# Written by tests/hub/conftest.py: the recipe, then what this test machine needs.
load_subconfig({recipe!r})
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {spawner_args!r}
c.Spawner.ip = "127.0.0.1"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///" + {db!r}
c.JupyterHub.cookie_secret_file = {cookie!r}
c.Spawner.environment.update({environment!r})
c.JupyterHub.services.append({{"name": {service!r}, "api_token": {token!r}}})
c.JupyterHub.load_roles.append({{"name": {service!r}, "services": [{service!r}],
    "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"]}})
"""


@pytest.fixture
def hub_factory(tmp_path: Path, proxy_command: str) -> Iterator[Callable[..., Hub]]:
    """``start(**recipe_env)``: a hub in tmp_path/hub-<n> running the recipe with these NBMIGRATE_HUB_*
    values (e.g. ``cull_timeout="0"``), plus ``environment`` for the user servers; stopped at teardown.
    Hubs started in one test share nothing but what the test gives them (a store, a secret key)."""
    started: list[Hub] = []

    def start(environment: dict[str, str] | None = None, **recipe: str) -> Hub:
        home = tmp_path / f"hub-{len(started)}"
        (home / "homes").mkdir(parents=True)
        token = secrets.token_hex(16)
        port = _free_port()
        config = TEST_CONFIG.format(
            recipe=str(RECIPE), password=secrets.token_hex(8), homes=str(home / "homes"), python=sys.executable,
            spawner_args=["--allow-root"] if os.getuid() == 0 else [], port=port, hub_port=_free_port(),
            proxy=proxy_command, proxy_api_port=_free_port(), db=str(home / "jupyterhub.sqlite"),
            cookie=str(home / "cookie_secret"),
            environment=environment or {}, service=ADMIN_SERVICE, token=token)
        (home / "jupyterhub_config.py").write_text(config)
        env = {**os.environ, **{f"NBMIGRATE_HUB_{k.upper()}": v for k, v in recipe.items()}}
        log = (home / "hub.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(home / "jupyterhub_config.py")],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=home, env=env)
        hub = Hub(home=home, url=f"http://127.0.0.1:{port}/", token=token, process=process)
        started.append(hub)
        hub.wait(lambda: _answers(hub), 120, "the hub to answer")
        return hub

    yield start
    for hub in started:
        hub.stop()


def _answers(hub: Hub) -> bool:
    try:
        return hub.api("GET", "", timeout=2).ok
    except requests.RequestException:
        return False


# --------------------------------------------------------------------------------------------------
# A notebook's kernel, reached through the proxy as a browser would


@dataclass
class Output:
    """What one cell showed: stdout plus execute_result text, and the error if it raised."""

    text: str = ""
    error: str | None = None


class NotebookKernel:
    """The kernel of a notebook session on a user's server, driven over its websocket (JSON frames of
    the Jupyter messaging protocol on ``/api/kernels/<id>/channels``)."""

    def __init__(self, server_url: str, token: str, path: str) -> None:
        import websocket

        self.server_url = server_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"
        response = self.http.post(server_url + "api/sessions", timeout=120,
                                  json={"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}})
        response.raise_for_status()
        self.session = response.json()
        self.kernel_id: str = self.session["kernel"]["id"]
        self.client_session = uuid.uuid4().hex
        ws_url = server_url.replace("http://", "ws://", 1) + f"api/kernels/{self.kernel_id}/channels"
        self.ws = websocket.create_connection(f"{ws_url}?session_id={self.client_session}", timeout=120,
                                              header=[f"Authorization: token {token}"])
        self.unparented: list[str] = []
        """Text the kernel showed outside our requests (e.g. a message from the server extension)."""

    def execute(self, code: str, timeout: float = 120) -> Output:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.client_session,
                       "username": "test", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        output = Output()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(deadline - time.monotonic(), 0.1))
            msg = json.loads(self.ws.recv())
            kind, content = msg["msg_type"], msg["content"]
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                if kind in ("stream", "display_data", "execute_result"):
                    self.unparented.append(_text(kind, content))
                continue
            if kind in ("stream", "execute_result"):
                output.text += _text(kind, content)
            elif kind == "error":
                output.error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle" and msg["channel"] == "iopub":
                return output
        raise TimeoutError(f"cell did not finish within {timeout:.0f} s in kernel {self.kernel_id}: {code[:80]!r}")

    def close(self) -> None:
        """Disconnect, as a closed browser tab does: the kernel keeps running."""
        with contextlib.suppress(Exception):
            self.ws.close()
        self.http.close()

    def shutdown(self) -> None:
        """Close the notebook's session and its kernel (so that stopping the server has nothing to drain)."""
        with contextlib.suppress(Exception):
            self.ws.close()
        response = self.http.delete(f"{self.server_url}api/sessions/{self.session['id']}", timeout=60)
        self.http.close()
        assert response.status_code == 204, f"closing session {self.session['id']}: {response.text}"


def _text(kind: str, content: dict[str, Any]) -> str:
    if kind == "stream":
        return str(content["text"])
    plain = content.get("data", {}).get("text/plain", "")
    return str(plain) + "\n" if plain else ""
