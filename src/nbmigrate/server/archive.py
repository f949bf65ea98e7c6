"""A checkpoint as one uncompressed tar stream, in both directions, trusting neither end.

The archive holds exactly the files of a checkpoint (:mod:`nbmigrate.store`): ``blobs/<sha256>``
members first, ``manifest.json`` last, the order in which the store writes them. It is how a
checkpoint leaves one Jupyter server and enters another (``GET``/``PUT
/api/nbmigrate/checkpoints/<name>/archive``), and how the REST client downloads and uploads one.

Sending (:class:`ArchiveSource`): the list of files comes from the strict manifest parser
(:func:`nbmigrate.transfer.checkpoint_files`), so a blob name is 64 hex digits or nothing is sent.
Blobs are read in slices of :data:`SLICE` bytes, never whole, and hashed on the way: a blob that no
longer matches its name stops the stream with :class:`~nbmigrate.errors.IntegrityError` before its
end, so a receiver never mistakes a damaged checkpoint for a whole one.

Receiving (:class:`ArchiveReceiver`) is a push parser: feed it bytes as they arrive (a tornado
request body, an HTTP download) and it writes blobs as their bytes come, holding at most one slice
in memory, plus the manifest (at most :data:`~nbmigrate.store.MAX_MANIFEST_BYTES`). Its rules:

* only regular files named ``manifest.json`` or ``blobs/<64 lowercase hex>`` are accepted; anything
  else -- ``../evil``, ``/etc/passwd``, ``./manifest.json``, a directory, a link, a device, a sparse
  file -- raises :class:`ArchiveError` naming the member, before a byte of it is written. No path is
  ever built from a member name other than these two forms;
* a blob's content must hash to its name (else it is removed again and the upload fails);
* ``manifest.json`` is written last, under a temporary name moved over the old one, and only once
  every blob it references is in place with its recorded size: an upload cut short is never a
  checkpoint, and the checkpoint previously at that place survives it;
* nothing is unpickled, and the signature is not checked here: whoever restores checks it.

The tar dialect read is what Python's :mod:`tarfile` and GNU/BSD tar write (ustar, GNU and pax
headers). Pax and GNU long-name headers are honoured for naming (a member cannot hide behind a
short ustar name) and bounded to :data:`MAX_EXTENDED_HEADER` bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import struct
import tarfile
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec.core

from nbmigrate.errors import IntegrityError, NbmigrateError, StoreError
from nbmigrate.store import (
    BLOB_DIR,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    TMP_PREFIX,
    abandon_file,
    describe_store_error,
    read_manifest_bytes,
)
from nbmigrate.transfer import CheckpointFile, checkpoint_files, finish_file

BLOCK = 512
SLICE = 1024 * 1024
"""Bytes of a blob read or held at once while streaming."""
MAX_EXTENDED_HEADER = 64 * 1024
"""Largest pax or GNU long-name header accepted (ours has none; tools write a few hundred bytes)."""
END_OF_ARCHIVE = bytes(2 * BLOCK)
CONTENT_TYPE = "application/x-tar"

_BLOB_MEMBER = re.compile(rf"{BLOB_DIR}/([0-9a-f]{{64}})")
_KINDS = {
    b"1": "hard link", b"2": "symbolic link", b"3": "character device", b"4": "block device",
    b"5": "directory", b"6": "FIFO", b"7": "contiguous file", b"S": "sparse file", b"D": "GNU dump directory",
    b"M": "multi-volume continuation", b"V": "volume label",
}


class ArchiveError(NbmigrateError):
    """The bytes received are not a checkpoint archive: a member that has no place in a checkpoint, a
    damaged or truncated tar, a blob that does not match its name. The message names the member."""


# --------------------------------------------------------------------------------------------------
# Writing


def member_header(name: str, size: int, mtime: float | None = None) -> bytes:
    """The 512-byte ustar header of a regular file (our member names always fit in ustar)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time() if mtime is None else mtime)
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def padding(size: int) -> bytes:
    """Zeros that round a member's data up to whole blocks."""
    return bytes(-size % BLOCK)


def archive_size(files: list[CheckpointFile]) -> int:
    """Exact byte length of the archive of ``files`` (for a Content-Length header)."""
    return sum(BLOCK + f.size + (-f.size % BLOCK) for f in files) + len(END_OF_ARCHIVE)


def _open_fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    try:
        fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except Exception as exc:  # unknown protocol, missing backend, bad options
        raise StoreError(f"cannot open {describe_store_error(exc, url)}") from exc
    return fs, str(root).rstrip("/")


