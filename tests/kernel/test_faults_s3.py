"""SIGKILL mid-checkpoint on the S3 store (issue 5, "same for the store on the S3 server").

The kill loop of :mod:`tests.kernel.test_faults` (its steps in :mod:`tests.kernel.faults_helpers`),
against ``s3://<bucket>/ckpt`` on a local moto server: kernel A writes a good checkpoint C1; per kill
point, a fresh bucket gets a server-side copy of C1 and a fresh kernel rebuilds A's session, changes it
to C2 and checkpoints to the same URL with the same test hook, dying at the chosen event. A fresh
kernel then restores: C1 exactly before the manifest is in place, C2 exactly once it is, never a mix.
Kernel A then checkpoints there again, which must leave no temporary manifest, probe or unreferenced
blob in the bucket. A bucket that only saw a killed first checkpoint says "no checkpoint" (and
"incomplete" when the writer left objects behind).

What differs from a local folder: s3fs buffers a file until close (blocks of 50 MiB), so a kill in the
middle of a blob uploads nothing, and a close is a single PUT; and ``fs.mv`` is a server-side copy then a
delete of the source, so the hook adds the event ``copied`` between the two (``manifest.json`` replaced,
the temporary manifest still there).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from nbmigrate.remote import Kernel
from nbmigrate.store import BLOB_DIR, MANIFEST_NAME, PROBE_PREFIX, TMP_PREFIX, CheckpointStore
from tests.cli.conftest import moto_endpoint  # noqa: F401  (the session's moto server, a fixture)
from tests.kernel.faults_helpers import (
    CHECKPOINT,
    FIRST_CHECKPOINT,
    HOOK,
    Pool,
    assert_kill_points_reached,
    assert_no_checkpoint,
    assert_restores,
    checkpoint_c1_then_change,
    hook,
    kill_checkpoint,
    lab_folders,
)

pytestmark = pytest.mark.kernel

_MV = '''
        def mv(self, *a, **kw):
            out = self._fs.mv(*a, **kw)
            at("renamed")
            return out
'''
_MV_S3 = '''
        def mv(self, *a, **kw):
            # s3fs's mv is copy then rm(source) on the same instance: an event between the two
            real_rm = self._fs.rm

            def rm_after_copy(*a2, **kw2):
                at("copied")
                return real_rm(*a2, **kw2)

            self._fs.rm = rm_after_copy
            try:
                out = self._fs.mv(*a, **kw)
            finally:
                del self._fs.rm
            at("renamed")
            return out
'''
assert _MV in HOOK, "the hook of faults_helpers changed: update _MV"
HOOK_S3 = HOOK.replace(_MV, _MV_S3)


# Kill points of C2 over C1 (blob1: big1, blob2: big2, blob3: small; the other blobs exist already).
BEFORE_MANIFEST = [
    "open:blob1#1",     # nothing of C2 uploaded yet
    "write:blob1#2",    # mid-blob: the first MiBs are in s3fs's buffer, nothing on the server
    "close:blob1#1",    # blob1 uploaded whole, between blobs
    "open:manifest#1",  # every blob in place, before the manifest write
    "close:manifest#1",  # the temporary manifest uploaded, not moved yet
]  # fmt: skip
AFTER_MANIFEST = [
    "copied#1",   # manifest.json replaced by the server-side copy; the temporary manifest still there
    "renamed#1",  # after the move, before garbage collection
    "rm#1",       # garbage collection of C1's old blobs under way
]  # fmt: skip


@dataclass
class S3Lab:
    s3: Any
    """boto3 S3 client of the moto server."""
    a: Kernel
    c1_bucket: str
    states: dict[str, dict[str, Any]]
    pool: Pool


def _keys(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _new_bucket(s3: Any) -> str:
    bucket = f"nbm-faults-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="module")
def s3lab(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Lab]:  # noqa: F811
    import boto3

    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_endpoint}
    root = tmp_path_factory.mktemp("faults-s3")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            mp.delenv(name, raising=False)
        for name, value in aws.items():
            mp.setenv(name, value)
        s3 = boto3.client("s3")
        work, env = lab_folders(root)
        a = Kernel.start(cwd=str(work), env=env)
        pool = Pool(work, env)
        try:
            a.execute("%load_ext nbmigrate")
            c1_bucket = _new_bucket(s3)
            states = checkpoint_c1_then_change(a, f"s3://{c1_bucket}/ckpt")
            lab = S3Lab(s3, a, c1_bucket, states, pool)
            dry = _copy_of_c1(lab)
            assert_kill_points_reached(a, dry, hook(None, HOOK_S3), BEFORE_MANIFEST + AFTER_MANIFEST)
            _no_strays(lab, dry)
            yield lab
        finally:
            pool.close()
            a.shutdown()


def _copy_of_c1(lab: S3Lab) -> str:
    """``s3://<new bucket>/ckpt`` holding a server-side copy of C1."""
    bucket = _new_bucket(lab.s3)
    for key in _keys(lab.s3, lab.c1_bucket):
        lab.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": lab.c1_bucket, "Key": key})
    return f"s3://{bucket}/ckpt"


def _no_strays(lab: S3Lab, dest: str) -> None:
    bucket = dest.removeprefix("s3://").split("/", 1)[0]
    manifest = CheckpointStore(dest, key=b"unused").read_manifest(trust=True)
    keys = _keys(lab.s3, bucket)
    expected = [f"ckpt/{BLOB_DIR}/{sha}" for sha in sorted({b.sha256 for b in manifest.blobs()})]
    assert keys == [*expected, f"ckpt/{MANIFEST_NAME}"], f"stray objects at {dest}: {keys}"
    assert not any(k.rsplit("/", 1)[-1].startswith((TMP_PREFIX, PROBE_PREFIX)) for k in keys)


@pytest.mark.parametrize("point", BEFORE_MANIFEST + AFTER_MANIFEST)
def test_kill_during_s3_checkpoint(point: str, s3lab: S3Lab) -> None:
    dest = _copy_of_c1(s3lab)
    kill_checkpoint(s3lab.pool, dest, hook(point, HOOK_S3), change=True)
    left = _keys(s3lab.s3, dest.removeprefix("s3://").split("/", 1)[0])
    if point in ("open:blob1#1", "write:blob1#2"):  # s3fs buffers until close: nothing uploaded
        assert left == _keys(s3lab.s3, s3lab.c1_bucket)
    tmp = [k for k in left if k.rsplit("/", 1)[-1].startswith(TMP_PREFIX)]
    assert len(tmp) == (1 if point in ("close:manifest#1", "copied#1") else 0), left
    assert_restores(s3lab.pool, dest, point, "C2" if point in AFTER_MANIFEST else "C1", s3lab.states)

    # The same URL takes the next checkpoint, which leaves nothing of the killed one behind.
    s3lab.a.execute(CHECKPOINT.format(dest=dest, prefer="restore"))
    _no_strays(s3lab, dest)


@pytest.mark.parametrize("point", list(FIRST_CHECKPOINT))
def test_killed_first_s3_checkpoint(point: str, s3lab: S3Lab) -> None:
    dest = f"s3://{_new_bucket(s3lab.s3)}/ckpt"
    kill_checkpoint(s3lab.pool, dest, hook(point, HOOK_S3), change=False)
    error = assert_no_checkpoint(s3lab.pool, dest, point)
    if point == "open:blob1#1":
        assert "incomplete" not in error
