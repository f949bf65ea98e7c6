"""Checkpoint storage on anything fsspec can open: a local folder, ``memory://``, ``s3://`` ...

Layout of a checkpoint at ``<url>``::

    <url>/manifest.json          signed envelope around the manifest (written last)
    <url>/blobs/<sha256>         one blob per stored group; the name is the SHA-256 of the content

The URL alone chooses the backend (``fsspec.core.url_to_fs``): this module never asks which one it
got, it only uses fsspec's generic file-system API.

Crash safety (DESIGN.md invariant 4) comes from the order of writes:

1. Blobs first. A blob is named by its content, so a blob that already exists with the right size is
   not written again (an unchanged group costs nothing in an incremental checkpoint), and a crash in
   the middle of a blob leaves at most a wrong-size file that no manifest references yet: the next
   write replaces it, a restore rejects it by checksum, garbage collection removes it.
2. The manifest last, atomically: written under a temporary name next to ``manifest.json``, then
   moved over it (see :meth:`CheckpointStore.write_manifest`). Until that move, readers see the
   previous checkpoint, whole.
3. Garbage collection after that: blobs the new manifest does not reference, and stray temporary
   manifests, are deleted only once the new manifest is in place.

No unverified byte is handed out (invariant 5): :meth:`CheckpointStore.read_manifest` checks the
HMAC signature before parsing, and :meth:`CheckpointStore.read_blob` / :meth:`~CheckpointStore.read_blobs`
check size and SHA-256 before returning.

Speed: hashing and fsync wait on a core or the disk with the GIL released, so they run beside the
writes and reads rather than after them (:func:`stage_blob` in the checkpoint's staging thread,
:class:`BlobFinisher`, :meth:`CheckpointStore.read_blobs`), never in place of them.

One writer per checkpoint URL at a time: two processes writing the same URL concurrently can
garbage-collect each other's blobs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, cast

import fsspec.core
import numpy as np

from nbmigrate import signing
from nbmigrate.errors import IntegrityError, ManifestError, NbmigrateError, StoreError
from nbmigrate.manifest import (
    FORMAT_VERSION,
    BlobPart,
    BlobRef,
    Manifest,
    canonical_json,
    check_format_version,
    check_sha256,
    loads_strict,
)

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
BLOB_DIR = "blobs"
TMP_PREFIX = MANIFEST_NAME + ".tmp-"
CHUNK = 8 * 1024 * 1024
"""Largest slice handed to a file's write/readinto: bounds latency between progress reports."""
PROBE_BYTES = 8 * 1024 * 1024
"""Size of the write that :meth:`CheckpointStore.measure_bandwidth` times."""
PROBE_PREFIX = ".nbmigrate-probe-"
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
"""A larger manifest.json is not one we wrote (the history of 100k cells is well below this)."""

_ENVELOPE_KEYS = {"nbmigrate_checkpoint", "signature", "key_id", "manifest"}
_PART_KINDS = ("pickle", "buffer")
_PART_CODECS = ("none", "zstd")

Progress = Callable[[int], None]


class BlobIntegrityError(IntegrityError):
    """A blob failed verification (missing, truncated, corrupt); ``.blob`` is its SHA-256 hex.

    The caller knows which variables the blob carries and can name them in its own message.
    """

    def __init__(self, message: str, blob: str) -> None:
        super().__init__(message)
        self.blob = blob


def _reason(exc: BaseException) -> str:
    """The why of an I/O error in plain words: ``no space left on device``, not a repr."""
    if isinstance(exc, OSError) and exc.errno is not None:
        text = exc.strerror or os.strerror(exc.errno)
        name = errno.errorcode.get(exc.errno)
        text = text[:1].lower() + text[1:]
        return f"{text} ({name})" if name else text
    text = str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"not found: {text}" if text else "not found"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_store_error(exc: BaseException, url: str) -> str:
    """One line saying where and why an I/O operation failed, e.g. for a CLI or REST response.

    >>> describe_store_error(OSError(errno.ENOSPC, "No space left on device"), "s3://b/ckpt")
    's3://b/ckpt: no space left on device (ENOSPC)'
    """
    return f"{url}: {_reason(exc)}"