class ArchiveSource:
    """The checkpoint at ``url`` as a tar stream: :meth:`open` checks it, :meth:`chunks` yields it.

    :meth:`open` reads and parses the manifest and checks that every blob is there with its recorded
    size, so a caller can still answer with an error status before the first byte is sent.
    """

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.fs, self.root = _open_fs(url, storage_options)
        self.files: list[CheckpointFile] = []
        self._manifest = b""

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    def open(self) -> None:
        """Read the manifest and check the blobs; raises StoreError (no checkpoint) or IntegrityError."""
        data = read_manifest_bytes(self.fs, self.root, self.url)
        self.files = checkpoint_files(data, where=f"{self.url}/{MANIFEST_NAME}")
        self._manifest = data
        for entry in self.files[:-1]:
            try:
                actual = self.fs.size(self._path(entry.name))
            except FileNotFoundError:
                actual = None
            except Exception as exc:
                raise StoreError(f"cannot read {describe_store_error(exc, f'{self.url}/{entry.name}')}") from exc
            if actual != entry.size:
                state = "missing" if actual is None else f"{actual} bytes instead of {entry.size}"
                short = (entry.sha256 or "")[:12]
                raise IntegrityError(f"checkpoint at {self.url} is damaged: blob {short} is {state}")

    @property
    def size(self) -> int:
        return archive_size(self.files)

    def chunks(self) -> Generator[bytes, None, None]:
        """The archive, in pieces of at most :data:`SLICE` bytes (plus headers)."""
        now = time.time()
        for entry in self.files[:-1]:
            yield member_header(entry.name, entry.size, now)
            yield from self._blob(entry)
            yield padding(entry.size)
        yield member_header(MANIFEST_NAME, len(self._manifest), now) + self._manifest + padding(len(self._manifest))
        yield END_OF_ARCHIVE

    def _blob(self, entry: CheckpointFile) -> Iterator[bytes]:
        short = (entry.sha256 or "")[:12]
        hasher = hashlib.sha256()
        sent = 0
        try:
            with self.fs.open(self._path(entry.name), "rb") as f:
                while sent < entry.size:
                    piece = f.read(min(SLICE, entry.size - sent))
                    if not piece:
                        break
                    hasher.update(piece)
                    sent += len(piece)
                    if sent == entry.size and hasher.hexdigest() != entry.sha256:
                        # Checked before the last slice leaves: the receiver never gets a whole blob
                        # that is not the one the manifest names.
                        raise IntegrityError(f"blob {short} at {self.url} is corrupt: checksum mismatch")
                    yield piece
        except NbmigrateError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot read blob {short}: {describe_store_error(exc, self.url)}") from exc
        if sent < entry.size:
            raise IntegrityError(f"blob {short} at {self.url} is truncated (got {sent} of {entry.size} bytes)")


# --------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class MemberStart:
    name: str
    size: int


@dataclass(frozen=True)
class MemberData:
    data: bytes


@dataclass(frozen=True)
class MemberEnd:
    pass


Event = MemberStart | MemberData | MemberEnd


def _nts(field: bytes) -> bytes:
    """A NUL-terminated header field."""
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _number(field: bytes, what: str) -> int:
    if field[:1] == b"\x80":  # GNU base-256 (positive); 0xff would be negative
        return int.from_bytes(field[1:], "big")
    text = _nts(field).strip(b" \0")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise ArchiveError(f"not a tar archive, or a damaged one (a header's {what} field is {field[:12]!r})") from None


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


