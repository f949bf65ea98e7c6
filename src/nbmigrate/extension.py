"""Wiring into IPython: one monitor per shell, created by ``%load_ext nbmigrate``."""

from __future__ import annotations

from typing import Any

from .errors import MonitorError
from .monitor import Monitor

_MONITORS: dict[int, Monitor] = {}


def load(shell: Any) -> Monitor:
    """Start monitoring ``shell`` (idempotent) and register the magics."""
    monitor = _MONITORS.get(id(shell))
    if monitor is not None:
        return monitor
    from .magics import NbmigrateMagics

    monitor = Monitor(shell)
    monitor.start()
    _MONITORS[id(shell)] = monitor
    shell.register_magics(NbmigrateMagics(shell, monitor))
    return monitor


def unload(shell: Any) -> None:
    monitor = _MONITORS.pop(id(shell), None)
    if monitor is not None:
        monitor.stop()


def ensure_loaded() -> Monitor:
    """The current shell's monitor, loading the extension first if needed (restore into a bare kernel)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise MonitorError("nbmigrate runs inside an IPython kernel; no IPython shell is active here")
    return load(shell)


def current_monitor() -> Monitor:
    from IPython import get_ipython

    shell = get_ipython()
    monitor = _MONITORS.get(id(shell)) if shell is not None else None
    if monitor is None:
        raise MonitorError("nbmigrate is not monitoring this kernel: run `%load_ext nbmigrate` first "
                           "(or `nbmigrate install` once so every new kernel loads it)")
    return monitor


def last_report_json() -> str:
    """JSON of the last checkpoint/restore report in this kernel (for drivers, via user_expressions)."""
    import json

    report = current_monitor().last_report
    return json.dumps(None if report is None else report.to_dict())


def summary_json() -> str:
    """JSON ``{"variables": {name: [type, digest]}, "groups": [[names...]]}`` of this kernel's session.

    Lets a driver compare two kernels (before and after a migration) without moving any values.
    """
    import json

    from .inspection import namespace_summary

    return json.dumps(namespace_summary(current_monitor()))