def read_manifest_bytes(fs: Any, root: str, url: str, *, missing: Callable[[], str] | None = None) -> bytes:
    """The manifest document of the checkpoint at ``root`` on ``fs``: size-checked, unparsed, unverified.

    The one reader of manifest bytes: :meth:`CheckpointStore.read_manifest` then verifies and parses
    them; the copier and the server's archive stream pass them on untrusted (the reader at the other
    end verifies). ``missing`` makes the "no checkpoint" message, and is called only then (the store's
    looks for what an unfinished write left behind); by default it says the manifest is not at ``url``.
    """
    path = f"{root}/{MANIFEST_NAME}" if root else MANIFEST_NAME
    where = f"{url.rstrip('/')}/{MANIFEST_NAME}"
    with contextlib.suppress(Exception):
        fs.invalidate_cache(root)  # object-store backends cache listings: see what is there now
    try:
        size = fs.size(path)
        if size is not None and size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{where} is {size} bytes, larger than any nbmigrate manifest")
        with fs.open(path, "rb") as f:
            data = bytes(f.read(MAX_MANIFEST_BYTES + 1))
    except FileNotFoundError:
        message = missing() if missing is not None else f"no checkpoint at {url}: {MANIFEST_NAME} not found"
        raise StoreError(message) from None
    except NbmigrateError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot read {describe_store_error(exc, where)}") from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{where} is larger than any nbmigrate manifest")
    return data


def abandon_file(f: Any) -> None:
    """Close a file whose write failed without committing it where the backend allows it.

    Buffered remote files (object stores) can abort an upload with ``discard``; files without that
    capability (or that refuse it, like an auto-committing local file) are simply closed.
    """
    discard = getattr(f, "discard", None)
    if callable(discard):
        with contextlib.suppress(Exception):
            discard()
    with contextlib.suppress(Exception):
        f.close()


