"""The application history graph (AHG): which cell executions produced which variable versions.

Vocabulary (see DESIGN.md):

* A *cell execution* (CE) is one run of one cell. CEs are numbered 0, 1, 2, ... in the order they ran.
* A *variable snapshot* (VS) is one version of one name. A version is identified by the index of the
  CE that wrote it, so ``("x", 4)`` is "x as left by CE 4". A name written before monitoring began
  has version ``PREEXISTING`` (-1): no cell can reproduce it, so it must be stored.
* A CE *reads* the versions of the names it may have looked at, and *writes* a new version of every
  name it created, rebound or mutated in place. A name mutated in place is also read (its new version
  is built from the old one), even when the cell changed it through an alias. Worked example::

      CE 0: xs = [3, 1, 2]          writes xs@0
      CE 1: xs.sort(); n = len(xs)  reads xs@0, writes xs@1 (mutation) and n@1
      CE 2: del n                   deletes n

  After CE 2 the live state is ``{"xs": 1}``: to recompute ``xs`` one must replay CE 0 then CE 1.

The graph is plain dataclasses and round-trips through JSON (no pickles in metadata), because it is
part of the checkpoint manifest and is restored with the session so monitoring continues (A -> B -> C).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PREEXISTING = -1
"""Version of a name that existed before the monitor started (no CE can recompute it)."""


@dataclass
class FileStamp:
    """What a cell saw of a file: enough to tell at checkpoint/restore time whether it changed."""

    path: str
    size: int
    mtime_ns: int
    xxh3: str | None = None
    """Content hash (hex) taken right after the cell, or None when the file was too large to hash."""


@dataclass
class CellExecution:
    """One run of one cell.

    ``source`` is the raw cell text as typed (magics included): replay hands it back to IPython's
    ``run_cell``, so ``%time``/``!ls``/``%%capture`` behave as they did. ``reads`` maps each name the
    cell may have read to the version it saw; ``writes`` lists names given a new version by this CE.
    ``hazards`` says why replaying this cell might not reproduce its effects (raised, drew unseeded
    randomness, read the clock, read a file that has since changed, ran shell commands, could not be
    analysed); the planner refuses to replay a CE with hazards.
    """

    index: int
    source: str
    cell_id: str | None = None
    started: float = 0.0
    duration: float = 0.0
    reads: dict[str, int] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    raised: bool = False
    hazards: list[str] = field(default_factory=list)
    files_read: list[FileStamp] = field(default_factory=list)
    files_written: list[FileStamp] = field(default_factory=list)


@dataclass
class HistoryGraph:
    """All CEs so far plus the live version of every tracked name.

    ``live`` maps each user variable currently in the namespace to the CE that wrote its current
    version (or ``PREEXISTING``). Variable snapshots are implicit: ``(name, ce.index)`` for every
    name in ``ce.writes``.
    """

    executions: list[CellExecution] = field(default_factory=list)
    live: dict[str, int] = field(default_factory=dict)

    def writer(self, name: str) -> int:
        """Index of the CE that wrote the live version of ``name``."""
        return self.live[name]

    def lineage(self, cells: set[int]) -> set[int]:
        """``cells`` plus every CE they transitively need replayed first.

        A CE needs the writer of every version it read that is no longer live (a later cell rebound,
        mutated or deleted it): only replaying that writer brings the old version back. Live versions
        are available anyway (stored and injected, or recomputed). ``PREEXISTING`` is never a CE.
        """
        todo = [c for c in cells if 0 <= c < len(self.executions)]
        seen = set(todo)
        while todo:
            ce = self.executions[todo.pop()]
            for name, version in ce.reads.items():
                if version >= 0 and self.live.get(name) != version and version not in seen:
                    seen.add(version)
                    todo.append(version)
        return seen

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryGraph:
        """Rebuild from :meth:`to_dict` output (already schema-checked by the manifest reader)."""
        executions = []
        for raw in data["executions"]:
            ce = dict(raw)
            ce["files_read"] = [FileStamp(**f) for f in ce.get("files_read", [])]
            ce["files_written"] = [FileStamp(**f) for f in ce.get("files_written", [])]
            ce["reads"] = {str(k): int(v) for k, v in ce.get("reads", {}).items()}
            executions.append(CellExecution(**ce))
        live = {str(k): int(v) for k, v in data["live"].items()}
        return cls(executions=executions, live=live)
