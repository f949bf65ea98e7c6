"""Moving checkpoints between stores, and sessions between kernels.

:func:`copy_checkpoint` copies one checkpoint from any fsspec location to any other, the way the store
writes one (:mod:`nbmigrate.store`): blobs first, ``manifest.json`` last and atomically, so a reader
at the destination sees the previous checkpoint or the whole new one, never a part. Only the blobs the
manifest references are copied, and their names come out of the strict manifest parser
(:class:`~nbmigrate.manifest.Manifest`): a blob name is 64 hex digits or the copy does not start, so no
manifest can make the copy read or write outside the two checkpoint folders. Every blob is checked
against its recorded size and SHA-256 on the way (a damaged source is not passed on), and nothing is
ever unpickled. The signature is not checked here: whoever restores checks it.

:func:`migrate` moves a session: checkpoint the source kernel, move the checkpoint, restore it into
the target kernel, which verifies every variable against its checkpoint digest. Either through a
store both kernels reach (``via``), or streamed through this process: the source writes to a
temporary folder next to it, the folder is copied to a temporary folder next to the target, the
target restores from there, and both folders are removed. Between two kernels of Jupyter servers
running the nbmigrate extension (:class:`~nbmigrate.addresses.ArchiveHandle`), streaming goes through
the servers' stores instead: the source checkpoints into its server's store, the checkpoint is piped
as a tar archive from that store into the target server's store (nothing is written here), and the
target restores it by name. Both servers keep their copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec.core

from .errors import IntegrityError, ManifestError, NbmigrateError, StoreError
from .manifest import Manifest, check_sha256, loads_strict
from .reports import CheckpointReport, GroupOutcome, ReplayFailure, RestoreReport, human_bytes
from .store import (
    BLOB_DIR,
    CHUNK,
    MANIFEST_NAME,
    TMP_PREFIX,
    abandon_file,
    describe_store_error,
    read_manifest_bytes,
    sync_file,
)

if TYPE_CHECKING:
    from .addresses import KernelHandle, Scratch
    from .reports import Progress

BytesProgress = Callable[[int, int], None]
"""progress(done, total) in bytes, over the whole copy."""


@dataclass(frozen=True)
class CheckpointFile:
    """One file of a checkpoint, relative to its folder: ``blobs/<sha256>`` or ``manifest.json``."""

    name: str
    size: int
    sha256: str | None
    """The blob's recorded digest; None for the manifest (it is authenticated by its signature)."""


@dataclass
class TransferReport:
    """What :func:`copy_checkpoint` did."""

    source: str
    destination: str
    files: int
    bytes: int
    """Bytes copied (blobs already at the destination are not counted)."""
    skipped: int
    """Blobs that were already at the destination with their recorded size."""
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        rate = f", {human_bytes(self.bytes / self.seconds)}/s" if self.seconds > 0 and self.bytes else ""
        skipped = f" ({self.skipped} blobs already there)" if self.skipped else ""
        return f"moved {self.files} files, {human_bytes(self.bytes)} in {self.seconds:.1f} s{rate}{skipped}"


def parse_manifest_document(data: bytes, *, where: str = "manifest.json") -> Manifest:
    """Strictly parse a signed ``manifest.json`` document without checking the signature.

    Enough to know which blobs a checkpoint holds; a restore authenticates the same bytes later.
    """
    document = loads_strict(data, what=where)
    if not isinstance(document, dict) or "nbmigrate_checkpoint" not in document:
        raise ManifestError(f"{where} is not an nbmigrate checkpoint manifest")
    inner = document.get("manifest")
    if not isinstance(inner, dict):
        raise ManifestError(f"{where} has no manifest object")
    try:
        return Manifest.from_dict(inner)
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}") from exc


def checkpoint_files(manifest_document: bytes, *, where: str = "manifest.json") -> list[CheckpointFile]:
    """The files of the checkpoint whose ``manifest.json`` is ``manifest_document``, in copy order.

    Blobs first (each once, names validated as 64 hex digits), the manifest last. A server streaming a
    checkpoint (GET/PUT) can follow the same list.
    """
    manifest = parse_manifest_document(manifest_document, where=where)
    files: list[CheckpointFile] = []
    for blob in manifest.blobs():
        check_sha256(blob.sha256, "blob")  # already checked by the parser; a path is built from it
        files.append(CheckpointFile(f"{BLOB_DIR}/{blob.sha256}", blob.size, blob.sha256))
    files.append(CheckpointFile(MANIFEST_NAME, len(manifest_document), None))
    return files


