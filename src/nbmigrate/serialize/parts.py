"""Blob parts: the envelope and buffers of a group as stored, zstd-compressed only when it pays."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import zstandard

from ..errors import SerializationError
from .dump import SerializedGroup
from .regions import _address

# Compression policy (see pack_parts).
_SAMPLE_MIN: Final = 64 * 1024
_SAMPLE_SLICE: Final = 64 * 1024
_SAMPLE_RATIO: Final = 0.8
_KEEP_RATIO: Final = 0.9
_SMALL_MIN: Final = 4 * 1024
_THREADED_MIN: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class Part:
    """One piece of a stored group: the pickle envelope or one buffer, possibly compressed."""

    kind: Literal["pickle", "buffer"]
    codec: Literal["none", "zstd"]
    raw_length: int
    """Length of the uncompressed bytes."""
    payload: memoryview
    """The bytes as they are written: zstd frame, or the raw zero-copy view."""


def pack_parts(
    group: SerializedGroup,
    *,
    compress: Literal["auto", "always", "never"] = "auto",
    level: int = 3,
    bandwidth: float | None = None,
) -> list[Part]:
    """The group as parts to write: the pickle envelope first, then each buffer, each maybe zstd'ed.

    ``compress="auto"`` compresses only when it pays. A part of 64 KiB or more is judged on a
    sample (three 64 KiB slices: start, middle, end); it is compressed whole (multithreaded for
    large parts) only if the sample shrinks below 80 %, and kept compressed only if the whole
    shrinks below 90 %. Random floats stay raw; zeros, ramps and small integers get compressed.
    A smaller part is compressed when it exceeds 4 KiB and shrinks. Raw parts are zero-copy views.

    ``bandwidth`` (bytes/s the parts will be written at) adds a time test for large parts: compress
    only if compressing, at the speed timed on the sample, costs less than writing the bytes it
    saves. Floats that shrink to 70 % compress at ~150 MB/s but save 30 % of a write: at 270 MB/s
    that loses (it made a checkpoint of 1.5 GB of price matrices take 15 s instead of 7 s), while
    on a slow link, or for zeros and small integers (fast to compress, shrinking to a few %), it wins.
    """
    if compress not in ("auto", "always", "never"):
        raise ValueError(f"compress must be 'auto', 'always' or 'never', not {compress!r}")
    # Frames carry a content checksum (xxhash, cheap): a decoding bug or a corrupt frame that slipped
    # past the store's SHA-256 fails here instead of producing wrong bytes.
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
    threaded: zstandard.ZstdCompressor | None = None

    def compress_whole(view: memoryview) -> bytes:
        nonlocal threaded
        if view.nbytes < _THREADED_MIN:
            return compressor.compress(view)
        if threaded is None:
            threaded = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True)
        return threaded.compress(view)

    parts: list[Part] = []
    sources: list[tuple[Literal["pickle", "buffer"], memoryview]] = [("pickle", memoryview(group.pickle))]
    sources += [("buffer", b) for b in group.buffers]
    for kind, source in sources:
        view = _byte_view(source)
        n = view.nbytes
        packed: bytes | None = None
        if compress == "always" and n:
            packed = compress_whole(view)
        elif compress == "auto" and n >= _SAMPLE_MIN:
            ratio, seconds_per_byte = _sample(compressor, view)
            if ratio < _SAMPLE_RATIO and (bandwidth is None or seconds_per_byte < (1 - ratio) / bandwidth):
                candidate = compress_whole(view)
                if len(candidate) < _KEEP_RATIO * n:
                    packed = candidate
        elif compress == "auto" and n > _SMALL_MIN:
            candidate = compressor.compress(view)
            if len(candidate) < n:
                packed = candidate
        if packed is None:
            parts.append(Part(kind=kind, codec="none", raw_length=n, payload=view))
        else:
            parts.append(Part(kind=kind, codec="zstd", raw_length=n, payload=memoryview(packed)))
    return parts


def _byte_view(buffer: memoryview | bytes | bytearray) -> memoryview:
    view = memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def _sample(compressor: zstandard.ZstdCompressor, view: memoryview) -> tuple[float, float]:
    """Compression ratio of a sample of ``view``, and seconds per input byte spent compressing it."""
    n = view.nbytes
    if n <= 3 * _SAMPLE_SLICE:
        sample = view.tobytes()
    else:
        middle = n // 2 - _SAMPLE_SLICE // 2
        sample = b"".join((view[:_SAMPLE_SLICE], view[middle : middle + _SAMPLE_SLICE], view[n - _SAMPLE_SLICE :]))
    start = time.perf_counter()
    ratio = len(compressor.compress(sample)) / len(sample)
    return ratio, (time.perf_counter() - start) / len(sample)


def unpack_parts(parts: Sequence[Part], data: memoryview) -> tuple[memoryview, list[memoryview]]:
    """Undo :func:`pack_parts`: ``(pickle envelope, buffers)``, every buffer writable.

    Each part's ``payload`` holds its bytes, normally a slice of ``data`` (the verified blob, which
    the caller provides writable). zstd parts are decompressed into fresh buffers; raw parts are
    returned as zero-copy views (re-sliced from ``data`` if the payload view itself is read-only,
    copied only if it is read-only and not inside ``data``). Lengths are checked against
    ``raw_length``; a mismatch raises :class:`SerializationError`.
    """
    if not parts or parts[0].kind != "pickle" or any(p.kind != "buffer" for p in parts[1:]):
        raise SerializationError("a stored group is one pickle part followed by buffer parts")
    blob = _byte_view(data)
    out: list[memoryview] = []
    for i, part in enumerate(parts):
        payload = _byte_view(part.payload)
        if part.codec == "zstd":
            out.append(_decompress(payload, part.raw_length, i))
        elif part.codec == "none":
            if payload.nbytes != part.raw_length:
                raise SerializationError(
                    f"part {i}: {payload.nbytes} bytes stored raw but raw_length is {part.raw_length}"
                )
            out.append(_writable(payload, blob))
        else:
            raise SerializationError(f"part {i}: unknown codec {part.codec!r}")
    return out[0], out[1:]


def _decompress(payload: memoryview, raw_length: int, index: int) -> memoryview:
    view = np.empty(raw_length, dtype=np.uint8).data  # no zero-fill: decompression overwrites it
    got = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
            while got < raw_length:
                n = reader.readinto(view[got:])
                if not n:
                    break
                got += n
            extra = reader.read(1)
    except zstandard.ZstdError as exc:
        raise SerializationError(f"part {index}: corrupt zstd data: {exc}") from exc
    if got != raw_length or extra:
        raise SerializationError(f"part {index}: decompresses to a different length than {raw_length}")
    return view


def _writable(payload: memoryview, blob: memoryview) -> memoryview:
    if not payload.readonly:
        return payload
    if payload.nbytes and not blob.readonly and blob.nbytes:
        start = _view_address(payload) - _view_address(blob)
        if start >= 0 and start + payload.nbytes <= blob.nbytes:
            return blob[start : start + payload.nbytes]
    return memoryview(bytearray(payload))


def _view_address(view: memoryview) -> int:
    return _address(np.frombuffer(view, dtype=np.uint8))
