"""Hibernation figures per notebook: memory freed, checkpoint size and time, resume time.

For each notebook, a real Jupyter server with the extension (``hibernate_after`` of a few seconds)
opens it, runs every cell but the ``after_restore`` tail, lets the kernel go idle until it is
hibernated, then opens the notebook again and measures how long the session takes to come back::

    python -m bench.hibernation OUT.json NOTEBOOK_OR_FOLDER...

or, from Python, ``bench.hibernation.run(notebooks, out)`` (returns the rows it writes to ``out``).
Fields: ``memory_freed`` (resident memory of the kernel's process tree, bytes), ``stored_bytes``,
``checkpoint_seconds`` (from the hibernation record), ``open_seconds`` (``POST /api/sessions`` until it
returned: kernel start plus restore), ``restore_seconds`` (the restore alone, as the notice in the
notebook says), ``verified`` (the notice reports no unverified variable) and ``notice``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.remote import Kernel

from .common import expand_notebooks, log

IDLE_SECONDS = 3.0
_RESTORED = re.compile(r"variables in ([0-9.]+) s")


class _Server:
    """One ``python -m jupyter_server`` on 127.0.0.1 with the extension, its own dirs and token."""

    def __init__(self, home: Path, store: Path) -> None:
        import socket

        for sub in ("root", "runtime", "config", "data"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.home, self.token = home, secrets.token_hex(16)
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / "config"),
               "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_PLATFORM_DIRS": "1"}
        command = [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={self.port}", "--ServerApp.ip=127.0.0.1",
                   "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={home / 'root'}", "--no-browser",
                   "--ServerApp.jpserver_extensions=nbmigrate.server=True",
                   f"--NbmigrateExtension.store_url={store}", f"--NbmigrateExtension.hibernate_after={IDLE_SECONDS}",
                   "--NbmigrateExtension.hibernate_check_interval=0.5", "--NbmigrateExtension.drain_deadline=0",
                   *(["--allow-root"] if os.getuid() == 0 else [])]
        self.process = subprocess.Popen(command, stdout=(home / "server.log").open("wb"), stderr=subprocess.STDOUT,
                                        env=env, cwd=home)
        deadline = time.monotonic() + 120
        while not self._up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter server did not start; see {home / 'server.log'}")
            time.sleep(0.2)

    def _up(self) -> bool:
        try:
            return self.request("GET", "api/status").ok
        except requests.RequestException:
            return False

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"http://127.0.0.1:{self.port}/{path}", timeout=3600,
                                headers={"Authorization": f"token {self.token}"}, **kwargs)

    def session(self, path: str) -> str:
        response = self.request("POST", "api/sessions", json={"path": path, "type": "notebook",
                                                               "kernel": {"name": "python3"}})
        response.raise_for_status()
        kernel_id = str(response.json()["kernel"]["id"])
        self.request("GET", f"api/nbmigrate/kernels/{kernel_id}/ping").raise_for_status()
        return kernel_id

    def kernel(self, kernel_id: str) -> Kernel:
        return Kernel.connect(str(self.home / "runtime" / f"kernel-{kernel_id}.json"), timeout=120)

    def stop(self) -> None:
        for model in self.request("GET", "api/kernels").json():
            self.request("DELETE", f"api/kernels/{model['id']}")
        self.process.terminate()
        self.process.wait(timeout=60)


def measure(notebook: Path, workdir: Path) -> dict[str, Any]:
    """Hibernate and resume ``notebook`` once on a fresh server under ``workdir``."""
    store = workdir / "store"
    server = _Server(workdir / "server", store)
    try:
        main, tail = split(code_cells(notebook))
        (server.home / "root" / "nb").mkdir()
        path = f"nb/{notebook.name}"
        first = server.session(path)
        kernel = server.kernel(first)
        kernel.execute("%load_ext nbmigrate")
        run_cells(kernel, main, timeout=3600)
        kernel.client.stop_channels()
        records = store / "hibernated"
        deadline = time.monotonic() + 3600
        # The record is written before the kernel is shut down: wait for both, or the notebook would be
        # opened again in its old, still running session.
        while not (records.is_dir() and any(records.glob("*.json"))) or server.request("GET", "api/kernels").json():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{notebook.name} was not hibernated; see {server.home / 'server.log'}")
            time.sleep(0.5)
        record = json.loads(next(records.glob("*.json")).read_text())
        started = time.perf_counter()
        second = server.session(path)
        open_seconds = time.perf_counter() - started
        resumed = server.kernel(second)
        output = "".join(r.text for r in run_cells(resumed, tail or [], timeout=3600)) if tail else \
            resumed.execute("pass").text
        resumed.client.stop_channels()
        notice = output.partition("\n")[0]
        found = _RESTORED.search(notice)
        return {"notebook": notebook.name, "memory_freed": record["memory_freed"], "stored_bytes": record["bytes"],
                "checkpoint_seconds": record["checkpoint_seconds"], "open_seconds": round(open_seconds, 3),
                "restore_seconds": float(found.group(1)) if found else None,
                "verified": notice.startswith("nbmigrate: resumed") and "NOT all verified" not in notice,
                "notice": notice}
    finally:
        server.stop()


def run(notebooks: Sequence[str | Path], out: str | Path) -> list[dict[str, Any]]:
    """Measure every notebook (files or folders of ``*.ipynb``); write the rows as JSON to ``out``."""
    rows = []
    for notebook in expand_notebooks([str(n) for n in notebooks]):
        log(f"hibernation: {notebook.name}")
        with tempfile.TemporaryDirectory(prefix="nbm-hibernation-") as tmp:
            env = {"NBMIGRATE_SECRET_FILE": str(Path(tmp) / "secret"), "IPYTHONDIR": str(Path(tmp) / "ipython")}
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                rows.append(measure(notebook, Path(tmp)))
            except Exception as exc:  # one broken notebook must not cost the others' figures
                rows.append({"notebook": notebook.name, "error": f"{type(exc).__name__}: {exc}"})
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
                shutil.rmtree(tmp, ignore_errors=True)
        log(f"  {json.dumps(rows[-1])}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m bench.hibernation OUT.json NOTEBOOK_OR_FOLDER...")
    run(sys.argv[2:], sys.argv[1])
