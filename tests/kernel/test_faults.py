"""Faults on real kernels (issue 5): a checkpointing kernel killed mid-write, damaged blobs, failed replays.

SIGKILL. Kernel A holds a small session (three arrays of a few MB, a generator, a dict, a value drawn
from a global RNG, a table read from a file, a value read from an environment variable) and writes a
good checkpoint C1 to a destination. Then, per kill point, a fresh kernel rebuilds A's session, changes
it (C2 differs from C1 in four variables), and checkpoints to a copy of that destination with a test
hook installed by the test's own cell code (no hook in nbmigrate): the store's file system is wrapped so
that every blob and manifest open/write/close, the manifest rename and every garbage-collection delete is
an event, and the kernel SIGKILLs itself at the chosen one (1 MiB write slices, so a blob has a middle).
A fresh kernel then restores the destination: it must be C1 exactly (every variable's type and digest,
and the generator's next value) for a kill before the manifest rename, C2 exactly after it, never a mix.
The same destination must then take a new checkpoint and be left with no stray file. A destination
that only ever saw a killed first checkpoint must say "no checkpoint" (and "incomplete" if a writer left
files).

Damaged blobs: a flipped byte or a truncation is an IntegrityError naming the blob and its variables;
``--partial`` restores everything else, recomputes a lost group when its cells can be replayed, and
names exactly what is missing.

Failed replays: with the file a replayed cell reads deleted and the environment variable another one
reads unset, ``--partial`` names their variables and restores the rest; without it, the restore refuses
before running anything.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nbmigrate.remote import Kernel
from nbmigrate.store import PROBE_PREFIX, TMP_PREFIX, CheckpointStore

pytestmark = pytest.mark.kernel

SUMMARY = "__import__('nbmigrate.extension').extension.summary_json()"
REPORT = "__import__('nbmigrate.extension').extension.last_report_json()"
CHECKPOINT = "%checkpoint {dest} --prefer {prefer} --bandwidth 100MB/s"

SESSION = [
    "import os\nimport time\nimport numpy as np\nnp.random.seed(0)",
    # Drawn from the global RNG seeded in an earlier cell: the same values in every kernel, yet they
    # count as unseeded randomness, so they can only be stored (a few MB each: blobs with a middle).
    "big1 = np.random.rand(400_000)",
    "big2 = np.random.rand(300_000)",
    "big3 = np.random.rand(200_000)",
    "gen = (i * i for i in range(100))\nnext(gen)",
    "small = {'k': [1, 2, 3], 'draw': int(np.random.randint(1000))}",  # stored, whatever its cells cost
    "noise = np.random.rand(4)",
    # slow to recompute, so stored; but replayable, so --partial can recompute it if its blob is lost
    "slow = np.arange(300_000, dtype=np.float64) * 0.5\ntime.sleep(0.15)",
    "table = np.loadtxt('data.csv', delimiter=',')",
    "token = os.environ['NBM_FAULT_TOKEN']",
    "scaled = table * 2",
]
CHANGE = ["big1 += 1\nbig2[0] = -1.0\nsmall['k'].append(4)", "next(gen)"]
"""C1 -> C2. The generator moves in a cell of its own: replaying a cell that also changed big1 would
need big1's previous version, which (drawn from the global RNG) no replay can give back."""
NEXT_GEN = {"C1": "1", "C2": "4"}
"""``next(gen)`` after restoring C1 (one value drawn) or C2 (two drawn)."""

