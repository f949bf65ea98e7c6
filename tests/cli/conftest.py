"""Fixtures of the command-line tests: an S3 server (moto), kernels to drive, the CLI in-process.

Kernels are real IPython kernels started with :meth:`Kernel.start`; the CLI reaches them through
their connection files, as a user would. Every kernel inherits the environment at its start, so the
S3 fixture must come before the kernels in a test's arguments.
"""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nbmigrate.cli import main
from nbmigrate.history import CellExecution, HistoryGraph
from nbmigrate.manifest import EnvironmentRecord, GroupRecord, Manifest, PlanRecord, VariableRecord
from nbmigrate.remote import Kernel
from nbmigrate.store import CheckpointStore

StartKernel = Callable[..., Kernel]


def cli(*args: object) -> Result:
    """Run ``nbmigrate ARGS`` in this process (stdout and stderr kept apart); bugs raise."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def cli_process_args(*args: object) -> list[str]:
    """The argv of ``nbmigrate ARGS`` run as its own process with this interpreter."""
    return [sys.executable, "-c", "from nbmigrate.cli import main; main()", *map(str, args)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<new bucket>`` on the moto server, reachable through the usual AWS variables (which
    kernels started later in the test inherit)."""
    import boto3

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    bucket = f"nbmigrate-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


@pytest.fixture
def start_kernel(tmp_path: Path) -> Iterator[StartKernel]:
    """``start_kernel(cwd=None, load=True)``: a kernel (cwd ``tmp_path/work`` by default), stopped at the end."""
    started: list[Kernel] = []

    def start(cwd: Path | None = None, *, load: bool = True) -> Kernel:
        folder = cwd or tmp_path / "work"
        folder.mkdir(parents=True, exist_ok=True)
        kernel = Kernel.start(cwd=str(folder))
        started.append(kernel)
        if load:
            kernel.execute("%load_ext nbmigrate")
        return kernel

    yield start
    for kernel in started:
        kernel.client.stop_channels()
        assert kernel.manager is not None
        if kernel.manager.is_alive():
            kernel.manager.shutdown_kernel(now=True)
        else:
            kernel.manager.cleanup_resources()


def connection_file(kernel: Kernel) -> str:
    assert kernel.manager is not None
    return str(kernel.manager.connection_file)


# -- a checkpoint written without a kernel ------------------------------------------------------------


def write_checkpoint(url: str, payloads: dict[str, bytes]) -> Manifest:
    """A small valid checkpoint at ``url``: one stored group per payload, as a kernel would write it."""
    store = CheckpointStore(url)
    names = list(payloads)
    blobs = {n: store.write_blob([("pickle", "none", len(p), memoryview(p))]) for n, p in payloads.items()}
    history = HistoryGraph(
        executions=[CellExecution(index=0, source="a = 1", writes=names[:1]),
                    CellExecution(index=1, source="b = a + 1\n# more", reads={names[0]: 0}, writes=names[1:],
                                  hazards=["clock: time.time"])],
        live={n: (0 if i == 0 else 1) for i, n in enumerate(names)},
    )
    manifest = Manifest(
        nbmigrate_version="0.1.0",
        created=1700000000.0,
        environment=EnvironmentRecord("3.11.7", "linux", "x86_64", {"numpy": "numpy==2.0"}, [], {}, "/"),
        history=history.to_dict(),
        groups=[GroupRecord(key=i, names=[n], stored=True, reason="stored: cheaper", modules=[], blob=blobs[n])
                for i, n in enumerate(names)],
        variables=[VariableRecord(n, "builtins.bytes", len(payloads[n]), "d", i, 0 if i == 0 else 1, True)
                   for i, n in enumerate(names)],
        modules=[],
        plan=PlanRecord([], "balanced", 1e8, 0.1, 0.2, "scipy-maxflow", 0.0),
    )
    store.write_manifest(manifest)
    return manifest
