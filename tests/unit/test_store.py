"""Checkpoint storage: blobs, the signed manifest, crash safety, garbage collection, the secret."""

from __future__ import annotations

import errno
import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

import nbmigrate.store as store_mod
from nbmigrate import signing
from nbmigrate.errors import IntegrityError, ManifestError, StoreError
from nbmigrate.history import CellExecution, HistoryGraph
from nbmigrate.manifest import (
    FORMAT_VERSION,
    BlobRef,
    EnvironmentRecord,
    GroupRecord,
    Manifest,
    PlanRecord,
    VariableRecord,
)
from nbmigrate.store import BlobIntegrityError, CheckpointStore, describe_store_error

KEY = b"test-key-for-unit-tests"


@pytest.fixture(autouse=True)
def private_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Never touch the real home: every test gets its own secret file location and no override."""
    path = tmp_path / "jupyter-data" / "nbmigrate_secret"
    monkeypatch.setenv("NBMIGRATE_SECRET_FILE", str(path))
    monkeypatch.delenv("NBMIGRATE_SECRET", raising=False)
    return path


@pytest.fixture
def memory_url() -> Iterator[str]:
    url = f"memory://nbmigrate-tests/{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    root = url.removeprefix("memory://")
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(params=["local", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path, memory_url: str) -> str:
    return str(tmp_path / "ckpt") if request.param == "local" else memory_url


def parts_for(*payloads: bytes) -> list[tuple[str, str, int, memoryview]]:
    kinds = ["pickle"] + ["buffer"] * (len(payloads) - 1)
    return [(k, "none", len(p), memoryview(p)) for k, p in zip(kinds, payloads, strict=True)]


def make_manifest(blobs: dict[int, BlobRef | None]) -> Manifest:
    """A valid manifest with one variable ``v<key>`` per group (stored iff it has a blob)."""
    history = HistoryGraph(
        executions=[CellExecution(index=0, source="...", writes=[f"v{k}" for k in blobs])],
        live={f"v{k}": 0 for k in blobs},
    )
    return Manifest(
        nbmigrate_version="0.1.0",
        created=1700000000.0,
        environment=EnvironmentRecord("3.11", "linux", "x86_64", {}, [], {}, "/"),
        history=history.to_dict(),
        groups=[
            GroupRecord(key=k, names=[f"v{k}"], stored=b is not None, reason="r", modules=[], blob=b)
            for k, b in blobs.items()
        ],
        variables=[
            VariableRecord(f"v{k}", "bytes", 80, "digest", k, 0, b is not None) for k, b in blobs.items()
        ],
        modules=[],
        plan=PlanRecord([], "balanced", 1e8, 0.1, 0.2, "scipy", 0.0),
    )


def blob_path(store: CheckpointStore, ref: BlobRef) -> str:
    return f"{store.root}/blobs/{ref.sha256}"


# -- blobs -------------------------------------------------------------------------------------------


def test_blob_round_trip(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "CHUNK", 1000)  # exercise slicing without writing 8 MiB
    store = CheckpointStore(url, key=KEY)
    pickle_bytes = b"\x80\x05pickle" * 100
    floats = memoryview(bytearray(os.urandom(2504))).cast("d")  # a typed buffer, not bytes
    compressed = b"zstd-frame" * 7
    seen: list[int] = []
    ref = store.write_blob(
        [
            ("pickle", "none", len(pickle_bytes), memoryview(pickle_bytes)),
            ("buffer", "none", floats.nbytes, floats),
            ("buffer", "zstd", 123456, memoryview(compressed)),
        ],
        progress=seen.append,
    )
    total = len(pickle_bytes) + floats.nbytes + len(compressed)
    assert ref.size == total and sum(seen) == total and max(seen) <= 1000 and len(seen) >= 5
    assert [(p.kind, p.codec, p.offset, p.length, p.raw_length) for p in ref.parts] == [
        ("pickle", "none", 0, len(pickle_bytes), len(pickle_bytes)),
        ("buffer", "none", len(pickle_bytes), floats.nbytes, floats.nbytes),
        ("buffer", "zstd", len(pickle_bytes) + floats.nbytes, len(compressed), 123456),
    ]
    read_progress: list[int] = []
    data = store.read_blob(ref, progress=read_progress.append)
    assert isinstance(data, memoryview) and not data.readonly
    assert data == pickle_bytes + floats.tobytes() + compressed
    assert sum(read_progress) == total
    import hashlib

    assert ref.sha256 == hashlib.sha256(data).hexdigest()


def test_empty_blob(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    ref = store.write_blob([("pickle", "none", 0, memoryview(b""))])
    assert ref.size == 0 and store.read_blob(ref) == bytearray()


def test_staged_blob_is_hashed_before_and_written_by_put(url: str) -> None:
    # The checkpoint stages (checks and hashes) the next blob in a thread while this one is written.
    store = CheckpointStore(url, key=KEY)
    staged = store_mod.stage_blob(parts_for(b"abc", b"def"))
    assert not store.exists() and staged.ref.size == 6
    assert store.put_blob(staged) == staged.ref == store.write_blob(parts_for(b"abc", b"def"))
    assert store.read_blob(staged.ref) == b"abcdef"
    with pytest.raises(ValueError, match="raw_length"):
        store_mod.stage_blob([("pickle", "none", 4, memoryview(b"abc"))])


def test_finisher_makes_blobs_durable_before_wait_returns(url: str) -> None:
    # The checkpoint fsyncs and closes blob k in the finisher's thread while it writes blob k+1.
    store = CheckpointStore(url, key=KEY)
    with store_mod.BlobFinisher(pending=2) as finisher:
        refs = [store.put_blob(store_mod.stage_blob(parts_for(bytes([i]) * 5000)), finisher=finisher)
                for i in range(5)]
        again = store.put_blob(store_mod.stage_blob(parts_for(bytes([0]) * 5000)), finisher=finisher)
        finisher.wait()
    assert again == refs[0]
    assert [bytes(store.read_blob(r)) for r in refs] == [bytes([i]) * 5000 for i in range(5)]


def test_finisher_reports_and_removes_a_blob_it_could_not_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(str(tmp_path), key=KEY)
    real_open = store.fs.open

    def failing_close(path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = real_open(path, mode, **kwargs)
        if "w" in mode:
            def close() -> None:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            f.close = close
        return f

    monkeypatch.setattr(store.fs, "open", failing_close)
    with store_mod.BlobFinisher() as finisher:
        ref = store.put_blob(store_mod.stage_blob(parts_for(b"payload")), finisher=finisher)
        with pytest.raises(StoreError, match=f"cannot write blob {ref.sha256[:12]} to .*input/output error"):
            finisher.wait()
    assert not (tmp_path / "blobs" / ref.sha256).exists()


def test_identical_blob_is_not_rewritten_local(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), key=KEY)
    ref = store.write_blob(parts_for(b"same content"))
    path = tmp_path / "blobs" / ref.sha256
    os.utime(path, ns=(0, 0))
    seen: list[int] = []
    assert store.write_blob(parts_for(b"same content"), progress=seen.append) == ref
    assert path.stat().st_mtime_ns == 0  # untouched
    assert seen == [len(b"same content")]  # a progress bar still reaches its end


def test_identical_blob_is_not_rewritten_memory(memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(memory_url, key=KEY)
    opened: list[tuple[str, str]] = []
    real_open = store.fs.open

    def counting_open(path: str, mode: str = "rb", **kwargs: Any) -> Any:
        opened.append((path, mode))
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(store.fs, "open", counting_open)
    ref = store.write_blob(parts_for(b"abc", b"def"))
    store.write_blob(parts_for(b"abc", b"def"))
    store.write_blob(parts_for(b"abcdef"))  # same bytes, other parts: same blob file
    assert [m for _, m in opened] == ["wb"]
    assert opened[0][0].endswith(ref.sha256)


def test_wrong_size_leftover_is_replaced(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    ref = store.write_blob(parts_for(b"x" * 100))
    with store.fs.open(blob_path(store, ref), "wb") as f:  # as if a crash cut the write short
        f.write(b"x" * 10)
    assert store.write_blob(parts_for(b"x" * 100)) == ref
    assert store.read_blob(ref) == b"x" * 100


def test_truncated_blob_is_rejected(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    ref = store.write_blob(parts_for(b"0123456789" * 10))
    with store.fs.open(blob_path(store, ref), "wb") as f:
        f.write(b"0123456789" * 4)
    with pytest.raises(BlobIntegrityError) as info:
        store.read_blob(ref)
    assert str(info.value) == f"blob {ref.sha256[:12]} is truncated (got 40 of 100 bytes)"
    assert info.value.blob == ref.sha256
    assert isinstance(info.value, IntegrityError)


def test_bit_flipped_blob_is_rejected(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    ref = store.write_blob(parts_for(b"0123456789" * 10))
    data = bytearray(store.fs.cat_file(blob_path(store, ref)))
    data[57] ^= 0x01
    with store.fs.open(blob_path(store, ref), "wb") as f:
        f.write(bytes(data))
    with pytest.raises(IntegrityError, match=f"blob {ref.sha256[:12]} is corrupt: checksum mismatch"):
        store.read_blob(ref)


def test_longer_and_missing_blobs_are_rejected(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    ref = store.write_blob(parts_for(b"abc"))
    with store.fs.open(blob_path(store, ref), "wb") as f:
        f.write(b"abcd")
    with pytest.raises(BlobIntegrityError, match="is corrupt"):
        store.read_blob(ref)
    store.fs.rm(blob_path(store, ref))
    with pytest.raises(BlobIntegrityError, match=f"blob {ref.sha256[:12]} is missing"):
        store.read_blob(ref)


def test_read_blobs_verifies_each_and_returns_the_rejections(url: str) -> None:
    # Restore reads every blob with read_blobs (checksums in worker threads): one bad blob is
    # reported in its place, the others still come back verified and writable.
    store = CheckpointStore(url, key=KEY)
    good = store.write_blob(parts_for(b"good " * 1000))
    flipped = store.write_blob(parts_for(b"flipped " * 1000))
    gone = store.write_blob(parts_for(b"gone"))
    data = bytearray(store.fs.cat_file(blob_path(store, flipped)))
    data[100] ^= 0x01
    with store.fs.open(blob_path(store, flipped), "wb") as f:
        f.write(bytes(data))
    store.fs.rm(blob_path(store, gone))
    seen: list[int] = []
    first, second, third = store.read_blobs([good, flipped, gone], progress=seen.append)
    assert isinstance(first, memoryview) and not first.readonly and first == b"good " * 1000
    assert isinstance(second, BlobIntegrityError) and "checksum mismatch" in str(second)
    assert second.blob == flipped.sha256
    assert isinstance(third, BlobIntegrityError) and "is missing" in str(third)
    assert sum(seen) == good.size + flipped.size
    assert store.read_blobs([]) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "A" * 64, "a" * 63])
def test_hand_made_blob_ref_never_becomes_a_path(tmp_path: Path, name: str) -> None:
    store = CheckpointStore(str(tmp_path / "ckpt"), key=KEY)
    with pytest.raises(IntegrityError, match="invalid blob name"):
        store.read_blob(BlobRef(sha256=name, size=3, parts=[]))


def test_write_blob_rejects_bad_parts(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), key=KEY)
    with pytest.raises(ValueError, match="unknown kind/codec"):
        store.write_blob([("pickle", "gzip", 3, memoryview(b"abc"))])
    with pytest.raises(ValueError, match="raw_length"):
        store.write_blob([("pickle", "none", 4, memoryview(b"abc"))])


# -- the manifest ------------------------------------------------------------------------------------


def test_manifest_signed_and_verified(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    ref = store.write_blob(parts_for(b"payload"))
    manifest = make_manifest({0: ref, 1: None})
    store.write_manifest(manifest)
    assert store.exists()
    assert store.read_manifest() == manifest

    document = json.loads(store.fs.cat_file(f"{store.root}/manifest.json"))
    assert set(document) == {"nbmigrate_checkpoint", "signature", "key_id", "manifest"}
    assert document["nbmigrate_checkpoint"] == FORMAT_VERSION
    assert document["key_id"] == signing.key_id(KEY)
    assert document["signature"] == signing.sign(manifest.to_json_bytes(), KEY)
    assert Manifest.from_dict(document["manifest"]) == manifest
    # nothing but the manifest and the blob is left behind
    assert sorted(p.rsplit("/", 1)[-1] for p in store.fs.find(store.root)) == sorted(
        ["manifest.json", ref.sha256]
    )


def test_tampered_manifest_is_rejected(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    ref = store.write_blob(parts_for(b"payload"))
    store.write_manifest(make_manifest({0: ref}))
    path = f"{store.root}/manifest.json"
    data = store.fs.cat_file(path)
    assert b'"nbytes":80' in data
    with store.fs.open(path, "wb") as f:
        f.write(data.replace(b'"nbytes":80', b'"nbytes":81'))
    with pytest.raises(IntegrityError) as info:
        store.read_manifest()
    message = str(info.value)
    assert "modified after it was signed" in message and "--trust" in message
    assert store.read_manifest(trust=True).variables[0].nbytes == 81


def test_manifest_from_another_key(url: str) -> None:
    writer = CheckpointStore(url, key=b"alice's secret")
    ref = writer.write_blob(parts_for(b"payload"))
    writer.write_manifest(make_manifest({0: ref}))

    reader = CheckpointStore(url, key=b"bob's secret")
    with pytest.raises(IntegrityError) as info:
        reader.read_manifest()
    message = str(info.value)
    assert signing.key_id(b"alice's secret") in message
    assert signing.key_id(b"bob's secret") in message
    assert "--trust" in message and "NBMIGRATE_SECRET" in message

    manifest = reader.read_manifest(trust=True)
    assert reader.read_blob(manifest.groups[0].blob or ref) == b"payload"
    # trust skips the signature only: checksums still apply
    with reader.fs.open(blob_path(reader, ref), "wb") as f:
        f.write(b"PAYLOAD")
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        reader.read_blob(ref)


def test_unsigned_manifest_is_rejected(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    store.write_manifest(make_manifest({0: None}))
    path = f"{store.root}/manifest.json"
    document = json.loads(store.fs.cat_file(path))
    del document["signature"]
    with store.fs.open(path, "wb") as f:
        f.write(json.dumps(document).encode())
    with pytest.raises(IntegrityError, match="is not signed"):
        store.read_manifest()
    assert store.read_manifest(trust=True) == make_manifest({0: None})


def test_secret_from_environment_signs_for_a_team(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_secret: Path
) -> None:
    monkeypatch.setenv("NBMIGRATE_SECRET", "shared team secret")
    CheckpointStore(str(tmp_path), key=None).write_manifest(make_manifest({0: None}))
    assert not private_secret.exists()  # the variable wins; no file is made
    assert CheckpointStore(str(tmp_path), key=b"shared team secret").read_manifest()


def test_missing_manifest(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    assert not store.exists()
    with pytest.raises(StoreError) as info:
        store.read_manifest()
    assert str(info.value) == f"no checkpoint at {url}: manifest.json not found"


def test_missing_manifest_with_leftover_temp_file(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    store.fs.makedirs(store.root, exist_ok=True)
    with store.fs.open(f"{store.root}/manifest.json.tmp-0123abcd", "wb") as f:
        f.write(b'{"half')
    with pytest.raises(StoreError) as info:
        store.read_manifest()
    message = str(info.value)
    assert message.startswith(f"no checkpoint at {url}: manifest.json not found")
    assert "an incomplete checkpoint was found (the writer stopped before finishing)" in message


def test_not_a_manifest(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    store.fs.makedirs(store.root, exist_ok=True)
    path = f"{store.root}/manifest.json"
    with store.fs.open(path, "wb") as f:
        f.write(b"<html>")
    with pytest.raises(ManifestError, match=f"checkpoint at {url}: manifest.json is not valid JSON"):
        store.read_manifest()
    with store.fs.open(path, "wb") as f:
        f.write(b'{"cells": []}')
    with pytest.raises(ManifestError, match="is not an nbmigrate checkpoint manifest"):
        store.read_manifest()


def test_checkpoint_from_newer_nbmigrate(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    store.fs.makedirs(store.root, exist_ok=True)
    document = {
        "nbmigrate_checkpoint": FORMAT_VERSION + 1,
        "signature": "ed25519:...",  # a future scheme: the version message must come first
        "key_id": "x",
        "manifest": {"nbmigrate_version": "7.0.0", "format_version": FORMAT_VERSION + 1},
    }
    with store.fs.open(f"{store.root}/manifest.json", "wb") as f:
        f.write(json.dumps(document).encode())
    with pytest.raises(ManifestError, match=r"by nbmigrate 7\.0\.0 .* upgrade nbmigrate to restore it"):
        store.read_manifest()


def test_invalid_signed_manifest_names_the_field(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    store.fs.makedirs(store.root, exist_ok=True)
    inner = json.loads(make_manifest({0: None}).to_json_bytes())
    inner["groups"][0]["key"] = "zero"
    body = json.dumps(inner, sort_keys=True, separators=(",", ":")).encode()
    document = {
        "nbmigrate_checkpoint": 1,
        "signature": signing.sign(body, KEY),
        "key_id": "",
        "manifest": inner,
    }
    with store.fs.open(f"{store.root}/manifest.json", "wb") as f:
        f.write(json.dumps(document).encode())
    with pytest.raises(
        ManifestError, match=r"invalid manifest at .*: groups\[0\]\.key: expected int, got str"
    ):
        store.read_manifest()


def test_manifest_refused_while_a_blob_is_missing(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    ref = store.write_blob(parts_for(b"payload"))
    store.fs.rm(blob_path(store, ref))
    with pytest.raises(StoreError, match=f"blob {ref.sha256[:12]} of group 0 .* is missing"):
        store.write_manifest(make_manifest({0: ref}))
    assert not store.exists()


# -- crash safety and garbage collection -------------------------------------------------------------


def test_garbage_collected_only_after_the_new_manifest(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    a = store.write_blob(parts_for(b"group A, version 1"))
    b = store.write_blob(parts_for(b"group B, unchanged"))
    store.write_manifest(make_manifest({0: a, 1: b}))

    # Second checkpoint: B is unchanged (deduplicated), A changed into C.
    c = store.write_blob(parts_for(b"group A, version 2"))
    assert store.fs.exists(blob_path(store, a))  # the old checkpoint is still whole
    assert store.read_manifest().groups[0].blob == a
    # things nbmigrate did not write are never collected; stray temp manifests are
    store.fs.pipe_file(f"{store.root}/blobs/README", b"user file")
    store.fs.pipe_file(f"{store.root}/notes.txt", b"user file")
    store.fs.pipe_file(f"{store.root}/manifest.json.tmp-deadbeef", b"stray")

    store.write_manifest(make_manifest({0: c, 1: b}))
    assert not store.fs.exists(blob_path(store, a))
    assert store.fs.exists(blob_path(store, b)) and store.fs.exists(blob_path(store, c))
    assert not store.fs.exists(f"{store.root}/manifest.json.tmp-deadbeef")
    assert store.fs.exists(f"{store.root}/blobs/README") and store.fs.exists(f"{store.root}/notes.txt")
    manifest = store.read_manifest()
    assert [store.read_blob(r) for r in manifest.blobs()] == [b"group A, version 2", b"group B, unchanged"]


def test_failed_manifest_move_keeps_the_previous_checkpoint(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(url, key=KEY)
    a = store.write_blob(parts_for(b"old"))
    old = make_manifest({0: a})
    store.write_manifest(old)
    c = store.write_blob(parts_for(b"new"))

    def failing_mv(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(store.fs, "mv", failing_mv)
    with pytest.raises(StoreError, match="previous checkpoint there, if any, is intact"):
        store.write_manifest(make_manifest({0: c}))
    monkeypatch.undo()
    assert store.read_manifest() == old
    assert store.read_blob(a) == b"old"  # not garbage-collected
    assert not store.fs.glob(f"{store.root}/manifest.json.tmp-*")


class FullDiskFile:
    """A writable file that fails with ENOSPC once ``room`` bytes have been written.

    A full disk cannot be produced in a unit test, so the failure is simulated at the file object.
    """

    def __init__(self, inner: Any, room: int) -> None:
        self.inner = inner
        self.room = room

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if n > self.room:
            self.inner.write(memoryview(data)[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return int(self.inner.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, store: CheckpointStore, room: int) -> None:
    real_open = store.fs.open

    def open_(path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = real_open(path, mode, **kwargs)
        return FullDiskFile(f, room) if "w" in mode else f

    monkeypatch.setattr(store.fs, "open", open_)


def test_disk_full_mid_blob_keeps_the_previous_checkpoint(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "CHUNK", 64)
    store = CheckpointStore(url, key=KEY)
    a = store.write_blob(parts_for(b"old" * 100))
    old = make_manifest({0: a})
    store.write_manifest(old)

    fill_disk_after(monkeypatch, store, room=200)
    big = b"new" * 1000
    with pytest.raises(StoreError) as info:
        store.write_blob(parts_for(big))
    message = str(info.value)
    assert url in message and "no space left on device" in message
    assert "cannot write blob" in message
    monkeypatch.undo()

    assert store.read_manifest() == old
    assert store.read_blob(a) == b"old" * 100
    assert set(store_mod.CheckpointStore(url, key=KEY)._list_blobs()) == {a.sha256}  # partial blob removed


def test_disk_full_writing_the_manifest(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(url, key=KEY)
    a = store.write_blob(parts_for(b"old"))
    old = make_manifest({0: a})
    store.write_manifest(old)
    c = store.write_blob(parts_for(b"new"))
    fill_disk_after(monkeypatch, store, room=10)
    with pytest.raises(StoreError, match=r"cannot write the manifest to .*: no space left on device"):
        store.write_manifest(make_manifest({0: c}))
    monkeypatch.undo()
    assert store.read_manifest() == old
    assert not store.fs.glob(f"{store.root}/manifest.json.tmp-*")


def test_describe_store_error() -> None:
    exc = OSError(errno.ENOSPC, "No space left on device")
    assert describe_store_error(exc, "s3://b/x") == "s3://b/x: no space left on device (ENOSPC)"
    assert describe_store_error(ValueError("bad"), "/x") == "/x: ValueError: bad"


def test_unknown_protocol_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open checkpoint store nosuchproto://x"):
        CheckpointStore("nosuchproto://x", key=KEY)


# -- discovery ---------------------------------------------------------------------------------------


def test_list_checkpoints(url: str) -> None:
    for name in ["a", "b/c", "b/d"]:
        sub = CheckpointStore(f"{url}/{name}", key=KEY)
        sub.write_blob(parts_for(name.encode()))
        sub.write_manifest(make_manifest({0: None}))
    incomplete = CheckpointStore(f"{url}/e", key=KEY)
    incomplete.write_blob(parts_for(b"never finished"))
    root = CheckpointStore(url, key=KEY)
    assert root.list_checkpoints() == [f"{url}/a", f"{url}/b/c", f"{url}/b/d"]
    assert not root.exists()
    assert CheckpointStore(f"{url}/a", key=KEY).list_checkpoints() == [f"{url}/a"]
    assert CheckpointStore(f"{url}/nothing", key=KEY).list_checkpoints() == []


def test_measure_bandwidth_leaves_nothing(url: str) -> None:
    store = CheckpointStore(url, key=KEY)
    assert store.measure_bandwidth(1 << 20) > 0
    assert [p for p in store.fs.find(store.root) if "probe" in p] == []


# -- the secret --------------------------------------------------------------------------------------


def test_secret_created_private(private_secret: Path) -> None:
    assert not private_secret.parent.exists()
    key = signing.load_key()
    assert private_secret.exists()
    assert stat.S_IMODE(private_secret.stat().st_mode) == 0o600
    assert len(key) == 64 and bytes.fromhex(key.decode())
    assert signing.load_key() == key == private_secret.read_bytes().strip()
    assert signing.secret_path() == private_secret


def test_secret_not_created_on_request(private_secret: Path) -> None:
    with pytest.raises(StoreError, match="no nbmigrate secret at"):
        signing.load_key(create=False)
    assert not private_secret.exists()


def test_secret_environment_override(monkeypatch: pytest.MonkeyPatch, private_secret: Path) -> None:
    monkeypatch.setenv("NBMIGRATE_SECRET", "team-secret")
    assert signing.load_key() == b"team-secret"
    assert not private_secret.exists()
    monkeypatch.setenv("NBMIGRATE_SECRET", "")  # empty counts as unset
    assert signing.load_key() == private_secret.read_bytes()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_secret_readable_by_others_is_refused(private_secret: Path) -> None:
    signing.load_key()
    private_secret.chmod(0o644)
    with pytest.raises(StoreError) as info:
        signing.load_key()
    assert f"chmod 600 {private_secret}" in str(info.value)
    with pytest.raises(StoreError, match="readable by other users"):
        CheckpointStore("memory://never-used", key=None)
    private_secret.chmod(0o600)
    assert signing.load_key()


def test_empty_secret_file_is_refused(private_secret: Path) -> None:
    private_secret.parent.mkdir(parents=True)
    private_secret.touch(mode=0o600)
    with pytest.raises(StoreError, match="is empty"):
        signing.load_key()


def test_sign_and_verify() -> None:
    signature = signing.sign(b"body", b"k")
    assert signature.startswith("hmac-sha256:") and len(signature) == len("hmac-sha256:") + 64
    assert signing.verify(b"body", signature, b"k")
    assert not signing.verify(b"body!", signature, b"k")
    assert not signing.verify(b"body", signature, b"other")
    assert not signing.verify(b"body", signature.replace("hmac-sha256", "hmac-md5"), b"k")
    assert not signing.verify(b"body", "", b"k")
    assert not signing.verify(b"body", "hmac-sha256:é", b"k")
    assert len(signing.key_id(b"k")) == 16 and signing.key_id(b"k") != signing.key_id(b"j")


def test_secret_created_concurrently_keeps_the_first(private_secret: Path) -> None:
    private_secret.parent.mkdir(parents=True)
    private_secret.write_bytes(b"created by another process\n")
    private_secret.chmod(0o600)
    assert signing._create_secret(private_secret) == b"created by another process"
