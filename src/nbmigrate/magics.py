"""IPython magics: ``%checkpoint``, ``%restore`` and ``%nbmigrate status|plan``.

Thin: parse arguments (``magic_arguments`` so ``%checkpoint?`` explains itself), call the command
functions, print their reports. A failed restore raises after printing, so the cell fails visibly
(and a headless runner such as nbclient stops).
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .checkpoint import checkpoint
from .costs import parse_bandwidth
from .errors import NbmigrateError, RestoreError
from .inspection import plan_preview, status_table
from .monitor import Monitor
from .restore import restore


def _bandwidth(text: str) -> float:
    """``--bandwidth`` in bytes/s; a bad value is a usage error (one line, no traceback)."""
    try:
        return parse_bandwidth(text)
    except ValueError as exc:
        raise UsageError(f"--bandwidth: {exc}") from None


def _rephrased(exc: NbmigrateError, context: str) -> NbmigrateError:
    """The same kind of error with ``context`` in front, raised without nbmigrate's internal traceback:
    the message names what failed; the stack of store.py/restore.py frames only hides it."""
    try:
        return type(exc)(f"{context}: {exc}")
    except TypeError:  # an error class with a richer constructor
        return NbmigrateError(f"{context}: {exc}")


@magics_class
class NbmigrateMagics(Magics):
    def __init__(self, shell: Any, monitor: Monitor) -> None:
        super().__init__(shell)
        self.monitor = monitor

    @magic_arguments()
    @argument("destination", help="folder or fsspec URL (s3://bucket/prefix, memory://...) to write to")
    @argument("--bandwidth", default=None,
              help="store bandwidth for the cost model, e.g. 100MB/s or 1Gbit/s (default: measured)")
    @argument("--prefer", default="balanced", choices=["balanced", "restore", "checkpoint"],
              help="what the plan minimises: total migration time, restore time, or checkpoint time")
    @argument("--best-effort", action="store_true",
              help="write the checkpoint even if some variables can be neither stored nor recomputed")
    @argument("-v", "--verbose", action="store_true", help="list every group and why it is stored or replayed")
    @line_magic
    def checkpoint(self, line: str) -> None:
        """Checkpoint this session: store what is cheap to store, plan to replay what is cheap to redo."""
        args = parse_argstring(self.checkpoint, line)
        bandwidth = _bandwidth(args.bandwidth) if args.bandwidth else None
        try:
            report = checkpoint(self.monitor, args.destination, bandwidth=bandwidth, prefer=args.prefer,
                                best_effort=args.best_effort)
        except NbmigrateError as exc:
            raise _rephrased(exc, f"checkpoint to {args.destination} failed") from None
        self.monitor.last_report = report
        print(report.render(verbose=args.verbose))

    @magic_arguments()
    @argument("source", help="folder or fsspec URL of a checkpoint")
    @argument("--trust", action="store_true",
              help="accept a checkpoint signed with another key (checksums are still verified)")
    @argument("--partial", action="store_true",
              help="restore everything that can be restored and list what could not")
    @argument("-v", "--verbose", action="store_true", help="list what was loaded and replayed")
    @line_magic
    def restore(self, line: str) -> None:
        """Restore a checkpoint into this kernel, verify every variable, and keep monitoring."""
        args = parse_argstring(self.restore, line)
        try:
            report = restore(self.monitor, args.source, trust=args.trust, partial=args.partial)
        except NbmigrateError as exc:
            raise _rephrased(exc, f"restore from {args.source} failed") from None
        self.monitor.last_report = report
        print(report.render(verbose=args.verbose))
        if not report.ok and not args.partial:
            raise RestoreError(f"restore from {args.source} is incomplete: see the report above")

    @magic_arguments()
    @argument("what", choices=["status", "plan"], help="status: tracked variables; plan: what a checkpoint would do")
    @argument("--bandwidth", default="274MB/s", help="bandwidth assumed for the plan")
    @argument("--prefer", default="balanced", choices=["balanced", "restore", "checkpoint"])
    @line_magic
    def nbmigrate(self, line: str) -> None:
        """Show what nbmigrate tracks (status) or what a checkpoint would store and replay (plan)."""
        args = parse_argstring(self.nbmigrate, line)
        if args.what == "status":
            print(status_table(self.monitor))
        else:
            print(plan_preview(self.monitor, bandwidth=_bandwidth(args.bandwidth), prefer=args.prefer))
