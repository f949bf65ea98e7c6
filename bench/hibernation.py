"""``python -m bench hibernation``: memory freed and resume time when a session hibernates.

For each notebook, a private Jupyter server with the extension (:mod:`nbmigrate.server.launch`,
``hibernate_after`` of a few seconds) opens it, runs every cell but the ``after_restore`` tail, lets
the kernel go idle until it is hibernated, then opens the notebook again and measures how long the
session takes to come back. Fields: ``memory_freed`` (resident memory of the kernel's process tree,
bytes), ``stored_bytes``, ``checkpoint_seconds`` (from the hibernation record), ``open_seconds``
(``POST /api/sessions`` until it returned: kernel start plus restore), ``restore_seconds`` (the restore
alone, as the notice in the notebook says), ``verified`` (the notice reports no unverified variable)
and ``notice``.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.remote import Kernel
from nbmigrate.reports import human_bytes
from nbmigrate.server.launch import LocalServer, start_local_server

from .common import finish, isolated_environment, log, machine, source_line, table, write_csv, write_outputs
from .common import select_benchmark_notebooks as select_notebooks

__all__ = ["run", "select_notebooks"]

IDLE_SECONDS = 3.0
_RESTORED = re.compile(r"variables in ([0-9.]+) s")


def _session(server: LocalServer, path: str) -> str:
    """Open ``path`` as a front end does (``POST /api/sessions``); the kernel's id once it answers."""
    response = server.request("POST", "api/sessions", timeout=3600,
                              json={"path": path, "type": "notebook", "kernel": {"name": "python3"}})
    response.raise_for_status()
    kernel_id = str(response.json()["kernel"]["id"])
    server.request("GET", f"api/nbmigrate/kernels/{kernel_id}/ping", timeout=3600).raise_for_status()
    return kernel_id


def _kernel(server: LocalServer, kernel_id: str) -> Kernel:
    return Kernel.connect(str(server.runtime / f"kernel-{kernel_id}.json"), timeout=120)


def measure(notebook: Path, workdir: Path, timeout: float) -> dict[str, Any]:
    """Hibernate and resume ``notebook`` once on a fresh server under ``workdir``."""
    store = workdir / "store"
    server = start_local_server(
        workdir / "server", f"--NbmigrateExtension.store_url={store}",
        f"--NbmigrateExtension.hibernate_after={IDLE_SECONDS}", "--NbmigrateExtension.hibernate_check_interval=0.5",
        "--NbmigrateExtension.drain_deadline=0", timeout=120)
    try:
        main, tail = split(code_cells(notebook))
        (server.home / "root" / "nb").mkdir()
        path = f"nb/{notebook.name}"
        first = _session(server, path)
        kernel = _kernel(server, first)
        kernel.execute("%load_ext nbmigrate")
        run_cells(kernel, main, timeout=timeout)
        kernel.client.stop_channels()
        records = store / "hibernated"
        deadline = time.monotonic() + timeout
        # The record is written before the kernel is shut down: wait for both, or the notebook would be
        # opened again in its old, still running session.
        while not (records.is_dir() and any(records.glob("*.json"))) or \
                server.request("GET", "api/kernels", timeout=60).json():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{notebook.name} was not hibernated; see {server.home / 'server.log'}")
            time.sleep(0.5)
        record = json.loads(next(records.glob("*.json")).read_text())
        started = time.perf_counter()
        second = _session(server, path)
        open_seconds = time.perf_counter() - started
        resumed = _kernel(server, second)
        output = "".join(r.text for r in run_cells(resumed, tail, timeout=timeout)) if tail else \
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


def run(notebooks: list[Path], out: Path, *, quick: bool, timeout: float) -> str:
    """Hibernate and resume every notebook, each on its own fresh server; write JSON, CSV and markdown."""
    rows: list[dict[str, Any]] = []
    with isolated_environment():
        meta = machine()
        for notebook in notebooks:
            log(f"hibernation: {notebook.name}")
            with tempfile.TemporaryDirectory(prefix="nbm-hibernation-") as tmp:
                try:
                    rows.append(measure(notebook, Path(tmp), timeout))
                except Exception as exc:  # one broken notebook must not cost the others' figures
                    rows.append({"notebook": notebook.name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            log(f"  {json.dumps(rows[-1])}")
    data = {"machine": finish(meta), "settings": {"quick": quick, "timeout": timeout}, "notebooks": rows}
    md = render(data)
    write_csv(out.with_suffix(".csv"), rows)
    write_outputs(out, data, md)
    return md


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines: list[list[object]] = []
    for r in data["notebooks"]:
        if r.get("error"):
            lines.append([r["notebook"], "error", "", "", "", "", f"no: {r['error']}"])
            continue
        restore = r.get("restore_seconds")
        lines.append([r["notebook"], human_bytes(r["memory_freed"]), human_bytes(r["stored_bytes"]),
                      f"{r['checkpoint_seconds']:.1f}", "n/a" if restore is None else f"{restore:.1f}",
                      f"{r['open_seconds']:.1f}", "yes" if r["verified"] else "**no**"])
    header = ["notebook", "memory freed", "stored", "checkpoint s", "restore s", "open s (start + restore)",
              "verified"]
    return "\n".join([
        "## Hibernation and resume\n",
        f"{m['date']}, {source_line(m)}, Python {m['python']}, {m['cpus']} CPUs. A private Jupyter server hibernates "
        f"the notebook's kernel after {IDLE_SECONDS:.0f} s idle (checkpoint, then shut down); opening the notebook "
        "again restores the session before its first cell.\n",
        table(header, lines),
    ])
