"""What every migration method of the comparison does, and what the harness records about it.

A method hooks into a *source* kernel before the notebook's cells run (``prepare``: nbmigrate and
ElasticNotebook must watch the cells, Kishu instruments the kernel), checkpoints it at the end
(``checkpoint``), and brings the state back in a fresh kernel (``restore``). Methods with the same
``source`` share one source run, one after the other, so a notebook runs once for all of them;
methods that change the kernel they watch get a source run of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmigrate.remote import Kernel

from . import kernels


@dataclass
class Context:
    """Where one method migrates one notebook."""

    notebook: Path
    workdir: Path
    """cwd of the source kernel and of the restore kernel (files the notebook left stay where they were)."""
    store: Path
    """This method's own checkpoint folder (its bytes are the checkpoint size)."""
    kernel_name: str
    timeout: float
    bandwidth: float
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Checkpointed:
    seconds: float
    nbytes: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Restored:
    kernel: Kernel
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class Method:
    """Base: a fresh kernel for the restore, timed from its first request to the state being back."""

    name = ""
    source = "shared"
    needs_peers = False
    needs = ("dill",)
    """Packages the kernels must have (a method whose package is missing is skipped, saying so)."""
    own_names: frozenset[str] = frozenset()
    """Names the method itself puts in the user namespace (left out of the comparison)."""
    kernel_module = "ipykernel_launcher"
    """What the kernels of this method run (``python -m kernel_module -f {connection_file}``)."""

    def kernel_env(self, work: Path) -> dict[str, str]:
        """Environment variables the kernels of this method need (``work``: the notebook's cwd)."""
        return {}

    def setup_workdir(self, work: Path, notebook: Path) -> None:
        """Runs before the source kernel starts in ``work`` (files the method's kernels look for at start)."""

    def wrap(self, source: str) -> str:
        """The code sent to the source kernel for one notebook cell (a method may run cells itself)."""
        return source

    def prepare(self, kernel: Kernel, ctx: Context) -> None:
        """Runs before the notebook's first cell."""

    def checkpoint(self, kernel: Kernel, ctx: Context) -> Checkpointed:
        raise NotImplementedError

    def load(self, kernel: Kernel, ctx: Context) -> dict[str, Any]:
        """Brings the state back into the fresh ``kernel``; returns what the method reported."""
        raise NotImplementedError

    def restore(self, ctx: Context) -> Restored:
        kernel = kernels.start(ctx.kernel_name, ctx.workdir, ctx.env)
        try:
            t = time.perf_counter()
            info = self.load(kernel, ctx)
            return Restored(kernel, time.perf_counter() - t, info)
        except BaseException:
            kernel.shutdown()
            raise