class TarParser:
    """Push parser of a tar stream: :meth:`feed` bytes, get back :data:`Event` objects.

    Reports only regular files, with their full names (pax ``path`` and GNU long names applied);
    raises :class:`ArchiveError` on any other kind of member, on a damaged header, and (in
    :meth:`close`) when the stream ends before its end-of-archive block.
    """

    def __init__(self) -> None:
        self._header = bytearray()
        self._left = 0
        """Data bytes of the current member not yet seen."""
        self._pad = 0
        self._meta: bytearray | None = None
        """Content of the current pax/GNU extended header, None inside a regular member."""
        self._meta_type = b""
        self._next_name: str | None = None
        self._next_size: int | None = None
        self._member = ""
        self.done = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        view = memoryview(data).cast("B")
        pos, end = 0, len(view)
        while pos < end:
            if self.done:
                if any(view[pos:]):  # tar pads the last record with zeros; anything else is junk
                    raise ArchiveError("data after the end-of-archive block")
                break
            if self._left:
                n = min(self._left, end - pos)
                piece = view[pos : pos + n]
                if self._meta is not None:
                    self._meta += piece
                else:
                    events.append(MemberData(bytes(piece)))
                self._left -= n
                pos += n
                if not self._left:
                    self._end_member(events)
                continue
            if self._pad:
                n = min(self._pad, end - pos)
                self._pad -= n
                pos += n
                continue
            n = min(BLOCK - len(self._header), end - pos)
            self._header += view[pos : pos + n]
            pos += n
            if len(self._header) == BLOCK:
                block = bytes(self._header)
                self._header.clear()
                self._start_member(block, events)
        return events

    def close(self) -> None:
        """Check that the stream ended where an archive may end."""
        if not self.done:
            where = f" inside member {self._member!r}" if self._left or self._pad else ""
            raise ArchiveError(f"the archive is truncated{where} (no end-of-archive block)")

    def _start_member(self, block: bytes, events: list[Event]) -> None:
        if not any(block):
            self.done = True  # tarfile stops at the first zero block too
            return
        stored = _number(block[148:156], "checksum")
        unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
        signed = sum(struct.unpack("148b", block[:148])) + 8 * 32 + sum(struct.unpack("356b", block[156:]))
        if stored not in (unsigned, signed):
            raise ArchiveError("not a tar archive, or a damaged one (header checksum mismatch)")
        magic = block[257:263]
        if magic not in (b"ustar\0", b"ustar "):
            raise ArchiveError("not a ustar/pax/GNU tar archive (old-style headers are not accepted)")
        name = _nts(block[:100])
        if magic == b"ustar\0" and block[345]:
            name = _nts(block[345:500]) + b"/" + name
        text = _decode(name)
        size = _number(block[124:136], "size")
        kind = block[156:157]

        if kind in (b"x", b"g", b"L", b"K"):
            if size > MAX_EXTENDED_HEADER:
                raise ArchiveError(f"member {text!r}: extended header of {size} bytes (at most "
                                   f"{MAX_EXTENDED_HEADER} accepted)")
            self._meta, self._meta_type = bytearray(), kind
            self._member = text
            self._begin_data(size, events)
            return

        if self._next_name is not None:
            text, self._next_name = self._next_name, None
        if self._next_size is not None:
            size, self._next_size = self._next_size, None
        self._member = text
        if kind not in (b"0", b"\0"):
            what = _KINDS.get(kind, f"member of type {kind!r}")
            raise ArchiveError(f"member {text!r} is a {what}, not a regular file")
        events.append(MemberStart(text, size))
        self._begin_data(size, events)

    def _begin_data(self, size: int, events: list[Event]) -> None:
        self._left, self._pad = size, -size % BLOCK
        if not size:
            self._end_member(events)

    def _end_member(self, events: list[Event]) -> None:
        if self._meta is None:
            events.append(MemberEnd())
            return
        meta, kind = bytes(self._meta), self._meta_type
        self._meta = None
        if kind == b"L":
            self._next_name = _decode(_nts(meta))
        elif kind == b"x":
            self._read_pax(meta)
        # "g" (global pax defaults) and "K" (GNU long link target) change nothing we accept.

    def _read_pax(self, meta: bytes) -> None:
        """Records ``"<length> <key>=<value>\\n"``; ``path`` and ``size`` apply to the next member."""
        pos = 0
        while pos < len(meta):
            if not any(meta[pos:]):
                break
            space = meta.find(b" ", pos)
            try:
                length = int(meta[pos:space]) if space > pos else 0
            except ValueError:
                length = 0
            record = meta[pos : pos + length]
            if length <= 0 or pos + length > len(meta) or not record.endswith(b"\n") or b"=" not in record:
                raise ArchiveError(f"member {self._member!r}: malformed pax extended header")
            key, _, value = record[space - pos + 1 : -1].partition(b"=")
            if key == b"path":
                self._next_name = value.decode("utf-8", "surrogateescape")
            elif key == b"size":
                if not value.isdigit():
                    raise ArchiveError(f"member {self._member!r}: pax size {value!r} is not a number")
                self._next_size = int(value)
            pos += length


@dataclass(frozen=True)
class ReceivedCheckpoint:
    """What :meth:`ArchiveReceiver.finish` put in place."""

    url: str
    files: int
    bytes: int
    """Bytes written (blobs already present with the right content are not rewritten)."""
    skipped: int
    """Blobs that were already at the destination."""