def sync_file(f: Any) -> None:
    """Flush ``f`` to stable storage when the backend has a file descriptor (local files).

    The order blobs -> manifest only protects against power loss if it reaches the disk in that
    order. Backends without a descriptor (object stores, memory) persist on close.
    """
    try:
        f.flush()
        os.fsync(f.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass


@dataclass(frozen=True)
class StagedBlob:
    """A blob's parts checked and hashed, not yet written: its reference and the bytes to write."""

    ref: BlobRef
    views: list[memoryview]


def uninitialized(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes that is not zero-filled first.

    ``bytearray(size)`` writes zeros over memory that a read is about to overwrite anyway: for a
    1.5 GB checkpoint that pass cost 0.8 s of a 7 s restore. numpy's allocation leaves fresh pages
    to the kernel, which maps them on first write.
    """
    return np.empty(size, dtype=np.uint8).data


def _verified(ref: BlobRef, data: memoryview) -> memoryview:
    """``data`` if its SHA-256 is the one ``ref`` names, else :class:`BlobIntegrityError`."""
    if hashlib.sha256(data).hexdigest() != ref.sha256:  # hashlib releases the GIL on large buffers
        raise BlobIntegrityError(f"blob {ref.sha256[:12]} is corrupt: checksum mismatch", ref.sha256)
    return data


def stage_blob(parts: Sequence[tuple[str, str, int, memoryview[Any]]]) -> StagedBlob:
    """Check ``parts`` (see :meth:`CheckpointStore.write_blob`) and hash them into a :class:`BlobRef`.

    Apart from the store so that hashing (which releases the GIL) can run in a thread while the
    previous blob is written: the name of a blob is its SHA-256, so it must be known before the
    blob is opened. The views are not copied: they must stay unchanged until the blob is written.
    """
    views: list[memoryview] = []
    refs: list[BlobPart] = []
    hasher = hashlib.sha256()
    offset = 0
    for i, (kind, codec, raw_length, payload) in enumerate(parts):
        if kind not in _PART_KINDS or codec not in _PART_CODECS:
            raise ValueError(f"part {i}: unknown kind/codec {kind!r}/{codec!r}")
        view = memoryview(payload)
        if not view.c_contiguous:
            raise ValueError(f"part {i}: payload must be a C-contiguous buffer")
        view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        if type(raw_length) is not int or raw_length < 0:
            raise ValueError(f"part {i}: raw_length must be a non-negative int, got {raw_length!r}")
        if codec == "none" and raw_length != view.nbytes:
            raise ValueError(f"part {i}: {view.nbytes} uncompressed bytes but raw_length {raw_length}")
        hasher.update(view)  # hashlib releases the GIL on large buffers
        refs.append(
            BlobPart(
                kind=cast(Literal["pickle", "buffer"], kind),
                codec=cast(Literal["none", "zstd"], codec),
                offset=offset,
                length=view.nbytes,
                raw_length=raw_length,
            )
        )
        views.append(view)
        offset += view.nbytes
    return StagedBlob(BlobRef(sha256=hasher.hexdigest(), size=offset, parts=refs), views)


class BlobFinisher:
    """Makes written blobs durable (fsync, then close) in a worker thread, while the next is written.

    fsync waits for the disk, and ``close`` of an object-store file is its upload: done inline, the
    writer idles meanwhile. Here the next blob goes to the page cache (or the network) during the
    previous one's fsync. At most ``pending`` files are open at once. :meth:`wait` returns when every
    blob is durable, and raises :class:`StoreError` naming a blob that could not be finished (which
    is deleted): a manifest must only be written after it returned (DESIGN.md invariant 4).
    """

    def __init__(self, pending: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbmigrate-fsync")
        self._slots = threading.BoundedSemaphore(pending)
        self._futures: list[Future[None]] = []

    def submit(self, store: CheckpointStore, f: Any, path: str, sha: str) -> None:
        """Finish ``f`` (the blob ``sha`` at ``path`` of ``store``) in the worker thread."""
        self._slots.acquire()
        try:
            self._futures.append(self._pool.submit(self._finish, store, f, path, sha))
        except BaseException:
            self._slots.release()
            raise

    def _finish(self, store: CheckpointStore, f: Any, path: str, sha: str) -> None:
        try:
            sync_file(f)
            f.close()
        except BaseException as exc:
            abandon_file(f)
            store._remove_quietly(path)
            raise StoreError(f"cannot write blob {sha[:12]} to {store.url}: {_reason(exc)}") from exc
        finally:
            self._slots.release()

    def wait(self) -> None:
        """Block until every submitted blob is durable; raise the first failure."""
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()

    def __enter__(self) -> BlobFinisher:
        return self

    def __exit__(self, *exc: object) -> None:
        # On an error elsewhere, still close every file before leaving (its failure is secondary).
        with contextlib.suppress(Exception):
            self.wait()
        self._pool.shutdown(wait=True)


class CheckpointStore:
    """One checkpoint location: blobs, a signed manifest, verification on every read.

    ``url`` is anything ``fsspec.core.url_to_fs`` accepts; ``storage_options`` go to the backend
    (credentials, endpoint ...). ``key`` is the signing key; ``None`` loads this user's key
    (:func:`nbmigrate.signing.load_key`), creating the secret on first use.
    """

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        key: bytes | None = None,
    ) -> None:
        self.url = url
        try:
            fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        except Exception as exc:  # unknown protocol, backend package missing, bad options
            raise StoreError(f"cannot open checkpoint store {url}: {_reason(exc)}") from exc
        self.fs: Any = fs
        self.root: str = root.rstrip("/")
        self.key: bytes = signing.load_key() if key is None else key
        self._dirs_made = False

    def __repr__(self) -> str:
        return f"CheckpointStore({self.url!r})"

    # -- paths -------------------------------------------------------------------------------------

    def _path(self, *names: str) -> str:
        return "/".join((self.root, *names)) if self.root else "/".join(names)

    def _blob_path(self, sha: str) -> str:
        try:
            check_sha256(sha)
        except ManifestError as exc:  # a BlobRef built by hand; never let it become a path
            raise BlobIntegrityError(f"invalid blob name: {exc}", str(sha)) from exc
        return self._path(BLOB_DIR, sha)

    def _where(self, *names: str) -> str:
        return "/".join((self.url.rstrip("/"), *names))

    def _makedirs(self) -> None:
        if not self._dirs_made:
            self.fs.makedirs(self._path(BLOB_DIR), exist_ok=True)
            self._dirs_made = True

    # -- blobs -------------------------------------------------------------------------------------

    def write_blob(
        self,
        parts: Sequence[tuple[str, str, int, memoryview[Any]]],
        *,
        progress: Progress | None = None,
    ) -> BlobRef:
        """Store the concatenation of ``parts`` as one blob and return its reference.

        Each part is ``(kind, codec, raw_length, payload)``; payloads are written as given (already
        encoded) without copies. If a blob with this content and size already exists, nothing is
        written. ``progress(n)`` is called after each slice of at most 8 MiB with the bytes just
        written; for a blob that already exists it is called once with the blob's size, so a
        progress bar sized to the total reaches its end. I/O failures raise :class:`StoreError`
        naming the destination, the blob and the reason.

        The same as :func:`stage_blob` then :meth:`put_blob`; a caller with several blobs can stage
        the next one in another thread while this one is written.
        """
        return self.put_blob(stage_blob(parts), progress=progress)

    def put_blob(
        self, staged: StagedBlob, *, progress: Progress | None = None, finisher: BlobFinisher | None = None
    ) -> BlobRef:
        """Write a blob :func:`stage_blob` prepared (see :meth:`write_blob`), durably, under its SHA-256.

        With ``finisher``, the blob is made durable (fsync, close) in the finisher's thread while the
        caller writes the next one; it is durable once :meth:`BlobFinisher.wait` has returned.
        """
        ref = staged.ref
        sha = ref.sha256
        path = self._blob_path(sha)
        try:
            existing = self.fs.size(path)
        except FileNotFoundError:
            existing = None
        except Exception as exc:
            raise StoreError(f"cannot write blob {sha[:12]} to {self.url}: {_reason(exc)}") from exc
        if existing == ref.size:
            if progress is not None:
                progress(ref.size)
            return ref

        f: Any = None
        try:
            self._makedirs()
            f = self.fs.open(path, "wb")
            for view in staged.views:
                for start in range(0, view.nbytes, CHUNK):
                    piece = view[start : start + CHUNK]
                    f.write(piece)
                    if progress is not None:
                        progress(piece.nbytes)
            if finisher is not None:
                f.flush()  # its full size visible now: a second group with the same bytes skips it
                finisher.submit(self, f, path, sha)
                return ref
            sync_file(f)
            f.close()
        except BaseException as exc:
            if f is not None:
                abandon_file(f)
            self._remove_quietly(path)  # frees the space on ENOSPC; a leftover is harmless anyway
            if isinstance(exc, Exception) and not isinstance(exc, NbmigrateError):
                raise StoreError(f"cannot write blob {sha[:12]} to {self.url}: {_reason(exc)}") from exc
            raise
        return ref

    def read_blob(self, ref: BlobRef, *, progress: Progress | None = None) -> memoryview:
        """The whole blob in one writable buffer, verified (size, then SHA-256) before it is returned.

        Raises :class:`BlobIntegrityError` (an :class:`IntegrityError` with ``.blob``) when the blob
        is missing, truncated, longer than recorded or corrupt; :class:`StoreError` on other I/O
        failures. ``progress(n)`` is called after each slice read.
        """
        return _verified(ref, self._read_unverified(ref, progress))

    def read_blobs(
        self, refs: Sequence[BlobRef], *, progress: Progress | None = None
    ) -> list[memoryview | BlobIntegrityError]:
        """Each blob of ``refs``, verified as by :meth:`read_blob`, or the error that rejected it.

        The checksums are the expensive part of a restore's reads (SHA-256 runs at ~1 GB/s on one
        core, about as fast as a disk): blobs are read one after another in this thread (which also
        reports progress), and each is hashed in a worker thread as soon as it is read, so the
        checksums of several blobs run on several cores, alongside the next read. Nothing is handed
        out before its checksum matched. :class:`StoreError` (an I/O failure other than a bad blob)
        is raised, not returned.
        """
        pending: list[Future[memoryview] | BlobIntegrityError] = []
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="nbmigrate-verify") as pool:
            for ref in refs:
                try:
                    data = self._read_unverified(ref, progress)
                except BlobIntegrityError as exc:
                    pending.append(exc)
                    continue
                pending.append(pool.submit(_verified, ref, data))
            results: list[memoryview | BlobIntegrityError] = []
            for item in pending:
                if isinstance(item, BlobIntegrityError):
                    results.append(item)
                    continue
                try:
                    results.append(item.result())
                except BlobIntegrityError as exc:
                    results.append(exc)
        return results

    def _read_unverified(self, ref: BlobRef, progress: Progress | None) -> memoryview:
        """The blob's bytes, size-checked but not yet hashed: only :func:`_verified` may hand them out."""
        sha = ref.sha256
        path = self._blob_path(sha)
        short = sha[:12]
        try:
            actual = self.fs.size(path)
        except FileNotFoundError:
            raise BlobIntegrityError(f"blob {short} is missing from {self.url}", sha) from None
        except Exception as exc:
            raise StoreError(f"cannot read blob {short} from {self.url}: {_reason(exc)}") from exc
        if actual is not None and actual < ref.size:
            raise BlobIntegrityError(f"blob {short} is truncated (got {actual} of {ref.size} bytes)", sha)
        if actual is not None and actual > ref.size:
            raise BlobIntegrityError(
                f"blob {short} is corrupt: {actual} bytes where the manifest records {ref.size}", sha
            )

        buf = uninitialized(ref.size)
        got = 0
        try:
            with self.fs.open(path, "rb") as f:
                while got < ref.size:
                    n = f.readinto(buf[got : min(got + CHUNK, ref.size)])
                    if not n:
                        break
                    got += n
                    if progress is not None:
                        progress(n)
                extra = f.read(1) if got == ref.size else b""
        except FileNotFoundError:
            raise BlobIntegrityError(f"blob {short} is missing from {self.url}", sha) from None
        except Exception as exc:
            raise StoreError(f"cannot read blob {short} from {self.url}: {_reason(exc)}") from exc
        if got < ref.size:
            raise BlobIntegrityError(f"blob {short} is truncated (got {got} of {ref.size} bytes)", sha)
        if extra:
            raise BlobIntegrityError(f"blob {short} is corrupt: longer than its {ref.size} bytes", sha)
        return buf

    def measure_bandwidth(self, nbytes: int = PROBE_BYTES) -> float:
        """Bytes per second a blob-sized write to this store achieves now (for the cost model).

        Writes ``nbytes`` of random (incompressible) data the way :meth:`write_blob` does, durably,
        under a probe name, then deletes it. Doubles as an early check that the destination is
        writable, before any expensive work. Raises :class:`StoreError` if it is not.
        """
        path = self._path(PROBE_PREFIX + secrets.token_hex(8))
        data = memoryview(os.urandom(nbytes))
        f: Any = None
        try:
            self._makedirs()
            start = time.perf_counter()
            f = self.fs.open(path, "wb")
            for offset in range(0, nbytes, CHUNK):
                f.write(data[offset : offset + CHUNK])
            sync_file(f)
            f.close()
            f = None
            elapsed = time.perf_counter() - start
        except Exception as exc:
            raise StoreError(f"cannot write to {self.url}: {_reason(exc)}") from exc
        finally:
            if f is not None:
                abandon_file(f)
            self._remove_quietly(path)
        return nbytes / max(elapsed, 1e-6)

    # -- manifest ----------------------------------------------------------------------------------

    def write_manifest(self, manifest: Manifest) -> None:
        """Sign ``manifest``, put it in place atomically, then garbage-collect.

        The signed document is ``{"key_id", "manifest", "nbmigrate_checkpoint", "signature"}`` with
        the signature over :meth:`Manifest.to_json_bytes`. It is written to
        ``manifest.json.tmp-<random>`` and moved over ``manifest.json`` with ``fs.mv``, the one
        generic operation every backend has: a local file system renames (atomic replace on POSIX);
        an object store copies server-side, and the destination key of a copy appears whole or not at
        all. Either way a reader sees the old manifest or the new one, never a part of one; a crash
        before the move leaves the old checkpoint plus a temporary file that the next write deletes.

        Before anything is written, every blob the manifest references must exist with its recorded
        size (the manifest must never point at a blob that is not there).
        """
        body = manifest.to_json_bytes()
        listing = self._list_blobs()
        for i, group in enumerate(manifest.groups):
            blob = group.blob
            if blob is None:
                continue
            size = listing.get(blob.sha256)
            if size != blob.size:
                state = "missing" if size is None else f"{size} bytes, expected {blob.size}"
                raise StoreError(
                    f"refusing to write the manifest to {self.url}: blob {blob.sha256[:12]} of group "
                    f"{group.key} (groups[{i}]) is {state}; write blobs with write_blob first"
                )

        signature = signing.sign(body, self.key)
        header = {"key_id": signing.key_id(self.key), "nbmigrate_checkpoint": FORMAT_VERSION}
        # Keys in sorted order around the exact signed bytes: the document stays canonical JSON.
        document = b"".join(
            [
                b'{"key_id":',
                canonical_json(header["key_id"]),
                b',"manifest":',
                body,
                b',"nbmigrate_checkpoint":',
                canonical_json(header["nbmigrate_checkpoint"]),
                b',"signature":',
                canonical_json(signature),
                b"}",
            ]
        )

        final = self._path(MANIFEST_NAME)
        tmp = self._path(TMP_PREFIX + secrets.token_hex(8))
        f: Any = None
        try:
            self._makedirs()
            f = self.fs.open(tmp, "wb")
            f.write(document)
            sync_file(f)
            f.close()
            f = None
            self.fs.mv(tmp, final)
        except BaseException as exc:
            if f is not None:
                abandon_file(f)
            self._remove_quietly(tmp)
            if isinstance(exc, Exception) and not isinstance(exc, NbmigrateError):
                raise StoreError(
                    f"cannot write the manifest to {self.url}: {_reason(exc)} "
                    "(the previous checkpoint there, if any, is intact)"
                ) from exc
            raise

        self._collect_garbage({blob.sha256 for blob in manifest.blobs()})

    def _collect_garbage(self, keep: set[str]) -> None:
        """Delete unreferenced blobs and stray temporary manifests; failures are only logged.

        Only names this module writes are touched (64-hex blob names, ``manifest.json.tmp-*``):
        anything else a user put in the folder is left alone.
        """
        try:
            doomed = [self._path(BLOB_DIR, sha) for sha in self._list_blobs() if sha not in keep]
            doomed += self._tmp_manifests() + self._glob(PROBE_PREFIX + "*")
        except StoreError as exc:
            log.warning("nbmigrate: garbage collection skipped at %s: %s", self.url, exc)
            return
        for path in doomed:
            self._remove_quietly(path)

    def _list_blobs(self) -> dict[str, int]:
        """``{sha256: size}`` of the blob files present (only well-formed blob names)."""
        self._forget_listings(self._path(BLOB_DIR))
        try:
            entries = self.fs.ls(self._path(BLOB_DIR), detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise StoreError(f"cannot list blobs at {self.url}: {_reason(exc)}") from exc
        out: dict[str, int] = {}
        for entry in entries:
            name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") == "file" and len(name) == 64:
                try:
                    check_sha256(name)
                except ManifestError:
                    continue
                out[name] = int(entry.get("size") or 0)
        return out

    def _tmp_manifests(self) -> list[str]:
        return self._glob(TMP_PREFIX + "*")

    def _forget_listings(self, path: str) -> None:
        """Drop cached directory listings (object-store backends cache them) so we see what is there now."""
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)

    def _glob(self, pattern: str) -> list[str]:
        self._forget_listings(self.root)
        try:
            return [str(p) for p in self.fs.glob(self._path(pattern))]
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise StoreError(f"cannot list {self.url}: {_reason(exc)}") from exc

    def _remove_quietly(self, path: str) -> None:
        try:
            self.fs.rm(path)
        except FileNotFoundError:
            pass
        except Exception as exc:
            log.warning("nbmigrate: could not delete %s at %s: %s", path, self.url, _reason(exc))

    def read_manifest(self, *, trust: bool = False) -> Manifest:
        """Read, authenticate and strictly parse the checkpoint's manifest.

        Raises :class:`StoreError` when there is no manifest (saying so if an unfinished write was
        left behind), :class:`IntegrityError` when the signature is missing, wrong, or from another
        key, :class:`ManifestError` when the content is malformed or from a newer nbmigrate.
        ``trust=True`` skips only the signature check; blob checksums are verified regardless.
        """
        data = read_manifest_bytes(self.fs, self.root, self.url, missing=self._missing_message)
        try:
            document = loads_strict(data, what="manifest.json")
        except ManifestError as exc:
            raise ManifestError(f"checkpoint at {self.url}: {exc}") from exc
        if not isinstance(document, dict) or "nbmigrate_checkpoint" not in document:
            raise ManifestError(f"{self._where(MANIFEST_NAME)} is not an nbmigrate checkpoint manifest")
        version = document["nbmigrate_checkpoint"]
        if type(version) is not int:
            raise ManifestError(f"checkpoint at {self.url}: nbmigrate_checkpoint: expected int")
        inner = document.get("manifest")
        try:
            check_format_version(version, inner.get("nbmigrate_version") if isinstance(inner, dict) else None)
        except ManifestError as exc:
            raise ManifestError(f"checkpoint at {self.url}: {exc}") from exc
        unknown = sorted(set(document) - _ENVELOPE_KEYS)
        if unknown:
            raise ManifestError(f"checkpoint at {self.url}: unknown key {unknown[0]!r} in manifest.json")
        if not isinstance(inner, dict):
            raise ManifestError(f"checkpoint at {self.url}: manifest.json has no manifest object")

        # Authenticate the exact bytes that were signed: the canonical form of the manifest object.
        body = canonical_json(inner)
        if not trust:
            self._authenticate(body, document.get("signature"), document.get("key_id"))
        try:
            return Manifest.from_dict(inner)
        except ManifestError as exc:
            raise ManifestError(f"invalid manifest at {self.url}: {exc}") from exc

    def _authenticate(self, body: bytes, signature: Any, writer_key: Any) -> None:
        mine = signing.key_id(self.key)
        how = (
            "If you trust whoever wrote it, restore with --trust (trust=True), or set NBMIGRATE_SECRET "
            "to the writer's secret."
        )
        if not isinstance(signature, str) or not signature:
            raise IntegrityError(f"checkpoint at {self.url} is not signed, so its origin is unknown. {how}")
        if signing.verify(body, signature, self.key):
            return
        theirs = writer_key if isinstance(writer_key, str) and len(writer_key) <= 64 else "unknown"
        if theirs != mine:
            raise IntegrityError(
                f"checkpoint at {self.url} was signed with another key (key id {theirs}); this "
                f"session's key is {mine} (from {self._key_source()}). {how}"
            )
        raise IntegrityError(
            f"checkpoint at {self.url} failed its signature check: the manifest was modified after it "
            f"was signed with key {mine}, or the signature is damaged. {how}"
        )

    def _key_source(self) -> str:
        if os.environ.get("NBMIGRATE_SECRET"):
            return "NBMIGRATE_SECRET"
        return str(signing.secret_path())

    def _missing_message(self) -> str:
        message = f"no checkpoint at {self.url}: manifest.json not found"
        try:
            leftovers = bool(self._tmp_manifests()) or bool(self._list_blobs())
        except StoreError:
            leftovers = False
        if leftovers:
            message += "; an incomplete checkpoint was found (the writer stopped before finishing)"
        return message

    # -- discovery ---------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether a (complete) checkpoint is at this URL, i.e. its manifest.json exists."""
        self._forget_listings(self.root)
        try:
            return bool(self.fs.isfile(self._path(MANIFEST_NAME)))
        except Exception as exc:
            raise StoreError(f"cannot access {self.url}: {_reason(exc)}") from exc

    def list_checkpoints(self) -> list[str]:
        """URLs of the checkpoints under this URL used as a store root, sorted.

        A checkpoint is a folder/prefix holding ``manifest.json``; the root itself counts if it is
        one. The search does not descend into checkpoints (so never lists their blobs), only into
        other folders.
        """
        found: list[str] = []
        base = self.url.rstrip("/")
        self._forget_listings(self.root)
        try:
            walker = self.fs.walk(self.root or "/", topdown=True, on_error="omit")
            for dirpath, dirnames, filenames in walker:
                if MANIFEST_NAME in filenames:
                    rel = str(dirpath).rstrip("/")[len(self.root) :].strip("/")
                    found.append(f"{base}/{rel}" if rel else self.url)
                    dirnames[:] = []  # checkpoints do not nest; skip their blobs
        except Exception as exc:
            raise StoreError(f"cannot list checkpoints at {self.url}: {_reason(exc)}") from exc
        return sorted(found)
