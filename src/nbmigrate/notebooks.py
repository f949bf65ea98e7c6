"""Running a notebook's cells in a kernel, with the conventions of nbclient/papermill.

A cell tagged ``raises-exception`` is expected to raise and does not stop the run; cells tagged
``after_restore`` form the tail that checks a restored session (see the corpus README) and are
separated from the rest so a harness can run them on both sides of a migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from .remote import CellResult, Kernel


@dataclass(frozen=True)
class Cell:
    index: int
    source: str
    tags: frozenset[str]

    @property
    def after_restore(self) -> bool:
        return "after_restore" in self.tags

    @property
    def may_raise(self) -> bool:
        return "raises-exception" in self.tags


def code_cells(path: str | Path) -> list[Cell]:
    nb = nbformat.read(str(path), as_version=4)
    return [
        Cell(index=i, source=c.source, tags=frozenset(c.get("metadata", {}).get("tags", [])))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
    ]


def split(cells: list[Cell]) -> tuple[list[Cell], list[Cell]]:
    """(main cells, after_restore tail)."""
    return [c for c in cells if not c.after_restore], [c for c in cells if c.after_restore]


def run_cells(kernel: Kernel, cells: list[Cell], *, timeout: float = 900) -> list[CellResult]:
    """Run cells in order; a cell that raises stops the run unless it is tagged ``raises-exception``."""
    return [kernel.execute(c.source, timeout=timeout, allow_error=c.may_raise) for c in cells]


@dataclass
class MigrationTrial:
    """One notebook run in kernel A, checkpointed, restored in kernel B, checked on both sides."""

    notebook: str
    run_seconds: float
    checkpoint: dict[str, object]
    restore: dict[str, object]
    summary_before: dict[str, object]
    summary_after: dict[str, object]
    tail_before: str
    tail_after: str

    def differences(self) -> list[str]:
        """Every way kernel B differs from kernel A (empty when the migration is faithful)."""
        problems: list[str] = []
        va = self.summary_before["variables"]
        vb = self.summary_after["variables"]
        lossy = self.restore.get("lossy") or []
        assert isinstance(lossy, list)
        assert isinstance(va, dict) and isinstance(vb, dict)
        for name in sorted(set(va) | set(vb)):
            if name not in vb:
                problems.append(f"missing after restore: {name}")
            elif name not in va:
                problems.append(f"extra after restore: {name}")
            elif va[name][0] != vb[name][0]:
                problems.append(f"type of {name}: {va[name][0]} -> {vb[name][0]}")
            elif va[name][1] is not None and va[name][1] != vb[name][1] and name not in lossy:
                problems.append(f"value of {name} differs")
        if self.summary_before["groups"] != self.summary_after["groups"]:
            problems.append(f"aliasing differs: {self.summary_before['groups']} -> {self.summary_after['groups']}")
        if self.tail_before != self.tail_after:
            problems.append("after_restore output differs:\n"
                            f"--- A ---\n{self.tail_before}\n--- B ---\n{self.tail_after}")
        return problems


def _report(kernel: Kernel) -> dict[str, object]:
    report = kernel.evaluate_json("__import__('nbmigrate.extension').extension.last_report_json()")
    assert isinstance(report, dict)
    return report


def _summary(kernel: Kernel) -> dict[str, object]:
    summary = kernel.evaluate_json("__import__('nbmigrate.extension').extension.summary_json()")
    assert isinstance(summary, dict)
    return summary


def trial_migration(notebook: str | Path, workdir: str, checkpoint_url: str, *,
                    checkpoint_args: str = "", kernel_env: dict[str, str] | None = None,
                    timeout: float = 900) -> MigrationTrial:
    """Run ``notebook`` (all but its after_restore tail) in kernel A with cwd ``workdir``, ``%checkpoint``,
    ``%restore`` in a fresh kernel B with the same cwd, then run the tail in A and in B."""
    import time

    main_cells, tail = split(code_cells(notebook))
    with Kernel.start(cwd=workdir, env=kernel_env) as a:
        a.execute("%load_ext nbmigrate")
        t = time.perf_counter()
        run_cells(a, main_cells, timeout=timeout)
        run_seconds = time.perf_counter() - t
        a.execute(f"%checkpoint {checkpoint_url} {checkpoint_args}", timeout=timeout)
        ckpt = _report(a)
        before = _summary(a)
        with Kernel.start(cwd=workdir, env=kernel_env) as b:
            b.execute(f"%load_ext nbmigrate\n%restore {checkpoint_url}", timeout=timeout)
            rest = _report(b)
            after = _summary(b)
            tail_a = "".join(r.text for r in run_cells(a, tail, timeout=timeout))
            tail_b = "".join(r.text for r in run_cells(b, tail, timeout=timeout))
    return MigrationTrial(str(notebook), run_seconds, ckpt, rest, before, after, tail_a, tail_b)
