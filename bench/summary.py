"""``summary.md``: the headline figures of one benchmark run, each issue-4 target met or missed, the machine.

Reads the JSON results the benchmarks left in one folder (whichever are there: a target whose
benchmark did not run, or failed, says so rather than disappearing), so it can be rewritten at any
time with ``python -m bench summary --out-dir DIR``. The README's Performance section is copied from it.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmigrate.reports import human_bytes

from .common import rate, table

LIBRARIES = ("ipykernel", "ipython", "jupyter_client", "numpy", "scipy", "pandas", "zstandard", "xxhash", "fsspec",
             "matplotlib")
OVERHEAD_MEDIAN, OVERHEAD_WORST, MEMORY_WORST = 0.5, 1.5, 3.0
"""Issue 4's monitoring-overhead targets, in percent."""


@dataclass
class Target:
    what: str
    figure: str
    met: bool | None
    """None: not measured in this run."""

    def row(self) -> list[str]:
        verdict = "not measured" if self.met is None else "met" if self.met else "**missed**"
        return [self.what, self.figure, verdict]



def _count(n: int) -> str:
    return f"{n} notebook" if n == 1 else f"{n} notebooks"

def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} %"


def _absent(name: str, failed: Sequence[str]) -> str:
    return f"{name} failed in this run" if name in failed else f"no {name}.json"


def _compare_targets(data: dict[str, Any] | None, failed: Sequence[str]) -> list[Target]:
    migration = "migration time ≤ 0.5× the best other method, every notebook"
    restore = "restore time ≤ 2 % of RerunAll (median)"
    if data is None or "targets" not in data:
        why = _absent("compare", failed)
        return [Target(migration, why, None), Target(restore, why, None)]
    t = data["targets"]
    per = t.get("per_notebook", {})
    ratios = [(e["migration_ratio"], nb, e.get("best_other")) for nb, e in per.items()
              if e.get("migration_ratio") is not None]
    missing = [nb for nb, e in per.items() if e.get("migration_ratio") is None]
    if ratios:
        worst = max(ratios)
        figure = f"worst {worst[0]:.2f}× ({worst[1]}, vs {worst[2]}); best {min(ratios)[0]:.2f}×"
    else:
        figure = "no notebook where nbmigrate and another method both succeeded"
    if missing:
        figure += f"; n/a on {', '.join(missing)}"
    med = t.get("restore_median_vs_rerun")
    return [Target(migration, figure, bool(t.get("migration_met"))),
            Target(restore, "n/a" if med is None else f"median {100 * med:.1f} % over {_count(len(per))}",
                   bool(t.get("restore_met")))]


def _overhead_targets(data: dict[str, Any] | None, failed: Sequence[str]) -> list[Target]:
    names = (f"monitoring overhead, runtime median ≤ {OVERHEAD_MEDIAN} % (at least the time in its hooks)",
             f"monitoring overhead, runtime worst ≤ {OVERHEAD_WORST} %",
             f"monitoring overhead, peak memory ≤ {MEMORY_WORST} % (worst)")
    if data is None:
        return [Target(n, _absent("overhead", failed), None) for n in names]
    s = data["summary"]
    wall, cpu, mem = s["wall_overhead_pct"], s["cpu_overhead_pct"], s["mem_overhead_pct"]
    count = len(data.get("notebooks", []))
    # The monitor cannot cost less than the time spent inside its hooks, which is measured exactly;
    # a wall-clock difference below that (even negative) is the shared machine's noise.
    floors = sorted(max(r["wall_overhead_pct"], 100 * r["hooks_seconds"] / r["plain"]["wall_seconds"])
                    for r in data.get("notebooks", [])
                    if r.get("wall_overhead_pct") is not None and r.get("hooks_seconds") is not None)
    runtime = {"median": statistics.median(floors), "worst": floors[-1]} if floors else wall
    values = [(runtime["median"], OVERHEAD_MEDIAN, f" (wall difference {_pct(wall['median'])}, "
                                                   f"CPU {_pct(cpu['median'])})"),
              (runtime["worst"], OVERHEAD_WORST, f" (wall difference {_pct(wall['worst'])}, "
                                                 f"CPU {_pct(cpu['worst'])})"),
              (mem["worst"], MEMORY_WORST, f" (median {_pct(mem['median'])})")]
    return [Target(name, f"{_pct(v)}{extra}, {_count(count)}", None if v is None else v <= limit)
            for name, (v, limit, extra) in zip(names, values, strict=True)]


