"""What a kernel process costs while it runs cells: CPU seconds and peak resident memory.

CPU is counted for the kernel's whole process tree, because libraries fork workers (joblib's loky
pool for ``n_jobs=2``, torch's DataLoader): a tree total at the end minus the one at the start. A
worker that exited and was reaped shows up in its reaper's ``children_*`` times, so nothing is counted
twice and little is lost. Memory is the kernel process alone (where the monitor lives): the peak of a
50 ms RSS sampler, and the kernel's own high-water mark (``VmHWM``), which a sampler cannot miss.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def tree_cpu_seconds(pid: int) -> float:
    """user+system seconds of ``pid``, its reaped children, and its live descendants."""
    root = psutil.Process(pid)
    total = _cpu(root)
    for child in root.children(recursive=True):
        try:
            total += _cpu(child)
        except psutil.Error:  # exited between listing and reading
            continue
    return total


def vm_hwm_bytes(pid: int) -> int | None:
    """Peak resident set size of ``pid`` over its whole life, from /proc (Linux only)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Usage:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_sampled: int
    peak_rss_hwm: int | None
    samples: int


class Probe:
    """Context manager around a run of cells in the kernel ``pid``; ``usage`` is set on exit."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.usage: Usage | None = None
        self._peak = 0
        self._samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._proc = psutil.Process(pid)
        self._cpu0 = 0.0
        self._t0 = 0.0

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                rss = int(self._proc.memory_info().rss)
            except psutil.Error:
                return
            self._peak = max(self._peak, rss)
            self._samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Probe:
        self._cpu0 = tree_cpu_seconds(self.pid)
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        try:
            cpu = tree_cpu_seconds(self.pid) - self._cpu0
            self._peak = max(self._peak, int(self._proc.memory_info().rss))
        except psutil.Error:
            cpu = float("nan")
        self.usage = Usage(wall, cpu, self._peak, vm_hwm_bytes(self.pid), self._samples)
