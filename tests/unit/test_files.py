"""Unit tests for nbmigrate.files: file stamps, path helpers and the audit-hook recorder (no kernel)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbmigrate.files import (
    GONE,
    FileActivity,
    FileRecorder,
    install_audit_hook,
    rebase,
    regular_files,
    same_content,
    stamp,
)
from nbmigrate.history import FileStamp

# --------------------------------------------------------------------------------------------------
# stamp / same_content
# --------------------------------------------------------------------------------------------------


def test_stamp_of_a_regular_file_has_size_mtime_and_hash(tmp_path: Path) -> None:
    f = tmp_path / "data.csv"
    f.write_text("a,b\n1,2\n")
    st = stamp(str(f))
    assert st.path == str(f)
    assert st.size == len("a,b\n1,2\n")
    assert st.mtime_ns == f.stat().st_mtime_ns
    assert st.xxh3 is not None and len(st.xxh3) == 32  # xxh3_128 hex
    assert stamp(str(f)) == st  # deterministic


def test_stamp_hash_follows_content(tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_text("one")
    first = stamp(str(f))
    f.write_text("two")
    second = stamp(str(f))
    assert first.size == second.size
    assert first.xxh3 != second.xxh3


def test_stamp_of_a_missing_file_is_gone(tmp_path: Path) -> None:
    st = stamp(str(tmp_path / "nope.txt"))
    assert st.size == GONE
    assert st.xxh3 is None
    assert st.mtime_ns == 0


def test_stamp_of_a_directory_has_no_hash(tmp_path: Path) -> None:
    st = stamp(str(tmp_path))
    assert st.size != GONE
    assert st.xxh3 is None


def test_same_content_compares_hashes_when_both_have_one(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("same")
    old = stamp(str(f))
    os.utime(f, ns=(old.mtime_ns + 10**9, old.mtime_ns + 10**9))  # touched, content unchanged
    touched = stamp(str(f))
    assert touched.mtime_ns != old.mtime_ns
    assert same_content(old, touched)
    f.write_text("diff")  # same size, different bytes
    assert not same_content(old, stamp(str(f)))


def test_same_content_size_mismatch_and_mtime_fallback() -> None:
    a = FileStamp("p", size=3, mtime_ns=1, xxh3="aa")
    assert not same_content(a, FileStamp("p", size=4, mtime_ns=1, xxh3="aa"))
    # Without a hash on either side (file too large to hash), size and mtime decide.
    big = FileStamp("p", size=10, mtime_ns=5, xxh3=None)
    assert same_content(big, FileStamp("p", size=10, mtime_ns=5, xxh3=None))
    assert not same_content(big, FileStamp("p", size=10, mtime_ns=6, xxh3=None))
    assert not same_content(big, FileStamp("p", size=10, mtime_ns=6, xxh3="bb"))
    # A file that was gone and still is: unchanged.
    gone = FileStamp("p", size=GONE, mtime_ns=0)
    assert same_content(gone, FileStamp("p", size=GONE, mtime_ns=0))


# --------------------------------------------------------------------------------------------------
# regular_files / rebase
# --------------------------------------------------------------------------------------------------


def test_regular_files_keeps_existing_files_only(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("y")
    found = regular_files(["a.csv", "sub/b.txt", "sub", "missing.csv", str(tmp_path / "a.csv"), "bad\0name"],
                          str(tmp_path))
    real = os.path.realpath(tmp_path)
    assert found == [os.path.join(real, "a.csv"), os.path.join(real, "sub", "b.txt"), os.path.join(real, "a.csv")]


def test_regular_files_resolves_symlinks_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "target.txt"
    target.write_text("t")
    (tmp_path / "link.txt").symlink_to(target)
    monkeypatch.setenv("HOME", str(tmp_path))
    real = os.path.realpath(target)
    assert regular_files(["link.txt"], str(tmp_path)) == [real]
    assert regular_files(["~/target.txt"], "/") == [real]


def test_rebase_maps_paths_under_the_old_cwd() -> None:
    assert rebase("/home/a/work/data/x.csv", "/home/a/work", "/srv/b") == "/srv/b/data/x.csv"
    assert rebase("/home/a/work", "/home/a/work", "/srv/b") == "/srv/b"
    assert rebase("/etc/hosts", "/home/a/work", "/srv/b") == "/etc/hosts"
    assert rebase("/home/a/workshop/x", "/home/a/work", "/srv/b") == "/home/a/workshop/x"  # not a prefix match


# --------------------------------------------------------------------------------------------------
# FileActivity
# --------------------------------------------------------------------------------------------------


def test_file_activity_derived_lists() -> None:
    act = FileActivity()
    for p in ("in.csv", "both.csv"):
        act.read_first[p] = None
        act.read[p] = None
    act.written["both.csv"] = None
    act.written["out.csv"] = None
    act.read["out.csv"] = None  # written first, then read back: the cell's own data
    assert act.read_then_written == ["both.csv"]
    assert act.external_reads == ["in.csv"]


# --------------------------------------------------------------------------------------------------
# FileRecorder + audit hook
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[FileRecorder]:
    """A recorder started after ``tmp_path`` exists (pytest's own file work is not the test's)."""
    install_audit_hook()
    rec = FileRecorder()
    rec.start()
    try:
        yield rec
    finally:
        rec.stop()


def _real(p: Path) -> str:
    return os.path.realpath(p)


def test_recorder_sees_reads_and_writes(recorder: FileRecorder, tmp_path: Path) -> None:
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("hello")
    recorder.activity = FileActivity()  # forget the setup write
    data = src.read_text()
    dst.write_text(data)
    act = recorder.stop()
    assert list(act.read) == [_real(src)]
    assert list(act.read_first) == [_real(src)]
    assert list(act.written) == [_real(dst)]
    assert act.read_then_written == []
    assert act.external_reads == [_real(src)]


def test_recorder_write_then_read_is_not_an_external_read(recorder: FileRecorder, tmp_path: Path) -> None:
    f = tmp_path / "own.txt"
    f.write_text("mine")
    assert f.read_text() == "mine"
    act = recorder.stop()
    assert _real(f) in act.written and _real(f) in act.read
    assert act.read_first == {}
    assert act.read_then_written == []
    assert act.external_reads == []


def test_recorder_read_then_write_is_flagged(recorder: FileRecorder, tmp_path: Path) -> None:
    f = tmp_path / "both.txt"
    f.write_text("v1")
    recorder.activity = FileActivity()
    old = f.read_text()
    f.write_text(old + "v2")
    act = recorder.stop()
    assert act.read_then_written == [_real(f)]
    assert act.external_reads == []


@pytest.mark.parametrize("mode", ["r+", "a+", "rb+"])
def test_recorder_read_write_mode_counts_as_read_then_write(
    recorder: FileRecorder, tmp_path: Path, mode: str
) -> None:
    """``open(p, "r+")`` reads what was there before writing: a replay would read its own output."""
    f = tmp_path / "rw.txt"
    f.write_text("v1")
    recorder.activity = FileActivity()
    with open(f, mode) as fh:
        fh.read()
        fh.write(b"x" if "b" in mode else "x")
    act = recorder.stop()
    assert act.read_then_written == [_real(f)]


@pytest.mark.parametrize("mode", ["w", "w+", "x", "a"])
def test_recorder_write_only_modes_are_not_reads(recorder: FileRecorder, tmp_path: Path, mode: str) -> None:
    f = tmp_path / "w.txt"
    with open(f, mode) as fh:
        fh.write("x")
    act = recorder.stop()
    assert list(act.written) == [_real(f)]
    assert act.read == {}


def test_recorder_os_open_flags(recorder: FileRecorder, tmp_path: Path) -> None:
    ro, wo = tmp_path / "ro.bin", tmp_path / "wo.bin"
    ro.write_bytes(b"r")
    recorder.activity = FileActivity()
    os.close(os.open(ro, os.O_RDONLY))
    os.close(os.open(wo, os.O_WRONLY | os.O_CREAT))
    act = recorder.stop()
    assert list(act.read) == [_real(ro)]
    assert list(act.written) == [_real(wo)]


def test_recorder_remove_and_rename_are_writes(recorder: FileRecorder, tmp_path: Path) -> None:
    gone, tmp, final = tmp_path / "gone.txt", tmp_path / "tmp.txt", tmp_path / "final.txt"
    gone.write_text("x")
    tmp.write_text("y")
    recorder.activity = FileActivity()
    os.remove(gone)
    os.replace(tmp, final)  # the atomic-write idiom: the destination is what the cell produced
    act = recorder.stop()
    assert _real(gone) in act.written
    assert _real(tmp) in act.written
    assert _real(final) in act.written
    assert act.read == {}


def test_recorder_ignores_other_threads(recorder: FileRecorder, tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine.txt", tmp_path / "theirs.txt"
    mine.write_text("m")
    theirs.write_text("t")
    recorder.activity = FileActivity()

    def background() -> None:
        theirs.read_text()
        (tmp_path / "bg_out.txt").write_text("b")
        os.remove(theirs)

    worker = threading.Thread(target=background)
    worker.start()
    worker.join()
    mine.read_text()
    act = recorder.stop()
    assert list(act.read) == [_real(mine)]
    assert act.written == {}


def test_recorder_ignores_interpreter_files_and_bytecode(recorder: FileRecorder, tmp_path: Path) -> None:
    inside_prefix = Path(os.__file__)  # the standard library lives under sys.base_prefix
    assert os.path.realpath(inside_prefix).startswith(os.path.realpath(sys.base_prefix))
    inside_prefix.read_bytes()
    pyc = tmp_path / "__pycache__" / "m.cpython-311.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(b"\0")
    pyc.read_bytes()
    act = recorder.stop()
    assert act.read == {} and act.written == {}


def test_recorder_ignores_file_descriptors(recorder: FileRecorder, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "fd.txt", os.O_WRONLY | os.O_CREAT)
    recorder.activity = FileActivity()
    with open(fd, "w") as fh:  # opening an fd raises an "open" event with an int target
        fh.write("x")
    act = recorder.stop()
    assert act.written == {} and act.read == {}


def test_recorder_after_stop_records_nothing(tmp_path: Path) -> None:
    install_audit_hook()
    rec = FileRecorder()
    rec.start()
    first = rec.stop()
    (tmp_path / "late.txt").write_text("x")
    assert first.written == {}
    assert rec.activity is None
    assert rec.stop().written == {}  # stopping twice is harmless
