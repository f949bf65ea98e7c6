"""Authenticity of checkpoints: an HMAC over the manifest with a per-user secret.

Restoring a checkpoint unpickles its blobs, and unpickling is code execution. Checksums prove that
the blobs are the ones the manifest names; the signature proves that the manifest was written by
someone holding your secret. The scheme follows Jupyter's notebook signing: a random secret created
on first use in the Jupyter data directory, readable by its owner only.

Where the key comes from, first match wins:

1. ``$NBMIGRATE_SECRET``: a string whose UTF-8 bytes are the key. For CI, JupyterHub deployments and
   teams that restore each other's checkpoints: give every party the same value.
2. The secret file, ``$NBMIGRATE_SECRET_FILE`` or ``<jupyter data dir>/nbmigrate_secret``: its
   content (surrounding whitespace stripped) is the key, so
   ``NBMIGRATE_SECRET="$(cat <file>)"`` elsewhere reproduces this machine's key.

An empty variable counts as unset. A secret file that other users can read is refused rather than
silently repaired: someone may already have copied it, so the user should know.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from pathlib import Path

from nbmigrate.errors import StoreError

SCHEME = "hmac-sha256"
_SECRET_ENV = "NBMIGRATE_SECRET"
_SECRET_FILE_ENV = "NBMIGRATE_SECRET_FILE"
_SECRET_FILE_NAME = "nbmigrate_secret"


def secret_path() -> Path:
    """Where this user's secret lives: ``$NBMIGRATE_SECRET_FILE``, else the Jupyter data dir."""
    override = os.environ.get(_SECRET_FILE_ENV)
    if override:
        return Path(override).expanduser()
    # Imported here: jupyter_core is only needed when no override is given.
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / _SECRET_FILE_NAME


def load_key(create: bool = True) -> bytes:
    """The signing key (see the module docstring for where it comes from).

    With ``create``, a missing secret file is created with 32 random bytes (hex) and mode 0600,
    parent folders included. Raises :class:`StoreError` when the file is missing (and ``create`` is
    false), unreadable, empty, or readable by other users.
    """
    from_env = os.environ.get(_SECRET_ENV)
    if from_env:
        return from_env.encode("utf-8")
    path = secret_path()
    try:
        return _read_secret(path)
    except FileNotFoundError:
        if not create:
            raise StoreError(
                f"no nbmigrate secret at {path}: set {_SECRET_ENV}, or run once without "
                "create=False to make one"
            ) from None
    return _create_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"nbmigrate secret {path} is not a regular file")
        if os.name == "posix" and st.st_mode & 0o077:
            raise StoreError(
                f"nbmigrate secret {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):03o}), "
                f"so checkpoints signed with it prove nothing: run `chmod 600 {path}`, or delete it "
                "to make a new one (checkpoints signed with the old one will then need --trust)"
            )
        data = path.read_bytes().strip()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreError(f"cannot read nbmigrate secret {path}: {exc.strerror or exc}") from exc
    if not data:
        raise StoreError(f"nbmigrate secret {path} is empty: delete it and a new one is made on next use")
    return data


def _create_secret(path: Path) -> bytes:
    secret = secrets.token_hex(32).encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: if another process creates the file at the same moment, keep theirs (both
        # processes must end up with the same key), and the mode is 0600 from the first byte.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_racing_secret(path)
    except OSError as exc:
        raise StoreError(f"cannot create nbmigrate secret {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise StoreError(f"cannot write nbmigrate secret {path}: {exc.strerror or exc}") from exc
    return secret


def _read_racing_secret(path: Path) -> bytes:
    """Read a secret another process is creating right now (it may still be empty for a moment)."""
    for _ in range(50):
        try:
            if path.stat().st_size > 0:
                break
        except OSError:
            break  # let _read_secret report it
        time.sleep(0.01)
    try:
        return _read_secret(path)
    except FileNotFoundError:
        raise StoreError(f"nbmigrate secret {path} disappeared while it was being created") from None


def sign(body: bytes, key: bytes) -> str:
    """Signature of ``body``: ``"hmac-sha256:<hex>"``."""
    return f"{SCHEME}:{hmac.new(key, body, hashlib.sha256).hexdigest()}"


def verify(body: bytes, signature: str, key: bytes) -> bool:
    """Whether ``signature`` is ``sign(body, key)``; constant time; an unknown scheme is False."""
    if not isinstance(signature, str) or not signature.startswith(SCHEME + ":"):
        return False
    expected = sign(body, key)
    return hmac.compare_digest(expected.encode("utf-8"), signature.encode("utf-8", "replace"))


def key_id(key: bytes) -> str:
    """Short fingerprint of a key (16 hex digits of its SHA-256), to name keys in messages."""
    return hashlib.sha256(key).hexdigest()[:16]