class _Location:
    """One end of a copy: a file system and the checkpoint's root in it."""

    def __init__(self, url: str, options: Mapping[str, Any] | None) -> None:
        self.url = url
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **dict(options or {}))
        except Exception as exc:
            raise StoreError(f"cannot open {describe_store_error(exc, url)}") from exc
        self.root: str = str(root).rstrip("/")

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    def size_or_none(self, name: str) -> int | None:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.path(name).rsplit("/", 1)[0])
        try:
            return int(self.fs.size(self.path(name)))
        except Exception:  # FileNotFoundError, or a backend that cannot tell: copy it again
            return None

    def remove_quietly(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.rm(self.path(name))


def finish_file(f: Any) -> None:
    """Flush to stable storage where there is a descriptor (local files), then close (commits uploads)."""
    sync_file(f)
    f.close()


def _copy_blob(src: _Location, dst: _Location, entry: CheckpointFile, on_bytes: Callable[[int], None]) -> int:
    """Copy one blob in chunks, checking size and SHA-256 as it goes; returns the bytes copied."""
    short = (entry.sha256 or "")[:12]
    hasher = hashlib.sha256()
    copied = 0
    out: Any = None
    try:
        with src.fs.open(src.path(entry.name), "rb") as fin:
            out = dst.fs.open(dst.path(entry.name), "wb")
            while True:
                chunk = fin.read(CHUNK)
                if not chunk:
                    break
                copied += len(chunk)
                if copied > entry.size:
                    raise IntegrityError(f"blob {short} at {src.url} is corrupt: longer than its {entry.size} bytes")
                hasher.update(chunk)
                out.write(chunk)
                on_bytes(len(chunk))
        if copied < entry.size:
            raise IntegrityError(f"blob {short} at {src.url} is truncated (got {copied} of {entry.size} bytes)")
        if hasher.hexdigest() != entry.sha256:
            raise IntegrityError(f"blob {short} at {src.url} is corrupt: checksum mismatch")
        finish_file(out)
        out = None
    except FileNotFoundError:
        raise IntegrityError(f"blob {short} is missing from {src.url}") from None
    except NbmigrateError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot copy blob {short} from {src.url} to {describe_store_error(exc, dst.url)}") from exc
    finally:
        if out is not None:
            abandon_file(out)
            dst.remove_quietly(entry.name)
    return copied


def copy_checkpoint(
    source: str,
    destination: str,
    *,
    source_options: Mapping[str, Any] | None = None,
    destination_options: Mapping[str, Any] | None = None,
    progress: BytesProgress | None = None,
) -> TransferReport:
    """Copy the checkpoint at ``source`` to ``destination`` (any two fsspec URLs); see the module docstring.

    Raises :class:`StoreError` when either side cannot be read or written, :class:`IntegrityError` when
    a blob at the source is missing or damaged, :class:`ManifestError` when the manifest is not one
    nbmigrate would read. On failure the destination keeps whatever checkpoint it had before.
    """
    t0 = time.perf_counter()
    src = _Location(source, source_options)
    dst = _Location(destination, destination_options)
    document = read_manifest_bytes(src.fs, src.root, src.url)
    files = checkpoint_files(document, where=f"{source}/{MANIFEST_NAME}")
    blobs, manifest_entry = files[:-1], files[-1]
    total = sum(f.size for f in files)
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    try:
        dst.fs.makedirs(dst.path(BLOB_DIR), exist_ok=True)
    except Exception as exc:
        raise StoreError(f"cannot write to {describe_store_error(exc, destination)}") from exc
    copied = skipped = 0
    for entry in blobs:
        if dst.size_or_none(entry.name) == entry.size:  # content-addressed: same name and size, same blob
            skipped += 1
            on_bytes(entry.size)
            continue
        copied += _copy_blob(src, dst, entry, on_bytes)

    # The manifest last, under a temporary name moved into place (atomic, as in CheckpointStore).
    tmp = TMP_PREFIX + secrets.token_hex(8)
    out: Any = None
    try:
        out = dst.fs.open(dst.path(tmp), "wb")
        out.write(document)
        finish_file(out)
        out = None
        dst.fs.mv(dst.path(tmp), dst.path(MANIFEST_NAME))
    except Exception as exc:
        if out is not None:
            abandon_file(out)
        dst.remove_quietly(tmp)
        raise StoreError(f"cannot write the manifest to {describe_store_error(exc, destination)}") from exc
    on_bytes(manifest_entry.size)
    copied += manifest_entry.size
    return TransferReport(source=source, destination=destination, files=len(files), bytes=copied,
                          skipped=skipped, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# Reports coming back from a kernel as JSON


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of ``cls`` (a kernel may run another nbmigrate version)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def checkpoint_report_from_dict(data: Mapping[str, Any]) -> CheckpointReport:
    """Rebuild the :class:`CheckpointReport` a kernel sent as ``to_dict()``."""
    values = _known(CheckpointReport, data)
    values["groups"] = [GroupOutcome(**_known(GroupOutcome, g)) for g in data.get("groups", [])]
    return CheckpointReport(**values)


def restore_report_from_dict(data: Mapping[str, Any]) -> RestoreReport:
    """Rebuild the :class:`RestoreReport` a kernel sent as ``to_dict()``."""
    values = _known(RestoreReport, data)
    values["failures"] = [ReplayFailure(**_known(ReplayFailure, f)) for f in data.get("failures", [])]
    return RestoreReport(**values)


# --------------------------------------------------------------------------------------------------
# Migration


@dataclass
class MigrationReport:
    """One session moved from one kernel to another: each step's report and how long it took."""

    source: str
    target: str
    via: str | None
    """The store both kernels used, or None when the checkpoint was streamed through this process."""
    checkpoint: CheckpointReport
    restore: RestoreReport
    transfer: TransferReport | None
    checkpoint_seconds: float
    transfer_seconds: float
    restore_seconds: float
    seconds: float
    source_shut_down: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.restore.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "target": self.target,
            "via": self.via,
            "checkpoint": self.checkpoint.to_dict(),
            "transfer": None if self.transfer is None else self.transfer.to_dict(),
            "restore": self.restore.to_dict(),
            "checkpoint_seconds": self.checkpoint_seconds,
            "transfer_seconds": self.transfer_seconds,
            "restore_seconds": self.restore_seconds,
            "seconds": self.seconds,
            "bytes_moved": self.bytes_moved,
            "source_shut_down": self.source_shut_down,
            "notes": self.notes,
        }

    @property
    def bytes_moved(self) -> int:
        """Bytes that went from the source's side to the target's: written once, or copied."""
        if self.transfer is not None:
            return self.transfer.bytes
        return self.checkpoint.written_bytes

    def render(self, verbose: bool = True) -> str:
        how = f"via {self.via}" if self.via else "streamed through this machine"
        verdict = "migrated" if self.ok else "INCOMPLETE migration"
        lines = [f"{verdict} {self.source} -> {self.target} in {self.seconds:.1f} s ({how}), "
                 f"{human_bytes(self.bytes_moved)} moved",
                 f"checkpoint ({self.checkpoint_seconds:.1f} s): "
                 + self.checkpoint.render(verbose=verbose).replace("\n", "\n  ")]
        if self.transfer is not None:
            lines.append(f"transfer ({self.transfer_seconds:.1f} s): {self.transfer.summary()}")
        lines.append(f"restore ({self.restore_seconds:.1f} s): "
                     + self.restore.render(verbose=verbose).replace("\n", "\n  "))
        if self.source_shut_down:
            lines.append("source kernel shut down")
        lines += self.notes
        return "\n".join(lines)


def migrate(
    source: KernelHandle,
    target: KernelHandle,
    *,
    via: str | None = None,
    source_label: str = "source",
    target_label: str = "target",
    bandwidth: float | None = None,
    prefer: str = "balanced",
    best_effort: bool = False,
    trust: bool = False,
    partial: bool = False,
    shutdown_source: bool = False,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> MigrationReport:
    """Checkpoint ``source``, move the checkpoint, restore it into ``target``; see the module docstring.

    Without ``via`` both handles must be :class:`~nbmigrate.addresses.StreamingHandle`, or both
    :class:`~nbmigrate.addresses.ArchiveHandle` (kernels of Jupyter servers). The source is
    shut down (``shutdown_source``) only once the target's restore verified every variable. Progress
    phases: ``write`` (bytes), ``copy`` (bytes, streamed only), ``read`` (bytes), ``replay`` (cells).
    """
    from .addresses import ArchiveHandle, StreamingHandle

    t0 = time.perf_counter()
    checkpoint_params: dict[str, Any] = {"bandwidth": bandwidth, "prefer": prefer, "best_effort": best_effort}
    restore_params: dict[str, Any] = {"trust": trust, "partial": partial}
    if via is not None and storage_options:
        checkpoint_params["storage_options"] = restore_params["storage_options"] = storage_options

    def on_copy(done: int, total: int) -> None:
        if progress is not None:
            progress("copy", done, total)

    with contextlib.ExitStack() as stack:
        transfer: TransferReport | None = None
        scratch: tuple[Scratch, Scratch] | None = None
        archive = False
        write_url: str | None
        read_url: str | None
        if via is not None:
            write_url = read_url = via
        elif isinstance(source, StreamingHandle) and isinstance(target, StreamingHandle):
            scratch = (stack.enter_context(source.scratch()), stack.enter_context(target.scratch()))
            write_url, read_url = scratch[0].kernel_url, scratch[1].kernel_url
        elif isinstance(source, ArchiveHandle) and isinstance(target, ArchiveHandle):
            archive = True  # the source server's store, then the target server's, by name
            write_url = read_url = None
        else:
            raise NbmigrateError(_no_stream_message(source, target, source_label, target_label))

        t = time.perf_counter()
        ck = source.operation("checkpoint", url=write_url, on_progress=progress, **checkpoint_params)
        checkpoint_seconds = time.perf_counter() - t

        t = time.perf_counter()
        if scratch is not None:
            src_scratch, dst_scratch = scratch
            if _Location(src_scratch.client_url, src_scratch.client_options).size_or_none(MANIFEST_NAME) is None:
                raise StoreError(
                    f"{source_label} wrote its checkpoint to {src_scratch.kernel_url}, but this machine does not "
                    "see it there: the kernel does not share this machine's files (a remote kernel reached "
                    "through forwarded ports?); migrate via a store both kernels reach (--via URL)")
            transfer = copy_checkpoint(src_scratch.client_url, dst_scratch.client_url,
                                       source_options=src_scratch.client_options,
                                       destination_options=dst_scratch.client_options, progress=on_copy)
        elif archive:
            assert isinstance(source, ArchiveHandle)
            name = ck.get("name")
            if not isinstance(name, str) or not name:
                raise NbmigrateError(f"{source_label}: the server did not name the checkpoint it wrote to its store")
            sent = source.send_checkpoint(name, target, progress=on_copy)
            read_name = str(sent.get("name") or name)
            transfer = TransferReport(
                source=str(ck.get("url") or name), destination=str(sent.get("url") or ck.get("url") or name),
                files=int(sent.get("files") or 0), bytes=int(sent.get("bytes") or 0),
                skipped=int(sent.get("skipped") or 0), seconds=time.perf_counter() - t)
            restore_params["name"] = read_name
        transfer_seconds = time.perf_counter() - t

        t = time.perf_counter()
        rs = target.operation("restore", url=read_url, on_progress=progress, **restore_params)
        restore_seconds = time.perf_counter() - t

    report = MigrationReport(
        source=source_label, target=target_label, via=via,
        checkpoint=checkpoint_report_from_dict(ck), restore=restore_report_from_dict(rs), transfer=transfer,
        checkpoint_seconds=checkpoint_seconds, transfer_seconds=transfer_seconds,
        restore_seconds=restore_seconds, seconds=0.0,
    )
    if shutdown_source:
        if report.ok:
            source.shutdown()
            report.source_shut_down = True
        else:
            report.notes.append("source kernel left running: the restore is incomplete")
    report.seconds = time.perf_counter() - t0
    return report


def _no_stream_message(source: KernelHandle, target: KernelHandle, source_label: str, target_label: str) -> str:
    """Why ``migrate`` without ``via`` cannot move a checkpoint between these two kernels."""
    from .addresses import ArchiveHandle, StreamingHandle

    kinds = {StreamingHandle: "a kernel reached through its connection file",
             ArchiveHandle: "a kernel of a Jupyter server"}

    def kind(handle: KernelHandle) -> str | None:
        return next((text for cls, text in kinds.items() if isinstance(handle, cls)), None)

    a, b = kind(source), kind(target)
    if a is not None and b is not None:
        return (f"{source_label} is {a} and {target_label} is {b}: a checkpoint is streamed through this machine "
                "only between two kernels of the same kind; migrate via a store both kernels reach (--via URL)")
    label = source_label if a is None else target_label
    return (f"{label}: this kernel cannot stream a checkpoint through this machine; "
            "migrate via a store both kernels reach (--via URL)")
