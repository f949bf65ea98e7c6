"""Faults on real kernels (issue 5): a checkpointing kernel killed mid-write, damaged blobs, failed replays.

SIGKILL. Kernel A holds a small session (three arrays of a few MB, a generator, a dict, a value drawn
from a global RNG, a table read from a file, a value read from an environment variable) and writes a
good checkpoint C1 to a destination. Then, per kill point, a fresh kernel rebuilds A's session, changes
it (C2 differs from C1 in four variables), and checkpoints to a copy of that destination with a test
hook installed by the test's own cell code (no hook in nbmigrate): the store's file system is wrapped so
that every blob and manifest open/write/close, the manifest rename and every garbage-collection delete is
an event, and the kernel SIGKILLs itself at the chosen one (1 MiB write slices, so a blob has a middle).
A fresh kernel then restores the destination: it must be C1 exactly (every variable's type and digest,
and the generator's next value) for a kill before the manifest rename, C2 exactly after it, never a mix.
The same destination must then take a new checkpoint and be left with no stray file. A destination
that only ever saw a killed first checkpoint must say "no checkpoint" (and "incomplete" if a writer left
files).

Damaged blobs: a flipped byte or a truncation is an IntegrityError naming the blob and its variables;
``--partial`` restores everything else, recomputes a lost group when its cells can be replayed, and
names exactly what is missing.

Failed replays: with the file a replayed cell reads deleted and the environment variable another one
reads unset, ``--partial`` names their variables and restores the rest; without it, the restore refuses
before running anything.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nbmigrate.remote import Kernel
from nbmigrate.store import PROBE_PREFIX, TMP_PREFIX, CheckpointStore
from tests.kernel.faults_helpers import (
    CHECKPOINT,
    FIRST_CHECKPOINT,
    NEXT_GEN,
    REPORT,
    SESSION,
    Pool,
    assert_kill_points_reached,
    assert_no_checkpoint,
    assert_restores,
    checkpoint_c1_then_change,
    hook,
    kill_checkpoint,
    lab_folders,
    restored_state,
)

pytestmark = pytest.mark.kernel

# Kill points of C2 over C1: new blobs for big1 (blob1: a pickle part and 3.2 MB of buffer), big2
# (blob2: 2.4 MB) and small (blob3); big3, noise, table ... are unchanged, so their blobs exist and are
# not written again. Then the temporary manifest, its rename, GC deleting C1's old blobs, and the end.
BEFORE_RENAME = [
    "open:blob1#1", "write:blob1#1", "write:blob1#2", "write:blob1#3", "write:blob1#5", "close:blob1#1",
    "open:blob2#1", "write:blob2#1", "write:blob2#2", "write:blob2#4", "close:blob2#1",
    "open:blob3#1", "write:blob3#1", "close:blob3#1",
    "open:manifest#1", "write:manifest#1", "close:manifest#1",
]  # fmt: skip
AFTER_RENAME = ["renamed#1", "rm#1", "rm#2", "stored#1"]


@dataclass
class Lab:
    root: Path
    work: Path
    env: dict[str, str]
    a: Kernel
    """Kernel A, alive for the whole module, in state C2 (with the hook installed, never killing)."""
    c1: Path
    c3: Path
    """A ``--prefer checkpoint`` checkpoint of C2: everything replayable is replayed at restore."""
    states: dict[str, dict[str, Any]]
    """Namespace summaries (type and digest per variable) of C1 and C2."""
    pool: Pool



@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("faults")
    work, env = lab_folders(root)
    a = Kernel.start(cwd=str(work), env=env)
    pool = Pool(work, env)
    try:
        a.execute("%load_ext nbmigrate")
        states = checkpoint_c1_then_change(a, str(root / "c1"))
        a.execute(CHECKPOINT.format(dest=root / "c3", prefer="checkpoint"))
        shutil.copytree(root / "c1", root / "dry")
        assert_kill_points_reached(a, str(root / "dry"), hook(None), BEFORE_RENAME + AFTER_RENAME)
        yield Lab(root, work, env, a, root / "c1", root / "c3", states, pool)
    finally:
        pool.close()
        a.shutdown()


def _no_strays(dest: Path) -> None:
    manifest = CheckpointStore(str(dest)).read_manifest(trust=True)
    leftovers = [p.name for p in dest.iterdir() if p.name.startswith((TMP_PREFIX, PROBE_PREFIX))]
    assert leftovers == []
    assert {p.name for p in (dest / "blobs").iterdir()} == {b.sha256 for b in manifest.blobs()}




@pytest.mark.parametrize("point", BEFORE_RENAME + AFTER_RENAME)
def test_kill_during_checkpoint(point: str, lab: Lab, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    shutil.copytree(lab.c1, dest)
    kill_checkpoint(lab.pool, str(dest), hook(point), change=True)
    assert_restores(lab.pool, str(dest), point, "C2" if point in AFTER_RENAME else "C1", lab.states)

    # The destination takes the next checkpoint, which leaves nothing of the killed one behind.
    lab.a.execute(CHECKPOINT.format(dest=dest, prefer="restore"))
    _no_strays(dest)


@pytest.mark.parametrize("point", list(FIRST_CHECKPOINT))
def test_killed_first_checkpoint(point: str, lab: Lab, tmp_path: Path) -> None:
    dest = tmp_path / "fresh"
    kill_checkpoint(lab.pool, str(dest), hook(point), change=False)
    assert_no_checkpoint(lab.pool, str(dest), point)


def _blob_of(dest: Path, name: str) -> Path:
    manifest = json.loads((dest / "manifest.json").read_text())["manifest"]
    group = next(g for g in manifest["groups"] if name in g["names"])
    return dest / "blobs" / group["blob"]["sha256"]


def test_corrupt_blob_is_named(lab: Lab, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    shutil.copytree(lab.c1, dest)
    blob = _blob_of(dest, "big2")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    restorer = lab.pool.take()
    try:
        result = restorer.execute(f"%restore {dest}", allow_error=True)
        leaked = restorer.evaluate_json("__import__('json').dumps(sorted(k for k in globals() if k in "
                                        f"{sorted(lab.states['C1']['variables'])!r}))")
    finally:
        restorer.shutdown()
    assert result.error is not None and result.error.startswith("IntegrityError")
    assert f"blob {blob.name[:12]} is corrupt: checksum mismatch" in result.error
    assert "(holds big2)" in result.error
    assert leaked == [], "nothing is restored from a checkpoint that failed verification"


def test_truncated_blobs_partial(lab: Lab, tmp_path: Path) -> None:
    """``--partial``: slow (replayable) is recomputed, noise (drawn from a global RNG) is missing, by name."""
    dest = tmp_path / "ckpt"
    shutil.copytree(lab.c1, dest)
    for name in ("slow", "noise"):
        blob = _blob_of(dest, name)
        blob.write_bytes(blob.read_bytes()[:-100])
    restorer = lab.pool.take()
    try:
        strict = restorer.execute(f"%restore {dest}", allow_error=True)
        result = restorer.execute(f"%restore {dest} --partial", allow_error=True)
        report = restorer.evaluate_json(REPORT)
        variables, next_gen = restored_state(restorer)
    finally:
        restorer.shutdown()
    assert strict.error is not None and "is truncated" in strict.error and "(holds noise)" in strict.error
    assert result.error is None
    assert report["missing"] == ["noise"]
    assert report["mismatched"] == [] and report["failures"] == []
    problems = "\n".join(report["problems"])
    assert "(holds slow)" in problems and "(holds noise)" in problems
    assert "slow recomputed instead, by replaying cells [7]" in problems
    assert "noise cannot be recomputed instead" in problems
    expected = {n: v for n, v in lab.states["C1"]["variables"].items() if n != "noise"}
    assert variables == expected
    assert "slow" in report["verified"]
    assert next_gen == NEXT_GEN["C1"]


def test_failed_replays_partial(lab: Lab, tmp_path: Path) -> None:
    """The file one replayed cell reads is gone, the variable another reads is unset: both named."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in lab.env.items() if k != "NBM_FAULT_TOKEN"}
    with Kernel.start(cwd=str(elsewhere), env=env) as b:
        b.execute("%load_ext nbmigrate")
        strict = b.execute(f"%restore {lab.c3}", allow_error=True)
        leaked = b.evaluate_json("__import__('json').dumps('big1' in globals())")
        result = b.execute(f"%restore {lab.c3} --partial", allow_error=True)
        report = b.evaluate_json(REPORT)
        variables, next_gen = restored_state(b)
    assert strict.error is not None and strict.error.startswith("RestoreError")
    assert f"reads {elsewhere / 'data.csv'}, which is missing here" in strict.error
    assert leaked is False, "a restore refused for missing files runs nothing"

    assert result.error is None
    assert report["missing"] == ["scaled", "table", "token"]
    failed = {f["cell"]: f for f in report["failures"]}
    token_cell = SESSION.index("token = os.environ['NBM_FAULT_TOKEN']")
    assert "KeyError" in failed[token_cell]["error"] and failed[token_cell]["variables"] == ["token"]
    assert any("data.csv, which is missing here" in p for p in report["problems"])
    assert report["mismatched"] == []
    expected = {n: v for n, v in lab.states["C2"]["variables"].items() if n not in ("scaled", "table", "token")}
    assert variables == expected
    assert next_gen == NEXT_GEN["C2"]
