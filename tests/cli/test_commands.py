"""The commands on real kernels reached through their connection files, with local and S3 stores.

Each test drives kernels the way a user would: start them, run cells in them, then call ``nbmigrate``
with their connection files. The CLI runs in this process (CliRunner) except where its process
boundary is the point (exit codes of the installed entry point, --shutdown-source).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.remote import Kernel

from ..conftest import NOTEBOOKS
from .conftest import StartKernel, cli, cli_process_args, connection_file

pytestmark = pytest.mark.kernel

SESSION = [
    "import numpy as np\ndata = np.arange(4_000_000, dtype=np.float64)",  # 32 MB made in ms: replayed
    "words = ['alpha', 'beta']\npair = {'w': words, 'n': len(words)}",
    "import time\nstarted = time.time()\nsummary = (round(float(data.sum()), 3), started)",
    "words.append('gamma')",
]
CHECK = "print(round(float(data.sum()), 3), words, pair['w'] is words, pair['n'], summary == (summary[0], started))"


def start_session(start_kernel: StartKernel) -> Kernel:
    kernel = start_kernel()
    for cell in SESSION:
        kernel.execute(cell)
    return kernel


def shows(kernel: Kernel) -> str:
    return kernel.execute(CHECK).stdout


def test_checkpoint_inspect_restore(start_kernel: StartKernel, tmp_path: Path) -> None:
    source = start_session(start_kernel)
    ckpt = tmp_path / "ckpt"
    # A given bandwidth makes the plan independent of this machine's disk: 32 MB cost 0.3 s to store.
    result = cli("checkpoint", connection_file(source), "--to", ckpt, "-v", "--bandwidth", "100MB/s")
    assert result.exit_code == 0, result.output
    assert "written in" in result.stdout and str(ckpt) in result.stdout
    # The clock cell cannot be replayed, so what it made is stored; the big array is cheaper to replay.
    assert "stored     started: recomputing `started` needs cell 2" in result.stdout
    assert "recomputed data: cheaper" in result.stdout

    shown = cli("inspect", ckpt, "--graph", tmp_path / "history.png")
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert "signature verified" in text and "all present" in text
    assert "python 3." in text and "numpy==" in text
    assert "cells to replay" in text and "import numpy as np" in text
    assert "cells unsafe to replay" in text and "clock: time.time" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith(("data ", "summary "))}
    assert "recomputed" in rows["data"] and "cell 0" in rows["data"]
    assert "stored" in rows["summary"] and "cell 2" in rows["summary"]
    assert (tmp_path / "history.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    described = json.loads(cli("inspect", ckpt, "--json").stdout)
    how = {v["name"]: v["how"] for v in described["variables"]}
    assert sorted(how) == ["data", "pair", "started", "summary", "words"]
    assert how["data"] == "recomputed" and how["started"] == how["summary"] == "stored"
    assert described["modules"] == {"np": "numpy", "time": "time"}
    assert described["replay"][0]["index"] == 0 and described["replay"][0]["first_line"] == "import numpy as np"
    assert 2 not in [c["index"] for c in described["replay"]]
    assert any("clock" in h for c in described["hazards"] for h in c["hazards"])
    assert any(g["reason"].startswith("stored: recomputing") for g in described["groups"])

    target = start_kernel(load=False)  # the restore operation loads nbmigrate itself
    restored = cli("restore", ckpt, "--into", connection_file(target), "--json")
    assert restored.exit_code == 0, restored.output
    report = json.loads(restored.stdout)
    assert report["ok"] and not report["mismatched"] and "summary" in report["loaded"]
    assert shows(target) == shows(source)


def test_restore_failures_exit_1_then_3_with_partial(start_kernel: StartKernel, tmp_path: Path) -> None:
    source = start_session(start_kernel)
    ckpt = tmp_path / "ckpt"
    assert cli("checkpoint", connection_file(source), "--to", ckpt, "--prefer", "restore").exit_code == 0
    blob = next((ckpt / "blobs").iterdir())
    blob.write_bytes(b"x" + blob.read_bytes()[1:])
    target = start_kernel()
    failed = cli("restore", ckpt, "--into", connection_file(target))
    assert failed.exit_code == 1
    assert f"restore into {connection_file(target)} failed: blob {blob.name[:12]} is corrupt" in failed.stderr
    partial = cli("restore", ckpt, "--into", connection_file(target), "--partial")
    assert partial.exit_code == 3, partial.output
    # the corrupt group is either recomputed instead (when its cells can be replayed) or missing;
    # either way the restore is incomplete and says why
    assert "Error: restore incomplete: " in partial.stderr
    assert "PROBLEM: blob" in partial.stdout


def test_migrate_streamed_and_shutdown_source(start_kernel: StartKernel, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    source = start_session(start_kernel)
    expected = shows(source)
    target = start_kernel(load=False)
    third = start_kernel()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the streamed checkpoint passes through
    result = subprocess.run(
        cli_process_args("migrate", connection_file(source), "--to", connection_file(target), "--shutdown-source"),
        capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr
    assert "streamed through this machine" in result.stdout
    assert "transfer (" in result.stdout and "moved " in result.stdout
    assert "source kernel shut down" in result.stdout
    assert shows(target) == expected
    assert source.manager is not None
    deadline = time.monotonic() + 20
    while source.manager.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not source.manager.is_alive()
    assert list(scratch.iterdir()) == []  # both temporary folders removed

    again = cli("migrate", connection_file(target), "--to", connection_file(third), "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["ok"] and report["via"] is None and report["transfer"]["files"] >= 2
    assert report["bytes_moved"] == report["transfer"]["bytes"] > 0
    assert shows(third) == expected
    assert list(scratch.iterdir()) == []


def test_migrate_via_folder(start_kernel: StartKernel, tmp_path: Path) -> None:
    source = start_session(start_kernel)
    target = start_kernel(cwd=tmp_path / "elsewhere", load=False)
    via = tmp_path / "moves" / "one"
    result = cli("migrate", connection_file(source), "--to", connection_file(target), "--via", via)
    assert result.exit_code == 0, result.output
    assert f"via {via}" in result.stdout and "checkpoint (" in result.stdout and "restore (" in result.stdout
    assert (via / "manifest.json").is_file()
    assert shows(target) == shows(source)


def test_migrate_via_s3(s3_bucket: str, start_kernel: StartKernel) -> None:
    import boto3

    source = start_session(start_kernel)
    target = start_kernel()
    via = f"{s3_bucket}/moves/run-1"
    result = cli("migrate", connection_file(source), "--to", connection_file(target), "--via", via, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["restore"]["ok"]
    assert shows(target) == shows(source)
    listing = boto3.client("s3").list_objects_v2(Bucket=s3_bucket.removeprefix("s3://"), Prefix="moves/run-1/")
    assert "moves/run-1/manifest.json" in {o["Key"] for o in listing["Contents"]}


def test_kernel_without_the_extension(start_kernel: StartKernel, tmp_path: Path) -> None:
    bare = start_kernel(load=False)
    bare.execute("numbers = [1, 2, 3]\nsquares = (n * n for n in range(3))\nnext(squares)")
    ckpt = tmp_path / "ckpt"
    refused = cli("checkpoint", connection_file(bare), "--to", ckpt)
    assert refused.exit_code == 1
    assert "never loaded nbmigrate" in refused.stderr
    assert "%load_ext nbmigrate" in refused.stderr and "nbmigrate install" in refused.stderr
    assert not ckpt.exists()

    best = cli("checkpoint", connection_file(bare), "--to", ckpt, "--best-effort")
    assert best.exit_code == 0, best.output
    assert "NOT CARRIED (neither storable nor recomputable): squares" in best.stdout

    target = start_kernel(load=False)
    restored = cli("restore", ckpt, "--into", connection_file(target), "--partial")
    assert restored.exit_code == 3  # the generator is named as missing, everything else is back
    assert "restore incomplete: missing squares" in restored.stderr
    assert target.execute("print(numbers)").stdout == "[1, 2, 3]\n"


def test_run_notebook_then_restore(start_kernel: StartKernel, tmp_path: Path) -> None:
    notebook = NOTEBOOKS / "session_objects.ipynb"
    main, tail = split(code_cells(notebook))
    work, ckpt = tmp_path / "work-run", tmp_path / "ckpt"
    work.mkdir()
    assert main[-1].index == 8  # --upto by cell id: everything but the after_restore tail
    ran = cli("run", notebook, "--checkpoint", ckpt, "--upto", "session_objects-8", "--cwd", work, "--json")
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    assert report["cells"] == [c.index for c in main] and report["checkpoint"]["destination"] == str(ckpt)

    direct = start_kernel(cwd=tmp_path / "work-direct")
    run_cells(direct, main)
    expected = "".join(r.text for r in run_cells(direct, tail))

    restored_kernel = start_kernel(cwd=work, load=False)
    restored = cli("restore", ckpt, "--into", connection_file(restored_kernel))
    assert restored.exit_code == 0, restored.output
    assert "".join(r.text for r in run_cells(restored_kernel, tail)) == expected


def test_run_stops_at_a_failing_cell(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("text"),
                nbformat.v4.new_code_cell("y = x / 0"), nbformat.v4.new_code_cell("z = 3")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, str(path))
    failed = cli("run", path, "--checkpoint", tmp_path / "ckpt")
    assert failed.exit_code == 1
    assert "cell 2 raised" in failed.stderr and "ZeroDivisionError" in failed.stderr
    upto = cli("run", path, "--checkpoint", tmp_path / "ckpt", "--upto", "1")
    assert upto.exit_code == 0, upto.output
    assert "ran 1 cells of broken.ipynb" in upto.stdout


def test_kernel_dying_mid_operation_fails_fast(start_kernel: StartKernel, tmp_path: Path) -> None:
    import threading

    kernel = start_session(start_kernel)
    kernel.client.execute("import time; time.sleep(60)")  # the checkpoint waits behind this cell ...
    assert kernel.pid is not None
    threading.Timer(1.0, os.kill, (kernel.pid, 9)).start()  # ... and the kernel dies meanwhile
    t = time.monotonic()
    result = cli("checkpoint", connection_file(kernel), "--to", tmp_path / "ckpt")
    assert result.exit_code == 1
    assert "the kernel stopped" in result.stderr
    assert time.monotonic() - t < 30
