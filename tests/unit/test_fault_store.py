"""A full disk in the middle of a checkpoint (issue 5): ENOSPC is reported, the previous checkpoint survives.

A full disk cannot be made portably in a unit test (no tmpfs mount, no quota), so the file system is a
*mock*: a subclass of fsspec's ``LocalFileSystem`` whose writes fail with ``OSError(ENOSPC)`` once
``capacity`` bytes have been written, the way a real disk does: the bytes that fit are written, then
the write fails. Everything else (paths, renames, listings, reads, deletes) is the real local file
system, and the store is handed this file system exactly as fsspec would hand it a real one.

The checkpoint is written the way ``nbmigrate.checkpoint`` writes one: a bandwidth probe, one blob per
stored group (``dump_group`` -> ``pack_parts`` -> ``write_blob``), then ``write_manifest``. The full
disk strikes at every stage (probe, start and middle of each blob, start and middle of the manifest).
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from nbmigrate import __version__
from nbmigrate.environment import capture
from nbmigrate.errors import StoreError
from nbmigrate.fingerprint import fingerprint
from nbmigrate.history import HistoryGraph
from nbmigrate.manifest import GroupRecord, Manifest, PlanRecord, VariableRecord
from nbmigrate.serialize import Part, dump_group, load_group, pack_parts, unpack_parts
from nbmigrate.store import MANIFEST_NAME, PROBE_PREFIX, TMP_PREFIX, CheckpointStore

PROBE = 256 * 1024
KEY = b"k" * 32


class FullDisk(LocalFileSystem):
    """The local file system with ``capacity`` bytes of free space left: then every write is ENOSPC."""

    cachable = False  # fsspec caches instances by constructor arguments; each test wants its own disk

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.written = 0

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        f = super()._open(path, mode, block_size, **kwargs)
        return _Quota(f, self) if any(c in mode for c in "wa+") else f


class _Quota:
    """A writable file of a :class:`FullDisk`: a write that does not fit writes what fits, then fails."""

    def __init__(self, f: Any, disk: FullDisk) -> None:
        self._f = f
        self._disk = disk

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        room = self._disk.capacity - self._disk.written
        if view.nbytes > room:
            if room > 0:
                self._f.write(view[:room])
                self._disk.written += room
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.written += view.nbytes
        return int(self._f.write(view))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _Quota:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def _values(seed: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    # random floats: incompressible, so blob sizes are known in advance (pack_parts skips zstd)
    return {n: np.random.default_rng(seed + i).random(100_000) for i, n in enumerate(names)}


def write_checkpoint(store: CheckpointStore, values: dict[str, np.ndarray], *, probe: bool = True) -> Manifest:
    """What ``nbmigrate.checkpoint.checkpoint`` does for stored groups: probe, blobs, manifest last."""
    if probe:
        store.measure_bandwidth(PROBE)
    groups: list[GroupRecord] = []
    variables: list[VariableRecord] = []
    for key, (name, value) in enumerate(values.items()):
        parts = pack_parts(dump_group({name: value}, {}))
        blob = store.write_blob([(p.kind, p.codec, p.raw_length, p.payload) for p in parts])
        groups.append(GroupRecord(key=key, names=[name], stored=True, reason="stored: test", modules=["numpy"],
                                  blob=blob))
        variables.append(VariableRecord(name=name, type="numpy.ndarray", nbytes=value.nbytes,
                                        digest=fingerprint(value).digest, group=key, writer=-1, stored=True))
    manifest = Manifest(
        nbmigrate_version=__version__, created=time.time(), environment=capture(dict(os.environ)),
        history=HistoryGraph().to_dict(), groups=groups, variables=variables, modules=[],
        plan=PlanRecord(replay=[], prefer="balanced", bandwidth=1e8, est_checkpoint_seconds=0.0,
                        est_restore_seconds=0.0, solver="test", solve_seconds=0.0),
    )
    store.write_manifest(manifest)
    return manifest


def read_checkpoint(url: str) -> dict[str, Any]:
    """Restore the values of a checkpoint the way ``nbmigrate.restore`` does: verify, then unpickle."""
    store = CheckpointStore(url, key=KEY)
    out: dict[str, Any] = {}
    for g in store.read_manifest().groups:
        assert g.blob is not None
        data = store.read_blob(g.blob)
        view = memoryview(data)
        parts = [Part(kind=p.kind, codec=p.codec, raw_length=p.raw_length, payload=view[p.offset: p.offset + p.length])
                 for p in g.blob.parts]
        pickle_bytes, buffers = unpack_parts(parts, view)
        out.update(load_group(pickle_bytes, buffers, {}))
    return out


def _blob_size(value: np.ndarray) -> int:
    return sum(p.payload.nbytes for p in pack_parts(dump_group({"x": value}, {})))


def _leftovers(root: Path) -> list[str]:
    """Files a finished writer must not leave: temporary manifests, probes, incomplete blobs."""
    bad = [p.name for p in root.iterdir() if p.name.startswith((TMP_PREFIX, PROBE_PREFIX))]
    blobs = root / "blobs"
    if blobs.is_dir():
        bad += [f"blobs/{p.name}" for p in blobs.iterdir()
                if hashlib.sha256(p.read_bytes()).hexdigest() != p.name]
    return bad


@pytest.fixture
def first(tmp_path: Path) -> tuple[str, dict[str, np.ndarray], Manifest]:
    """A good checkpoint C1 at the destination."""
    url = str(tmp_path / "ckpt")
    values = _values(0, ("a", "b"))
    manifest = write_checkpoint(CheckpointStore(url, key=KEY), values)
    return url, values, manifest


SECOND = ("a", "x", "y")
"""C2: ``a`` as in C1 (its blob exists: not written again), ``x`` and ``y`` new."""


def _stages() -> list[Any]:
    blob = _blob_size(_values(0, ("x",))["x"])
    start_blobs = PROBE
    start_manifest = PROBE + 2 * blob
    return [
        pytest.param(0, "cannot write to", id="probe-start"),
        pytest.param(PROBE // 2, "cannot write to", id="probe-middle"),
        pytest.param(start_blobs, "cannot write blob", id="first-blob-start"),
        pytest.param(start_blobs + blob // 2, "cannot write blob", id="first-blob-middle"),
        pytest.param(start_blobs + blob + blob // 3, "cannot write blob", id="second-blob-middle"),
        pytest.param(start_blobs + 2 * blob - 1, "cannot write blob", id="second-blob-last-byte"),
        pytest.param(start_manifest, "cannot write the manifest", id="manifest-start"),
        pytest.param(start_manifest + 100, "cannot write the manifest", id="manifest-middle"),
    ]


@pytest.mark.parametrize(("capacity", "what"), _stages())
def test_full_disk_keeps_previous_checkpoint(
    first: tuple[str, dict[str, np.ndarray], Manifest], capacity: int, what: str
) -> None:
    url, values, manifest = first
    disk = FullDisk(capacity)
    store = CheckpointStore(url, key=KEY)
    store.fs = disk  # the store only ever talks to its fsspec file system
    second = _values(10, SECOND[1:])
    with pytest.raises(StoreError) as info:
        write_checkpoint(store, {"a": values["a"], **second})
    message = str(info.value)
    assert url in message and what in message
    assert "no space left on device (ENOSPC)" in message
    assert disk.written == capacity, "the failure must come from the full disk, not elsewhere"

    # The previous checkpoint is intact and restores to its values; nothing half-written is left.
    assert CheckpointStore(url, key=KEY).read_manifest() == manifest
    restored = read_checkpoint(url)
    assert set(restored) == {"a", "b"}
    for name, value in values.items():
        assert np.array_equal(restored[name], value)
    assert _leftovers(Path(url)) == []

    # Space is back: the next checkpoint succeeds, and only its own blobs remain.
    third = write_checkpoint(CheckpointStore(url, key=KEY), {"a": values["a"], **second})
    restored = read_checkpoint(url)
    assert set(restored) == set(SECOND)
    assert np.array_equal(restored["x"], second["x"])
    blobs = {p.name for p in (Path(url) / "blobs").iterdir()}
    assert blobs == {b.sha256 for b in third.blobs()}
    assert _leftovers(Path(url)) == []


def test_leftovers_of_a_killed_writer_are_ignored_then_cleaned(
    first: tuple[str, dict[str, np.ndarray], Manifest],
) -> None:
    """A writer killed mid-write cannot clean up: a truncated blob, a temporary manifest and a probe stay.

    Readers ignore them (the manifest does not reference them); the next successful write removes them,
    and rewrites the truncated blob if it needs that content.
    """
    url, values, manifest = first
    root = Path(url)
    second = _values(10, ("x",))
    whole = pack_parts(dump_group({"x": second["x"]}, {}))
    data = b"".join(bytes(p.payload) for p in whole)
    sha = hashlib.sha256(data).hexdigest()
    (root / "blobs" / sha).write_bytes(data[: len(data) // 2])
    (root / f"{TMP_PREFIX}deadbeef").write_bytes(b'{"half": ')
    (root / f"{PROBE_PREFIX}cafe").write_bytes(b"\0" * 1000)
    assert len(_leftovers(root)) == 3

    assert CheckpointStore(url, key=KEY).read_manifest() == manifest
    restored = read_checkpoint(url)
    assert all(np.array_equal(restored[n], v) for n, v in values.items())

    write_checkpoint(CheckpointStore(url, key=KEY), {"b": values["b"], "x": second["x"]}, probe=False)
    assert _leftovers(root) == []
    restored = read_checkpoint(url)
    assert np.array_equal(restored["x"], second["x"]) and np.array_equal(restored["b"], values["b"])


def test_destination_with_only_a_killed_first_checkpoint(tmp_path: Path) -> None:
    """No manifest was ever written: restore says so, and that a writer stopped before finishing."""
    url = str(tmp_path / "never")
    disk = FullDisk(PROBE + 1000)
    store = CheckpointStore(url, key=KEY)
    store.fs = disk
    with pytest.raises(StoreError, match="no space left"):
        write_checkpoint(store, _values(0, ("a",)))
    with pytest.raises(StoreError, match=r"no checkpoint at .*manifest\.json not found"):
        read_checkpoint(url)
    # a blob that was complete before the disk filled up, and no manifest: "incomplete checkpoint"
    store = CheckpointStore(url, key=KEY)
    store.write_blob([("pickle", "none", 3, memoryview(b"abc"))])
    with pytest.raises(StoreError, match="incomplete checkpoint was found"):
        read_checkpoint(url)
    assert not (tmp_path / "never" / MANIFEST_NAME).exists()
