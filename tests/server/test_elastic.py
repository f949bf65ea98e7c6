"""Elastic sessions on real Jupyter servers: hibernate idle kernels, resume them (here or on another
server sharing only the store), drain every kernel on SIGTERM/SIGINT or over REST, never lose a session.

Servers are separate processes ("nodes") with their own root folders; what they share is the store
folder and the signing secret (tests/conftest.py gives every test one), as nodes of a hub share an
object store and the user's secret.
"""

from __future__ import annotations

import json
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.remote import Kernel

from ..conftest import CORPUS, NOTEBOOKS, needs_corpus
from .conftest import JupyterServer, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(240)]

NOTEBOOK = NOTEBOOKS / "session_objects.ipynb"
NOTICE = "nbmigrate: resumed the session"


def elastic_args(store: Path, *, after: float = 0, deadline: float = 25) -> list[str]:
    return [f"--NbmigrateExtension.store_url={store}", f"--NbmigrateExtension.hibernate_after={after}",
            "--NbmigrateExtension.hibernate_check_interval=0.5", f"--NbmigrateExtension.drain_deadline={deadline}"]


def records(store: Path) -> dict[str, dict[str, Any]]:
    folder = store / "hibernated"
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return {r["key"]: r for r in found}


def open_and_run(server: JupyterServer, path: str, cells: list[str]) -> str:
    """Open notebook ``path`` on ``server`` (a new session) and run ``cells`` in it; the kernel id."""
    kernel_id = str(server.session(path)["kernel"]["id"])
    kernel = server.kernel(kernel_id)
    for cell in cells:
        kernel.execute(cell)
    return kernel_id


def reference_tail(notebook: Path, workdir: Path) -> str:
    """What the notebook's after_restore tail prints in a kernel that was never hibernated."""
    main, tail = split(code_cells(notebook))
    workdir.mkdir(parents=True, exist_ok=True)
    with Kernel.start(cwd=str(workdir)) as kernel:
        run_cells(kernel, main)
        return "".join(r.text for r in run_cells(kernel, tail))


def run_notebook(server: JupyterServer, path: str, notebook: Path) -> str:
    main, _ = split(code_cells(notebook))
    kernel_id = str(server.session(path)["kernel"]["id"])
    kernel = server.kernel(kernel_id)
    kernel.execute("%load_ext nbmigrate")
    run_cells(kernel, main)
    return kernel_id


def resumed_tail(server: JupyterServer, kernel_id: str, notebook: Path) -> tuple[str, str]:
    """(the notice shown at the top of the first cell, what the tail printed after it)."""
    _, tail = split(code_cells(notebook))
    text = "".join(r.text for r in run_cells(server.kernel(kernel_id), tail))
    notice, _, rest = text.partition("\n")
    return notice, rest


