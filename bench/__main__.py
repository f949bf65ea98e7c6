"""``python -m bench [overhead|correctness] ...``; with no subcommand, both. See bench/README.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import correctness, overhead
from .common import CORPUS, default_out, expand_notebooks, log

DEFAULT_TIMEOUT = 1800.0


def _parser() -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--quick", action="store_true", default=argparse.SUPPRESS,
                        help="only the fastest notebooks (a few minutes instead of ~20)")
    shared.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds allowed per cell (default {DEFAULT_TIMEOUT:.0f})")
    shared.add_argument("--repeat", type=int, default=argparse.SUPPRESS,
                        help="overhead: runs per side and notebook, best kept (default 1)")
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, parents=[shared])
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="folder for the results of both commands (default bench/results/<date>/)")
    sub = parser.add_subparsers(dest="command")
    for name, what in (("overhead", "monitoring overhead on the benchmark notebooks"),
                       ("correctness", "trial migrations of the correctness notebooks and the demo")):
        p = sub.add_parser(name, help=what, description=what, parents=[shared])
        p.add_argument("--notebooks", nargs="+", default=[], metavar="NOTEBOOK_OR_DIR",
                       help="notebooks (or folders of them) to use instead of the corpus")
        p.add_argument("--out", type=Path, default=None,
                       help=f"JSON result; markdown goes beside it (default bench/results/<date>/{name}.json)")
    return parser


def _overhead(notebooks: list[str], out: Path, quick: bool, timeout: float, repeat: int = 1) -> int:
    chosen = overhead.select_notebooks(expand_notebooks(notebooks), quick)
    if chosen is None:
        log(f"bench overhead: the benchmark notebooks are not at {CORPUS / 'benchmark'} (the shared corpus "
            "lives beside the clone; set NBMIGRATE_CORPUS or pass --notebooks). Nothing measured.")
        return 0
    log(f"bench overhead: {', '.join(p.name for p in chosen)}")
    print(overhead.run(chosen, out, quick=quick, timeout=timeout, repeat=max(1, repeat)))
    return 0


def _correctness(notebooks: list[str], out: Path, quick: bool, timeout: float) -> int:
    chosen = correctness.select_notebooks(expand_notebooks(notebooks), quick)
    log(f"bench correctness: {', '.join(p.name for p in chosen)}")
    print(correctness.run(chosen, out, quick=quick, timeout=timeout))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quick: bool = getattr(args, "quick", False)
    timeout: float = getattr(args, "timeout", DEFAULT_TIMEOUT)
    repeat: int = getattr(args, "repeat", 1)
    if args.command == "overhead":
        return _overhead(args.notebooks, args.out or default_out("overhead.json"), quick, timeout, repeat)
    if args.command == "correctness":
        return _correctness(args.notebooks, args.out or default_out("correctness.json"), quick, timeout)
    folder: Path | None = args.out_dir
    status = _overhead([], (folder / "overhead.json") if folder else default_out("overhead.json"), quick, timeout,
                       repeat)
    print(flush=True)
    return status or _correctness([], (folder / "correctness.json") if folder else default_out("correctness.json"),
                                  quick, timeout)


if __name__ == "__main__":
    sys.exit(main())
