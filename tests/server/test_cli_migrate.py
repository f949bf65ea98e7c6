"""``nbmigrate migrate`` between two Jupyter servers ("two machines"), through their REST addresses.

A notebook's main cells run in a kernel of server one; the CLI (its own process) moves the session into
a new kernel of server two, started in a notebook's session there: streamed through the CLI from one
server's store into the other's, or via a folder or an S3 bucket (moto) both servers' kernels reach.
The ``after_restore`` cells then print the same as in a kernel that ran every cell uninterrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmigrate.addresses import parse_kernel_address
from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.server.client import start_kernel
from nbmigrate.server.launch import free_port

from ..conftest import CORPUS, needs_corpus
from .conftest import JupyterServer, start_server

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(240), needs_corpus]

NOTEBOOK = CORPUS / "correctness" / "inplace_mutation.ipynb"  # reads and writes no files
NBMIGRATE = str(Path(sys.executable).with_name("nbmigrate"))


class Machines:
    def __init__(self, one: JupyterServer, two: JupyterServer, bucket: str, expected: list[str]) -> None:
        self.one, self.two, self.bucket, self.expected = one, two, bucket, expected


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machines]:
    """Two servers sharing a signing secret and an S3 endpoint (moto), and the reference output."""
    import boto3
    from moto.server import ThreadedMotoServer

    home = tmp_path_factory.mktemp("machines")
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    bucket = f"nbmigrate-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    env = {**aws, "NBMIGRATE_SECRET_FILE": str(home / "secret"), "IPYTHONDIR": str(home / "ipython"),
           "AWS_PROFILE": "", "AWS_SESSION_TOKEN": ""}
    env = {k: v for k, v in env.items() if v}
    saved = {k: os.environ.pop(k) for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                                            "AWS_SHARED_CREDENTIALS_FILE") if k in os.environ}
    servers: list[JupyterServer] = []
    try:
        servers.append(start_server(home / "one", env=env))
        servers.append(start_server(home / "two", env=env))
        one, two = servers
        for server in servers:
            (server.root / "work").mkdir()
        # The reference: every cell in one kernel, never interrupted.
        reference = start_kernel(one.url, one.token, path="work/reference.ipynb")
        kernel = one.kernel(reference.kernel_id)
        main, tail = split(code_cells(NOTEBOOK))
        run_cells(kernel, main)
        expected = [r.stdout for r in run_cells(kernel, tail)]
        reference.shutdown()
        yield Machines(one, two, f"s3://{bucket}", expected)
    finally:
        for server in servers:
            server.stop()
        os.environ.update(saved)
        moto.stop()


@pytest.mark.parametrize("how", ["streamed", "folder", "s3"])
def test_cli_migrates_between_servers(machines: Machines, how: str, tmp_path: Path) -> None:
    one, two = machines.one, machines.two
    source = start_kernel(one.url, one.token, path=f"work/{how}.ipynb")
    kernel = one.kernel(source.kernel_id)
    kernel.execute("%load_ext nbmigrate")
    main, tail = split(code_cells(NOTEBOOK))
    run_cells(kernel, main)

    via = {"streamed": [], "folder": ["--via", str(tmp_path / "shared-store")],
           "s3": ["--via", f"{machines.bucket}/moves/{how}"]}[how]
    before = {k["id"] for k in two.request("GET", "api/kernels").json()}
    result = subprocess.run(
        [NBMIGRATE, "migrate", f"{source.url}?token={one.token}", "--to", f"{two.url}?token={two.token}",
         "--path", f"work/{how}.ipynb", *via, "--shutdown-source", "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["ok"] and report["source_shut_down"]
    assert report["via"] == (via[1] if via else None)
    assert report["bytes_moved"] > 0 and report["seconds"] > 0
    if how == "streamed":  # from server one's store into server two's, as a tar archive
        transfer = report["transfer"]
        assert transfer["bytes"] == report["bytes_moved"] and transfer["files"] >= 2
        name = Path(transfer["source"]).name
        assert (one.store / name / "manifest.json").is_file() and (two.store / name / "manifest.json").is_file()
    else:
        assert report["transfer"] is None
    if how == "folder":
        assert (tmp_path / "shared-store" / "manifest.json").is_file()

    # The new kernel of server two runs in the notebook's session, and is the one the report names.
    target = parse_kernel_address(report["target"])
    sessions = two.request("GET", "api/sessions").json()
    new = [s for s in sessions if s["kernel"]["id"] not in before]
    assert [(s["path"], s["kernel"]["id"]) for s in new] == [(f"work/{how}.ipynb", target.kernel_id)]
    assert source.kernel_id not in {k["id"] for k in one.request("GET", "api/kernels").json()}

    moved = two.kernel(str(target.kernel_id))
    assert moved.evaluate_json("__import__('json').dumps(__import__('os').getcwd())") == str(two.root / "work")
    assert [r.stdout for r in run_cells(moved, tail)] == machines.expected
    two.request("DELETE", f"api/kernels/{target.kernel_id}")