def _throughput_target(data: dict[str, Any] | None, failed: Sequence[str]) -> Target:
    what = "checkpoint throughput ≥ 70 % of raw disk write"
    if data is None:
        return Target(what, _absent("throughput", failed), None)
    ck, raw = data["checkpoint"], data["raw"]
    figure = (f"{100 * data['checkpoint_vs_raw_write']:.0f} % ({rate(ck['bps'])} vs {rate(raw['write_bps'])}, "
              f"{human_bytes(sum(data['array_bytes']))})")
    return Target(what, figure, bool(data["target"]["met"]))


def _plan_targets(data: dict[str, Any] | None, failed: Sequence[str]) -> list[Target]:
    wanted = {2_000: 50, 10_000: 300}
    if data is None:
        return [Target(f"plan time < {ms} ms at {n:,} cell executions", _absent("scalability", failed), None)
                for n, ms in wanted.items()]
    found = {t["executions"]: t for t in data["targets"]}

    def figure(t: dict[str, Any]) -> str:
        cpu = t.get("plan_cpu_ms")
        return f"{t['plan_ms']:.0f} ms" + (f" (CPU {cpu:.0f} ms)" if cpu is not None else "")

    return [Target(f"plan time < {ms} ms at {n:,} cell executions",
                   figure(found[n]) if n in found else "size not measured",
                   found[n]["met"] if n in found else None) for n, ms in wanted.items()]


def _headlines(folder: Path) -> list[str]:
    """Figures without a target, one line each, from whichever results are present."""
    lines: list[str] = []
    if (c := _load(folder, "correctness")) is not None:
        s = c["summary"]
        lines.append(f"- correctness: **{s['faithful']} / {s['notebooks']}** notebooks migrated faithfully "
                     "(same names, types, digests, aliasing, `after_restore` output)")
    if (t := _load(folder, "throughput")) is not None:
        lines.append(f"- throughput: checkpoint {rate(t['checkpoint']['bps'])}, restore {rate(t['restore']['bps'])} "
                     f"(raw disk: write {rate(t['raw']['write_bps'])}, read {rate(t['raw']['read_bps'])}; "
                     f"{human_bytes(sum(t['array_bytes']))} of arrays)")
    if (s := _load(folder, "scalability")) is not None and s["points"]:
        p = s["points"][-1]
        lines.append(f"- history graph at {p['executions']:,} cell executions ({p['live_variables']:,} variables): "
                     f"{p['graph_bytes'] / 2**20:.1f} MiB in memory, {p['manifest_bytes'] / 2**20:.1f} MiB of "
                     f"JSON in the manifest; plan {p['plan_ms_median']:.0f} ms")
    if (m := _load(folder, "migration")) is not None:
        moves = m.get("moves", [])
        faithful = sum(1 for r in moves if r.get("faithful"))
        lines.append(f"- server-to-server moves (CLI, streamed and via S3): {faithful} / {len(moves)} faithful")
    rows = (h or {}).get("notebooks") if (h := _load(folder, "hibernation")) is not None else None
    if rows:
        done = [r for r in rows if not r.get("error")]
        freed = sum(r.get("memory_freed") or 0 for r in done)
        resumes = sorted(r["open_seconds"] for r in done if r.get("open_seconds") is not None)
        lines.append(f"- hibernation: {len(done)} / {_count(len(rows))} hibernated and resumed, "
                     f"{human_bytes(freed)} of kernel memory freed in all"
                     + (f", resume (kernel start + restore) {resumes[0]:.1f}–{resumes[-1]:.1f} s" if resumes else ""))
    if (o := _load(folder, "overhead")) is not None:
        hooks = [r["hooks_seconds"] for r in o["notebooks"] if r.get("hooks_seconds") is not None]
        if hooks:
            lines.append(f"- time inside the monitor's hooks: {min(hooks):.2f}–{max(hooks):.2f} s per notebook")
    return lines


