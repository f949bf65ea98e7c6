"""A session moves between two Jupyter servers ("two machines") through the extension's REST API only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbmigrate.errors import MonitorError, NbmigrateError, StoreError
from nbmigrate.server.client import RestServer, start_kernel

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]

SESSION_CELLS = [
    "%load_ext nbmigrate",
    "import time\ndata = [1, 2, 3]\nalias = {'data': data}",
    "def squares(n):\n    for i in range(n):\n        yield i * i\n\ngen = squares(10)\nnext(gen), next(gen)",
    "time.sleep(0.3)\nslow = sum(data) * 7",  # slow and small: stored, not replayed
    "data.append(4)",
]
PROBE = "print(data, alias['data'] is data, next(gen), next(gen), slow, type(gen).__name__)"


def test_session_moves_between_servers(server_factory: Any, tmp_path: Path) -> None:
    one = server_factory("one")
    two = server_factory("two")
    (two.root / "work").mkdir()

    # Machine one: a kernel started over REST, in which the user worked.
    source = start_kernel(one.url, one.token)
    kernel = one.kernel(source.kernel_id)
    for cell in SESSION_CELLS:
        kernel.execute(cell)

    assert source.operation("ping")["monitoring"] is True
    # A kernel that never loaded nbmigrate: the kernel's own error, as its own class, over REST.
    fresh = start_kernel(one.url, one.token)
    with pytest.raises(MonitorError, match="never loaded nbmigrate"):
        fresh.operation("checkpoint")
    response = one.request("POST", f"api/nbmigrate/kernels/{fresh.kernel_id}/checkpoint", json={})
    assert response.status_code == 409 and response.json()["type"] == "MonitorError"
    # A kernel that dies during an operation (here: on purpose) is noticed, not waited for.
    one.kernel(fresh.kernel_id).execute("import nbmigrate.ops\n"
                                        "nbmigrate.ops._OPERATIONS['status'] = lambda: __import__('os')._exit(1)")
    with pytest.raises(NbmigrateError, match="the kernel stopped"):
        fresh.operation("status")
    fresh.shutdown()
    assert fresh.kernel_id not in [k["id"] for k in one.request("GET", "api/kernels").json()]
    assert "data" in source.operation("status")["text"]
    assert source.operation("plan", bandwidth="100MB/s")["text"]

    progress: list[tuple[str, int, int]] = []
    report = source.operation("checkpoint", on_progress=lambda *p: progress.append(p))
    name = report["name"]
    assert name.startswith(source.kernel_id + "-")
    assert Path(report["url"]) == one.store / name
    assert (one.store / name / "manifest.json").is_file()
    assert report["variables"] >= 4 and progress and progress[-1][0] == "write"
    listed = RestServer(one.url, one.token).list_checkpoints()
    assert {"name": name, "url": report["url"]} in listed

    # The checkpoint leaves machine one as a tar stream and enters machine two the same way.
    local = tmp_path / "in-transit"
    received = source.download_checkpoint(name, str(local))
    assert received.files == report_files(local) and (local / "manifest.json").is_file()

    target = start_kernel(two.url, two.token, path="work/analysis.ipynb")
    uploaded = target.upload_checkpoint(str(local), "moved")
    assert uploaded["name"] == "moved" and Path(uploaded["url"]) == two.store / "moved"

    with pytest.raises(StoreError, match="no checkpoint"):
        target.operation("restore", name="never-uploaded")
    restored = target.operation("restore", name="moved")
    assert restored["ok"], restored
    assert set(restored["verified"]) >= {"data", "alias", "slow"}

    # Same session on both machines: values, aliasing, and the generator continues where it was.
    expected = kernel.execute(PROBE).stdout
    moved = two.kernel(target.kernel_id)
    assert moved.execute(PROBE).stdout == expected == "[1, 2, 3, 4] True 4 9 42 generator\n"
    # The kernel runs in the notebook's folder, inside the notebook's session.
    assert moved.evaluate_json("__import__('json').dumps(__import__('os').getcwd())") == str(two.root / "work")
    sessions = two.request("GET", "api/sessions").json()
    assert [(s["path"], s["kernel"]["id"]) for s in sessions] == [("work/analysis.ipynb", target.kernel_id)]


def report_files(folder: Path) -> int:
    return 1 + sum(1 for _ in (folder / "blobs").iterdir()) if (folder / "blobs").is_dir() else 1
