"""The manifest reader is strict: every malformed field is a ManifestError naming its JSON path."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from nbmigrate.errors import ManifestError
from nbmigrate.history import CellExecution, FileStamp, HistoryGraph
from nbmigrate.manifest import (
    _MIGRATIONS,
    FORMAT_VERSION,
    BlobPart,
    BlobRef,
    EnvironmentRecord,
    GroupRecord,
    Manifest,
    ModuleBinding,
    PlanRecord,
    VariableRecord,
)

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def make_manifest() -> Manifest:
    history = HistoryGraph(
        executions=[
            CellExecution(index=0, source="import numpy as np\nxs = [3, 1, 2]", writes=["np", "xs"]),
            CellExecution(
                index=1,
                source="xs.sort(); n = len(xs); df = load('d.csv')",
                cell_id="c-2",
                started=1700000000.5,
                duration=0.25,
                reads={"xs": 0},
                writes=["xs", "n", "df"],
                hazards=["read-file"],
                files_read=[FileStamp(path="d.csv", size=10, mtime_ns=1, xxh3="ff")],
            ),
        ],
        live={"np": 0, "xs": 1, "n": 1, "df": 1, "seed": -1},
    )
    return Manifest(
        nbmigrate_version="0.1.0",
        created=1700000001.0,
        environment=EnvironmentRecord(
            python="3.11.7",
            platform="linux",
            machine="x86_64",
            packages={"numpy": "2.4.6"},
            sys_path=["/work"],
            env={"OMP_NUM_THREADS": "1"},
            cwd="/work",
        ),
        history=history.to_dict(),
        groups=[
            GroupRecord(
                key=0,
                names=["xs", "n"],
                stored=True,
                reason="cheaper to store",
                modules=["builtins"],
                blob=BlobRef(
                    sha256=SHA_A,
                    size=300,
                    parts=[
                        BlobPart(kind="pickle", codec="none", offset=0, length=100, raw_length=100),
                        BlobPart(kind="buffer", codec="zstd", offset=100, length=200, raw_length=5000),
                    ],
                ),
            ),
            GroupRecord(
                key=1, names=["df"], stored=False, reason="replay", modules=["pandas.core"], blob=None
            ),
            GroupRecord(
                key=2,
                names=["seed"],
                stored=True,
                reason="preexisting",
                modules=[],
                blob=BlobRef(sha256=SHA_B, size=0, parts=[]),
            ),
        ],
        variables=[
            VariableRecord(name="xs", type="list", nbytes=80, digest="d1", group=0, writer=1, stored=True),
            VariableRecord(name="n", type="int", nbytes=28, digest=None, group=0, writer=1, stored=True),
            VariableRecord(
                name="df", type="DataFrame", nbytes=10, digest="d3", group=1, writer=1, stored=False
            ),
            VariableRecord(name="seed", type="int", nbytes=28, digest="d4", group=2, writer=-1, stored=True),
        ],
        modules=[ModuleBinding(name="np", module="numpy")],
        plan=PlanRecord(
            replay=[0, 1],
            prefer="balanced",
            bandwidth=1e8,
            est_checkpoint_seconds=0.5,
            est_restore_seconds=1.25,
            solver="scipy",
            solve_seconds=0.001,
        ),
    )


def good_obj() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(make_manifest().to_json_bytes())
    return obj


def parse(obj: Any) -> Manifest:
    return Manifest.from_json_bytes(json.dumps(obj).encode())


def test_round_trip() -> None:
    m = make_manifest()
    data = m.to_json_bytes()
    back = Manifest.from_json_bytes(data)
    assert back == m
    assert back.to_json_bytes() == data
    assert isinstance(back.groups[0].blob, BlobRef)
    assert isinstance(back.groups[0].blob.parts[1], BlobPart)
    assert HistoryGraph.from_dict(back.history) == HistoryGraph.from_dict(m.history)


def test_canonical_bytes() -> None:
    m = make_manifest()
    m.environment.env["CAFÉ"] = "naïve"
    data = m.to_json_bytes()
    assert b'": ' not in data and b', "' not in data  # compact separators
    assert "naïve".encode() in data  # ensure_ascii=False: UTF-8, not \\u escapes
    assert (
        data
        == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_blobs_deduplicated_in_group_order() -> None:
    m = make_manifest()
    assert [b.sha256 for b in m.blobs()] == [SHA_A, SHA_B]
    m.groups.append(
        GroupRecord(key=3, names=[], stored=True, reason="", modules=[], blob=BlobRef(SHA_A, 300, []))
    )
    assert [b.sha256 for b in m.blobs()] == [SHA_A, SHA_B]


def test_migrations_registry_exists_and_is_empty() -> None:
    assert _MIGRATIONS == {}
    assert FORMAT_VERSION == 1


Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    """A mutation that sets the value at a dotted/indexed path, e.g. ``groups.0.blob.size``."""

    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[last]

    return mutate


CASES: list[tuple[str, Mutation, str]] = [
    # wrong types, with the JSON path in the message
    (
        "str offset",
        _set("groups.0.blob.parts.0.offset", "0"),
        "groups[0].blob.parts[0].offset: expected int, got str",
    ),
    ("bool as int", _set("groups.0.blob.size", True), "groups[0].blob.size: expected int, got bool"),
    ("bool as int (key)", _set("variables.1.group", False), "variables[1].group: expected int, got bool"),
    ("int as bool", _set("groups.1.stored", 0), "groups[1].stored: expected bool, got int"),
    ("float as int", _set("variables.0.nbytes", 80.0), "variables[0].nbytes: expected int, got float"),
    ("str as float", _set("created", "yesterday"), "created: expected float, got str"),
    ("null str", _set("environment.python", None), "environment.python: expected str, got None"),
    ("optional wrong", _set("variables.0.digest", 5), "variables[0].digest: expected str or None, got int"),
    (
        "dict value",
        _set("environment.packages.numpy", 2),
        "environment.packages['numpy']: expected str, got int",
    ),
    ("list item", _set("plan.replay.0", "0"), "plan.replay[0]: expected int, got str"),
    (
        "literal",
        _set("groups.0.blob.parts.1.codec", "gzip"),
        "groups[0].blob.parts[1].codec: expected one of",
    ),
    ("literal type", _set("groups.0.blob.parts.0.kind", 1), "groups[0].blob.parts[0].kind: expected one of"),
    ("blob not dict", _set("groups.0.blob", [1]), "groups[0].blob: expected dict or None, got list"),
    ("groups not list", _set("groups", {}), "groups: expected list, got dict"),
    ("nan", _set("plan.bandwidth", "NaN"), "plan.bandwidth: expected float, got str"),
    # missing and unknown keys
    ("missing top", _delete("plan"), "missing key 'plan'"),
    (
        "missing nested",
        _delete("groups.0.blob.parts.0.raw_length"),
        "groups[0].blob.parts[0]: missing key 'raw_length'",
    ),
    ("unknown top", _set("extra", 1), "unknown key 'extra'"),
    ("unknown nested", _set("modules.0.alias", "x"), "modules[0]: unknown key 'alias'"),
    # sizes and parts
    ("negative size", _set("groups.0.blob.size", -1), "groups[0].blob.size: expected a size in [0, 2**48)"),
    ("absurd size", _set("groups.0.blob.size", 2**48), "groups[0].blob.size: expected a size in [0, 2**48)"),
    ("negative offset", _set("groups.0.blob.parts.0.offset", -5), "parts[0].offset: expected a size"),
    ("absurd nbytes", _set("variables.0.nbytes", 2**60), "variables[0].nbytes: expected a size"),
    ("huge int", _set("history.executions.0.index", 2**70), "history.executions[0].index: integer"),
    ("overlap", _set("groups.0.blob.parts.1.offset", 50), "groups[0].blob.parts[1]: overlaps"),
    ("past end", _set("groups.0.blob.parts.1.length", 201), "groups[0].blob.parts[1]: ends at byte 301"),
    ("raw length", _set("groups.0.blob.parts.0.raw_length", 99), "groups[0].blob.parts[0]: uncompressed"),
    # blob names can never be paths
    (
        "sha slash",
        _set("groups.0.blob.sha256", "a" * 31 + "/" + "a" * 32),
        "groups[0].blob.sha256: expected 64",
    ),
    ("sha dotdot", _set("groups.0.blob.sha256", "../" * 21 + "a"), "groups[0].blob.sha256: expected 64"),
    ("sha absolute", _set("groups.0.blob.sha256", "/etc/passwd"), "groups[0].blob.sha256: expected 64"),
    ("sha uppercase", _set("groups.0.blob.sha256", "A" * 64), "groups[0].blob.sha256: expected 64"),
    ("sha short", _set("groups.0.blob.sha256", "a" * 63), "groups[0].blob.sha256: expected 64"),
    ("sha long", _set("groups.0.blob.sha256", "a" * 65), "groups[0].blob.sha256: expected 64"),
    ("sha newline", _set("groups.0.blob.sha256", "a" * 64 + "\n"), "groups[0].blob.sha256: expected 64"),
    # names and references
    ("bad variable name", _set("variables.0.name", "x-y"), "variables[0].name: 'x-y' is not a valid Python"),
    ("keyword name", _set("variables.0.name", "class"), "variables[0].name: 'class' is not a valid Python"),
    ("bad group name", _set("groups.1.names.0", "a b"), "groups[1].names[0]: 'a b' is not a valid Python"),
    (
        "bad module",
        _set("modules.0.module", "../numpy"),
        "modules[0].module: '../numpy' is not a valid module",
    ),
    ("dangling group", _set("variables.2.group", 7), "variables[2].group: 'df' refers to group 7"),
    ("not in group", _set("variables.2.group", 0), "variables[2].group: group 0 does not list variable 'df'"),
    ("duplicate key", _set("groups.1.key", 0), "groups[1].key: duplicate group key 0"),
    ("duplicate variable", _set("variables.1.name", "xs"), "variables[1].name: duplicate variable 'xs'"),
    ("stored without blob", _set("groups.0.blob", None), "groups[0].blob: a stored group needs a blob"),
    ("recomputed with blob", _set("groups.2.stored", False), "groups[2].blob: a recomputed group"),
    ("replay unknown cell", _set("plan.replay.1", 9), "plan.replay[1]: no cell execution with index 9"),
    ("writer unknown cell", _set("variables.0.writer", 5), "variables[0].writer: no cell execution"),
    (
        "negative estimate",
        _set("plan.est_restore_seconds", -1.0),
        "plan.est_restore_seconds: expected a non-neg",
    ),
    # the history is checked against history.py's dataclasses
    ("history not dict", _set("history", []), "history: expected dict, got list"),
    ("history missing", _delete("history.live"), "history: missing key 'live'"),
    (
        "ce wrong type",
        _set("history.executions.1.raised", "no"),
        "history.executions[1].raised: expected bool",
    ),
    (
        "ce unknown key",
        _set("history.executions.0.color", "red"),
        "history.executions[0]: unknown key 'color'",
    ),
    ("ce missing key", _delete("history.executions.0.source"), "history.executions[0]: missing key 'source'"),
    (
        "ce reads",
        _set("history.executions.1.reads", {"xs": "0"}),
        "history.executions[1].reads['xs']: expected int",
    ),
    (
        "ce file",
        _set("history.executions.1.files_read.0.size", None),
        "files_read[0].size: expected int, got None",
    ),
    ("ce duplicate", _set("history.executions.1.index", 0), "history.executions[1].index: duplicate"),
    ("live wrong", _set("history.live.xs", 1.5), "history.live['xs']: expected int, got float"),
    ("live dangling", _set("history.live.xs", 4), "history.live['xs']: no cell execution with index 4"),
    # versions
    ("version str", _set("format_version", "1"), "format_version: expected int, got str"),
    ("version bool", _set("format_version", True), "format_version: expected int, got bool"),
    ("version zero", _set("format_version", 0), "format_version 0 is invalid"),
    ("missing version", _delete("format_version"), "missing key 'format_version'"),
]


@pytest.mark.parametrize(("mutate", "message"), [(m, msg) for _, m, msg in CASES], ids=[c[0] for c in CASES])
def test_strict_rule(mutate: Mutation, message: str) -> None:
    obj = good_obj()
    mutate(obj)
    with pytest.raises(ManifestError) as info:
        parse(obj)
    assert message in str(info.value)


def test_future_version_says_upgrade() -> None:
    obj = good_obj()
    obj["format_version"] = FORMAT_VERSION + 1
    obj["nbmigrate_version"] = "9.9.9"
    obj["a_field_from_the_future"] = {}
    with pytest.raises(ManifestError) as info:
        parse(obj)
    message = str(info.value)
    assert message.startswith(
        f"checkpoint written by nbmigrate 9.9.9 (format {FORMAT_VERSION + 1}); this is nbmigrate "
    )
    assert f"(format {FORMAT_VERSION}): upgrade nbmigrate to restore it" in message


def test_nan_and_infinity_rejected() -> None:
    data = make_manifest().to_json_bytes().replace(b'"bandwidth":100000000.0', b'"bandwidth":NaN')
    assert b"NaN" in data
    with pytest.raises(ManifestError, match="not valid JSON: NaN is not allowed"):
        Manifest.from_json_bytes(data)
    data = data.replace(b"NaN", b"Infinity")
    with pytest.raises(ManifestError, match="Infinity is not allowed"):
        Manifest.from_json_bytes(data)


def test_writer_refuses_what_the_reader_would() -> None:
    m = make_manifest()
    m.variables[0].name = "not a name"
    with pytest.raises(ManifestError, match=r"variables\[0\].name"):
        m.to_json_bytes()
    m = make_manifest()
    m.plan.bandwidth = float("inf")
    with pytest.raises(ManifestError, match=r"plan\.bandwidth: expected a finite number"):
        m.to_json_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "manifest is not valid JSON"),
        (b"", "manifest is not valid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b"\xff\xfe{}", "manifest is not valid UTF-8"),
        (b'{"format_version": 1, "x": "\xc3\x28"}', "manifest is not valid UTF-8"),
        (b"[1, 2]", "manifest must be a JSON object, got list"),
        (b'"manifest"', "manifest must be a JSON object, got str"),
        (b"null", "manifest must be a JSON object, got None"),
        (b"[" * 100000 + b"]" * 100000, "manifest is not valid JSON"),
        (b'{"format_version": 1' + b"1" * 5000 + b"}", "manifest is not valid JSON"),
    ],
    ids=[
        "garbage",
        "empty",
        "duplicate",
        "utf16-bom",
        "bad-utf8",
        "list",
        "string",
        "null",
        "deep",
        "bigint",
    ],
)
def test_not_a_manifest(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.from_json_bytes(data)
    assert message in str(info.value)


def test_errors_are_manifest_errors_not_tracebacks() -> None:
    """Any one field of a valid manifest set to an odd value: valid, or a ManifestError; never a crash."""
    base = good_obj()
    odd_values: list[Any] = [None, True, -1, 2**48, 1.5, "", "../x", [], {}, [None], {"k": None}]

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [prefix] if prefix else []
        if isinstance(node, dict):
            for k, v in node.items():
                out += paths(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, (*prefix, i))
        return out

    for path in paths(base):
        for value in odd_values:
            obj = json.loads(json.dumps(base))
            node = obj
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = value
            with contextlib.suppress(ManifestError):
                parse(obj)
