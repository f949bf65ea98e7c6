"""``python -m bench migration``: move each benchmark notebook's session between two Jupyter servers.

Two private Jupyter servers (:mod:`nbmigrate.server.launch`; own roots, stores, ports, tokens) stand
in for two machines, and moto's S3 server on 127.0.0.1 for an object store. Per notebook, the cells
not tagged ``after_restore`` run in a kernel of server A (in the notebook's session, nbmigrate
loaded); then ``nbmigrate migrate --json`` (the CLI, its own process, as a user runs it) moves the
session twice into new kernels of server B, without shutting the source down:

* **streamed**: no shared storage; the checkpoint goes from A's store through the CLI into B's;
* **s3**: ``--via s3://bucket/<notebook>``: A's kernel writes to the bucket, B's reads from it.

Reported per move: total seconds, the checkpoint / transfer / restore split (the CLI's report), bytes
moved, and whether the ``after_restore`` cells print the same on B as on A. Everything runs on this
one machine: "transfer" is loopback HTTP (streamed) or moto (S3), so the figures are a lower bound
for real networks; the bandwidth sweep of ``compare`` models slower links.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.remote import Kernel
from nbmigrate.reports import human_bytes
from nbmigrate.server.client import start_kernel
from nbmigrate.server.launch import LocalServer, free_port, start_local_server

from .common import (
    environment,
    finish,
    fmt_seconds,
    isolated_environment,
    log,
    machine,
    select_benchmark_notebooks,
    source_line,
    table,
    write_csv,
    write_outputs,
)

NBMIGRATE = str(Path(sys.executable).with_name("nbmigrate"))
HOWS = ("streamed", "s3")


select_notebooks = select_benchmark_notebooks


@contextmanager
def _s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with one bucket; the AWS variables point every process at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    bucket = f"nbmigrate-bench-{uuid.uuid4().hex[:8]}"
    try:
        with environment(aws, unset=("AWS_PROFILE", "AWS_SESSION_TOKEN")):
            boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
            yield f"s3://{bucket}"
    finally:
        moto.stop()


def _connect(server: LocalServer, kernel_id: str, timeout: float) -> Kernel:
    return Kernel.connect(str(server.runtime / f"kernel-{kernel_id}.json"), timeout=min(timeout, 120))


def _move(source_url: str, a: LocalServer, b: LocalServer, path: str, via: list[str],
          timeout: float) -> dict[str, Any]:
    command = [NBMIGRATE, "migrate", f"{source_url}?token={a.token}", "--to", b.address, "--path", path, *via,
               "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return {"error": tail[0][:300], "cli_seconds": wall}
    if done.returncode != 0 or not report.get("ok"):
        return {"error": str(report.get("error") or f"exit code {done.returncode}")[:300], "cli_seconds": wall}
    return {
        "error": None,
        "target": report["target"],
        "seconds": report["seconds"],
        "cli_seconds": wall,
        "checkpoint_seconds": report["checkpoint_seconds"],
        "transfer_seconds": report["transfer_seconds"],
        "restore_seconds": report["restore_seconds"],
        "bytes_moved": report["bytes_moved"],
        "stored_variables": sum(len(g.get("names", [])) for g in report["checkpoint"].get("groups", [])
                                if g.get("stored")),
        "replayed_cells": len(report["restore"].get("replayed_cells") or []),
    }


def measure(notebook: Path, a: LocalServer, b: LocalServer, bucket: str, timeout: float) -> list[dict[str, Any]]:
    """One source run of ``notebook`` on A, moved to B once per way; one row per way."""
    main, tail = split(code_cells(notebook))
    stem = notebook.stem
    for server in (a, b):
        (server.root / stem).mkdir(exist_ok=True)
        shutil.copy(notebook, server.root / stem / notebook.name)
    with ExitStack() as stack:
        source = start_kernel(a.url, a.token, path=f"{stem}/{notebook.name}")
        stack.callback(source.shutdown)
        kernel = _connect(a, source.kernel_id, timeout)
        stack.callback(kernel.client.stop_channels)
        kernel.execute("%load_ext nbmigrate")
        started = time.perf_counter()
        run_cells(kernel, main, timeout=timeout)
        run_seconds = time.perf_counter() - started
        log(f"  ran {len(main)} cells on A in {run_seconds:.1f} s")
        moves: dict[str, dict[str, Any]] = {}
        for how in HOWS:
            path = f"{stem}/{how}-{notebook.name}"
            shutil.copy(notebook, b.root / path)
            via = ["--via", f"{bucket}/{stem}"] if how == "s3" else []
            moves[how] = _move(source.url, a, b, path, via, timeout)
            m = moves[how]
            log(f"  {how}: " + (f"ERROR {m['error']}" if m["error"] else
                                f"{m['seconds']:.1f} s, {human_bytes(m['bytes_moved'])} moved"))
        expected = [r.stdout for r in run_cells(kernel, tail, timeout=timeout)]
        rows = []
        for how, m in moves.items():
            faithful: bool | None = None
            if not m["error"]:
                kernel_id = m["target"].rsplit("/", 1)[-1].split("?", 1)[0]
                moved = _connect(b, kernel_id, timeout)
                try:
                    faithful = [r.stdout for r in run_cells(moved, tail, timeout=timeout)] == expected
                finally:
                    moved.client.stop_channels()
                    b.request("DELETE", f"api/kernels/{kernel_id}")
            rows.append({"notebook": notebook.name, "how": how, "run_seconds": run_seconds, **m,
                         "faithful": faithful})
    return rows


def run(notebooks: list[Path], out: Path, *, quick: bool, timeout: float) -> str:
    rows: list[dict[str, Any]] = []
    with isolated_environment(), tempfile.TemporaryDirectory(prefix="nbmigrate-bench-machines-") as tmp, \
            _s3() as bucket:
        meta = machine()
        env = {"NBMIGRATE_SECRET_FILE": os.environ["NBMIGRATE_SECRET_FILE"], "IPYTHONDIR": os.environ["IPYTHONDIR"]}
        quiet = "--ServerApp.log_level=WARN"
        with start_local_server(Path(tmp) / "A", quiet, env=env) as a, \
                start_local_server(Path(tmp) / "B", quiet, env=env) as b:
            for nb in notebooks:
                log(f"{nb.name}: migrating between two servers...")
                try:
                    rows.extend(measure(nb, a, b, bucket, timeout))
                except Exception as exc:  # one broken notebook must not hide the others' figures
                    log(traceback.format_exc())
                    rows.extend({"notebook": nb.name, "how": how, "error": f"{type(exc).__name__}: {exc}"[:300],
                                 "faithful": None} for how in HOWS)
    data = {"machine": finish(meta), "settings": {"quick": quick, "timeout": timeout}, "moves": rows}
    md = render(data)
    write_csv(out.with_suffix(".csv"), rows)
    path = write_outputs(out, data, md)
    log(f"wrote {out} and {path}")
    return md


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    rows: list[list[object]] = []
    for r in data["moves"]:
        if r.get("error"):
            rows.append([r["notebook"], r["how"], "error", "", "", "", "", f"no: {r['error']}"])
            continue
        rows.append([r["notebook"], r["how"], fmt_seconds(r["seconds"]), fmt_seconds(r["checkpoint_seconds"]),
                     fmt_seconds(r["transfer_seconds"]), fmt_seconds(r["restore_seconds"]),
                     human_bytes(r["bytes_moved"]),
                     "yes" if r["faithful"] else "**no**"])
    header = ["notebook", "how", "migration s", "checkpoint s", "transfer s", "restore s", "bytes moved",
              "after_restore identical"]
    return "\n".join([
        "## Migration between two Jupyter servers\n",
        f"{m['date']}, {source_line(m)}, Python {m['python']}, {m['cpus']} CPUs. `nbmigrate migrate` moves a "
        "running kernel of server A into a new kernel of server B, *streamed* through the CLI (no shared storage) "
        "or *via* an S3 bucket (moto on 127.0.0.1). Both servers are on this machine: transfers are loopback.\n",
        table(header, rows),
    ])
