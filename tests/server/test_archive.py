"""Checkpoints as tar streams (nbmigrate.server.archive), without a server: what goes out, what gets in."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

import nbmigrate.server.archive as archive_mod
from nbmigrate.errors import IntegrityError
from nbmigrate.server.archive import ArchiveError, ArchiveReceiver, ArchiveSource
from nbmigrate.store import CheckpointStore
from tests.unit.test_store import make_manifest, parts_for

BLOB_A = os.urandom(3 * 1024 * 1024 + 17)  # more than one slice
BLOB_B = b"small blob"


def make_checkpoint(url: str, *payloads: bytes) -> CheckpointStore:
    store = CheckpointStore(url)
    refs = [store.write_blob(parts_for(p)) for p in payloads]
    store.write_manifest(make_manifest(dict(enumerate(refs))))
    return store


def archive_of(url: str) -> bytes:
    source = ArchiveSource(url)
    source.open()
    data = b"".join(source.chunks())
    assert len(data) == source.size
    return data


def receive(url: str, data: bytes, piece: int = 7777) -> None:
    receiver = ArchiveReceiver(url)
    try:
        for start in range(0, len(data), piece):
            receiver.feed(data[start : start + piece])
        receiver.finish()
    except BaseException:
        receiver.abort()
        raise


def tar_of(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def regular(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 1700000000.5  # a float mtime makes tarfile write a pax header
    return info


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_round_trip_is_byte_identical_and_still_signed(tmp_path: Path) -> None:
    src = make_checkpoint(str(tmp_path / "src"), BLOB_A, BLOB_B)
    data = archive_of(src.url)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # an ordinary tar: blobs first, manifest last
        names = tar.getnames()
    assert names[-1] == "manifest.json" and len(names) == 3 and all(n.startswith("blobs/") for n in names[:-1])

    receive(str(tmp_path / "dst"), data)
    assert files_under(tmp_path / "dst") == files_under(tmp_path / "src")
    dst = CheckpointStore(str(tmp_path / "dst"))
    manifest = dst.read_manifest()  # the signature survived the trip: the bytes are the same
    assert [bytes(dst.read_blob(b)) for b in manifest.blobs()] == [BLOB_A, BLOB_B]


def test_byte_by_byte_and_archives_made_by_tarfile(tmp_path: Path) -> None:
    src = make_checkpoint(str(tmp_path / "src"), b"x" * 1000, BLOB_B)
    members = [(regular(name), (tmp_path / "src" / name).read_bytes()) for name in files_under(tmp_path / "src")]
    members.sort(key=lambda m: m[0].name == "manifest.json")  # manifest last
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        dst = tmp_path / f"dst-{fmt}"
        receive(str(dst), tar_of(*members, fmt=fmt), piece=1 if fmt == tarfile.PAX_FORMAT else 4096)
        assert CheckpointStore(str(dst)).read_manifest().blobs() == src.read_manifest().blobs()


def test_manifest_may_come_first_but_is_written_last(tmp_path: Path) -> None:
    make_checkpoint(str(tmp_path / "src"), BLOB_B)
    names = files_under(tmp_path / "src")
    first = sorted(names, key=lambda n: n != "manifest.json")
    members = [(regular(n), (tmp_path / "src" / n).read_bytes()) for n in first]
    receiver = ArchiveReceiver(str(tmp_path / "dst"))
    receiver.feed(tar_of(*members))
    assert not (tmp_path / "dst" / "manifest.json").exists()  # not before finish()
    receiver.finish()
    assert (tmp_path / "dst" / "manifest.json").is_file()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _kind(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


SHA = "0" * 64


@pytest.mark.parametrize(("member", "shown"), [
    (regular("../evil"), "../evil"),
    (regular("/tmp/evil"), "/tmp/evil"),
    (regular("./manifest.json"), "./manifest.json"),
    (regular(f"blobs/../../{SHA}"), f"blobs/../../{SHA}"),
    (regular("blobs/" + SHA.upper()), "blobs/" + SHA.upper()),
    (regular("blobs/" + "a" * 200), "blobs/" + "a" * 200),  # a pax path header: the long name counts
    (_kind("blobs", tarfile.DIRTYPE), "blobs/"),
    (_symlink("manifest.json", "/etc/passwd"), "manifest.json"),
    (_symlink(f"blobs/{SHA}", "../../../home"), f"blobs/{SHA}"),
    (_kind(f"blobs/{SHA}", tarfile.LNKTYPE), f"blobs/{SHA}"),
    (_kind("manifest.json", tarfile.FIFOTYPE), "manifest.json"),
])
def test_members_without_a_place_in_a_checkpoint_are_rejected(tmp_path: Path, member: tarfile.TarInfo,
                                                              shown: str) -> None:
    dst = tmp_path / "store" / "victim"
    with pytest.raises(ArchiveError, match="member") as caught:
        receive(str(dst), tar_of((member, b"payload")))
    assert repr(shown) in str(caught.value)
    assert files_under(tmp_path) == []  # nothing written anywhere, inside or outside


def test_gnu_long_names_are_honoured(tmp_path: Path) -> None:
    info = regular("../" * 40 + "evil")  # longer than 100 bytes: a GNU ././@LongLink header
    with pytest.raises(ArchiveError, match=r"'\.\./\.\./"):
        receive(str(tmp_path / "dst"), tar_of((info, b"x"), fmt=tarfile.GNU_FORMAT))


def test_blob_that_does_not_match_its_name_is_removed(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="does not match its name"):
        receive(str(tmp_path / "dst"), tar_of((regular(f"blobs/{SHA}"), b"not zeros")))
    assert files_under(tmp_path) == []


def test_no_manifest_or_missing_blob_is_not_a_checkpoint(tmp_path: Path) -> None:
    make_checkpoint(str(tmp_path / "src"), BLOB_B)
    blob, manifest = files_under(tmp_path / "src")
    with pytest.raises(ArchiveError, match=r"no manifest\.json"):
        receive(str(tmp_path / "a"), tar_of((regular(blob), (tmp_path / "src" / blob).read_bytes())))
    with pytest.raises(ArchiveError, match="does not contain"):
        receive(str(tmp_path / "b"), tar_of((regular(manifest), (tmp_path / "src" / manifest).read_bytes())))
    assert not (tmp_path / "a" / "manifest.json").exists() and not (tmp_path / "b" / "manifest.json").exists()


def test_truncated_upload_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    old = make_checkpoint(str(tmp_path / "dst"), BLOB_B)
    before = old.read_manifest()
    make_checkpoint(str(tmp_path / "src"), BLOB_A)
    data = archive_of(str(tmp_path / "src"))
    for cut in (100, len(data) // 2, len(data) - 1024):  # in a header, in a blob, before the end blocks
        with pytest.raises(ArchiveError, match="truncated"):
            receive(str(tmp_path / "dst"), data[:cut])
        assert CheckpointStore(str(tmp_path / "dst")).read_manifest() == before


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a tar archive"):
        receive(str(tmp_path / "dst"), os.urandom(4096))
    with pytest.raises(ArchiveError, match="after the end"):
        receive(str(tmp_path / "dst"), bytes(1024) + b"junk")


def test_damaged_source_blob_stops_the_stream_before_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_mod, "SLICE", 1024 * 1024)
    make_checkpoint(str(tmp_path / "src"), BLOB_A)
    blob = next((tmp_path / "src" / "blobs").iterdir())
    damaged = bytearray(blob.read_bytes())
    damaged[-1] ^= 1
    blob.write_bytes(damaged)
    source = ArchiveSource(str(tmp_path / "src"))
    source.open()  # sizes are right; only the content is wrong
    sent = bytearray()
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        for chunk in source.chunks():
            sent += chunk
    assert len(sent) < 512 + len(BLOB_A)  # the last slice of the blob never left

    blob.write_bytes(damaged[:-1])
    with pytest.raises(IntegrityError, match="damaged"):
        ArchiveSource(str(tmp_path / "src")).open()
