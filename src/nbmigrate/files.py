"""What cells do to files, and whether replaying them would still see the same files.

A cell that read ``sales.csv`` can only be replayed faithfully if ``sales.csv`` still holds what the
cell read; a cell that wrote ``sales.csv`` must not be replayed if a later cell overwrote it (the
replay would clobber the newer file). Worked example::

    cell 1: raw.to_csv("sales.csv")          writes sales.csv (500 rows)
    cell 2: sales = pd.read_csv("sales.csv")  reads it
    cell 3: tiny.to_csv("sales.csv")          overwrites it (2 rows)

At checkpoint time cell 2's read stamp no longer matches the file, so ``sales`` must be stored; cell
1's write stamp no longer matches either, so cell 1 must not be replayed.

Opens are observed with a process-wide audit hook (``sys.addaudithook``: it cannot be removed, so one
hook dispatches to whichever recorder is active). Files opened by C libraries without Python's
``open`` (pyarrow's parquet reader) are caught by the monitor's second source: string constants in the
cell that name existing files (see ``access.CellAccess.paths``).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from .history import FileStamp

HASH_LIMIT = 1 << 30
"""Files up to this size get a content hash; larger ones are compared by size and mtime only."""

GONE = -1
"""``FileStamp.size`` of a file that did not exist when the stamp was taken."""

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _ignored_roots() -> tuple[str, ...]:
    # ipykernel writes each cell's source under <tmp>/ipykernel_<pid>/ and reads it back for tracebacks.
    cell_files = os.path.join(tempfile.gettempdir(), f"ipykernel_{os.getpid()}")
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev", cell_files}
    try:
        from IPython.paths import get_ipython_dir

        roots.add(get_ipython_dir())
    except Exception:  # IPython missing or misconfigured: nothing more to ignore
        pass
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        roots.add(jupyter_runtime_dir())
    except Exception:
        pass
    return tuple(os.path.realpath(r) for r in roots if r)


@dataclass
class FileActivity:
    """Files one cell opened for reading and for writing (absolute paths, in first-seen order).

    ``read_first`` holds the files whose first access in the cell was a read: if the cell also wrote
    such a file, a replay would read the cell's own output instead of what the cell originally read
    (``read_then_written``). A file written first and read afterwards is the cell's own data.
    """

    read: dict[str, None] = field(default_factory=dict)
    written: dict[str, None] = field(default_factory=dict)
    read_first: dict[str, None] = field(default_factory=dict)

    @property
    def read_then_written(self) -> list[str]:
        return [p for p in self.read_first if p in self.written]

    @property
    def external_reads(self) -> list[str]:
        """Files read whose content came from outside the cell."""
        return [p for p in self.read if p not in self.written]
    network: list[str] = field(default_factory=list)
    subprocess: list[str] = field(default_factory=list)


class FileRecorder:
    """Collects the audit events of the cell that is running, on the thread that runs it."""

    def __init__(self) -> None:
        self._ignored = _ignored_roots()
        self.activity: FileActivity | None = None
        self._thread: int | None = None

    def start(self) -> None:
        self.activity = FileActivity()
        self._thread = threading.get_ident()
        _ACTIVE.append(self)

    def stop(self) -> FileActivity:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        activity, self.activity = self.activity or FileActivity(), None
        return activity

    def _keep(self, path: str) -> bool:
        # Bytecode caches are the import system's business (the environment check covers modules).
        return not (path.startswith(self._ignored) or path.endswith(".pyc") or "/__pycache__/" in path)

    def on_event(self, event: str, args: tuple[Any, ...]) -> None:
        activity = self.activity
        if activity is None or threading.get_ident() != self._thread:
            return
        if event == "open":
            target, mode, flags = args[0], args[1], args[2]
            if not isinstance(target, (str, bytes, os.PathLike)):
                return  # a file descriptor
            path = os.path.realpath(os.fsdecode(target))
            if not self._keep(path):
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            # "r+"/"a+" (O_RDWR without O_TRUNC/O_EXCL) can read what was there before writing.
            reading = not writing or (isinstance(flags, int) and flags & os.O_RDWR
                                      and not flags & (os.O_TRUNC | os.O_EXCL))
            if reading:
                if path not in activity.written:
                    activity.read_first[path] = None
                activity.read[path] = None
            if writing:
                activity.written[path] = None
        elif event in ("os.remove", "os.rename", "os.truncate", "shutil.rmtree"):
            # os.rename/os.replace: (src, dst, ...); both change (the destination is the usual output).
            for target in args[:2] if event == "os.rename" else args[:1]:
                if isinstance(target, (str, bytes, os.PathLike)):
                    path = os.path.realpath(os.fsdecode(target))
                    if self._keep(path):
                        activity.written[path] = None
        elif event == "socket.connect":
            activity.network.append(repr(args[1])[:80])
        elif event == "subprocess.Popen":
            activity.subprocess.append(repr(args[1])[:80])


_ACTIVE: list[FileRecorder] = []
_HOOKED = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _ACTIVE and event in ("open", "os.remove", "os.rename", "os.truncate", "shutil.rmtree",
                             "socket.connect", "subprocess.Popen"):
        for recorder in _ACTIVE:
            recorder.on_event(event, args)


def install_audit_hook() -> None:
    """Install the process-wide hook once (audit hooks cannot be removed)."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True


def stamp(path: str) -> FileStamp:
    """Size, mtime and (for files up to ``HASH_LIMIT``) content hash of ``path`` right now."""
    try:
        st = os.stat(path)
    except OSError:
        return FileStamp(path=path, size=GONE, mtime_ns=0, xxh3=None)
    if not stat.S_ISREG(st.st_mode):
        return FileStamp(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, xxh3=None)
    digest: str | None = None
    if st.st_size <= HASH_LIMIT:
        h = xxhash.xxh3_128()
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
            digest = h.hexdigest()
        except OSError:
            digest = None
    return FileStamp(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, xxh3=digest)


def same_content(old: FileStamp, new: FileStamp) -> bool:
    """Whether ``new`` shows the file as ``old`` saw it (content hash if both have one)."""
    if old.size != new.size:
        return False
    if old.xxh3 is not None and new.xxh3 is not None:
        return old.xxh3 == new.xxh3
    return old.mtime_ns == new.mtime_ns


def regular_files(paths: Iterable[str], cwd: str) -> list[str]:
    """Absolute real paths of the given (possibly relative) paths that are existing regular files."""
    found: list[str] = []
    for p in paths:
        try:
            full = os.path.realpath(os.path.join(cwd, os.path.expanduser(p)))
            if os.path.isfile(full):
                found.append(full)
        except (OSError, ValueError):
            continue
    return found


def rebase(path: str, old_cwd: str, new_cwd: str) -> str:
    """Map a path under the source kernel's working directory to the same place under the target's."""
    try:
        rel = Path(path).relative_to(old_cwd)
    except ValueError:
        return path
    return str(Path(new_cwd) / rel)
