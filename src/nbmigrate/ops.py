"""Operations a driver outside the kernel asks the kernel to run (remote control protocol).

A driver (the CLI, the Jupyter server extension) sends one *silent* execute request whose code is
built by :func:`request_code`: it calls :func:`run_operation` with the request as a JSON string
literal — data, never user text spliced into code. Silent requests do not fire IPython's
``pre_run_cell``/``post_run_cell``, so the operation is not recorded in the session's history.

The kernel answers on stdout with one line per event, each prefixed by :data:`MARKER`::

    {"event": "progress", "phase": "write", "done": 1048576, "total": 412000000}
    {"event": "result", "report": {...}}             # CheckpointReport/RestoreReport.to_dict()
    {"event": "error", "type": "PlanError", "message": "..."}

Operations: ``checkpoint`` (url, bandwidth, prefer, best_effort, storage_options), ``restore`` (url,
trust, partial, storage_options, cwd), ``plan`` and ``status`` (text), ``ping`` (is the extension
loaded?), ``notice`` (text shown at the top of the user's next cell). A checkpoint of a kernel that
never loaded the extension is refused with a message saying how to enable it, unless
``best_effort``: then monitoring starts now, every variable counts as pre-existing, and everything
picklable is stored while the rest is reported by name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from .errors import MonitorError, NbmigrateError

MARKER = "\x1enbmigrate:"

ERRORS: dict[str, type[NbmigrateError]] = {}
"""Exception classes by name, so a driver re-raises the kernel's error as the same type."""


def _register_errors() -> None:
    from . import errors

    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, NbmigrateError):
            ERRORS[name] = obj


_register_errors()


def request_code(op: str, **params: Any) -> str:
    """The code of the execute request that runs ``op`` with ``params`` in the kernel."""
    payload = json.dumps({"op": op, **params})
    return f"__import__('nbmigrate.ops').ops.run_operation({payload!r})"


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on one line of the kernel's stdout, or None for ordinary output."""
    if not line.startswith(MARKER):
        return None
    event = json.loads(line[len(MARKER):])
    return event if isinstance(event, dict) else None


def raise_for(event: dict[str, Any]) -> None:
    """Re-raise an ``error`` event as the nbmigrate exception it was in the kernel."""
    cls = ERRORS.get(str(event.get("type")), NbmigrateError)
    raise cls(str(event.get("message", "operation failed in the kernel")))


class EventReader:
    """Turns the text a kernel prints on stdout, as it arrives, into operation events.

    Stream messages split lines anywhere, so text is buffered up to the next newline. A ``result``
    event is kept in :attr:`result`; an ``error`` event is raised at once (:func:`nbmigrate.ops.raise_for`).
    """

    def __init__(self, on_progress: Callable[[str, int, int], None] | None = None) -> None:
        self.on_progress = on_progress
        self.result: dict[str, Any] | None = None
        self._buffer = ""

    def feed(self, text: str) -> None:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            event = parse_event(line)
            if event is None:
                continue
            if event["event"] == "progress" and self.on_progress is not None:
                self.on_progress(event["phase"], event["done"], event["total"])
            elif event["event"] == "result":
                self.result = event["report"]
            elif event["event"] == "error":
                raise_for(event)


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(MARKER + json.dumps(event) + "\n")
    sys.stdout.flush()


def _progress(phase: str, done: int, total: int) -> None:
    _emit({"event": "progress", "phase": phase, "done": done, "total": total})


def run_operation(request: str) -> None:
    """Run one request in this kernel and print its events (see the module docstring)."""
    try:
        params = json.loads(request)
        op = params.pop("op")
        _emit({"event": "result", "report": _OPERATIONS[op](**params)})
    except NbmigrateError as exc:
        _emit({"event": "error", "type": type(exc).__name__, "message": str(exc)})
    except Exception as exc:  # report, never leave the driver waiting for a result
        _emit({"event": "error", "type": "NbmigrateError", "message": f"{type(exc).__name__}: {exc}"})


def _monitor(load: bool) -> Any:
    from .extension import current_monitor, ensure_loaded

    if load:
        return ensure_loaded()
    return current_monitor()


def _checkpoint(url: str, bandwidth: float | None = None, prefer: str = "balanced",
                best_effort: bool = False, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    from .checkpoint import checkpoint

    try:
        monitor = _monitor(load=False)
    except MonitorError:
        if not best_effort:
            raise MonitorError(
                "this kernel never loaded nbmigrate, so its history is unknown: run `%load_ext nbmigrate` "
                "in it (or `nbmigrate install` once, for every new kernel), or pass --best-effort to store "
                "every variable that can be stored and report the rest by name") from None
        monitor = _monitor(load=True)
    report = checkpoint(monitor, url, bandwidth=bandwidth, prefer=prefer,  # type: ignore[arg-type]
                        best_effort=best_effort, storage_options=storage_options, progress=_progress)
    monitor.last_report = report
    return report.to_dict()


def _restore(url: str, trust: bool = False, partial: bool = False,
             storage_options: dict[str, Any] | None = None, cwd: str | None = None) -> dict[str, Any]:
    from .restore import restore

    if cwd is not None:
        # A kernel started without a notebook path runs in the server's folder; the session's files
        # (and relative paths in the checkpoint) live in the notebook's.
        import os

        os.chdir(cwd)
    monitor = _monitor(load=True)
    report = restore(monitor, url, trust=trust, partial=partial, storage_options=storage_options,
                     progress=_progress)
    monitor.last_report = report
    return report.to_dict()


def _plan(bandwidth: float = 274e6, prefer: str = "balanced") -> dict[str, Any]:
    from .inspection import plan_preview

    return {"text": plan_preview(_monitor(load=False), bandwidth=bandwidth, prefer=prefer)}  # type: ignore[arg-type]


def _status() -> dict[str, Any]:
    from .inspection import status_table

    return {"text": status_table(_monitor(load=False))}


def _ping() -> dict[str, Any]:
    """Version, whether the monitor is loaded, and the shell's execution count: a server compares two
    counts to learn whether a user's cell ran between two of its requests (silent ones do not count)."""
    from IPython.core.getipython import get_ipython

    from . import __version__

    try:
        _monitor(load=False)
        loaded = True
    except MonitorError:
        loaded = False
    return {"version": __version__, "monitoring": loaded,
            "execution_count": getattr(get_ipython(), "execution_count", None)}


def _notice(text: str) -> dict[str, Any]:
    """Print ``text`` once, at the top of the output of the next cell the user runs.

    What a server did to this kernel behind the user's back (resumed a hibernated session, or failed
    to) must show in the notebook; output of our own silent request never does. Silent requests do
    not fire ``pre_run_cell``, so only a user's cell shows it.
    """
    from IPython.core.getipython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise NbmigrateError("a notice needs an IPython kernel")

    def show(*_: Any) -> None:
        shell.events.unregister("pre_run_cell", show)
        sys.stdout.write(text.rstrip("\n") + "\n")

    shell.events.register("pre_run_cell", show)
    return {}


_OPERATIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "checkpoint": _checkpoint,
    "restore": _restore,
    "plan": _plan,
    "status": _status,
    "ping": _ping,
    "notice": _notice,
}
