"""The checkpoint's table of contents, and a strict reader for it.

A checkpoint is ``manifest.json`` plus content-addressed blobs (``blobs/<sha256>``, one per stored
group of variables). The manifest says what the session was (environment, history graph), how it is
rebuilt (the plan: which groups are stored, which cells are replayed) and where every stored byte is
(blob index with per-part offsets).

Why the reader is strict
------------------------
Restore trusts the manifest to drive file access (blob names become paths), memory allocation
(``raw_length``) and unpickling. A manifest that is damaged, hand-edited, written by a buggy or newer
nbmigrate must produce *a clear error naming the offending field*, never a traceback deep inside
restore and never a read or write outside the checkpoint. So :meth:`Manifest.from_json_bytes`:

* rejects invalid UTF-8, invalid JSON, duplicate object keys, ``NaN``/``Infinity`` and a top level
  that is not an object;
* requires every key, rejects unknown keys, and checks every type -- ``true`` is not an int, ``1`` is
  not a str -- reporting the JSON path: ``groups[3].blob.parts[0].offset: expected int, got str``;
* bounds sizes and offsets to ``[0, 2**48)``; requires blob parts to be ascending, non-overlapping
  and inside their blob; requires ``raw_length == length`` for uncompressed parts;
* accepts a blob digest only as 64 lowercase hex characters, so a blob name can never hold ``/``,
  ``..``, an absolute path or anything else a path could be made of;
* requires variable names to be Python identifiers, group keys and variable names to be unique, and
  every reference to resolve: a variable's group exists and lists it, a stored group has a blob and a
  recomputed one has none, replayed cells and writers exist in the history.

The history (``HistoryGraph.to_dict()``) is checked against the dataclasses of
:mod:`nbmigrate.history` themselves (field names and annotated types), so the schema cannot drift
from the code. The flip side: changing those dataclasses changes the manifest format -- bump
:data:`FORMAT_VERSION` and add a migration to :data:`_MIGRATIONS`.

The writer runs the same checks (:meth:`Manifest.to_json_bytes`), so nbmigrate never writes a
checkpoint that it would refuse to read.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import keyword
import math
import re
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from nbmigrate.errors import ManifestError
from nbmigrate.history import PREEXISTING, HistoryGraph

FORMAT_VERSION = 1
"""Version of the manifest layout this nbmigrate writes and reads natively."""

MAX_SIZE = 2**48
"""Exclusive upper bound of any size or offset (256 TiB): larger values are corruption, not data."""

_MAX_INT = 2**63
"""Exclusive bound on the magnitude of any other integer (indexes, timestamps in ns)."""

_SHA256_RE = re.compile(r"[0-9a-f]{64}")

Migration = Callable[[dict[str, Any]], dict[str, Any]]

_MIGRATIONS: dict[int, Migration] = {}
"""Upgrades of older manifests, keyed by the format they read.

