"""``python -m bench throughput``: checkpoint and restore speed of a session full of numeric arrays.

A kernel with nbmigrate loaded draws a few large float64 arrays from an *unseeded* generator
(``np.random.default_rng()``): random bytes leave compression nothing to win, and the monitor marks the
cell as unreplayable, so the plan must store them (checked: the run fails if any array was replayed).
The kernel ``%checkpoint``s to a local folder, exits, and a fresh kernel ``%restore``s.

The yardstick is the same disk in the same run: the same number of bytes, in files of the same
sizes, written with plain ``write`` calls and ``fsync``'d, then read back. The page cache would
make reads look like memory copies, so each file (and, before the restore, each checkpoint blob) is
dropped from it with ``posix_fadvise(POSIX_FADV_DONTNEED)`` after its fsync: that works without root
for clean pages. The JSON records how much of the data was still cached (``/proc/meminfo``'s
``Cached`` before and after the drop); on a VM the host may cache below us all the same.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from nbmigrate.errors import NbmigrateError
from nbmigrate.remote import Kernel
from nbmigrate.reports import human_bytes

from .common import (
    QUIET,
    finish,
    isolated_environment,
    log,
    machine,
    plot_path,
    rate,
    source_line,
    table,
    write_csv,
    write_outputs,
)

FULL_BYTES = 4 * 2**30
QUICK_BYTES = 2**29
ARRAY_BYTES = 2**30
"""Largest single array: 4 GiB as 4 arrays of 1 GiB (several blobs, as a real session has)."""
CHUNK = 8 * 2**20
TARGET = 0.70
"""Issue 4: checkpoint throughput at least this fraction of the raw write bandwidth."""


class ThroughputError(NbmigrateError):
    """The measurement could not be made as designed (e.g. the plan replayed instead of storing)."""


@dataclass
class RawDisk:
    """Plain-file bandwidth of the folder's disk for ``nbytes`` split like the arrays."""

    nbytes: int
    write_seconds: float
    read_seconds: float
    cached_after_drop: int
    """Bytes of the page cache that the drop did not release (``Cached`` delta, a rough figure)."""

    @property
    def write_bps(self) -> float:
        return self.nbytes / self.write_seconds

    @property
    def read_bps(self) -> float:
        return self.nbytes / self.read_seconds


def array_sizes(total: int, largest: int = ARRAY_BYTES) -> list[int]:
    """``total`` bytes as arrays of at most ``largest`` bytes (whole float64 elements)."""
    sizes = []
    left = total
    while left > 0:
        size = min(left, largest) // 8 * 8
        if size == 0:
            break
        sizes.append(size)
        left -= size
    return sizes


def _page_cache_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Cached:"):
            return int(line.split()[1]) * 1024
    return 0


