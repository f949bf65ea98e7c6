"""nbmigrate: live-migrate Jupyter/IPython sessions.

Load it in a kernel with ``%load_ext nbmigrate`` (or ``nbmigrate install`` once, for every kernel);
then ``%checkpoint DEST`` and, in a fresh kernel, ``%restore DEST``. From Python inside a kernel:
``nbmigrate.checkpoint(dest)`` / ``nbmigrate.restore(src)`` return report dataclasses.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .costs import Prefer
    from .reports import CheckpointReport, RestoreReport

__all__ = ["__version__", "checkpoint", "load_ipython_extension", "restore", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Start monitoring this kernel and register the magics (IPython's extension entry point)."""
    from .extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .extension import unload

    unload(ipython)


def checkpoint(destination: str, *, bandwidth: float | str | None = None, prefer: Prefer = "balanced",
               best_effort: bool = False) -> CheckpointReport:
    """Checkpoint the current kernel's session (the extension must be loaded)."""
    from .checkpoint import checkpoint as run
    from .costs import parse_bandwidth
    from .extension import current_monitor

    bw = parse_bandwidth(bandwidth) if isinstance(bandwidth, str) else bandwidth
    return run(current_monitor(), destination, bandwidth=bw, prefer=prefer, best_effort=best_effort)


def restore(source: str, *, trust: bool = False, partial: bool = False) -> RestoreReport:
    """Restore a checkpoint into the current kernel; raises RestoreError if incomplete (unless partial)."""
    from .errors import RestoreError
    from .extension import current_monitor, ensure_loaded
    from .restore import restore as run

    ensure_loaded()
    report = run(current_monitor(), source, trust=trust, partial=partial)
    if not report.ok and not partial:
        raise RestoreError(report.render())
    return report


class _Package(types.ModuleType):
    """This package's module type: keeps ``nbmigrate.checkpoint`` / ``nbmigrate.restore`` the functions.

    Importing a submodule binds it as an attribute of its package, so the first ``import
    nbmigrate.checkpoint`` anywhere (``%load_ext`` does it) would replace the API function
    ``nbmigrate.checkpoint`` with the module of the same name. The submodules stay reachable through
    ``sys.modules`` (``from nbmigrate.checkpoint import prepare`` works); ``import nbmigrate.checkpoint
    as m`` gives the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("checkpoint", "restore") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