``_MIGRATIONS[n]`` takes the decoded JSON object of a format-``n`` manifest (already known to be a
dict with ``format_version == n``; otherwise unchecked) and returns the equivalent format-``n + 1``
object, with ``format_version`` set to ``n + 1``. :meth:`Manifest.from_dict` chains them up to
:data:`FORMAT_VERSION` and then applies the strict checks to the result, so a migration need not
validate anything itself. Empty: format 1 is the first format. When a change to the dataclasses below
(or to those of :mod:`nbmigrate.history`) alters the JSON, bump :data:`FORMAT_VERSION` and register
the function that rewrites the previous format here.
"""


@functools.cache
def nbmigrate_version() -> str:
    """This nbmigrate's version (``nbmigrate.__version__``, else the installed distribution's)."""
    import nbmigrate  # the package is already imported (this is one of its modules)

    version = getattr(nbmigrate, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version("nbmigrate")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------------------------------
# The manifest's dataclasses. Their annotations *are* the schema: the validator reads them.


@dataclass
class BlobPart:
    """One stream inside a blob: the pickle of a group, or one of its out-of-band buffers.

    ``offset``/``length`` locate the stored bytes inside the blob file; ``raw_length`` is the size
    after decoding ``codec`` (equal to ``length`` when ``codec == "none"``).
    """

    kind: Literal["pickle", "buffer"]
    codec: Literal["none", "zstd"]
    offset: int
    length: int
    raw_length: int


@dataclass
class BlobRef:
    """A stored blob: its file is ``blobs/<sha256>``, where ``sha256`` is the hex digest of the file."""

    sha256: str
    size: int
    parts: list[BlobPart]


@dataclass
class VariableRecord:
    """One live variable: what it is, which group carries it and what it must digest to on restore.

    ``writer`` is the index of the cell execution that wrote its live version (``-1``: it predates
    monitoring). ``digest`` is ``None`` when the value could not be fingerprinted.
    """

    name: str
    type: str
    nbytes: int
    digest: str | None
    group: int
    writer: int
    stored: bool


@dataclass
class GroupRecord:
    """A co-variable group: stored in ``blob``, or (``stored`` false) recomputed by replay.

    ``reason`` says why the planner chose so (for the restore report); ``modules`` are the modules
    its unpickling needs, checked against the restoring environment before anything is loaded.
    """

    key: int
    names: list[str]
    stored: bool
    reason: str
    modules: list[str]
    blob: BlobRef | None


@dataclass
class ModuleBinding:
    """A variable bound to an imported module (``np`` -> ``"numpy"``): re-imported, never pickled."""

    name: str
    module: str


@dataclass
class EnvironmentRecord:
    """Where the checkpoint was taken: interpreter, platform, package versions, paths, cwd."""

    python: str
    platform: str
    machine: str
    packages: dict[str, str]
    sys_path: list[str]
    env: dict[str, str]
    cwd: str


@dataclass
class PlanRecord:
    """The replication plan as executed: cells to replay (in order) and the planner's estimates."""

    replay: list[int]
    prefer: str
    bandwidth: float
    est_checkpoint_seconds: float
    est_restore_seconds: float
    solver: str
    solve_seconds: float


@dataclass
class Manifest:
    """Everything a restore needs to know, except the stored bytes themselves."""

    nbmigrate_version: str
    created: float
    environment: EnvironmentRecord
    history: dict[str, Any]
    """``HistoryGraph.to_dict()``; rebuild with ``HistoryGraph.from_dict(manifest.history)``."""
    groups: list[GroupRecord]
    variables: list[VariableRecord]
    modules: list[ModuleBinding]
    plan: PlanRecord
    format_version: int = FORMAT_VERSION

    def to_json_bytes(self) -> bytes:
        """Canonical UTF-8 JSON (sorted keys, no whitespace): the bytes that are signed.

        Runs the reader's checks first and raises :class:`ManifestError` (with the JSON path) if the
        manifest is one that :meth:`from_json_bytes` would reject.
        """
        obj = asdict(self)
        _parse_manifest(obj)
        try:
            return canonical_json(obj)
        except (TypeError, ValueError) as exc:  # only reachable through history's Any-typed parts
            raise ManifestError(f"manifest cannot be encoded as JSON: {exc}") from exc

    @classmethod
    def from_json_bytes(cls, data: bytes) -> Manifest:
        """Parse and strictly check a manifest; any problem is a :class:`ManifestError`."""
        return cls.from_dict(loads_strict(data, what="manifest"))

    @classmethod
    def from_dict(cls, obj: Any) -> Manifest:
        """Strictly check an already-decoded JSON value (migrating older formats first)."""
        if not isinstance(obj, dict):
            raise ManifestError(f"manifest must be a JSON object, got {_type_name(obj)}")
        version = obj.get("format_version")
        if "format_version" not in obj:
            raise ManifestError("missing key 'format_version'")
        if type(version) is not int:
            raise ManifestError(f"format_version: expected int, got {_type_name(version)}")
        check_format_version(version, obj.get("nbmigrate_version"))
        while version < FORMAT_VERSION:
            migrate = _MIGRATIONS.get(version)
            if migrate is None:
                raise ManifestError(
                    f"format_version {version} is not a manifest format any nbmigrate release wrote "
                    f"(this is nbmigrate {nbmigrate_version()}, format {FORMAT_VERSION})"
                )
            obj = migrate(obj)
            version += 1
        return _parse_manifest(obj)

    def blobs(self) -> list[BlobRef]:
        """The blobs this manifest references, each once (groups may share identical content)."""
        seen: dict[str, BlobRef] = {}
        for group in self.groups:
            if group.blob is not None and group.blob.sha256 not in seen:
                seen[group.blob.sha256] = group.blob
        return list(seen.values())


