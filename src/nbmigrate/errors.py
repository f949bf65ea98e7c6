"""One exception hierarchy for everything nbmigrate reports to a user.

Every error names what it is about (a variable, a cell, a file, a blob) in its message, because the
person reading it has just lost a kernel or is about to: "checkpoint failed" is useless, "variable
`model` (group 3) could not be pickled: TypeError ..." is actionable.
"""

from __future__ import annotations


class NbmigrateError(Exception):
    """Base class: anything nbmigrate raises on purpose."""


class MonitorError(NbmigrateError):
    """The extension is not loaded or not monitoring the kernel that was asked to checkpoint."""


class PlanError(NbmigrateError):
    """A group of variables can be neither stored nor faithfully recomputed."""


class SerializationError(NbmigrateError):
    """A stored group could not be written or read back."""


class StoreError(NbmigrateError):
    """The checkpoint destination cannot be read or written (missing, full, not a checkpoint)."""


class IntegrityError(StoreError):
    """A checkpoint failed verification: bad signature, checksum mismatch, truncated or tampered blob."""


class ManifestError(StoreError):
    """The manifest is malformed, of an unknown or future format version, or incomplete."""


class EnvironmentMismatchError(NbmigrateError):
    """The restoring kernel lacks packages (or major versions) that the checkpoint needs."""


class ReplayError(NbmigrateError):
    """A cell replayed during restore raised, so the variables it produces are missing."""


class RestoreError(NbmigrateError):
    """Restore could not complete; the message lists what is missing and why."""
