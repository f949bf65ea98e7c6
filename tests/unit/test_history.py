"""Unit tests for nbmigrate.history: the application history graph (pure data, no kernel)."""

from __future__ import annotations

import json

from nbmigrate.history import PREEXISTING, CellExecution, FileStamp, HistoryGraph


def _graph(*reads: dict[str, int], live: dict[str, int]) -> HistoryGraph:
    """A graph whose CE ``i`` read ``reads[i]`` (writes do not matter to lineage)."""
    return HistoryGraph(
        executions=[CellExecution(index=i, source=f"cell {i}", reads=dict(r)) for i, r in enumerate(reads)],
        live=dict(live),
    )


def test_docstring_worked_example() -> None:
    """CE 0: xs = [3, 1, 2]; CE 1: xs.sort(); n = len(xs); CE 2: del n."""
    g = HistoryGraph(
        executions=[
            CellExecution(index=0, source="xs = [3, 1, 2]", writes=["xs"]),
            CellExecution(index=1, source="xs.sort(); n = len(xs)", reads={"xs": 0}, writes=["n", "xs"]),
            CellExecution(index=2, source="del n", reads={"n": 1}, deletes=["n"]),
        ],
        live={"xs": 1},
    )
    assert g.writer("xs") == 1
    # To recompute xs one replays CE 0 then CE 1: xs@0 is no longer live, only CE 0 brings it back.
    assert g.lineage({1}) == {0, 1}
    assert g.lineage({0}) == {0}
    # CE 2 read n@1, which is gone: CE 1 (and through it CE 0) must run first.
    assert g.lineage({2}) == {0, 1, 2}


def test_lineage_stops_at_live_versions() -> None:
    # CE 0: a = load(); CE 1: b = f(a); a is still at version 0, so CE 1 needs no replay of CE 0.
    g = _graph({}, {"a": 0}, live={"a": 0, "b": 1})
    assert g.lineage({1}) == {1}


def test_lineage_follows_rebound_versions_transitively() -> None:
    # CE 0: x = 1; CE 1: y = x + 1; CE 2: x = 10 (rebinds); CE 3: z = y * x
    g = _graph({}, {"x": 0}, {}, {"y": 1, "x": 2}, live={"x": 2, "y": 1, "z": 3})
    assert g.lineage({3}) == {3}  # y@1 and x@2 are live
    assert g.lineage({1}) == {0, 1}  # x@0 was rebound by CE 2
    # CE 4 read y@1, later mutated by CE 5: needs CE 1, which needs CE 0.
    g = _graph({}, {"x": 0}, {}, {"y": 1, "x": 2}, {"y": 1}, {"y": 1}, live={"x": 2, "y": 5, "z": 3})
    assert g.lineage({4}) == {0, 1, 4}


def test_lineage_ignores_preexisting_and_unknown_cells() -> None:
    g = _graph({"old": PREEXISTING, "gone": PREEXISTING}, live={"new": 0})
    assert g.lineage({0}) == {0}
    assert g.lineage({5, -1}) == set()
    assert g.lineage(set()) == set()


def test_lineage_of_several_cells_shares_ancestors() -> None:
    # CE 0: a = 1; CE 1: a += 1 (reads a@0); CE 2: b = a (a@1); CE 3: a += 1 (a@1 -> a@3); CE 4: c = a (a@3)
    g = _graph({}, {"a": 0}, {"a": 1}, {"a": 1}, {"a": 3}, live={"a": 3, "b": 2, "c": 4})
    assert g.lineage({2, 4}) == {0, 1, 2, 4}


def _rich_graph() -> HistoryGraph:
    return HistoryGraph(
        executions=[
            CellExecution(
                index=0, source="df = pd.read_csv('sales.csv')", cell_id="c-1", started=1700000000.5,
                duration=0.25, reads={"pd": PREEXISTING}, writes=["df"],
                files_read=[FileStamp("/w/sales.csv", 120, 1700000000000000000, "ab" * 16)],
            ),
            CellExecution(
                index=1, source="df.to_parquet('big.parquet')\n1/0", reads={"df": 0}, raised=True,
                hazards=["raised ZeroDivisionError", "shell command: ls"],
                files_written=[FileStamp("/w/big.parquet", 2**40, 5, None), FileStamp("/w/gone", -1, 0)],
            ),
            CellExecution(index=2, source="del df", deletes=["df"], reads={"df": 0}),
        ],
        live={"pd": PREEXISTING, "x": 1},
    )


def test_to_dict_from_dict_round_trip() -> None:
    g = _rich_graph()
    data = g.to_dict()
    assert data["live"] == {"pd": -1, "x": 1}
    assert data["executions"][0]["files_read"][0] == {
        "path": "/w/sales.csv", "size": 120, "mtime_ns": 1700000000000000000, "xxh3": "ab" * 16,
    }
    back = HistoryGraph.from_dict(data)
    assert back == g
    assert isinstance(back.executions[0].files_read[0], FileStamp)
    assert isinstance(back.executions[1].files_written[1], FileStamp)


def test_round_trip_through_json() -> None:
    g = _rich_graph()
    text = json.dumps(g.to_dict())  # plain JSON: no pickles in metadata
    back = HistoryGraph.from_dict(json.loads(text))
    assert back == g
    assert back.lineage({2}) == g.lineage({2}) == {0, 2}
    assert json.dumps(back.to_dict()) == text


def test_from_dict_coerces_keys_and_versions() -> None:
    data = {"executions": [{"index": 0, "source": "y = x", "reads": {"x": "-1"}, "writes": ["y"]}],
            "live": {"y": "0"}}
    g = HistoryGraph.from_dict(data)
    assert g.executions[0].reads == {"x": -1}
    assert g.executions[0].files_read == [] and g.executions[0].files_written == []
    assert g.live == {"y": 0}


def test_empty_graph_round_trip() -> None:
    g = HistoryGraph()
    assert HistoryGraph.from_dict(json.loads(json.dumps(g.to_dict()))) == g
