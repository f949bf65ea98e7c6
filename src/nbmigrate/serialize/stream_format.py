"""What a stored group's bytes are made of: pickle protocol, envelope magic and trailer, size limits."""

from __future__ import annotations

import struct
from typing import Final

_PROTOCOL: Final = 5
_FORMAT_VERSION: Final = 1
_MAGIC: Final = b"NBG1"
_TRAILER: Final = struct.Struct("<Q4s")

INLINE_LIMIT: Final = 64 * 1024
"""Buffers (and memory regions) smaller than this are written inside the pickle stream."""

_ALIGN: Final = 64
"""Stored region spans start and end on this alignment (within their owner), so that a store that
aligns buffer parts keeps restored arrays as aligned as the originals."""


_PLAIN_KINDS: Final = frozenset("biufcmMSUV")
"""numpy dtype kinds whose items are plain bytes (no object pointers, no string arenas)."""

_MAIN_MODULES: Final = frozenset({"__main__", "__mp_main__"})
