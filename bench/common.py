"""Shared by the benchmarks: where things are, an isolated environment for kernels, output files."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("NBMIGRATE_CORPUS", REPO.parent / "shared" / "corpus"))
"""The shared notebook corpus (lives beside the clone, like the tests expect; NBMIGRATE_CORPUS overrides)."""
RESULTS = REPO / "bench" / "results"
DEMO = REPO / "examples" / "demo.ipynb"
QUIET = ["--IPKernelApp.log_level=ERROR"]
"""Kernel start-up warnings are noise in a benchmark log."""


def log(message: str) -> None:
    """Progress goes to stderr so a redirected stdout keeps only the tables."""
    print(message, file=sys.stderr, flush=True)


def default_out(name: str) -> Path:
    return RESULTS / dt.date.today().isoformat() / name


def expand_notebooks(items: Sequence[str]) -> list[Path]:
    """Files as given; folders become their ``*.ipynb``, sorted."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(path.glob("*.ipynb")))
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"bench: no such notebook or folder: {item}")
    return found


def measured_seconds() -> dict[str, float]:
    """Mean wall seconds per notebook (``benchmark/x.ipynb`` -> s) from the corpus's measured.json."""
    path = CORPUS / "measured.json"
    if not path.is_file():
        return {}
    out: dict[str, float] = {}
    for row in json.loads(path.read_text()):
        runs = row.get("main_s_runs") or [row.get("main_s", 0.0)]
        out[str(row["notebook"])] = float(statistics.fmean(runs))
    return out


def select_benchmark_notebooks(given: list[Path], quick: bool) -> list[Path] | None:
    """``given``, else with ``quick`` the project's own demo notebook (seconds to run, any clone has it),
    else the corpus's benchmark notebooks, or None when there are none (no corpus and none given)."""
    if given:
        return given
    if quick:
        return [DEMO]
    folder = CORPUS / "benchmark"
    found = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    return found or None


def lightest_benchmark_notebook() -> list[Path]:
    """The benchmark notebook with the smallest namespace by the corpus's measured.json (none without it).

    The full run moves and hibernates this one only: the server benchmarks repeat what ``compare`` measures
    for every notebook (checkpoint, transfer, restore), through the Jupyter servers, and all six would add
    a quarter of an hour; ``python -m bench migration`` / ``hibernation`` alone do all six.
    """
    path = CORPUS / "measured.json"
    if not path.is_file():
        return []
    sizes = {str(r["notebook"]): int(r.get("ns_bytes") or 0) for r in json.loads(path.read_text())}
    found = [p for p in sorted((CORPUS / "benchmark").glob("*.ipynb")) if f"benchmark/{p.name}" in sizes]
    return [min(found, key=lambda p: sizes[f"benchmark/{p.name}"])] if found else []


@contextlib.contextmanager
def environment(set_: dict[str, str], unset: Sequence[str] = ()) -> Iterator[None]:
    """``os.environ`` with ``set_`` set and ``unset`` removed inside, as it was outside.

    Kernels and servers started inside inherit it.
    """
    saved = {k: os.environ.get(k) for k in (*set_, *unset)}
    os.environ.update(set_)
    for key in unset:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def isolated_environment() -> Iterator[dict[str, str]]:
    """Kernels started inside see a fresh IPYTHONDIR and, unless one is set, a throw-away signing secret.

    A fresh IPYTHONDIR also matters for the measurement: a profile where ``nbmigrate install`` was run
    would load the extension in the "plain" kernels too.
    """
    with tempfile.TemporaryDirectory(prefix="nbmigrate-bench-home-") as home:
        settings = {"IPYTHONDIR": str(Path(home) / "ipython")}
        if not os.environ.get("NBMIGRATE_SECRET_FILE"):
            settings["NBMIGRATE_SECRET_FILE"] = str(Path(home) / "secret")
        with environment(settings):
            yield {k: os.environ[k] for k in ("IPYTHONDIR", "NBMIGRATE_SECRET_FILE")}


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    """What the figures depend on: code version, interpreter, cores, how busy the machine was."""
    import nbmigrate

    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nbmigrate": getattr(nbmigrate, "__version__", None),
        **_source_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _source_state() -> dict[str, Any]:
    """Which nbmigrate ran: the package is installed editable, so uncommitted changes count too."""
    status = _git("status", "--porcelain", "--", "src")
    diff = _git("diff", "HEAD", "--", "src")
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_modified": bool(status) if status is not None else None,
        "src_diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12] if diff else None,
    }


def finish(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` plus the load average and source state at the end of the run.

    If the source changed while the benchmark ran (the ``*_end`` fields differ), kernels started at
    different times may have run different code.
    """
    end = {f"{k}_end": v for k, v in _source_state().items()}
    return dict(meta, load_average_end=[round(x, 2) for x in os.getloadavg()], **end)


def write_outputs(out: Path, data: dict[str, Any], markdown: str) -> Path:
    """``out`` (JSON) and the same name with ``.md``; returns the markdown path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown)
    return md


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """One row per dict (columns: the union of their keys, in first-seen order), for spreadsheets and pandas.

    Lists and dicts are written as JSON so a cell never holds a Python repr.
    """
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()})


def plot_path(out: Path) -> Path:
    """The PNG beside a result's JSON (``throughput.json`` -> ``throughput.png``)."""
    return out.with_suffix(".png")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def pct(new: float | None, base: float | None) -> float | None:
    if new is None or base is None or base <= 0:
        return None
    return 100.0 * (new - base) / base


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def fmt_seconds(value: object, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals, or n/a when it is not a number (not measured)."""
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f}"


def rate(bps: float) -> str:
    """Bytes per second as "1.23 GB/s" or, below 0.1 GB/s, "45.6 MB/s" (toy sizes stay readable)."""
    return f"{bps / 1e9:.2f} GB/s" if bps >= 1e8 else f"{bps / 1e6:.1f} MB/s"


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def code_span(text: str) -> str:
    """``text`` as inline code in a markdown table cell (a pipe would end the cell)."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def source_line(m: dict[str, Any]) -> str:
    """"nbmigrate 0.1.0 (abc1234, src modified)" for a table's caption, saying so if the code changed mid-run."""
    text = f"nbmigrate {m['nbmigrate']} ({m['commit']}{', src modified' if m['src_modified'] else ''})"
    if "commit_end" in m and (m["commit_end"], m["src_diff_sha1_end"]) != (m["commit"], m["src_diff_sha1"]):
        text += (f" — **the source changed during the run** (ended at {m['commit_end']}"
                 f"{', src modified' if m['src_modified_end'] else ''})")
    return text