def drop_from_cache(paths: list[Path]) -> None:
    """Ask the kernel to evict these files' clean pages, so the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_disk(folder: Path, sizes: list[int]) -> RawDisk:
    """Write ``sizes`` files of random bytes (8 MiB writes, fsync each), drop them from the cache, read them."""
    block = memoryview(os.urandom(CHUNK))
    paths = [folder / f"raw-{i}" for i in range(len(sizes))]
    t = time.perf_counter()
    for path, size in zip(paths, sizes, strict=True):
        with path.open("wb", buffering=0) as f:
            for start in range(0, size, CHUNK):
                f.write(block[: min(CHUNK, size - start)])
            os.fsync(f.fileno())
    write_seconds = time.perf_counter() - t
    cached = _page_cache_bytes()
    drop_from_cache(paths)
    cached_after = max(0, sum(sizes) - (cached - _page_cache_bytes()))
    buf = memoryview(bytearray(CHUNK))
    t = time.perf_counter()
    for path in paths:
        with path.open("rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    read_seconds = time.perf_counter() - t
    for path in paths:
        path.unlink()
    return RawDisk(sum(sizes), write_seconds, read_seconds, cached_after)


def _make_arrays_cell(sizes: list[int]) -> str:
    lines = ["import numpy as np", "",
             "# unseeded on purpose: these arrays cannot be recomputed, so the checkpoint must store them"]
    lines += [f"a{i} = np.random.default_rng().random({size // 8})" for i, size in enumerate(sizes)]
    return "\n".join(lines) + "\n"


def _checkpoint(work: Path, ckpt: Path, sizes: list[int], timeout: float) -> dict[str, Any]:
    with Kernel.start(cwd=str(work), extra_arguments=QUIET) as kernel:
        kernel.execute("%load_ext nbmigrate")
        t = time.perf_counter()
        kernel.execute(_make_arrays_cell(sizes), timeout=timeout)
        make_seconds = time.perf_counter() - t
        t = time.perf_counter()
        kernel.execute(f"%checkpoint {ckpt}", timeout=timeout)
        wall = time.perf_counter() - t
        report = kernel.evaluate_json("__import__('nbmigrate.extension').extension.last_report_json()")
    stored = {n for g in report["groups"] if g["stored"] for n in g["names"]}
    missing = [f"a{i}" for i in range(len(sizes)) if f"a{i}" not in stored]
    if missing:
        raise ThroughputError(f"the plan did not store {', '.join(missing)} (replay cells "
                              f"{report['replay_cells']}); the throughput would not measure writing")
    return {"make_seconds": make_seconds, "wall_seconds": wall, "report": report}


def _restore(work: Path, ckpt: Path, timeout: float) -> dict[str, Any]:
    with Kernel.start(cwd=str(work), extra_arguments=QUIET) as kernel:
        kernel.execute("%load_ext nbmigrate")
        t = time.perf_counter()
        kernel.execute(f"%restore {ckpt}", timeout=timeout)
        wall = time.perf_counter() - t
        report = kernel.evaluate_json("__import__('nbmigrate.extension').extension.last_report_json()")
    if not report.get("ok"):
        raise ThroughputError(f"the restore from {ckpt} reported problems: {report.get('problems')} "
                              f"mismatched {report.get('mismatched')} missing {report.get('missing')}")
    return {"wall_seconds": wall, "report": report}


def check_room(folder: Path, total: int) -> None:
    """Fail before starting when the disk or the memory cannot hold the run (a full disk mid-checkpoint
    or an OOM-killed kernel would measure nothing and could disturb other work on the machine)."""
    need_disk = 2 * total + 256 * 2**20  # raw files (deleted before the checkpoint) or checkpoint, + slack
    free = shutil.disk_usage(folder).free
    if free < need_disk:
        raise ThroughputError(f"{folder} has {human_bytes(free)} free; measuring {human_bytes(total)} needs "
                              f"{human_bytes(need_disk)} (pass --bytes or --scratch)")
    available = psutil.virtual_memory().available
    need_memory = int(1.5 * total)  # one kernel at a time holds the arrays, plus unpickling slack
    if available < need_memory:
        raise ThroughputError(f"{human_bytes(available)} of memory available; measuring {human_bytes(total)} "
                              f"needs about {human_bytes(need_memory)} (pass --bytes)")


def measure(total: int, *, timeout: float, scratch: Path | None = None) -> dict[str, Any]:
    """Raw disk, then checkpoint and restore of ``total`` bytes of arrays, all in one scratch folder."""
    sizes = array_sizes(total)
    with tempfile.TemporaryDirectory(prefix="nbmigrate-bench-throughput-", dir=scratch) as tmp:
        folder = Path(tmp)
        check_room(folder, sum(sizes))
        log(f"throughput: raw disk, {human_bytes(sum(sizes))} in {len(sizes)} files at {folder}...")
        raw = raw_disk(folder, sizes)
        log(f"  write {rate(raw.write_bps)}, read {rate(raw.read_bps)}")
        work, ckpt = folder / "work", folder / "checkpoint"
        work.mkdir()
        log(f"throughput: kernel A makes {len(sizes)} arrays and checkpoints them...")
        made = _checkpoint(work, ckpt, sizes, timeout)
        ck = made["report"]
        blobs = sorted(p for p in ckpt.rglob("*") if p.is_file())
        cached = _page_cache_bytes()
        drop_from_cache(blobs)
        dropped = cached - _page_cache_bytes()
        log(f"  checkpoint {ck['seconds']:.1f} s; kernel B restores...")
        rest = _restore(work, ckpt, timeout)
    rs = rest["report"]
    return {
        "array_bytes": sizes,
        "raw": dict(asdict(raw), write_bps=raw.write_bps, read_bps=raw.read_bps),
        "make_arrays_seconds": made["make_seconds"],
        "checkpoint": {"seconds": ck["seconds"], "wall_seconds": made["wall_seconds"],
                       "plan_seconds": ck["plan_seconds"], "written_bytes": ck["written_bytes"],
                       "stored_bytes": ck["stored_bytes"], "bps": ck["written_bytes"] / ck["seconds"],
                       "replay_cells": ck["replay_cells"], "bandwidth_measured": ck["bandwidth"]},
        "blobs_dropped_from_cache_bytes": dropped,
        "restore": {"seconds": rs["seconds"], "wall_seconds": rest["wall_seconds"],
                    "loaded_bytes": rs["loaded_bytes"], "bps": rs["loaded_bytes"] / rs["seconds"],
                    "verified": len(rs["verified"]), "replayed_cells": rs["replayed_cells"]},
    }


def run(out: Path, *, quick: bool, timeout: float, nbytes: int | None = None, scratch: Path | None = None) -> str:
    """Measure, write ``out`` (JSON) and ``.md``, ``.csv``, ``.png`` beside it; return the markdown.

    ``nbytes`` overrides the size (4 GiB, 512 MiB with ``quick``); ``scratch`` the folder (default: the
    system's temp folder; pass one on the disk you care about).
    """
    total = nbytes if nbytes is not None else QUICK_BYTES if quick else FULL_BYTES
    with isolated_environment():
        meta = machine()
        result = measure(total, timeout=timeout, scratch=scratch)
    ratio = result["checkpoint"]["bps"] / result["raw"]["write_bps"]
    result["checkpoint_vs_raw_write"] = ratio
    result["restore_vs_raw_read"] = result["restore"]["bps"] / result["raw"]["read_bps"]
    result["target"] = {"fraction": TARGET, "met": ratio >= TARGET}
    data = {"machine": finish(meta), "settings": {"quick": quick, "bytes": total,
                                                 "scratch": str(scratch or tempfile.gettempdir())}, **result}
    md = render(data)
    write_outputs(out, data, md)
    write_csv(out.with_suffix(".csv"), rows(data))
    plot(data, plot_path(out))
    log(f"wrote {out} (+ .md, .csv, .png)")
    return md


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    raw, ck, rs = data["raw"], data["checkpoint"], data["restore"]
    return [
        {"what": "raw write (fsync'd)", "bytes": raw["nbytes"], "seconds": raw["write_seconds"],
         "gb_per_s": raw["write_bps"] / 1e9},
        {"what": "checkpoint", "bytes": ck["written_bytes"], "seconds": ck["seconds"], "gb_per_s": ck["bps"] / 1e9},
        {"what": "raw read (cache dropped)", "bytes": raw["nbytes"], "seconds": raw["read_seconds"],
         "gb_per_s": raw["read_bps"] / 1e9},
        {"what": "restore", "bytes": rs["loaded_bytes"], "seconds": rs["seconds"], "gb_per_s": rs["bps"] / 1e9},
    ]


def render(data: dict[str, Any]) -> str:
    m, raw = data["machine"], data["raw"]
    body = [[r["what"], human_bytes(r["bytes"]), f"{r['seconds']:.2f}", rate(r["gb_per_s"] * 1e9)] for r in rows(data)]
    met = "met" if data["target"]["met"] else "MISSED"
    return "\n".join([
        "## Checkpoint and restore throughput\n",
        f"{m['date']}, {source_line(m)}, Python {m['python']}, {m['cpus']} CPUs, load average "
        f"{m['load_average'][0]} at start, {m['load_average_end'][0]} at end. "
        f"{len(data['array_bytes'])} float64 arrays of random numbers ({human_bytes(sum(data['array_bytes']))}) "
        "from an unseeded generator, all stored; checkpoint to a local folder (default options: the "
        "checkpoint's seconds include its own bandwidth probe, fingerprinting, planning, hashing, "
        "writing and fsync), restore in a fresh kernel (reading, SHA-256 check, unpickling and digest "
        "verification). Raw: the same bytes in files of the same sizes, plain writes + fsync, read back "
        "after `POSIX_FADV_DONTNEED` (the checkpoint's blobs were dropped the same way before the restore; "
        f"{human_bytes(raw['cached_after_drop'])} of the raw files stayed cached).\n",
        table(["operation", "bytes", "seconds", "rate"], body),
        f"\nCheckpoint / raw write: **{100 * data['checkpoint_vs_raw_write']:.0f} %** (target ≥ "
        f"{100 * data['target']['fraction']:.0f} %: **{met}**); restore / raw read: "
        f"{100 * data['restore_vs_raw_read']:.0f} %.\n",
    ])


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    body = rows(data)
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["#999999", "#1f77b4", "#999999", "#ff7f0e"]
    ax.bar([r["what"] for r in body], [r["gb_per_s"] for r in body], color=colors)
    ax.axhline(TARGET * data["raw"]["write_bps"] / 1e9, color="red", linestyle="--", linewidth=1,
               label=f"target: {100 * TARGET:.0f} % of raw write")
    ax.set(ylabel="GB/s", title=f"Throughput, {human_bytes(sum(data['array_bytes']))} of arrays")
    ax.tick_params(axis="x", labelrotation=15)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
