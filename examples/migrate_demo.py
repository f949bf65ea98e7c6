"""`make demo`: a live session moves from one Jupyter server to another with `nbmigrate migrate`.

Two Jupyter servers stand in for two machines: each is its own process with its own root folder,
checkpoint store, port and token (see :mod:`nbmigrate.server.launch`). examples/demo.ipynb runs in a
kernel of server A, in the notebook's session, with nbmigrate loaded. Then the CLI, as a user would
type it, moves the session into a new kernel of server B started for the same notebook: the
checkpoint streams from A's store through this process into B's (the servers share no storage), is
verified and restored. Finally the notebook's cells tagged `after_restore` run in both kernels and
their outputs are compared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.remote import Kernel
from nbmigrate.server.client import start_kernel
from nbmigrate.server.launch import LocalServer, start_local_server

NOTEBOOK = Path(__file__).with_name("demo.ipynb")
NBMIGRATE = str(Path(sys.executable).with_name("nbmigrate"))
QUIET = ["--ServerApp.log_level=WARN"]  # the servers' request logs are not the demo's story


def main() -> int:
    main_cells, tail = split(code_cells(NOTEBOOK))
    with tempfile.TemporaryDirectory(prefix="nbmigrate-demo-") as work:
        home = Path(work)
        env = {"NBMIGRATE_SECRET_FILE": str(home / "secret")}  # the signing key both "machines" hold
        with start_local_server(home / "A", *QUIET, env=env) as a, start_local_server(home / "B", *QUIET,
                                                                                      env=env) as b:
            for server in (a, b):  # the user's notebook is on both machines (a shared home folder)
                shutil.copy(NOTEBOOK, server.root / NOTEBOOK.name)
            print(f"server A: {a.url} (root {a.root})")
            print(f"server B: {b.url} (root {b.root})")
            source = start_kernel(a.url, a.token, path=NOTEBOOK.name)
            kernel_a = _connect(a, source.kernel_id)
            print(f"server A: kernel {source.kernel_id} runs {len(main_cells)} cells of {NOTEBOOK.name}"
                  " with nbmigrate loaded")
            kernel_a.execute("%load_ext nbmigrate")
            t = time.perf_counter()
            run_cells(kernel_a, main_cells)
            print(f"server A: cells took {time.perf_counter() - t:.1f} s")

            command = [NBMIGRATE, "migrate", f"{source.url}?token={a.token}", "--to", b.address,
                       "--path", NOTEBOOK.name, "--verbose"]
            print("\n$ " + " ".join(_hide_tokens(command, a, b)))
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            print(indent(done.stdout + done.stderr))
            if done.returncode != 0:
                print(f"migration failed (exit code {done.returncode})")
                return 1
            moved = [s for s in b.request("GET", "api/sessions").json() if s["path"] == NOTEBOOK.name]
            kernel_b = _connect(b, moved[0]["kernel"]["id"])
            print(f"server B: kernel {moved[0]['kernel']['id']} now holds the session of {NOTEBOOK.name}\n")
            before = "".join(r.text for r in run_cells(kernel_a, tail))
            after = "".join(r.text for r in run_cells(kernel_b, tail))
            for kernel in (kernel_a, kernel_b):
                kernel.client.stop_channels()
    print("after_restore cells on server A (the original kernel):\n" + indent(before))
    print("after_restore cells on server B (the migrated session):\n" + indent(after))
    same = before == after
    print("identical: yes" if same else "identical: NO")
    return 0 if same else 1


def _connect(server: LocalServer, kernel_id: str) -> Kernel:
    """A jupyter_client connection to a kernel of ``server`` (both run on this machine)."""
    return Kernel.connect(str(server.runtime / f"kernel-{kernel_id}.json"), timeout=60)


def _hide_tokens(command: list[str], *servers: LocalServer) -> list[str]:
    shown = []
    for part in command[1:]:
        for server in servers:
            part = part.replace(server.token, "…")
        shown.append(f"'{part}'" if "?" in part else part)
    return ["nbmigrate", *shown]


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())


if __name__ == "__main__":
    sys.exit(main())
