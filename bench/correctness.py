"""``python -m bench correctness``: migrate each correctness notebook and report cost and fidelity.

Per notebook, :func:`nbmigrate.notebooks.trial_migration` runs the cells (all but the
``after_restore`` tail) in kernel A with nbmigrate loaded, ``%checkpoint``s to a local folder,
``%restore``s in a fresh kernel B with the same cwd, then runs the tail in both. Reported: how long
the run, the checkpoint and the restore took, how many bytes the checkpoint folder holds, what was
stored and what replayed, and whether B is indistinguishable from A (``trial.differences()``).
"""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path
from typing import Any

from nbmigrate.notebooks import trial_migration
from nbmigrate.reports import human_bytes

from .common import (
    CORPUS,
    DEMO,
    dir_bytes,
    finish,
    fmt_seconds,
    isolated_environment,
    log,
    machine,
    measured_seconds,
    source_line,
    table,
    write_outputs,
)

QUICK_SECONDS = 2.0
"""--quick keeps the notebooks that ran faster than this in the corpus's measured.json."""


def select_notebooks(given: list[Path], quick: bool) -> list[Path]:
    if given:
        return given
    folder = CORPUS / "correctness"
    found = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    if not found:
        log(f"bench: the correctness corpus is not at {folder} (set NBMIGRATE_CORPUS); "
            "measuring examples/demo.ipynb only")
    if quick:
        seconds = measured_seconds()
        found = [p for p in found if seconds.get(f"correctness/{p.name}", 0.0) < QUICK_SECONDS]
    return [*found, DEMO]


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def measure(notebook: Path, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nbmigrate-bench-") as tmp:
        work, ckpt = Path(tmp) / "work", Path(tmp) / "checkpoint"
        work.mkdir()
        try:
            trial = trial_migration(notebook, str(work), str(ckpt), timeout=timeout)
        except Exception as exc:  # one broken notebook must not hide the others' figures
            log(traceback.format_exc())
            return {"notebook": notebook.name, "path": str(notebook),
                    "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
        on_disk = dir_bytes(ckpt) if ckpt.exists() else 0
    c, r = trial.checkpoint, trial.restore
    stored = [g for g in _as_list(c.get("groups")) if g.get("stored")]
    differences = trial.differences()
    return {
        "notebook": notebook.name,
        "path": str(notebook),
        "run_seconds": trial.run_seconds,
        "checkpoint_seconds": c.get("seconds"),
        "checkpoint_bytes": on_disk,
        "stored_bytes": c.get("stored_bytes"),
        "variables": c.get("variables"),
        "stored_groups": len(stored),
        "stored_variables": sum(len(g.get("names", [])) for g in stored),
        "planned_replay_cells": len(_as_list(c.get("replay_cells"))),
        "replayed_cells": len(_as_list(r.get("replayed_cells"))),
        "replay_seconds": r.get("replay_seconds"),
        "restore_seconds": r.get("seconds"),
        "restore_ok": r.get("ok"),
        "lossy": _as_list(r.get("lossy")),
        "faithful": not differences,
        "differences": differences,
        "error": None,
    }


def run(notebooks: list[Path], out: Path, *, quick: bool, timeout: float) -> str:
    rows = []
    with isolated_environment():
        meta = machine()
        for nb in notebooks:
            log(f"{nb.name}: trial migration...")
            row = measure(nb, timeout)
            rows.append(row)
            if row["error"]:
                log(f"  ERROR: {row['error']}")
            else:
                log(f"  run {row['run_seconds']:.1f} s, checkpoint {row['checkpoint_seconds']:.1f} s "
                    f"({human_bytes(row['checkpoint_bytes'])}), restore {row['restore_seconds']:.1f} s, "
                    f"faithful: {row['faithful']}")
    data = {"machine": finish(meta), "settings": {"quick": quick, "timeout": timeout}, "notebooks": rows,
            "summary": {"notebooks": len(rows), "faithful": sum(1 for r in rows if r.get("faithful"))}}
    md = render(data)
    path = write_outputs(out, data, md)
    log(f"wrote {out} and {path}")
    return md


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    rows: list[list[object]] = []
    for r in data["notebooks"]:
        if r["error"]:
            rows.append([r["notebook"], "error", "", "", "", "", "", f"no: {r['error']}"])
            continue
        faithful = "yes" if r["faithful"] else f"**no** ({len(r['differences'])} differences)"
        if r["faithful"] and r["lossy"]:
            faithful += f" ({len(r['lossy'])} lossy by their own pickling)"
        rows.append([
            r["notebook"], fmt_seconds(r["run_seconds"]), fmt_seconds(r["checkpoint_seconds"], 2),
            human_bytes(r["checkpoint_bytes"]), f"{r['stored_variables']} ({r['stored_groups']} groups)",
            f"{r['replayed_cells']} ({fmt_seconds(r['replay_seconds'])} s)", fmt_seconds(r["restore_seconds"], 2),
            faithful,
        ])
    header = ["notebook", "run s", "checkpoint s", "on disk", "stored variables", "replayed cells",
              "restore s", "faithful"]
    s = data["summary"]
    out = [
        "## Migration correctness\n",
        f"{m['date']}, {source_line(m)}, "
        f"Python {m['python']}, {m['cpus']} CPUs. Kernel A runs the notebook, `%checkpoint`s to a local folder; "
        "a fresh kernel B `%restore`s; *faithful* means same names, types, digests, aliasing and "
        f"`after_restore` output in A and B. **{s['faithful']} / {s['notebooks']} faithful.**\n",
        table(header, rows),
    ]
    unfaithful = [r for r in data["notebooks"] if not r["error"] and not r["faithful"]]
    if unfaithful:
        out.append("\n### Differences\n")
        for r in unfaithful:
            out.extend(f"- {r['notebook']}: {d.splitlines()[0]}\n" for d in r["differences"])
    return "\n".join(out)