# --------------------------------------------------------------------------------------------------
# JSON helpers shared with the store (the signed envelope uses the same canonical form).


def canonical_json(obj: Any) -> bytes:
    """The one byte representation of a JSON value that is hashed and signed."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ManifestError(
            f"manifest contains a string that is not valid Unicode (a lone surrogate): {exc}"
        ) from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Two readers could otherwise disagree on which value counts.
            raise ValueError(f"duplicate key {key!r} in a JSON object")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (JSON has no non-finite numbers)")


def loads_strict(data: bytes | bytearray | memoryview, *, what: str) -> Any:
    """Decode UTF-8 JSON, refusing duplicate keys and NaN/Infinity; errors become ManifestError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ManifestError(f"{what} must be bytes, got {_type_name(data)}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{what} is not valid UTF-8: {exc}") from exc
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError as exc:
        raise ManifestError(f"{what} is not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, duplicates, NaN, over-long integer literals
        raise ManifestError(f"{what} is not valid JSON: {exc}") from exc


def check_format_version(version: int, writer_version: Any) -> None:
    """Refuse a checkpoint from a newer nbmigrate with a message that says what to do."""
    if version > FORMAT_VERSION:
        writer = writer_version if isinstance(writer_version, str) else "unknown"
        if len(writer) > 40:
            writer = writer[:40] + "..."
        raise ManifestError(
            f"checkpoint written by nbmigrate {writer} (format {version}); "
            f"this is nbmigrate {nbmigrate_version()} (format {FORMAT_VERSION}): "
            "upgrade nbmigrate to restore it"
        )
    if version < 1:
        raise ManifestError(f"format_version {version} is invalid (formats start at 1)")


# --------------------------------------------------------------------------------------------------
# The validator: walks a decoded JSON value against a type annotation, building dataclasses.


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _where(path: str) -> str:
    return path or "manifest"


def _fail(path: str, message: str) -> ManifestError:
    return ManifestError(f"{_where(path)}: {message}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint))
    if hint is type(None):
        return "None"
    if origin is list:
        return "list"
    if origin is dict or is_dataclass(hint):
        return "dict"
    return str(getattr(hint, "__name__", hint))


def _conform(value: Any, hint: Any, path: str) -> Any:
    """Check ``value`` against ``hint`` and return it in typed form (dataclasses built)."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) != 1:
            raise TypeError(f"unsupported annotation {hint!r}")  # a bug in this module, not the data
        inner = others[0]
        if _shallow_ok(value, inner):
            return _conform(value, inner, path)
        raise _fail(path, f"expected {_describe(hint)}, got {_type_name(value)}")
    if not _shallow_ok(value, hint):
        raise _fail(path, f"expected {_describe(hint)}, got {_type_name(value)}")
    if origin is Literal:
        if value not in get_args(hint):
            raise _fail(path, f"expected {_describe(hint)}, got {value!r}")
        return value
    if hint is int:
        if not -_MAX_INT < value < _MAX_INT:
            raise _fail(path, f"integer {value} is out of range")
        return value
    if hint is float:
        if not math.isfinite(value):
            raise _fail(path, f"expected a finite number, got {value!r}")
        return float(value)
    if hint is str or hint is bool:
        return value
    if origin is list:
        (item,) = get_args(hint)
        return [_conform(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_hint, item = get_args(hint)
        if key_hint is not str:
            raise TypeError(f"unsupported annotation {hint!r}")
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise _fail(path, f"expected str keys, got {_type_name(key)}")
            out[key] = _conform(v, item, f"{path}[{key!r}]")
        return out
    if is_dataclass(hint) and isinstance(hint, type):
        return _conform_dataclass(value, hint, path)
    raise TypeError(f"unsupported annotation {hint!r}")


def _shallow_ok(value: Any, hint: Any) -> bool:
    """Is ``value`` of the right JSON type for ``hint`` (not looking inside containers)?"""
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return type(value) is str  # membership is checked by _conform, to show the bad value
    if hint is bool:
        return type(value) is bool
    if hint is int:
        return type(value) is int  # bool is a subclass of int: ``true`` is not a count
    if hint is float:
        return type(value) in (int, float)
    if hint is str:
        return type(value) is str
    if hint is type(None):
        return value is None
    if origin is list:
        return type(value) is list
    if origin is dict or is_dataclass(hint):
        return type(value) is dict
    return True  # unions are checked by _conform


def _conform_dataclass(value: dict[str, Any], cls: type, path: str) -> Any:
    names = [f.name for f in fields(cls)]
    missing = [n for n in names if n not in value]
    if missing:
        raise _fail(path, f"missing key {missing[0]!r}")
    unknown = sorted(k for k in value if k not in names)
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}")
    hints = _hints(cls)
    prefix = f"{path}." if path else ""
    kwargs = {n: _conform(value[n], hints[n], prefix + n) for n in names}
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------------
# Checks that types alone cannot express.


def _check_size(value: int, path: str) -> None:
    if not 0 <= value < MAX_SIZE:
        raise _fail(path, f"expected a size in [0, 2**48), got {value}")


def _check_identifier(name: str, path: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise _fail(path, f"{name!r} is not a valid Python variable name")


def _check_module_name(name: str, path: str) -> None:
    parts = name.split(".")
    if not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        raise _fail(path, f"{name!r} is not a valid module name")


def check_sha256(sha: Any, path: str = "sha256") -> None:
    """A blob name: exactly 64 lowercase hex digits (so it can never be a path of its own)."""
    if type(sha) is not str or not _SHA256_RE.fullmatch(sha):
        raise _fail(path, f"expected 64 lowercase hex digits, got {sha!r}")


def _check_blob(blob: BlobRef, path: str) -> None:
    check_sha256(blob.sha256, f"{path}.sha256")
    _check_size(blob.size, f"{path}.size")
    end = 0
    for i, part in enumerate(blob.parts):
        where = f"{path}.parts[{i}]"
        _check_size(part.offset, f"{where}.offset")
        _check_size(part.length, f"{where}.length")
        _check_size(part.raw_length, f"{where}.raw_length")
        if part.offset < end:
            raise _fail(where, f"overlaps the previous part or is out of order ({part.offset} < {end})")
        end = part.offset + part.length
        if end > blob.size:
            raise _fail(where, f"ends at byte {end}, past the end of the blob ({blob.size} bytes)")
        if part.codec == "none" and part.raw_length != part.length:
            raise _fail(where, f"uncompressed part has raw_length {part.raw_length} != length {part.length}")


def _check_history(raw: Any, path: str) -> set[int]:
    """Check ``HistoryGraph.to_dict()`` output; return the indexes of its cell executions."""
    graph: HistoryGraph = _conform(raw, HistoryGraph, path)
    indexes: set[int] = set()
    for i, ce in enumerate(graph.executions):
        if ce.index < 0:
            raise _fail(f"{path}.executions[{i}].index", f"expected a non-negative index, got {ce.index}")
        if ce.index in indexes:
            raise _fail(f"{path}.executions[{i}].index", f"duplicate cell execution index {ce.index}")
        indexes.add(ce.index)
    for name, version in graph.live.items():
        if version != PREEXISTING and version not in indexes:
            raise _fail(f"{path}.live[{name!r}]", f"no cell execution with index {version}")
    return indexes


def _parse_manifest(obj: dict[str, Any]) -> Manifest:
    """All checks on a current-format manifest object; returns the typed manifest."""
    hints = _hints(Manifest)
    names = [f.name for f in fields(Manifest)]
    missing = [n for n in names if n not in obj]
    if missing:
        raise _fail("", f"missing key {missing[0]!r}")
    unknown = sorted(k for k in obj if k not in names)
    if unknown:
        raise _fail("", f"unknown key {unknown[0]!r}")
    if obj["format_version"] != FORMAT_VERSION or type(obj["format_version"]) is not int:
        raise _fail("format_version", f"expected {FORMAT_VERSION}, got {obj['format_version']!r}")

    values: dict[str, Any] = {}
    for name in names:
        if name == "history":
            continue
        values[name] = _conform(obj[name], hints[name], name)
    indexes = _check_history(obj["history"], "history")
    manifest = Manifest(history=obj["history"], **values)

    group_names: dict[int, set[str]] = {}
    owner: dict[str, int] = {}
    for i, group in enumerate(manifest.groups):
        where = f"groups[{i}]"
        _check_size(group.key, f"{where}.key")
        if group.key in group_names:
            raise _fail(f"{where}.key", f"duplicate group key {group.key}")
        group_names[group.key] = set(group.names)
        for j, name in enumerate(group.names):
            _check_identifier(name, f"{where}.names[{j}]")
            if name in owner:
                raise _fail(f"{where}.names[{j}]", f"{name!r} is already in group {owner[name]}")
            owner[name] = group.key
        # group.modules stay free-form strings: they come from ``type(obj).__module__``, which a
        # library may set to anything, and they are only looked up (find_spec), never imported.
        if group.stored and group.blob is None:
            raise _fail(f"{where}.blob", "a stored group needs a blob")
        if not group.stored and group.blob is not None:
            raise _fail(f"{where}.blob", "a recomputed group (stored: false) cannot have a blob")
        if group.blob is not None:
            _check_blob(group.blob, f"{where}.blob")

    seen: set[str] = set()
    for i, var in enumerate(manifest.variables):
        where = f"variables[{i}]"
        _check_identifier(var.name, f"{where}.name")
        if var.name in seen:
            raise _fail(f"{where}.name", f"duplicate variable {var.name!r}")
        seen.add(var.name)
        _check_size(var.nbytes, f"{where}.nbytes")
        if var.group not in group_names:
            raise _fail(f"{where}.group", f"{var.name!r} refers to group {var.group}, which does not exist")
        if var.name not in group_names[var.group]:
            raise _fail(f"{where}.group", f"group {var.group} does not list variable {var.name!r}")
        if var.writer != PREEXISTING and var.writer not in indexes:
            raise _fail(f"{where}.writer", f"no cell execution with index {var.writer}")

    for i, binding in enumerate(manifest.modules):
        _check_identifier(binding.name, f"modules[{i}].name")
        _check_module_name(binding.module, f"modules[{i}].module")

    for i, index in enumerate(manifest.plan.replay):
        if index not in indexes:
            raise _fail(f"plan.replay[{i}]", f"no cell execution with index {index}")
    for name in ("bandwidth", "est_checkpoint_seconds", "est_restore_seconds", "solve_seconds"):
        if getattr(manifest.plan, name) < 0:
            raise _fail(f"plan.{name}", f"expected a non-negative number, got {getattr(manifest.plan, name)}")
    return manifest
