"""nbmigrate itself: ``%checkpoint --prefer P`` in the source kernel, ``%restore`` in a fresh one.

The checkpoint is told the benchmark's bandwidth, so its plan minimises the same migration time the
table reports.
"""

from __future__ import annotations

import time
from typing import Any

from nbmigrate.remote import Kernel

from . import kernels
from .base import Checkpointed, Context, Method, dir_bytes


def _report(kernel: Kernel) -> dict[str, Any]:
    report = kernels.silent_eval(kernel, "__import__('nbmigrate.extension').extension.last_report_json()")
    return report if isinstance(report, dict) else {}


class Nbmigrate(Method):
    needs = ("nbmigrate",)

    def __init__(self, prefer: str = "balanced") -> None:
        self.prefer = prefer
        self.name = "nbmigrate" if prefer == "balanced" else f"nbmigrate ({prefer})"

    def prepare(self, kernel: Kernel, ctx: Context) -> None:
        kernel.execute("%load_ext nbmigrate")

    def checkpoint(self, kernel: Kernel, ctx: Context) -> Checkpointed:
        t = time.perf_counter()
        kernel.execute(f"%checkpoint {ctx.store} --prefer {self.prefer} --bandwidth {int(ctx.bandwidth)}",
                       timeout=ctx.timeout)
        seconds = time.perf_counter() - t
        report = _report(kernel)
        groups = report.get("groups") or []
        stored = [g for g in groups if g.get("stored")]
        info = {
            "plan_seconds": report.get("plan_seconds"),
            "variables": report.get("variables"),
            "stored_variables": sum(len(g.get("names", [])) for g in stored),
            "recomputed_variables": sum(len(g.get("names", [])) for g in groups if not g.get("stored")),
            "replay_cells": report.get("replay_cells"),
            "est_replay_seconds": report.get("est_replay_seconds"),
        }
        return Checkpointed(seconds, dir_bytes(ctx.store), info)

    def load(self, kernel: Kernel, ctx: Context) -> dict[str, Any]:
        kernel.execute(f"%load_ext nbmigrate\n%restore {ctx.store}", timeout=ctx.timeout)
        report = _report(kernel)
        return {"replayed_cells": report.get("replayed_cells"), "replay_seconds": report.get("replay_seconds"),
                "lossy": report.get("lossy")}
