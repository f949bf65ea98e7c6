"""The two pickling baselines of the ElasticNotebook paper, both with dill.

**DumpSession** pickles the whole session in one file (``dill.dump_module``) and loads it back
(``dill.load_module``): all or nothing. **PickleEach** pickles every variable to its own file and skips
the ones that fail (IPython's ``%store`` approach as the paper modified it), so it always "succeeds" and
the skipped variables show up as missing in the restored kernel.

Both run through the in-kernel probe (a silent request), so they bind no name in the user's namespace.
They share a *plain* source run (no nbmigrate loaded): a dill user's kernel, and the plain side of the
overhead figures.
"""

from __future__ import annotations

import time
from typing import Any

from nbmigrate.remote import Kernel

from . import kernels
from .base import Checkpointed, Context, Method, dir_bytes


class DumpSession(Method):
    name = "DumpSession"
    source = "plain"

    def checkpoint(self, kernel: Kernel, ctx: Context) -> Checkpointed:
        path = ctx.store / "session.pkl"
        ctx.store.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        kernels.probe(kernel, "dump_session", str(path), timeout=ctx.timeout)
        return Checkpointed(time.perf_counter() - t, dir_bytes(ctx.store))

    def load(self, kernel: Kernel, ctx: Context) -> dict[str, Any]:
        kernels.probe(kernel, "load_session", str(ctx.store / "session.pkl"), timeout=ctx.timeout)
        return {}


class PickleEach(Method):
    name = "PickleEach"
    source = "plain"

    def checkpoint(self, kernel: Kernel, ctx: Context) -> Checkpointed:
        t = time.perf_counter()
        result = kernels.probe(kernel, "pickle_each", str(ctx.store), timeout=ctx.timeout)
        seconds = time.perf_counter() - t
        return Checkpointed(seconds, dir_bytes(ctx.store), {"skipped": result["skipped"]})

    def load(self, kernel: Kernel, ctx: Context) -> dict[str, Any]:
        result = kernels.probe(kernel, "unpickle_each", str(ctx.store), timeout=ctx.timeout)
        return {"failed_to_load": result["failed"]} if result["failed"] else {}
