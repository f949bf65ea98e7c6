"""Typed results of the commands. The magics, the CLI and (later) REST only render these.

Kept as plain dataclasses so the same report can be printed in a notebook, emitted as JSON by the
CLI, or returned by the Python API for a script to inspect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): "write" bytes during a checkpoint; "read" bytes, then "replay" cells,
during a restore. The magics print nothing per step; the CLI draws progress bars from these."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


@dataclass
class GroupOutcome:
    """One co-variable group: what was decided for it and why."""

    names: list[str]
    stored: bool
    reason: str
    nbytes: int = 0
    written_bytes: int = 0


@dataclass
class CheckpointReport:
    destination: str
    variables: int
    """User variables, not counting names bound to importable modules (listed in ``modules``)."""
    groups: list[GroupOutcome]
    modules: list[str]
    replay_cells: list[int]
    est_replay_seconds: float
    est_restore_seconds: float
    stored_bytes: int
    written_bytes: int
    seconds: float
    plan_seconds: float
    bandwidth: float
    prefer: str
    missing: list[str] = field(default_factory=list)
    """Variables that can be neither stored nor recomputed (only with best_effort)."""

    @property
    def stored_groups(self) -> list[GroupOutcome]:
        return [g for g in self.groups if g.stored]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        stored = self.stored_groups
        modules = f" (+{len(self.modules)} modules re-imported)" if self.modules else ""
        line = (
            f"{self.variables} variables{modules}, {len(stored)} groups stored ({human_bytes(self.stored_bytes)}), "
            f"{len(self.replay_cells)} cells to replay (est. {self.est_replay_seconds:.1f} s), "
            f"written in {self.seconds:.1f} s to {self.destination}"
        )
        if self.written_bytes != self.stored_bytes:
            line += f" ({human_bytes(self.written_bytes)} new)"
        return line

    def render(self, verbose: bool = False) -> str:
        lines = [self.summary()]
        if self.missing:
            lines.append("NOT CARRIED (neither storable nor recomputable): " + ", ".join(self.missing))
        if verbose:
            for g in self.groups:
                tag = "stored    " if g.stored else "recomputed"
                why = g.reason.split(": ", 1)[1] if g.reason.startswith(("stored:", "recomputed:")) else g.reason
                lines.append(f"  {tag} {', '.join(g.names)}: {why}")
            if self.modules:
                lines.append(f"  re-imported: {', '.join(self.modules)}")
        return "\n".join(lines)


@dataclass
class ReplayFailure:
    cell: int
    error: str
    variables: list[str]


@dataclass
class RestoreReport:
    source: str
    loaded: list[str]
    loaded_bytes: int
    replayed_cells: list[int]
    replay_seconds: float
    reimported: list[str]
    verified: list[str]
    unverified: list[str]
    mismatched: list[str]
    missing: list[str]
    failures: list[ReplayFailure]
    problems: list[str]
    seconds: float
    lossy: list[str] = field(default_factory=list)
    """Stored variables that differ from the checkpoint after loading because their type's own
    pickling drops state (a library's ``__reduce__``/``__setstate__``): shown, but not an error."""

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.failures or self.problems)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def summary(self) -> str:
        total = len(self.verified) + len(self.unverified) + len(self.mismatched) + len(self.lossy)
        line = (
            f"restored {total} variables from {self.source} in {self.seconds:.1f} s: "
            f"{len(self.loaded)} loaded ({human_bytes(self.loaded_bytes)}), "
            f"{len(self.replayed_cells)} cells replayed ({self.replay_seconds:.1f} s); "
        )
        if not self.mismatched and not self.missing:
            line += f"all {len(self.verified)} digests matched"
        else:
            line += f"{len(self.verified)} digests matched"
        if self.unverified:
            line += f", {len(self.unverified)} opaque (type checked only)"
        if self.lossy:
            line += f", {len(self.lossy)} changed by their own pickling"
        return line

    def render(self, verbose: bool = False) -> str:
        lines = [self.summary()]
        for p in self.problems:
            lines.append(f"PROBLEM: {p}")
        for f in self.failures:
            affects = ", ".join(f.variables) or "nothing live"
            lines.append(f"REPLAY FAILED: cell {f.cell}: {f.error} (affects {affects})")
        if self.mismatched:
            lines.append("MISMATCH (restored value differs from the checkpoint): " + ", ".join(self.mismatched))
        if self.missing:
            lines.append("MISSING: " + ", ".join(self.missing))
        if self.lossy:
            lines.append("NOTE: their type's pickling drops some state, check them: " + ", ".join(self.lossy))
        if verbose:
            if self.loaded:
                lines.append("  loaded: " + ", ".join(self.loaded))
            if self.replayed_cells:
                lines.append("  replayed cells: " + ", ".join(map(str, self.replayed_cells)))
            if self.unverified:
                lines.append("  opaque, type checked: " + ", ".join(self.unverified))
        return "\n".join(lines)
