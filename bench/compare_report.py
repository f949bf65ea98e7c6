"""What ``compare`` writes: the JSON, a CSV row per notebook and method, the markdown, two PNG plots.

Kept apart from the measuring so the figures can be re-rendered from a JSON without re-running.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbmigrate.reports import human_bytes

from .common import source_line, table

if TYPE_CHECKING:
    from .compare import Row

NBMIGRATE = "nbmigrate"
RERUN = "RerunAll"
MIGRATION_TARGET = 0.5
"""nbmigrate's migration time ≤ this × the best other (correct) method's, on every notebook."""
RESTORE_TARGET = 0.02
"""nbmigrate's restore time ≤ this × RerunAll's (median over notebooks)."""
RESTORE_CAP = 1.5
"""A restore slower than this many times RerunAll is stopped (a minute at least): re-running wins anyway."""
SOURCE_CAP = 3.0
"""A source run slower than this many times the monitored one is stopped (two minutes at least)."""


def write(out: Path, data: dict[str, Any], rows: list[Row], bandwidth: float) -> str:
    from .compare import BANDWIDTH_SWEEP

    out.parent.mkdir(parents=True, exist_ok=True)
    data["targets"] = targets(rows)
    out.write_text(json.dumps(data, indent=1) + "\n")
    write_csv(out.with_suffix(".csv"), rows, bandwidth)
    plots = plot(out, rows, bandwidth, BANDWIDTH_SWEEP)
    md = render(data, rows, bandwidth, plots)
    out.with_suffix(".md").write_text(md)
    return md


def write_csv(path: Path, rows: list[Row], bandwidth: float) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "method", "status", "checkpoint_s", "checkpoint_bytes", "restore_s",
                    f"migration_s_at_{bandwidth:.0f}_Bps", "plan_s", "stored_variables", "recomputed_variables",
                    "replayed_cells", "differences", "error"])
        for r in rows:
            replayed = r.info.get("replayed_cells")
            w.writerow([r.notebook, r.method, r.status, r.checkpoint_seconds, r.checkpoint_bytes, r.restore_seconds,
                        r.migration_seconds, r.info.get("plan_seconds"), r.info.get("stored_variables"),
                        r.info.get("recomputed_variables"), len(replayed) if isinstance(replayed, list) else None,
                        "; ".join(d.splitlines()[0] for d in r.differences), r.error or ""])


def _by_notebook(rows: list[Row]) -> dict[str, dict[str, Row]]:
    out: dict[str, dict[str, Row]] = {}
    for r in rows:
        out.setdefault(r.notebook, {})[r.method] = r
    return out


def _ok(row: Row | None) -> bool:
    return row is not None and row.status == "ok" and row.migration_seconds is not None


def targets(rows: list[Row]) -> dict[str, Any]:
    """Both targets of issue 4, per notebook and overall (None where nbmigrate itself did not succeed)."""
    per: dict[str, Any] = {}
    restore_ratios: list[float] = []
    for nb, methods in _by_notebook(rows).items():
        ours = methods.get(NBMIGRATE)
        others = {m: r for m, r in methods.items() if not m.startswith(NBMIGRATE) and _ok(r)}
        best = min(others.items(), key=lambda kv: kv[1].migration_seconds or 0.0, default=None)
        entry: dict[str, Any] = {"best_other": best[0] if best else None}
        if _ok(ours) and best is not None:
            assert ours is not None and ours.migration_seconds is not None
            entry["migration_ratio"] = ours.migration_seconds / (best[1].migration_seconds or float("nan"))
        rerun = methods.get(RERUN)
        if _ok(ours) and rerun is not None and rerun.restore_seconds:
            assert ours is not None and ours.restore_seconds is not None
            entry["restore_vs_rerun"] = ours.restore_seconds / rerun.restore_seconds
            restore_ratios.append(entry["restore_vs_rerun"])
        per[nb] = entry
    ratios = [e.get("migration_ratio") for e in per.values()]
    median_restore = statistics.median(restore_ratios) if restore_ratios else None
    return {
        "per_notebook": per,
        "migration_met": bool(ratios) and all(r is not None and r <= MIGRATION_TARGET for r in ratios),
        "restore_median_vs_rerun": median_restore,
        "restore_met": median_restore is not None and len(restore_ratios) == len(per)
        and median_restore <= RESTORE_TARGET,
    }


def _s(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _status(r: Row) -> str:
    if r.status == "ok":
        return "ok"
    why = r.error or (r.differences[0].splitlines()[0] if r.differences else "")
    extra = f" (+{len(r.differences) - 1} more)" if r.status == "INCORRECT" and len(r.differences) > 1 else ""
    return f"**{r.status}**: {why.replace('|', '/')}{extra}"


def _main_table(rows: list[Row], bandwidth: float) -> str:
    body: list[list[object]] = []
    for nb, methods in _by_notebook(rows).items():
        ours = methods.get(NBMIGRATE)
        rerun = methods.get(RERUN)
        for name, r in methods.items():
            timed = r.status == "ok"
            mig = r.migration_seconds if timed else None
            vs = (ours.migration_seconds / mig if _ok(ours) and mig and ours is not None
                  and ours.migration_seconds is not None else None)
            rr = (r.restore_seconds / rerun.restore_seconds if timed and r.restore_seconds is not None and rerun
                  and rerun.restore_seconds else None)
            body.append([nb, name, _status(r), _s(r.checkpoint_seconds if timed else None),
                         human_bytes(r.checkpoint_bytes) if timed and r.checkpoint_bytes is not None else "n/a",
                         _s(r.restore_seconds if timed else None), _s(mig),
                         "" if name == NBMIGRATE else _s(vs), "" if name == RERUN else
                         ("n/a" if rr is None else f"{100 * rr:.1f} %")])
    header = ["notebook", "method", "result", "checkpoint s", "checkpoint size", "restore s",
              f"migration s @ {human_bytes(bandwidth)}/s", "nbmigrate ÷ this", "restore ÷ RerunAll"]
    return table(header, body)


def _nbmigrate_table(rows: list[Row]) -> str:
    body: list[list[object]] = []
    for r in rows:
        if not r.method.startswith(NBMIGRATE) or r.status == "skipped":
            continue
        i = r.info
        replayed = i.get("replayed_cells")
        body.append([r.notebook, r.method, _s(1000 * i["plan_seconds"], 1) if i.get("plan_seconds") is not None
                     else "n/a", f"{i.get('stored_variables', 'n/a')} / {i.get('variables', 'n/a')}",
                     i.get("recomputed_variables", "n/a"), len(replayed) if isinstance(replayed, list) else "n/a",
                     _s(i.get("replay_seconds")), ", ".join(i.get("lossy") or []) or "none"])
    return table(["notebook", "method", "plan ms", "stored / all variables", "recomputed variables",
                  "replayed cells", "replay s", "lossy"], body)


def _targets_md(t: dict[str, Any]) -> str:
    lines = ["### Targets\n"]
    per = t["per_notebook"]
    parts = []
    for nb, e in per.items():
        ratio = e.get("migration_ratio")
        parts.append(f"{nb}: {_s(ratio)}× of {e['best_other'] or 'nothing'}" if ratio is not None
                     else f"{nb}: n/a (nbmigrate or every other method failed)")
    met = "**met**" if t["migration_met"] else "**missed**"
    lines.append(f"- migration time ≤ {MIGRATION_TARGET}× the best other correct method on every notebook: {met} "
                 f"({'; '.join(parts)})")
    med = t["restore_median_vs_rerun"]
    met = "**met**" if t["restore_met"] else "**missed**"
    lines.append(f"- restore time ≤ {100 * RESTORE_TARGET:.0f} % of RerunAll (median): {met} "
                 f"(median {'n/a' if med is None else f'{100 * med:.1f} %'}; per notebook: "
                 + "; ".join(f"{nb} {_s(100 * e['restore_vs_rerun'], 1)} %" for nb, e in per.items()
                             if e.get("restore_vs_rerun") is not None) + ")")
    return "\n".join(lines) + "\n"


def _details(rows: list[Row]) -> str:
    lines: list[str] = []
    for r in rows:
        if r.status in ("INCORRECT", "FAILED"):
            shown = [d.splitlines()[0] for d in r.differences[:6]]
            more = f" … ({len(r.differences) - 6} more)" if len(r.differences) > 6 else ""
            lines.append(f"- {r.notebook} / {r.method}: {r.error or ''}{'; '.join(shown)}{more}")
        skipped = r.info.get("skipped")
        if skipped:
            lines.append(f"- {r.notebook} / {r.method}: not pickled: "
                         + "; ".join(f"`{n}` ({why.splitlines()[0][:100]})" for n, why in list(skipped.items())[:8]))
        lines.extend(f"- {r.notebook} / {r.method}: {note}" for note in r.notes if r.method != RERUN)
    return ("\n### What went wrong, per method\n\n" + "\n".join(lines) + "\n") if lines else ""


def render(data: dict[str, Any], rows: list[Row], bandwidth: float, plots: list[Path]) -> str:
    m = data["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    skipped = data.get("skipped") or []
    out = [
        "## Side by side: nbmigrate and the alternatives\n",
        f"{m['date']}, {source_line(m)}, Python {m['python']}, {m['cpus']} CPUs, load average "
        f"{m['load_average'][0]} at start, {m['load_average_end'][0]} at end. Kernels: `{m['kernel_python']}` "
        f"({versions}).\n",
        "Each notebook runs (all cells but the `after_restore` tail) in a source kernel; each method checkpoints "
        "it to a local folder, restores into a fresh kernel with the same cwd, and the tail runs there. "
        "*ok* = every variable back with the same type and nbmigrate fingerprint digest **and** the tail prints "
        "what it prints in the source kernel (run there after the checkpoints, before any restore); otherwise "
        "INCORRECT, and not timed as a success. "
        f"Migration = checkpoint + size ÷ {human_bytes(bandwidth)}/s + restore; kernel start-up is excluded. "
        "nbmigrate's three preferences checkpoint one after the other from one *monitored* source run, "
        "DumpSession and PickleEach from one *plain* run (none of them changes the session); Kishu and "
        "ElasticNotebook instrument the kernel, so each has its own source run. "
        "RerunAll's restore is the monitored source run's wall time (the same cells in a fresh kernel, with "
        "nbmigrate's monitor loaded: overhead.md compares it with the plain run), not a second run; its "
        "correctness rests on the corpus's rerun check (`run_corpus.py --repeat 2`). "
        f"A restore slower than {RESTORE_CAP}× RerunAll (a minute at least), or a method's source run slower than "
        f"{SOURCE_CAP}× the monitored one (two minutes at least), is stopped and reported as failed. "
        "The page cache is not dropped (no root/sysctl in the harness): restores read checkpoints written "
        "seconds earlier, which favours every stored byte equally.\n",
        *(f"- {note}\n" for note in data.get("notes", [])),
        _main_table(rows, bandwidth),
        _targets_md(data["targets"]),
        "\n### nbmigrate: plan and what was stored vs replayed\n",
        _nbmigrate_table(rows),
        _details(rows),
    ]
    if skipped:
        out.append("\nSkipped: " + "; ".join(f"{r['method']} ({r['error']})" for r in skipped) + "\n")
    if plots:
        out.append("\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n")
    return "\n".join(out)


def plot(out: Path, rows: list[Row], bandwidth: float, sweep: list[float]) -> list[Path]:
    """Bar chart of migration time per notebook and method; migration time against bandwidth per notebook."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_nb = _by_notebook(rows)
    methods = list(dict.fromkeys(r.method for r in rows if r.status != "skipped"))
    if not by_nb or not methods:
        return []
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    paths = []
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(by_nb) * max(1, len(methods)) / 4), 4.5))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        for i, nb in enumerate(by_nb):
            r = by_nb[nb].get(m)
            x = i + (j - (len(methods) - 1) / 2) * width
            if r is not None and r.migration_seconds is not None and r.status in ("ok", "INCORRECT"):
                bad = r.status != "ok"
                ax.bar(x, r.migration_seconds, width, color=colors[m], hatch="//" if bad else None,
                       alpha=0.35 if bad else 1.0, label=m if i == 0 else None)
            elif r is not None and r.status == "FAILED":
                ax.text(x, 0.01, "✗", ha="center", va="bottom", color=colors[m], transform=ax.get_xaxis_transform())
    ax.set_xticks(range(len(by_nb)), [nb.removesuffix(".ipynb") for nb in by_nb], rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel(f"migration time, s (at {human_bytes(bandwidth)}/s)")
    ax.set_title("Migration time (hatched: INCORRECT restore, ✗: failed)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out.with_name(out.stem + "_migration.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    cols = min(3, len(by_nb))
    nrows = -(-len(by_nb) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    mbit = [b * 8 / 1e6 for b in sweep]
    for k, (nb, ms) in enumerate(by_nb.items()):
        ax = axes[k // cols][k % cols]
        for m, r in ms.items():
            if r.status not in ("ok", "INCORRECT") or r.migration_seconds is None:
                continue
            ys = [r.migration_at(b) for b in sweep]
            ax.plot(mbit, ys, color=colors[m], linestyle="-" if r.status == "ok" else ":",
                    label=m + ("" if r.status == "ok" else " (INCORRECT)"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(nb.removesuffix(".ipynb"), fontsize=9)
        ax.set_xlabel("bandwidth, Mbit/s")
        ax.set_ylabel("migration time, s")
        ax.legend(fontsize=6)
    for k in range(len(by_nb), nrows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    paths.append(out.with_name(out.stem + "_bandwidth.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def merge(parts: list[Path], out: Path) -> str:
    """One result from several runs of ``compare`` (e.g. notebooks measured in separate sittings).

    A later part's row for the same notebook and method replaces an earlier one (a method re-run alone
    after a fix). The machine block is the first run's, with every run's start and load under ``runs``.
    """
    from .compare import Row

    datas = [json.loads(p.read_text()) for p in parts]
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for d in datas:
        latest.update({(r["notebook"], r["method"]): r for r in d["rows"]})
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for d in datas for r in d["rows"]))}
    merged = sorted(latest.values(), key=lambda r: (r["notebook"], order[r["method"]]))
    rows = [Row(**r) for r in merged]
    first = datas[0]
    data = dict(first, rows=merged,
                skipped=[s for d in datas for s in d.get("skipped", [])],
                runs=[{"file": str(p), "date": d["machine"]["date"], "load_average": d["machine"]["load_average"],
                       "load_average_end": d["machine"]["load_average_end"]}
                      for p, d in zip(parts, datas, strict=True)])
    return write(out, data, rows, float(first["settings"]["bandwidth"]))


if __name__ == "__main__":
    import sys

    print(merge([Path(a) for a in sys.argv[2:]], Path(sys.argv[1])))
