"""Kishu (PyPI ``kishu``) through its in-kernel API.

``init_kishu(notebook)`` before the first cell instruments the kernel: from then on Kishu commits
(incrementally checkpoints) after every cell into ``<notebook>.kishudb`` beside the notebook file. The
migration checkpoint is one more, manual commit at the end; what must travel is the notebook file and
its ``.kishudb`` (both live in the notebook's cwd, which the restore kernel shares, so "carrying them
across" costs their bytes at the benchmark bandwidth). The restore is ``init_kishu`` in a fresh kernel
and a checkout of that commit. ``ENV_KISHU_TEST_MODE=1`` turns off Kishu's waits for a browser front end
(notebook saves, page reloads), none of which exists here; ``KISHU_PATH_ROOT`` keeps its config out of
the user's home. Kishu finds its kernel's id in the connection file's name, which it expects to be
Jupyter's ``kernel-<id>.json`` (jupyter_client names it otherwise when a harness starts the kernel):
``TEST_NOTEBOOK_PATH`` makes it use a fixed id and the given notebook instead, which only labels its
connection records.

Kishu's per-cell commits happen during the source run, so its checkpoint time here is only the last
commit: the rest is paid while the notebook runs (and is not in this table).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from nbmigrate.remote import Kernel

from . import kernels
from .base import Checkpointed, Context, Method, dir_bytes


def _notebook(ctx: Context) -> Path:
    return ctx.workdir / "kishu_notebook.ipynb"



class Kishu(Method):
    name = "Kishu"
    source = "kishu"
    needs_peers = True
    needs = ("kishu",)
    own_names = frozenset({"_kishu"})

    def __init__(self) -> None:
        self._commit: str | None = None

    def kernel_env(self, work: Path) -> dict[str, str]:
        return {"ENV_KISHU_TEST_MODE": "1", "KISHU_PATH_ROOT": str(work.parent / "kishu-home"),
                "TEST_NOTEBOOK_PATH": str(work / "kishu_notebook.ipynb")}

    def _init(self, kernel: Kernel, ctx: Context) -> None:
        kernels.silent_exec(kernel, f"__import__('kishu').init_kishu({str(_notebook(ctx))!r})", timeout=ctx.timeout)

    def setup_workdir(self, work: Path, notebook: Path) -> None:
        shutil.copyfile(notebook, work / "kishu_notebook.ipynb")

    def prepare(self, kernel: Kernel, ctx: Context) -> None:
        self._init(kernel, ctx)

    def checkpoint(self, kernel: Kernel, ctx: Context) -> Checkpointed:
        t = time.perf_counter()
        commit = kernels.silent_eval(kernel, "__import__('json').dumps(str(get_ipython().user_ns['_kishu'].commit("
                                     "'nbmigrate-bench migration')))", timeout=ctx.timeout)
        seconds = time.perf_counter() - t
        self._commit = str(commit)
        db = _notebook(ctx).with_suffix(".kishudb")
        return Checkpointed(seconds, dir_bytes(db) + _notebook(ctx).stat().st_size, {"commit": self._commit})

    def load(self, kernel: Kernel, ctx: Context) -> dict[str, Any]:
        assert self._commit is not None
        self._init(kernel, ctx)
        message = kernels.silent_eval(kernel, "__import__('json').dumps(str(get_ipython().user_ns['_kishu'].checkout("
                                      f"{self._commit!r})))", timeout=ctx.timeout)
        return {"checkout": message}
