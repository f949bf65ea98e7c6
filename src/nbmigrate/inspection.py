"""Human views of a live session: what is tracked (``%nbmigrate status``) and the plan (``%nbmigrate plan``)."""

from __future__ import annotations

from typing import Any

from .costs import CostModel, Prefer
from .fingerprint import FingerprintSession, fingerprint
from .monitor import Monitor
from .namespace import type_name
from .reports import human_bytes


def status_table(monitor: Monitor) -> str:
    """Tracked variables with size, the cell that wrote them, and their co-variable group."""
    fps = monitor.refresh()
    groups = monitor.groups(fps)
    group_of = {n: i for i, names in enumerate(groups) for n in names}
    history = monitor.history
    lines = [f"{len(history.executions)} cells recorded, {len(fps)} variables in {len(groups)} groups",
             f"{'variable':<24} {'size':>10}  {'written by':<12} group"]
    for name in sorted(fps):
        writer = history.live.get(name, -1)
        where = "before monitoring" if writer < 0 else f"cell {writer}"
        opaque = " (opaque: " + ", ".join(fps[name].opaque) + ")" if fps[name].opaque else ""
        lines.append(f"{name:<24} {human_bytes(fps[name].nbytes):>10}  {where:<12} {group_of[name]}{opaque}")
    return "\n".join(lines)


def plan_preview(monitor: Monitor, *, bandwidth: float, prefer: Prefer) -> str:
    """What a checkpoint would store and replay now, and why (nothing is written)."""
    from .checkpoint import prepare

    prepared = prepare(monitor, CostModel(bandwidth=bandwidth, prefer=prefer))
    plan = prepared.plan
    lines = [f"plan ({prefer}, {human_bytes(bandwidth)}/s): "
             f"est. checkpoint {plan.est_checkpoint_seconds:.2f} s, restore {plan.est_restore_seconds:.2f} s; "
             f"replay cells {list(plan.replay)} (solved by {plan.solver} in {plan.solve_seconds * 1000:.1f} ms)"]
    groups = len(prepared.probe.specs)  # later keys are module bindings, listed as re-imports
    for d in (d for d in plan.decisions if d.key < groups):
        tag = "store    " if d.stored else "recompute"
        why = d.reason.split(": ", 1)[1] if d.reason.startswith(("stored:", "recomputed:")) else d.reason
        lines.append(f"  {tag} {', '.join(d.names)}: {why}")
    for d in plan.infeasible:
        lines.append(f"  LOST     {', '.join(d.names)}: {d.reason}")
    if prepared.bindings:
        lines.append("  re-import " + ", ".join(f"{n} ({m})" for n, m in sorted(prepared.bindings.items())))
    return "\n".join(lines)


def namespace_summary(monitor: Monitor) -> dict[str, Any]:
    """Type and digest of every user variable and the co-variable groups (see extension.summary_json)."""
    values = monitor.user_vars()
    with FingerprintSession() as session:
        fps = {n: fingerprint(v, session=session) for n, v in values.items()}
    return {
        "variables": {n: [type_name(v), fps[n].digest] for n, v in values.items()},
        "groups": [g for g in monitor.groups(fps) if len(g) > 1],
    }