class ArchiveReceiver:
    """Writes the checkpoint archive fed to it into the checkpoint folder ``url`` (see the module doc).

    Call :meth:`feed` with each piece of the stream, then :meth:`finish` to put the manifest in place;
    on any error (or if the stream is abandoned) call :meth:`abort`, which removes a half-written blob.
    """

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.fs, self.root = _open_fs(url, storage_options)
        self._parser = TarParser()
        self._member: str | None = None
        self._sha: str | None = None
        self._size = 0
        self._hasher: Any = None
        self._out: Any = None
        self._manifest: bytearray | None = None
        self._in_manifest = False
        self._received: dict[str, int] = {}
        self._dirs_made = False
        self.written = 0
        self.skipped = 0

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        for event in self._parser.feed(data):
            if isinstance(event, MemberStart):
                self._start(event.name, event.size)
            elif isinstance(event, MemberData):
                self._data(event.data)
            else:
                self._end()

    def _start(self, name: str, size: int) -> None:
        self._member = name
        if name == MANIFEST_NAME:
            if self._manifest is not None:
                raise ArchiveError(f"member {name!r} appears twice")
            if size > MAX_MANIFEST_BYTES:
                raise ArchiveError(f"member {name!r} is {size} bytes, larger than any nbmigrate manifest")
            self._manifest, self._in_manifest = bytearray(), True
            return
        match = _BLOB_MEMBER.fullmatch(name)
        if match is None:
            raise ArchiveError(f"member {name!r} has no place in a checkpoint: only {MANIFEST_NAME} and "
                               f"{BLOB_DIR}/<sha256> (64 lowercase hex digits) are accepted")
        sha = match.group(1)
        if sha in self._received:
            raise ArchiveError(f"member {name!r} appears twice")
        self._sha, self._size, self._hasher = sha, size, hashlib.sha256()
        path = self._path(name)
        try:
            existing = self.fs.size(path)
        except FileNotFoundError:
            existing = None
        except Exception as exc:
            raise StoreError(f"cannot write {describe_store_error(exc, f'{self.url}/{name}')}") from exc
        if existing == size:
            return  # content-addressed: same name and size is the same blob (its hash is still checked)
        try:
            if not self._dirs_made:
                self.fs.makedirs(self._path(BLOB_DIR), exist_ok=True)
                self._dirs_made = True
            self._out = self.fs.open(path, "wb")
        except Exception as exc:
            raise StoreError(f"cannot write {describe_store_error(exc, f'{self.url}/{name}')}") from exc

    def _data(self, data: bytes) -> None:
        if self._in_manifest:
            assert self._manifest is not None
            self._manifest += data
            return
        self._hasher.update(data)
        if self._out is not None:
            try:
                self._out.write(data)
            except Exception as exc:
                raise StoreError(f"cannot write {describe_store_error(exc, f'{self.url}/{self._member}')}") from exc

    def _end(self) -> None:
        if self._in_manifest:
            self._in_manifest = False
            return
        sha, out = self._sha, self._out
        assert sha is not None
        digest = self._hasher.hexdigest()
        if digest != sha:
            raise ArchiveError(f"member {self._member!r}: its content does not match its name "
                               f"(SHA-256 {digest[:12]}...)")
        if out is not None:
            try:
                finish_file(out)
            except Exception as exc:
                raise StoreError(f"cannot write {describe_store_error(exc, f'{self.url}/{self._member}')}") from exc
            self._out = None
            self.written += self._size
        else:
            self.skipped += 1
        self._received[sha] = self._size
        self._sha = None

    def abort(self) -> None:
        """Drop a blob being written (a partial blob is harmless, but takes space)."""
        if self._out is not None and self._member is not None:
            abandon_file(self._out)
            self._out = None
            with contextlib.suppress(Exception):
                self.fs.rm(self._path(self._member))

    def finish(self) -> ReceivedCheckpoint:
        """Check the archive was whole, then put its manifest in place (atomically, last)."""
        self._parser.close()
        if self._manifest is None:
            raise ArchiveError(f"the archive has no {MANIFEST_NAME}, so it is not a checkpoint")
        document = bytes(self._manifest)
        files = checkpoint_files(document, where=f"{MANIFEST_NAME} in the archive")
        for entry in files[:-1]:
            sha = entry.sha256 or ""
            size = self._received.get(sha)
            if size is None:  # not in this archive: fine if the destination already has it
                with contextlib.suppress(Exception):
                    size = self.fs.size(self._path(entry.name))
            if size != entry.size:
                raise ArchiveError(f"{MANIFEST_NAME} references blob {sha[:12]} ({entry.size} bytes), which "
                                   "the archive does not contain")
        tmp = self._path(TMP_PREFIX + secrets.token_hex(8))
        f: Any = None
        try:
            self.fs.makedirs(self.root or "/", exist_ok=True)
            f = self.fs.open(tmp, "wb")
            f.write(document)
            finish_file(f)
            f = None
            self.fs.mv(tmp, self._path(MANIFEST_NAME))
        except Exception as exc:
            if f is not None:
                abandon_file(f)
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
            raise StoreError(f"cannot write the manifest to {describe_store_error(exc, self.url)}") from exc
        self.written += len(document)
        return ReceivedCheckpoint(url=self.url, files=len(files), bytes=self.written, skipped=self.skipped)