def test_idle_kernel_hibernates_and_resumes_on_another_server(server_factory: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    expected = reference_tail(NOTEBOOK, tmp_path / "reference")
    one = server_factory("one", *elastic_args(store, after=3))
    two = server_factory("two", *elastic_args(store))
    (one.root / "work").mkdir()

    kernel_id = run_notebook(one, "work/session.ipynb", NOTEBOOK)
    wait_until(lambda: "work/session.ipynb" in records(store) and kernel_id not in one.kernel_ids(),
               "the idle kernel to be hibernated")
    assert one.request("GET", "api/sessions").json() == []
    listed = one.request("GET", "api/nbmigrate/hibernated").json()["hibernated"]
    assert [(r["path"], r["reason"], r["kernel_id"]) for r in listed] == [("work/session.ipynb", "idle", kernel_id)]
    assert listed[0]["bytes"] > 0 and listed[0]["memory_freed"] > 10_000_000
    assert (store / listed[0]["checkpoint"] / "manifest.json").is_file()
    assert f"hibernated kernel {kernel_id} (work/session.ipynb)" in one.log

    # Another node: its own root (the user's files travel with their home), the same store. The kernel
    # is started as some clients do, without a path (so in the server's root), then given the session.
    shutil.copytree(one.root / "work", two.root / "work")
    bare = two.request("POST", "api/kernels", json={"name": "python3"}).json()["id"]
    two.session("work/session.ipynb", kernel_id=bare)
    notice, tail = resumed_tail(two, bare, NOTEBOOK)
    assert notice.startswith(NOTICE) and listed[0]["checkpoint"] in notice, notice
    assert tail == expected
    cwd = two.kernel(bare).evaluate_json("__import__('json').dumps(__import__('os').getcwd())")
    assert cwd == str(two.root / "work")
    assert records(store) == {}
    assert "resumed work/session.ipynb into kernel" in two.log


@needs_corpus
@pytest.mark.corpus
def test_corpus_notebook_resumes_on_the_same_server(server_factory: Any, tmp_path: Path) -> None:
    notebook = CORPUS / "correctness" / "aliasing.ipynb"
    store = tmp_path / "store"
    expected = reference_tail(notebook, tmp_path / "reference")
    one = server_factory("one", *elastic_args(store, after=3))
    (one.root / "corpus").mkdir()
    kernel_id = run_notebook(one, "corpus/aliasing.ipynb", notebook)
    wait_until(lambda: kernel_id not in one.kernel_ids() and records(store), "the corpus kernel to hibernate")
    resumed = str(one.session("corpus/aliasing.ipynb")["kernel"]["id"])
    notice, tail = resumed_tail(one, resumed, notebook)
    assert notice.startswith(NOTICE) and tail == expected


def test_cell_sent_during_a_hibernation_is_never_lost(server_factory: Any, tmp_path: Path) -> None:
    """A short cell that reaches the kernel while it is checkpointed for hibernation runs once the
    checkpoint is done, and can be over before the server has seen the kernel busy: the hibernation must
    still notice it (the kernel's execution count moved), withdraw its record and keep the kernel, so the
    session that comes back later holds what the cell did."""
    store = tmp_path / "store"
    one = server_factory("one", *elastic_args(store, after=1))
    # Unseeded global draws cannot be replayed: the checkpoint writes 240 MB, which takes a while.
    kernel_id = open_and_run(one, "late.ipynb", [
        "%load_ext nbmigrate", "import numpy as np\nbig = np.random.random(30_000_000)"])
    kernel = one.kernel(kernel_id)
    wait_until(lambda: any(store.glob(f"{kernel_id}-*")), "the hibernation's checkpoint to start", 60)
    kernel.client.execute("late = 42")
    wait_until(lambda: kernel_id not in one.kernel_ids() and "late.ipynb" in records(store),
               "the kernel to hibernate after the late cell", 120)
    resumed = one.kernel(str(one.session("late.ipynb")["kernel"]["id"]))
    assert resumed.execute("print(late, big.shape)").stdout.splitlines()[-1] == "42 (30000000,)"


@pytest.mark.parametrize(("sig", "count"), [(signal.SIGTERM, 3), (signal.SIGINT, 1)], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_every_kernel_before_the_server_stops(server_factory: Any, tmp_path: Path,
                                                           sig: signal.Signals, count: int) -> None:
    store = tmp_path / "store"
    one = server_factory("one", *elastic_args(store))
    two = server_factory("two", *elastic_args(store))
    paths = [f"nb{i}.ipynb" for i in range(count)]
    for i, path in enumerate(paths):
        open_and_run(one, path, ["%load_ext nbmigrate", f"data = list(range({i + 3}))\nview = {{'d': data}}"])

    one.process.send_signal(sig)
    assert one.process.wait(timeout=60) is not None
    log = one.log
    assert f"received {sig.name}" in log and f"{count} of {count} kernels checkpointed" in log
    assert sorted(records(store)) == paths
    assert all(r["reason"] == "drain" for r in records(store).values())

    for i, path in enumerate(paths):
        kernel = two.kernel(str(two.session(path)["kernel"]["id"]))
        assert kernel.execute("print(data, view['d'] is data)").stdout.splitlines()[-1] == \
            f"{list(range(i + 3))} True"
    assert records(store) == {}


@pytest.mark.timeout(420)
def test_twenty_kernels_hibernate_at_once_and_all_resume(server_factory: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    # Idle for 5 s, not 1: a kernel must not hibernate between its start and the first queued cell
    # (on a loaded machine -- two test workers on two cores -- that gap has exceeded 1 s).
    one = server_factory("one", *elastic_args(store, after=5))
    flag = tmp_path / "go"
    paths = [f"n{i:02d}.ipynb" for i in range(20)]
    wait_for_flag = f"import os, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)"

    def prepare(i: int) -> str:
        kernel_id = str(one.session(paths[i])["kernel"]["id"])
        client = one.kernel(kernel_id).client
        # Queued, not awaited: every kernel stays busy until the flag exists, then all go idle together.
        for cell in ("%load_ext nbmigrate", f"x = [{i}] * 3\ny = {{'x': x, 'n': {i}}}", wait_for_flag):
            client.execute(cell)
        return kernel_id

    with ThreadPoolExecutor(4) as pool:
        kernel_ids = list(pool.map(prepare, range(20)))
    flag.touch()
    wait_until(lambda: len(records(store)) == 20 and not one.kernel_ids(), "twenty kernels to hibernate", 300,
               lambda: f"{len(records(store))} records, kernels left: {one.kernel_ids()}; "
                       f"server log:\n{one.log[-6000:]}")

    def check(i: int) -> str:
        kernel = one.kernel(str(one.session(paths[i])["kernel"]["id"]))
        return kernel.execute("print(x, y['x'] is x, y['n'])").stdout

    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(check, range(20)))
    for i, out in enumerate(outputs):
        assert out.startswith(NOTICE) and out.splitlines()[-1] == f"{[i] * 3} True {i}", (kernel_ids[i], out)
    # Every record of the first hibernation was consumed (the resumed kernels, idle again, may be
    # hibernating anew by now: those records name the new kernels).
    assert not {r["kernel_id"] for r in records(store).values()} & set(kernel_ids)


def test_failures_never_lose_a_session_and_rest(server_factory: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    broken = server_factory("broken", *elastic_args(blocker / "store", after=1))
    kernel_id = open_and_run(broken, "work.ipynb", ["%load_ext nbmigrate", "kept = 41 + 1"])
    unmonitored = open_and_run(broken, "plain.ipynb", ["plain = 1"])
    wait_until(lambda: f"not hibernating kernel {kernel_id} (work.ipynb)" in broken.log, "the failure to be logged")
    wait_until(lambda: f"not hibernating kernel {unmonitored} (plain.ipynb): its notebook never loaded nbmigrate"
               in broken.log, "the unmonitored kernel to be declined")
    assert set(broken.kernel_ids()) == {kernel_id, unmonitored}
    assert broken.kernel(kernel_id).execute("print(kept)").stdout == "42\n"
    drained = broken.request("POST", "api/nbmigrate/drain", json={"deadline": 60}).json()["kernels"]
    assert [k["status"] for k in drained] == ["failed", "failed"], drained
    assert all("not-a-folder" in k["detail"] for k in drained), drained
    assert f"kernel {kernel_id} (work.ipynb) NOT checkpointed (failed)" in broken.log

    # A resume that fails keeps the checkpoint and its record, says why and how to retry; a retry works.
    store = tmp_path / "store"
    one = server_factory("one", *elastic_args(store))
    for method, path in (("POST", "api/nbmigrate/drain"), ("GET", "api/nbmigrate/hibernated"),
                         ("POST", "api/nbmigrate/hibernated/nb.ipynb/resume")):
        assert one.request(method, path, token=None, json={}).status_code == 403, path
    assert one.request("POST", "api/nbmigrate/drain", json={"deadline": -1}).status_code == 400
    assert one.request("POST", "api/nbmigrate/hibernated/nb.ipynb/resume", json={}).status_code == 404
    open_and_run(one, "nb.ipynb", ["%load_ext nbmigrate", "value = {'k': [1, 2]}"])
    drained = one.request("POST", "api/nbmigrate/drain", json={"deadline": 60}).json()["kernels"]
    assert [k["status"] for k in drained] == ["checkpointed"]
    manifest = store / drained[0]["checkpoint"] / "manifest.json"
    good = manifest.read_bytes()
    manifest.write_bytes(good.replace(b'"value"', b'"VALUE"'))  # the signature no longer matches

    # The drained kernel kept running; once it is shut down, opening the notebook again tries to resume.
    assert len(one.kernel_ids()) == 1
    one.request("DELETE", f"api/kernels/{one.kernel_ids()[0]}")
    kernel = one.kernel(str(one.session("nb.ipynb")["kernel"]["id"]))
    shown = kernel.execute("print('mine')").stdout
    assert shown.startswith("nbmigrate: could not resume nb.ipynb") and "retry with POST" in shown, shown
    assert shown.endswith("mine\n")
    record = records(store)["nb.ipynb"]
    assert record["last_error"] and manifest.is_file()
    assert "could not resume nb.ipynb" in one.log

    manifest.write_bytes(good)
    response = one.request("POST", f"api/nbmigrate/hibernated/{quote('nb.ipynb')}/resume", json={})
    assert response.status_code == 200, response.text
    assert response.json()["report"]["ok"]
    assert kernel.execute("print(value)").stdout.splitlines()[-1] == "{'k': [1, 2]}"
    assert records(store) == {}
