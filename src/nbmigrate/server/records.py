"""Hibernation records: which notebook's session sleeps in which checkpoint, kept in the store itself.

A record is ``<store_url>/hibernated/<key>.json``, where ``key`` is the notebook's path relative to the
server's root (URL-quoted into one path segment). It lives in the store, never in the server's memory,
because the server that resumes a session is often not the one that hibernated it: a user's next
server may run on another node, with another root folder, sharing only the store. A kernel that had no
notebook session gets the key ``.kernel-<kernel id>`` (resumable on request only).

Records are small JSON documents, written to a temporary name and then moved into place, so a reader
sees either the previous record or the new one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import quote, unquote

import fsspec

from nbmigrate.errors import StoreError
from nbmigrate.store import describe_store_error

FOLDER = "hibernated"
KERNEL_PREFIX = ".kernel-"


def key_for(path: str | None, kernel_id: str) -> str:
    """The record key of a kernel: its notebook path, or ``.kernel-<id>`` for a kernel without a session."""
    return path if path else f"{KERNEL_PREFIX}{kernel_id}"


@dataclass
class HibernationRecord:
    """One session asleep in the store: what to restore, and what hibernating it achieved."""

    key: str
    path: str | None
    """The notebook's path relative to the server root (None: the kernel had no notebook session)."""
    checkpoint: str
    """The checkpoint's name in the store."""
    url: str
    hibernated_at: str
    """UTC, ISO 8601."""
    reason: str
    """``idle`` (hibernate_after elapsed), ``drain`` (SIGTERM/SIGINT or POST /api/nbmigrate/drain)."""
    kernel_id: str
    kernel_name: str
    bytes: int
    """Bytes the checkpoint stores."""
    memory_freed: int | None
    """Resident memory of the kernel's process tree when it was checkpointed (None: unknown)."""
    checkpoint_seconds: float
    last_error: str | None = None
    """Why the last resume failed (the record and checkpoint are kept for a retry)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HibernationRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class RecordStore:
    """The hibernation records under ``<store_url>/hibernated/`` (blocking: call through a thread)."""

    def __init__(self, store_url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = f"{store_url.rstrip('/')}/{FOLDER}"
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        except Exception as exc:
            raise StoreError(f"cannot open the hibernation records at {self.url}: {exc}") from exc
        self.root = str(root).rstrip("/")

    def _file(self, key: str) -> str:
        return f"{self.root}/{quote(key, safe='')}.json"

    def read(self, key: str) -> HibernationRecord | None:
        """The record of ``key``, or None when there is none."""
        target = self._file(key)
        try:
            self.fs.invalidate_cache(self.root)
            if not self.fs.exists(target):
                return None
            data = json.loads(self.fs.cat_file(target))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(describe_store_error(exc, f"{self.url}/{quote(key, safe='')}.json")) from exc
        return HibernationRecord.from_dict(data)

    def write(self, record: HibernationRecord) -> None:
        target = self._file(record.key)
        temporary = f"{self.root}/.{uuid.uuid4().hex}.tmp"
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(temporary, json.dumps(record.to_dict(), indent=1).encode())
            self.fs.mv(temporary, target)
        except OSError as exc:
            raise StoreError(describe_store_error(exc, self.url)) from exc

    def delete(self, key: str) -> None:
        try:
            self.fs.rm(self._file(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(describe_store_error(exc, self.url)) from exc

    def records(self) -> list[HibernationRecord]:
        """Every record, oldest first; an unreadable one is skipped (it names itself in :meth:`read`)."""
        try:
            self.fs.invalidate_cache(self.root)
            names = [str(n).rsplit("/", 1)[-1] for n in self.fs.ls(self.root, detail=False)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(describe_store_error(exc, self.url)) from exc
        found = []
        for name in names:
            if name.endswith(".json"):
                try:
                    record = self.read(unquote(name[: -len(".json")]))
                except StoreError:
                    continue
                if record is not None:
                    found.append(record)
        return sorted(found, key=lambda r: r.hibernated_at)
