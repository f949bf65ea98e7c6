"""``python -m bench [COMMAND] ...``: nbmigrate's benchmarks; with no command, all of them and a summary.

See bench/README.md for what each measures and how long it takes.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from . import compare, correctness, hibernation, migration, overhead, scalability, summary, throughput
from .common import CORPUS, default_out, expand_notebooks, lightest_benchmark_notebook, log

DEFAULT_TIMEOUT = 1800.0


@dataclass(frozen=True)
class NotebookBench:
    """A benchmark over notebooks: ``run(notebooks, out, ...)`` and ``select_notebooks(given, quick)``
    (see :func:`_run_notebooks` for the modules that differ)."""

    name: str
    help: str
    module: ModuleType


def _notebook_benches() -> list[NotebookBench]:
    """The notebook benchmarks, in the order the full run does them."""
    return [
        NotebookBench("overhead", "monitoring overhead on the benchmark notebooks", overhead),
        NotebookBench("correctness", "trial migrations of the correctness notebooks and the demo", correctness),
        NotebookBench("compare", "nbmigrate side by side with the other methods on the benchmark notebooks", compare),
        NotebookBench("migration", "server-to-server moves of the benchmark notebooks (CLI, streamed and S3)",
                      migration),
        NotebookBench("hibernation", "hibernating and waking the benchmark notebooks' sessions", hibernation),
    ]


def _parser(benches: list[NotebookBench]) -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--quick", action="store_true", default=argparse.SUPPRESS,
                        help="fewer notebooks and smaller sizes (run times: bench/README.md)")
    shared.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds allowed per cell or operation (default {DEFAULT_TIMEOUT:.0f})")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--out-dir", type=Path, default=argparse.SUPPRESS,
                       help="folder for the results and summary.md (default bench/results/<date>/)")
    # Given before or after the command alike (SUPPRESS: a subparser's default must not mask the top level's).
    repeat = argparse.ArgumentParser(add_help=False)
    repeat.add_argument("--repeat", type=int, default=argparse.SUPPRESS,
                        help="overhead: runs per side and notebook, best kept (default 1); "
                             "scalability: plan runs per size, median kept (default 5)")
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, parents=[shared, where])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for bench in benches:
        parents = [shared, where, repeat] if bench.name == "overhead" else [shared, where]
        p = sub.add_parser(bench.name, help=bench.help, description=bench.help, parents=parents)
        p.add_argument("--notebooks", nargs="+", default=[], metavar="NOTEBOOK_OR_DIR",
                       help="notebooks (or folders of them) to use instead of the corpus")
        p.add_argument("--out", type=Path, default=None,
                       help="JSON result; the other files go beside it "
                       f"(default bench/results/<date>/{bench.name}.json)")
        if bench.name == "compare":
            p.add_argument("--bandwidth", type=float, default=274e6,
                           help="bytes/s of the transfer between checkpoint and restore (default 274e6)")
            p.add_argument("--methods", nargs="+", default=None, choices=compare.ALL_METHODS, metavar="METHOD",
                           help=f"methods to compare (default all: {', '.join(compare.ALL_METHODS)})")
    p = sub.add_parser("throughput", help="checkpoint/restore GB/s of 4 GiB of arrays against the raw disk",
                       parents=[shared, where])
    p.add_argument("--bytes", type=float, default=None, help="bytes of arrays (default 4 GiB, 512 MiB with --quick)")
    p.add_argument("--scratch", type=Path, default=None,
                   help="folder on the disk to measure (default the system's temp folder)")
    p.add_argument("--out", type=Path, default=None, help="JSON result (default bench/results/<date>/throughput.json)")
    p = sub.add_parser("scalability", help="history-graph memory and plan time of synthetic long sessions",
                       parents=[shared, where, repeat])
    p.add_argument("--sizes", type=int, nargs="+", default=list(scalability.SIZES), metavar="CES",
                   help="cell executions per history (default 500 2000 5000 10000)")
    p.add_argument("--out", type=Path, default=None, help="JSON result (default bench/results/<date>/scalability.json)")
    sub.add_parser("summary", help="(re)write summary.md from the results already in --out-dir", parents=[where])
    return parser


def _run_notebooks(bench: NotebookBench, given: list[str], out: Path, quick: bool, timeout: float,
                   **extra: object) -> int:
    """Select the notebooks and run ``bench``."""
    chosen = bench.module.select_notebooks(expand_notebooks(given), quick)
    if chosen is None:
        log(f"bench {bench.name}: the benchmark notebooks are not at {CORPUS / 'benchmark'} (the shared corpus "
            "lives beside the clone; set NBMIGRATE_CORPUS or pass --notebooks). Nothing measured.")
        return 0
    log(f"bench {bench.name}: {', '.join(p.name for p in chosen)}")
    result = bench.module.run(chosen, out, quick=quick, timeout=timeout, **extra)
    print(result, flush=True)
    return 0


def _guarded(name: str, step: Callable[[], int]) -> tuple[int, float]:
    """Run one benchmark of the full run: a failure is logged and counted, and the others still run."""
    t = time.perf_counter()
    try:
        status = step()
    except Exception:
        log(f"bench {name} FAILED:\n{traceback.format_exc()}")
        status = 1
    seconds = time.perf_counter() - t
    log(f"bench {name}: {seconds:.0f} s" + (" (failed)" if status else ""))
    return status, seconds


def _everything(benches: list[NotebookBench], folder: Path, quick: bool, timeout: float) -> int:
    """Every benchmark in one sitting into ``folder``, then summary.md: the cheap, pure ones first.

    ``overhead`` is not run on its own: ``compare`` writes it from its plain and monitored source runs.
    Without ``quick``, the server benchmarks take the lightest benchmark notebook only (see
    :func:`bench.common.lightest_benchmark_notebook`).
    """
    steps: list[tuple[str, Callable[[], int]]] = [
        ("scalability", lambda: _print(scalability.run(folder / "scalability.json", repeat=3 if quick else 5))),
        ("throughput", lambda: _print(throughput.run(folder / "throughput.json", quick=quick, timeout=timeout))),
    ]
    servers = [] if quick else [str(p) for p in lightest_benchmark_notebook()]
    for bench in benches:
        if bench.name == "overhead":
            continue
        given = servers if bench.name in ("migration", "hibernation") else []
        steps.append((bench.name, lambda b=bench, g=given: _run_notebooks(  # type: ignore[misc]
            b, g, folder / f"{b.name}.json", quick, timeout)))
    failed: list[str] = []
    durations: dict[str, float] = {}
    for name, step in steps:
        status, durations[name] = _guarded(name, step)
        if status:
            failed.append(name)
    print(summary.write(folder, durations=durations, failed=failed), flush=True)
    if failed:
        log(f"bench: {', '.join(failed)} failed (see above); the summary marks them")
    return 1 if failed else 0


def _print(markdown: str) -> int:
    print(markdown, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    benches = _notebook_benches()
    args = _parser(benches).parse_args(argv)
    quick: bool = getattr(args, "quick", False)
    timeout: float = getattr(args, "timeout", DEFAULT_TIMEOUT)
    repeat: int | None = getattr(args, "repeat", None)
    folder: Path = getattr(args, "out_dir", None) or default_out("")
    command: str | None = args.command
    if command is None:
        return _everything(benches, folder, quick, timeout)
    if command == "summary":
        print(summary.write(folder))
        return 0
    out: Path = args.out or folder / f"{command}.json"
    if command == "throughput":
        nbytes = int(args.bytes) if args.bytes is not None else None
        return _print(throughput.run(out, quick=quick, timeout=timeout, nbytes=nbytes, scratch=args.scratch))
    if command == "scalability":
        return _print(scalability.run(out, sizes=tuple(args.sizes), repeat=max(1, repeat or 5)))
    bench = next(b for b in benches if b.name == command)
    extra: dict[str, object] = {}
    if command == "overhead":
        extra["repeat"] = max(1, repeat or 1)
    if command == "compare":
        extra["bandwidth"] = args.bandwidth
        if args.methods:
            extra["methods"] = args.methods
    return _run_notebooks(bench, args.notebooks, out, quick, timeout, **extra)


if __name__ == "__main__":
    sys.exit(main())
