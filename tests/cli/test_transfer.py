"""Copying a checkpoint between stores (transfer.py) and drawing its history graph (graph.py): no kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import pytest

from nbmigrate import transfer
from nbmigrate.errors import IntegrityError, ManifestError
from nbmigrate.graph import draw, layout
from nbmigrate.store import CheckpointStore
from nbmigrate.transfer import checkpoint_files, copy_checkpoint

from .conftest import write_checkpoint

PAYLOADS = {"alpha": b"A" * 5000, "beta": b"B" * 300}


def read_back(url: str) -> dict[str, bytes]:
    """Every stored group's bytes, read through the store (which verifies signature and checksums)."""
    store = CheckpointStore(url)
    manifest = store.read_manifest()
    return {g.names[0]: bytes(store.read_blob(g.blob)) for g in manifest.groups if g.blob is not None}


def test_copy_between_folders_copies_only_what_the_manifest_references(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_checkpoint(str(src), PAYLOADS)
    (src / "blobs" / ("0" * 64)).write_bytes(b"stray blob")  # not referenced
    (src / "notes.txt").write_text("not part of the checkpoint")
    seen: list[tuple[int, int]] = []
    report = copy_checkpoint(str(src), str(dst), progress=lambda done, total: seen.append((done, total)))
    assert read_back(str(dst)) == PAYLOADS
    assert sorted(p.name for p in dst.rglob("*") if p.is_file()) == sorted(
        [*(p.name for p in (src / "blobs").iterdir() if p.name != "0" * 64), "manifest.json"])
    manifest_size = (src / "manifest.json").stat().st_size
    assert report.files == 3 and report.skipped == 0
    assert report.bytes == sum(map(len, PAYLOADS.values())) + manifest_size
    assert seen[-1] == (report.bytes, report.bytes)

    again = copy_checkpoint(str(src), str(dst))  # content-addressed blobs already there are not rewritten
    assert again.skipped == 2 and again.bytes == manifest_size


def test_blobs_first_manifest_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    write_checkpoint(str(src), PAYLOADS)
    events: list[str] = []
    local = type(fsspec.filesystem("file"))
    real_open, real_mv = local.open, local.mv

    def spy_open(self: Any, path: str, mode: str = "rb", **kw: Any) -> Any:
        if "w" in mode:
            events.append("write " + Path(path).parent.name + "/" + Path(path).name[:13])
        return real_open(self, path, mode, **kw)

    def spy_mv(self: Any, a: str, b: str, **kw: Any) -> Any:
        events.append("move to " + Path(b).name)
        return real_mv(self, a, b, **kw)

    monkeypatch.setattr(local, "open", spy_open)
    monkeypatch.setattr(local, "mv", spy_mv)
    copy_checkpoint(str(src), str(tmp_path / "dst"))
    assert [e.split(" ", 1)[1][:5] for e in events[:2]] == ["blobs", "blobs"]
    assert events[2] == "write dst/manifest.json"  # a temporary name next to manifest.json ...
    assert events[3:] == ["move to manifest.json"]  # ... moved into place last


def test_damaged_source_blob_is_not_passed_on(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    manifest = write_checkpoint(str(src), PAYLOADS)
    blob = manifest.groups[0].blob
    assert blob is not None
    path = src / "blobs" / blob.sha256
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"blob {blob.sha256[:12]} .* checksum mismatch"):
        copy_checkpoint(str(src), str(dst))
    assert not (dst / "manifest.json").exists()
    assert not (dst / "blobs" / blob.sha256).exists()  # no half copy left behind
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(IntegrityError, match="truncated"):
        copy_checkpoint(str(src), str(dst))
    path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        copy_checkpoint(str(src), str(dst))


@pytest.mark.parametrize("name", ["../../outside", "/etc/passwd", "A" * 64])
def test_blob_names_are_checked_before_anything_is_copied(tmp_path: Path, name: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_checkpoint(str(src), PAYLOADS)
    document = json.loads((src / "manifest.json").read_text())
    document["manifest"]["groups"][0]["blob"]["sha256"] = name  # no signature check needed to refuse it
    (src / "manifest.json").write_text(json.dumps(document))
    with pytest.raises(ManifestError, match=r"groups\[0\]\.blob\.sha256: expected 64 lowercase hex digits"):
        copy_checkpoint(str(src), str(dst))
    assert not dst.exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(transfer.StoreError, match="no checkpoint at"):
        copy_checkpoint(str(tmp_path / "nothing"), str(tmp_path / "dst"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "manifest.json").write_text('{"a": 1, "a": 2}')
    with pytest.raises(ManifestError, match="duplicate key"):
        copy_checkpoint(str(tmp_path / "junk"), str(tmp_path / "dst"))


def test_copy_through_s3(tmp_path: Path, s3_bucket: str) -> None:
    src = tmp_path / "src"
    write_checkpoint(str(src), PAYLOADS)
    remote = f"{s3_bucket}/moves/one"
    copy_checkpoint(str(src), remote)
    assert read_back(remote) == PAYLOADS
    copy_checkpoint(remote, str(tmp_path / "back"))
    assert read_back(str(tmp_path / "back")) == PAYLOADS


def test_checkpoint_files_lists_blobs_then_the_manifest(tmp_path: Path) -> None:
    manifest = write_checkpoint(str(tmp_path), PAYLOADS)
    files = checkpoint_files((tmp_path / "manifest.json").read_bytes())
    assert [f.name for f in files] == [f"blobs/{b.sha256}" for b in manifest.blobs()] + ["manifest.json"]


def test_graph_layout_and_drawing(tmp_path: Path) -> None:
    manifest = write_checkpoint(str(tmp_path / "ckpt"), PAYLOADS)
    graph = layout(manifest)
    cell0, cell1 = graph.node("cell:0"), graph.node("cell:1")
    assert (cell0.x, cell1.x) == (0.0, 1.0) and cell1.state == "hazard"
    assert graph.node("var:alpha").x == 0.0 and graph.node("var:beta").x == 1.0  # above their writers
    assert graph.node("var:alpha").state == "stored"
    kinds = {(e.source, e.target): e.kind for e in graph.edges}
    assert kinds[("cell:0", "var:alpha")] == "write"
    assert kinds[("var:alpha", "cell:1")] == "read"
    draw(graph, tmp_path / "g.svg")
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match=r"cannot draw to g\.doc"):
        draw(graph, tmp_path / "g.doc")
