"""The kill-loop plumbing shared by :mod:`tests.kernel.test_faults` (a local folder) and
:mod:`tests.kernel.test_faults_s3` (moto's S3): the session, its change C1 -> C2, the fault hook, the
kernel pool, and the steps of one kill point (kill a checkpointing kernel, restore what it left).
"""

from __future__ import annotations

import os
import queue
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbmigrate.remote import Kernel

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




def hook(kill_at: str | None, code: str = HOOK) -> str:
    """The hook cell ``code``: die at event ``kill_at`` (``None``: only record the events)."""
    return code.replace("<<KILL_AT>>", repr(kill_at))


FIRST_CHECKPOINT = {
    "open:blob1#1": "no checkpoint at {dest}: manifest.json not found",
    "close:blob2#1": "an incomplete checkpoint was found",
    "close:manifest#1": "an incomplete checkpoint was found",
}
"""Kill points of a first checkpoint, and what a restore of what it left must say."""


def lab_folders(root: Path) -> tuple[Path, dict[str, str]]:
    """The kernels' working folder (with the file a session cell reads) and their environment."""
    work = root / "work"
    work.mkdir()
    (work / "data.csv").write_text("1,2,3\n4,5,6\n")
    env = {**os.environ, "NBMIGRATE_SECRET": "fault-tests-secret", "IPYTHONDIR": str(root / "ipython"),
           "NBMIGRATE_SECRET_FILE": str(root / "secret"), "NBM_FAULT_TOKEN": "s3cret"}
    return work, env


def silent(kernel: Kernel, code: str) -> None:
    """Run ``code`` without IPython's cell events: the monitor does not record test plumbing."""
    msg_id = kernel.client.execute(code, silent=True, store_history=False)
    reply = kernel.client.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.client.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]


def run_until_killed(kernel: Kernel, code: str, timeout: float = 60) -> None:
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


def dispose(kernel: Kernel) -> None:
    kernel.client.stop_channels()
    if kernel.manager is not None:
        kernel.manager.shutdown_kernel(now=True)


class Pool:
    """Kernels started (and nbmigrate loaded) in the background while the previous test runs."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.executor = ThreadPoolExecutor(2)
        self.ready: deque[Future[Kernel]] = deque(self.executor.submit(self._warm) for _ in range(2))

    def _warm(self) -> Kernel:
        kernel = Kernel.start(cwd=str(self.cwd), env=self.env)
        kernel.execute("%load_ext nbmigrate")
        silent(kernel, "__import__('numpy')")
        return kernel

    def take(self) -> Kernel:
        kernel = self.ready.popleft().result()
        self.ready.append(self.executor.submit(self._warm))
        return kernel

    def close(self) -> None:
        for future in self.ready:
            future.result().shutdown()
        self.executor.shutdown()



def start_session(kernel: Kernel, change: bool) -> None:
    for cell in SESSION:
        kernel.execute(cell)
    if change:
        for cell in CHANGE:
            kernel.execute(cell)



def checkpoint_c1_then_change(kernel: Kernel, dest: str) -> dict[str, dict[str, Any]]:
    """Build the session in ``kernel``, checkpoint it (C1) to ``dest``, change it (C2): both summaries."""
    start_session(kernel, change=False)
    kernel.execute(CHECKPOINT.format(dest=dest, prefer="restore"))
    states = {"C1": kernel.evaluate_json(SUMMARY)}
    for cell in CHANGE:
        kernel.execute(cell)
    states["C2"] = kernel.evaluate_json(SUMMARY)
    assert states["C1"]["variables"] != states["C2"]["variables"]
    return states


def assert_kill_points_reached(kernel: Kernel, dest: str, hook_code: str, points: list[str]) -> None:
    """The kill points must be events of a real C2-over-C1 checkpoint (dry run to ``dest``, nothing killed)."""
    silent(kernel, hook_code)
    kernel.execute(CHECKPOINT.format(dest=dest, prefer="restore"))
    events = kernel.evaluate_json("__import__('json').dumps(__import__('sys').modules['nbmigrate.store'].fault_events)")
    missing = [p for p in points if p not in events]
    assert not missing, f"kill points that a checkpoint never reaches: {missing}; events: {events}"


def kill_checkpoint(pool: Pool, dest: str, hook_code: str, *, change: bool) -> None:
    """A fresh kernel rebuilds the session (C2 if ``change``, else C1) and dies checkpointing to ``dest``."""
    killer = pool.take()
    try:
        start_session(killer, change=change)
        silent(killer, hook_code)
        run_until_killed(killer, CHECKPOINT.format(dest=dest, prefer="restore"))
    finally:
        dispose(killer)


def restored_state(kernel: Kernel) -> tuple[dict[str, Any], str]:
    return kernel.evaluate_json(SUMMARY)["variables"], kernel.execute("print(next(gen))").stdout.strip()



def assert_restores(pool: Pool, dest: str, point: str, expected: str, states: dict[str, dict[str, Any]]) -> None:
    """A fresh kernel restores ``dest`` to state ``expected`` exactly (every variable, and the generator)."""
    restorer = pool.take()
    try:
        result = restorer.execute(f"%restore {dest}", allow_error=True)
        assert result.error is None, f"restore after a kill at {point} failed: {result.error}\n{result.stdout}"
        variables, next_gen = restored_state(restorer)
    finally:
        restorer.shutdown()
    assert variables == states[expected]["variables"], f"not {expected} after a kill at {point}"
    assert next_gen == NEXT_GEN[expected]


def assert_no_checkpoint(pool: Pool, dest: str, point: str) -> str:
    """A restore of what a killed first checkpoint left says there is no checkpoint: its message."""
    restorer = pool.take()
    try:
        result = restorer.execute(f"%restore {dest}", allow_error=True)
    finally:
        restorer.shutdown()
    assert result.error is not None and result.error.startswith("StoreError")
    assert f"no checkpoint at {dest}" in result.error
    assert FIRST_CHECKPOINT[point].format(dest=dest) in result.error
    return result.error
