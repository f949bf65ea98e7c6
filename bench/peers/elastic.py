"""ElasticNotebook as packaged on PyPI, in its two forms.

**ElasticNotebook** (``elastic-notebook-slim==0.0.12``, package ``elastic``; 0.0.13's restore is
broken): an ``ElasticNotebook(shell)`` object whose ``record_event(cell)`` runs a cell and updates its
dependency graph, the way the paper's ``%%RecordEvent`` cell magic did. Every notebook cell is sent as
``record_event(<cell source>)``; the object lives in a private module, not in the user's namespace. It
is told the benchmark bandwidth (``set_migration_speed``), as nbmigrate is, so it does not profile the
disk and plans for the same migration. ``checkpoint(file)`` / ``load_checkpoint(file)`` in a fresh kernel.

**elastic-kernel** (package ``elastic_kernel``, which bundles its own ElasticNotebook): a kernel that
records every cell, checkpoints on shutdown and restores at start, into
``.elastic_kernel/<hash of the notebook's inode>/checkpoint.pickle`` beside ``$JPY_SESSION_NAME``. The
harness keeps the source kernel alive (its ``after_restore`` tail runs last), so it asks for the same
save and load through the kernel's control-channel requests (``elastic_checkpoint_request`` /
``elastic_restore_request``, the ones its server extension uses), and turns the automatic ones off:
kernel start-up stays out of the restore time, as for every method.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from nbmigrate.remote import Kernel, KernelError

from . import kernels
from .base import Checkpointed, Context, Method, dir_bytes

_HOLDER = "_nbmigrate_bench_elastic"


class ElasticNotebook(Method):
    name = "ElasticNotebook"
    source = "elastic"
    needs_peers = True
    needs = ("elastic",)

    def _create(self, kernel: Kernel, ctx: Context) -> None:
        kernels.silent_exec(kernel, (
            f"__import__('sys').modules[{_HOLDER!r}] = __import__('types').ModuleType({_HOLDER!r})\n"
            f"__import__('sys').modules[{_HOLDER!r}].en = __import__('elastic.elastic_notebook', fromlist=['x'])"
            ".ElasticNotebook(get_ipython())\n"
            f"__import__('sys').modules[{_HOLDER!r}].en.set_migration_speed({ctx.bandwidth!r})\n"), timeout=ctx.timeout)

    def prepare(self, kernel: Kernel, ctx: Context) -> None:
        self._create(kernel, ctx)

    def wrap(self, source: str) -> str:
        return f"__import__({_HOLDER!r}).en.record_event({source!r})"

    def checkpoint(self, kernel: Kernel, ctx: Context) -> Checkpointed:
        ctx.store.mkdir(parents=True, exist_ok=True)
        path = ctx.store / "checkpoint.pickle"
        t = time.perf_counter()
        ok = kernels.silent_eval(kernel, f"__import__('json').dumps(bool(__import__({_HOLDER!r}).en.checkpoint("
                                 f"{str(path)!r})))", timeout=ctx.timeout)
        seconds = time.perf_counter() - t
        if not ok:
            raise KernelError("ElasticNotebook's checkpoint returned False (it could not migrate the session)")
        return Checkpointed(seconds, dir_bytes(ctx.store))

    def load(self, kernel: Kernel, ctx: Context) -> dict[str, Any]:
        self._create(kernel, ctx)
        path = str(ctx.store / "checkpoint.pickle")
        kernels.silent_exec(kernel, f"__import__({_HOLDER!r}).en.load_checkpoint({path!r})", timeout=ctx.timeout)
        return {}


def _control(kernel: Kernel, request: str, timeout: float) -> dict[str, Any]:
    """Send ``request`` on the control channel and return its reply's content."""
    client = kernel.client
    msg = client.session.msg(request, {})
    client.control_channel.send(msg)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.control_channel.get_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            content: dict[str, Any] = reply["content"]
            return content
    raise TimeoutError(f"{request} got no reply within {timeout:.0f} s")


class ElasticKernel(Method):
    name = "elastic-kernel"
    source = "elastic-kernel"
    needs_peers = True
    needs = ("elastic_kernel",)
    kernel_module = "elastic_kernel.kernel"

    def kernel_env(self, work: Path) -> dict[str, str]:
        return {"JPY_SESSION_NAME": str(work / "elastic_notebook.ipynb"),
                "ELASTIC_KERNEL_CHECKPOINT_ON_SHUTDOWN": "0", "ELASTIC_KERNEL_RESTORE_ON_STARTUP": "0"}

    def setup_workdir(self, work: Path, notebook: Path) -> None:
        """The kernel finds its checkpoint folder from the notebook file's inode at start: it must exist."""
        shutil.copyfile(notebook, work / "elastic_notebook.ipynb")

    def checkpoint(self, kernel: Kernel, ctx: Context) -> Checkpointed:
        t = time.perf_counter()
        result = _control(kernel, "elastic_checkpoint_request", ctx.timeout)
        seconds = time.perf_counter() - t
        if not result.get("ok"):
            raise KernelError(f"elastic-kernel's checkpoint failed: {result.get('reason')}: {result.get('error', '')}")
        path = Path(str(result["path"]))
        return Checkpointed(seconds, dir_bytes(path), {"migrated": result.get("vss_to_migrate"),
                                                       "recomputed": result.get("vss_to_recompute")})

    def load(self, kernel: Kernel, ctx: Context) -> dict[str, Any]:
        result = _control(kernel, "elastic_restore_request", ctx.timeout)
        if not result.get("ok"):
            raise KernelError(f"elastic-kernel's restore failed: {result.get('reason')}: {result.get('error', '')}")
        return {}