HOOK = r'''
def _nbm_fault_hook(kill_at):
    import os, signal, sys
    store = sys.modules["nbmigrate.store"]
    store.CHUNK = 1 << 20  # 1 MiB slices: several writes per blob, so a blob has a middle to die in
    counts = {}
    events = store.fault_events = []

    def at(label):
        counts[label] = counts.get(label, 0) + 1
        events.append(f"{label}#{counts[label]}")
        if events[-1] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    class File:
        def __init__(self, f, what):
            self._f, self._what = f, what

        def write(self, data):
            n = self._f.write(data)
            at("write:" + self._what)
            return n

        def close(self):
            self._f.close()
            at("close:" + self._what)

        def __getattr__(self, name):
            return getattr(self._f, name)

    class FS:
        def __init__(self, fs):
            self._fs, self._blobs = fs, 0

        def open(self, path, mode="rb", **kw):
            if "w" not in mode:
                return self._fs.open(path, mode, **kw)
            if "/blobs/" in path:
                self._blobs += 1
                what = f"blob{self._blobs}"
            else:
                what = "manifest" if ".tmp-" in path else "probe"
            at("open:" + what)
            return File(self._fs.open(path, mode, **kw), what)

        def mv(self, *a, **kw):
            out = self._fs.mv(*a, **kw)
            at("renamed")
            return out

        def rm(self, *a, **kw):
            at("rm")
            return self._fs.rm(*a, **kw)

        def __getattr__(self, name):
            return getattr(self._fs, name)

    init = store.CheckpointStore.__init__
    write_manifest = store.CheckpointStore.write_manifest

    def wrapped_init(self, *a, **kw):
        init(self, *a, **kw)
        self.fs = FS(self.fs)

    def wrapped_write_manifest(self, *a, **kw):
        write_manifest(self, *a, **kw)
        at("stored")  # manifest in place, garbage collected: the checkpoint is done but not reported

    store.CheckpointStore.__init__ = wrapped_init
    store.CheckpointStore.write_manifest = wrapped_write_manifest


_nbm_fault_hook(<<KILL_AT>>)
del _nbm_fault_hook
'''
"""The test hook, run as a silent cell (not recorded) that leaves no name behind: the store's file
system becomes a wrapper that records every blob/manifest open, write and close, the manifest rename,
every garbage-collection delete and the end of ``write_manifest`` as an event
(``nbmigrate.store.fault_events``), and SIGKILLs the kernel at the event ``kill_at``."""



def _hook(kill_at: str | None) -> str:
    """The hook cell: die at event ``kill_at`` (``None``: only record the events)."""
    return HOOK.replace("<<KILL_AT>>", repr(kill_at))


# Kill points of C2 over C1: new blobs for big1 (blob1: a pickle part and 3.2 MB of buffer), big2
# (blob2: 2.4 MB) and small (blob3); big3, noise, table ... are unchanged, so their blobs exist and are
# not written again. Then the temporary manifest, its rename, GC deleting C1's old blobs, and the end.
BEFORE_RENAME = [
    "open:blob1#1", "write:blob1#1", "write:blob1#2", "write:blob1#3", "write:blob1#5", "close:blob1#1",
    "open:blob2#1", "write:blob2#1", "write:blob2#2", "write:blob2#4", "close:blob2#1",
    "open:blob3#1", "write:blob3#1", "close:blob3#1",
    "open:manifest#1", "write:manifest#1", "close:manifest#1",
]  # fmt: skip
AFTER_RENAME = ["renamed#1", "rm#1", "rm#2", "stored#1"]
FIRST_CHECKPOINT = {
    "open:blob1#1": "no checkpoint at {dest}: manifest.json not found",
    "close:blob2#1": "an incomplete checkpoint was found",
    "close:manifest#1": "an incomplete checkpoint was found",
}


def _silent(kernel: Kernel, code: str) -> None:
    """Run ``code`` without IPython's cell events: the monitor does not record test plumbing."""
    msg_id = kernel.client.execute(code, silent=True, store_history=False)
    reply = kernel.client.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.client.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]


def _run_until_killed(kernel: Kernel, code: str, timeout: float = 60) -> None:
    msg_id = kernel.client.execute(code)
    deadline = time.monotonic() + timeout
    assert kernel.manager is not None
    while time.monotonic() < deadline:
        if not kernel.manager.is_alive():
            return
        try:
            msg = kernel.client.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            raise AssertionError(f"`{code}` finished: the kill point was never reached")
    raise TimeoutError(f"the kernel survived `{code}` for {timeout} s")


def _dispose(kernel: Kernel) -> None:
    kernel.client.stop_channels()
    if kernel.manager is not None:
        kernel.manager.shutdown_kernel(now=True)