def _disk(folder: Path) -> str:
    """The filesystem the results (and the throughput scratch folder, by default) live on."""
    usage = shutil.disk_usage(folder)
    device = ""
    for line in Path("/proc/mounts").read_text().splitlines() if Path("/proc/mounts").is_file() else []:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "/":
            device = f"{fields[0]} ({fields[2]})"
    return f"{device or 'root filesystem'}, {human_bytes(usage.total)}"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram() -> str:
    try:
        return human_bytes(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return "unknown"


def _versions() -> str:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def machine_lines(folder: Path) -> list[str]:
    import nbmigrate

    commits = {d["machine"].get("commit") for n in ("overhead", "correctness", "compare", "throughput", "scalability")
               if (d := _load(folder, n)) is not None and "machine" in d}
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores; RAM {_ram()}; disk {_disk(folder)}",
        f"- {platform.platform()}; Python {platform.python_version()}; nbmigrate {nbmigrate.__version__} "
        f"(commit{'s' if len(commits) > 1 else ''} {', '.join(sorted(c for c in commits if c)) or 'unknown'})",
        f"- {_versions()}",
    ]


def render(folder: Path, *, durations: dict[str, float] | None = None, failed: Sequence[str] = ()) -> str:
    targets = [*_compare_targets(_load(folder, "compare"), failed),
               *_overhead_targets(_load(folder, "overhead"), failed),
               _throughput_target(_load(folder, "throughput"), failed),
               *_plan_targets(_load(folder, "scalability"), failed)]
    met = sum(1 for t in targets if t.met)
    measured = sum(1 for t in targets if t.met is not None)
    quick = [n for n in ("overhead", "correctness", "compare", "throughput", "migration", "hibernation")
             if (d := _load(folder, n)) is not None and d.get("settings", {}).get("quick")]
    out = [
        f"## Benchmark summary ({dt.date.today().isoformat()})\n",
        f"Issue-4 targets: **{met} of {measured} measured targets met**"
        + (f" ({len(targets) - measured} not measured)" if measured < len(targets) else "") + ".\n",
    ]
    if quick:
        out.append(f"**Quick run** (examples/demo.ipynb, smaller sizes) for: {', '.join(quick)}. It checks the "
                   "harness end to end in minutes; the targets are about the benchmark notebooks, so only a "
                   "full run (`make bench`) says whether they are met.\n")
    out.append(table(["target", "figure", "verdict"], [t.row() for t in targets]))
    headlines = _headlines(folder)
    if headlines:
        out += ["\n### Headline figures\n", *headlines]
    out += ["\n### Machine\n", *machine_lines(folder)]
    if durations:
        total = sum(durations.values())
        out.append(f"\nRun time: {total / 60:.1f} min (" + ", ".join(f"{n} {s / 60:.1f}" for n, s in durations.items())
                   + ")" + (f"; failed: {', '.join(failed)}" if failed else "") + ".")
    details = [n for n in ("compare", "overhead", "correctness", "migration", "throughput", "scalability")
               if (folder / f"{n}.md").is_file()]
    if details:
        out.append("\nDetails: " + ", ".join(f"[{n}]({n}.md)" for n in details) + ".")
    return "\n".join(out) + "\n"


def write(folder: Path, *, durations: dict[str, float] | None = None, failed: Sequence[str] = ()) -> str:
    """Write ``folder/summary.md`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    md = render(folder, durations=durations, failed=failed)
    (folder / "summary.md").write_text(md)
    return md