class _Pool:
    """Kernels started (and nbmigrate loaded) in the background while the previous test runs."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.executor = ThreadPoolExecutor(2)
        self.ready: deque[Future[Kernel]] = deque(self.executor.submit(self._warm) for _ in range(2))

    def _warm(self) -> Kernel:
        kernel = Kernel.start(cwd=str(self.cwd), env=self.env)
        kernel.execute("%load_ext nbmigrate")
        _silent(kernel, "__import__('numpy')")
        return kernel

    def take(self) -> Kernel:
        kernel = self.ready.popleft().result()
        self.ready.append(self.executor.submit(self._warm))
        return kernel

    def close(self) -> None:
        for future in self.ready:
            future.result().shutdown()
        self.executor.shutdown()


@dataclass
class Lab:
    root: Path
    work: Path
    env: dict[str, str]
    a: Kernel
    """Kernel A, alive for the whole module, in state C2 (with the hook installed, never killing)."""
    c1: Path
    c3: Path
    """A ``--prefer checkpoint`` checkpoint of C2: everything replayable is replayed at restore."""
    states: dict[str, dict[str, Any]]
    """Namespace summaries (type and digest per variable) of C1 and C2."""
    pool: _Pool


def _start_session(kernel: Kernel, change: bool) -> None:
    for cell in SESSION:
        kernel.execute(cell)
    if change:
        for cell in CHANGE:
            kernel.execute(cell)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("faults")
    work = root / "work"
    work.mkdir()
    (work / "data.csv").write_text("1,2,3\n4,5,6\n")
    env = {**os.environ, "NBMIGRATE_SECRET": "fault-tests-secret", "IPYTHONDIR": str(root / "ipython"),
           "NBMIGRATE_SECRET_FILE": str(root / "secret"), "NBM_FAULT_TOKEN": "s3cret"}
    a = Kernel.start(cwd=str(work), env=env)
    pool = _Pool(work, env)
    try:
        a.execute("%load_ext nbmigrate")
        _start_session(a, change=False)
        a.execute(CHECKPOINT.format(dest=root / "c1", prefer="restore"))
        states = {"C1": a.evaluate_json(SUMMARY)}
        for cell in CHANGE:
            a.execute(cell)
        states["C2"] = a.evaluate_json(SUMMARY)
        assert states["C1"]["variables"] != states["C2"]["variables"]
        a.execute(CHECKPOINT.format(dest=root / "c3", prefer="checkpoint"))
        # the kill points must be events of a real C2-over-C1 checkpoint (dry run, nothing killed)
        shutil.copytree(root / "c1", root / "dry")
        _silent(a, _hook(None))
        a.execute(CHECKPOINT.format(dest=root / "dry", prefer="restore"))
        events = a.evaluate_json("__import__('json').dumps(__import__('sys').modules['nbmigrate.store'].fault_events)")
        missing = [p for p in BEFORE_RENAME + AFTER_RENAME if p not in events]
        assert not missing, f"kill points that a checkpoint never reaches: {missing}; events: {events}"
        yield Lab(root, work, env, a, root / "c1", root / "c3", states, pool)
    finally:
        pool.close()
        a.shutdown()


def _restored_state(kernel: Kernel) -> tuple[dict[str, Any], str]:
    return kernel.evaluate_json(SUMMARY)["variables"], kernel.execute("print(next(gen))").stdout.strip()


def _no_strays(dest: Path) -> None:
    manifest = CheckpointStore(str(dest)).read_manifest(trust=True)
    leftovers = [p.name for p in dest.iterdir() if p.name.startswith((TMP_PREFIX, PROBE_PREFIX))]
    assert leftovers == []
    assert {p.name for p in (dest / "blobs").iterdir()} == {b.sha256 for b in manifest.blobs()}


@pytest.mark.parametrize("point", BEFORE_RENAME + AFTER_RENAME)
def test_kill_during_checkpoint(point: str, lab: Lab, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    shutil.copytree(lab.c1, dest)
    killer = lab.pool.take()
    try:
        _start_session(killer, change=True)
        _silent(killer, _hook(point))
        _run_until_killed(killer, CHECKPOINT.format(dest=dest, prefer="restore"))
    finally:
        _dispose(killer)

    expected = "C2" if point in AFTER_RENAME else "C1"
    restorer = lab.pool.take()
    try:
        result = restorer.execute(f"%restore {dest}", allow_error=True)
        assert result.error is None, f"restore after a kill at {point} failed: {result.error}\n{result.stdout}"
        variables, next_gen = _restored_state(restorer)
    finally:
        restorer.shutdown()
    assert variables == lab.states[expected]["variables"], f"not {expected} after a kill at {point}"
    assert next_gen == NEXT_GEN[expected]

    # The destination takes the next checkpoint, which leaves nothing of the killed one behind.
    lab.a.execute(CHECKPOINT.format(dest=dest, prefer="restore"))
    _no_strays(dest)


@pytest.mark.parametrize("point", list(FIRST_CHECKPOINT))
def test_killed_first_checkpoint(point: str, lab: Lab, tmp_path: Path) -> None:
    dest = tmp_path / "fresh"
    killer = lab.pool.take()
    try:
        _start_session(killer, change=False)
        _silent(killer, _hook(point))
        _run_until_killed(killer, CHECKPOINT.format(dest=dest, prefer="restore"))
    finally:
        _dispose(killer)
    restorer = lab.pool.take()
    try:
        result = restorer.execute(f"%restore {dest}", allow_error=True)
    finally:
        restorer.shutdown()
    assert result.error is not None and result.error.startswith("StoreError")
    assert f"no checkpoint at {dest}" in result.error
    assert FIRST_CHECKPOINT[point].format(dest=dest) in result.error


def _blob_of(dest: Path, name: str) -> Path:
    manifest = json.loads((dest / "manifest.json").read_text())["manifest"]
    group = next(g for g in manifest["groups"] if name in g["names"])
    return dest / "blobs" / group["blob"]["sha256"]


def test_corrupt_blob_is_named(lab: Lab, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    shutil.copytree(lab.c1, dest)
    blob = _blob_of(dest, "big2")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    restorer = lab.pool.take()
    try:
        result = restorer.execute(f"%restore {dest}", allow_error=True)
        leaked = restorer.evaluate_json("__import__('json').dumps(sorted(k for k in globals() if k in "
                                        f"{sorted(lab.states['C1']['variables'])!r}))")
    finally:
        restorer.shutdown()
    assert result.error is not None and result.error.startswith("IntegrityError")
    assert f"blob {blob.name[:12]} is corrupt: checksum mismatch" in result.error
    assert "(holds big2)" in result.error
    assert leaked == [], "nothing is restored from a checkpoint that failed verification"


def test_truncated_blobs_partial(lab: Lab, tmp_path: Path) -> None:
    """``--partial``: slow (replayable) is recomputed, noise (drawn from a global RNG) is missing, by name."""
    dest = tmp_path / "ckpt"
    shutil.copytree(lab.c1, dest)
    for name in ("slow", "noise"):
        blob = _blob_of(dest, name)
        blob.write_bytes(blob.read_bytes()[:-100])
    restorer = lab.pool.take()
    try:
        strict = restorer.execute(f"%restore {dest}", allow_error=True)
        result = restorer.execute(f"%restore {dest} --partial", allow_error=True)
        report = restorer.evaluate_json(REPORT)
        variables, next_gen = _restored_state(restorer)
    finally:
        restorer.shutdown()
    assert strict.error is not None and "is truncated" in strict.error and "(holds noise)" in strict.error
    assert result.error is None
    assert report["missing"] == ["noise"]
    assert report["mismatched"] == [] and report["failures"] == []
    problems = "\n".join(report["problems"])
    assert "(holds slow)" in problems and "(holds noise)" in problems
    assert "slow recomputed instead, by replaying cells [7]" in problems
    assert "noise cannot be recomputed instead" in problems
    expected = {n: v for n, v in lab.states["C1"]["variables"].items() if n != "noise"}
    assert variables == expected
    assert "slow" in report["verified"]
    assert next_gen == NEXT_GEN["C1"]


def test_failed_replays_partial(lab: Lab, tmp_path: Path) -> None:
    """The file one replayed cell reads is gone, the variable another reads is unset: both named."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in lab.env.items() if k != "NBM_FAULT_TOKEN"}
    with Kernel.start(cwd=str(elsewhere), env=env) as b:
        b.execute("%load_ext nbmigrate")
        strict = b.execute(f"%restore {lab.c3}", allow_error=True)
        leaked = b.evaluate_json("__import__('json').dumps('big1' in globals())")
        result = b.execute(f"%restore {lab.c3} --partial", allow_error=True)
        report = b.evaluate_json(REPORT)
        variables, next_gen = _restored_state(b)
    assert strict.error is not None and strict.error.startswith("RestoreError")
    assert f"reads {elsewhere / 'data.csv'}, which is missing here" in strict.error
    assert leaked is False, "a restore refused for missing files runs nothing"

    assert result.error is None
    assert report["missing"] == ["scaled", "table", "token"]
    failed = {f["cell"]: f for f in report["failures"]}
    token_cell = SESSION.index("token = os.environ['NBM_FAULT_TOKEN']")
    assert "KeyError" in failed[token_cell]["error"] and failed[token_cell]["variables"] == ["token"]
    assert any("data.csv, which is missing here" in p for p in report["problems"])
    assert report["mismatched"] == []
    expected = {n: v for n, v in lab.states["C2"]["variables"].items() if n not in ("scaled", "table", "token")}
    assert variables == expected
    assert next_gen == NEXT_GEN["C2"]
