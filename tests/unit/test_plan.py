"""Tests of the min-cut replication planner: hand-built histories, a brute-force property test, a
networkx cross-check on medium histories, and scale runs (times printed with ``-s``).

The reference ``Oracle`` below is written independently of ``plan.py``, from the model in its module
docstring: a replayed cell needs the writer of every version it read, except versions still live whose
group is feasible (the restorer binds stored names right after their writer, and a recomputed group
has all its writers replayed); deleting a name counts as reading its current version; a cell with
hazards, or needing a pre-monitoring version, cannot be replayed; unstorable groups that cannot be
recomputed are infeasible and provide nothing (iterated to a fixed point). It finds the optimum by
enumerating every store/recompute assignment (tiny histories) or by networkx's float minimum cut.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence

import numpy as np
import pytest

from nbmigrate.costs import CostModel, Prefer
from nbmigrate.history import PREEXISTING, CellExecution, HistoryGraph
from nbmigrate.plan import (
    GroupDecision,
    GroupSpec,
    ReplicationPlan,
    _bit_indices,
    _Closures,
    _fmt_cell_bits,
    _fmt_cells,
    _History,
    _weighted_popcounts,
    make_plan,
)

KB = 1_000
MB = 1_000_000
GB = 1_000_000_000


def ce(
    index: int,
    duration: float = 0.01,
    reads: dict[str, int] | None = None,
    writes: Iterable[str] = (),
    deletes: Iterable[str] = (),
    hazards: Iterable[str] = (),
    raised: bool = False,
) -> CellExecution:
    return CellExecution(
        index=index,
        source=f"# cell {index}",
        duration=duration,
        reads=dict(reads or {}),
        writes=list(writes),
        deletes=list(deletes),
        hazards=list(hazards),
        raised=raised,
    )


def decision(plan: ReplicationPlan, key: int) -> GroupDecision:
    for d in (*plan.decisions, *plan.infeasible):
        if d.key == key:
            return d
    raise AssertionError(f"no decision for group {key}")


# ------------------------------------------------------------------------------------------------
# Hand-built cases


def test_big_cheap_array_is_recomputed_small_slow_result_is_stored() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, 0.2, writes=["big"]),  # big = np.arange(10**9) ... fast
            ce(1, 120.0, reads={"big": 0}, writes=["result"]),  # result = slow_fit(big)
        ],
        live={"big": 0, "result": 1},
    )
    groups = [GroupSpec(1, ("big",), 8 * GB), GroupSpec(2, ("result",), 2 * KB)]
    plan = make_plan(history, groups, CostModel())
    assert plan.recomputed_keys == {1}
    assert plan.stored_keys == {2}
    assert plan.replay == (0,)
    assert plan.solver == "scipy-maxflow"
    big, result = decision(plan, 1), decision(plan, 2)
    assert big.replay_cells == (0,)
    assert big.reason.startswith("recomputed: cheaper")
    assert "cell 0" in big.reason
    assert result.reason.startswith("stored: cheaper")
    assert "cell 1" in result.reason and "2.0 min" in result.reason
    assert result.replay_cells == ()
    costs = CostModel()
    assert plan.est_checkpoint_seconds == pytest.approx(costs.checkpoint_seconds(2 * KB))
    assert plan.est_restore_seconds == pytest.approx(
        costs.restore_seconds(2 * KB) + costs.replay_seconds(0.2)
    )


def test_module_docstring_worked_example() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, 1.0, writes=["df"]),
            ce(1, 0.0, writes=["noise"], hazards=["unseeded randomness: numpy.random.rand"]),
            ce(2, 2.0, reads={"df": 0}, writes=["df"]),
            ce(3, 0.1, reads={"df": 2}, writes=["stats"]),
        ],
        live={"df": 2, "noise": 1, "stats": 3},
    )
    groups = [GroupSpec(0, ("df",), 800 * MB), GroupSpec(1, ("noise",), 72), GroupSpec(2, ("stats",), KB)]
    plan = make_plan(history, groups, CostModel())
    assert decision(plan, 0).store_seconds == pytest.approx(7.18, abs=0.005)
    assert plan.recomputed_keys == {0}
    assert decision(plan, 0).replay_cells == (0, 2)
    assert plan.replay == (0, 2)
    assert decision(plan, 1).reason.startswith("stored: recomputing `noise` needs cell 1")
    assert decision(plan, 2).reason == "stored: cheaper (store ~4 ms vs replaying cell 3 ~0.1 s)"
    assert decision(plan, 0).reason == "recomputed: cheaper (replaying cells [0, 2] ~3.0 s vs store ~7.2 s)"
    # Reasons are worked out on first use, yet compare and print like plain fields.
    again = make_plan(history, groups, CostModel())
    assert again.decisions == plan.decisions
    assert make_plan(history, groups, CostModel(prefer="restore")).decisions != plan.decisions
    assert "reason='stored: cheaper (store ~4 ms" in repr(decision(again, 2))
    assert len({*again.decisions, *plan.decisions}) == 3


def test_reasons_worked_out_later_ignore_cells_recorded_after_planning() -> None:
    """The monitor keeps recording after a plan is made; a reason read later explains the plan made."""
    history = HistoryGraph(
        executions=[
            ce(0, 1.0, writes=["df"]),
            ce(1, 0.0, writes=["noise", "tmp"], hazards=["unseeded randomness: numpy.random.rand"]),
            ce(2, 2.0, reads={"tmp": 1}, writes=["stats"], deletes=["tmp"]),
        ],
        live={"df": 0, "noise": 1, "stats": 2},
    )
    groups = [GroupSpec(0, ("df",), 800 * MB), GroupSpec(1, ("noise",), 72), GroupSpec(2, ("stats",), KB)]
    plan = make_plan(history, groups, CostModel())
    expected = [(d.reason, d.replay_cells) for d in make_plan(history, groups, CostModel()).decisions]
    history.executions.append(ce(3, 0.5, reads={"stats": 2}, writes=["stats", "noise"]))
    history.live.update(stats=3, noise=3)
    groups.append(GroupSpec(3, ("other",), 1))
    assert [(d.reason, d.replay_cells) for d in plan.decisions] == expected
    assert "recomputing `stats` needs cell 2, which needs cell 1" in expected[2][0]


def test_unpicklable_generator_is_recomputed_with_its_whole_lineage() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, 0.01, writes=["n"]),  # n = 10
            ce(1, 0.01, reads={"n": 0}, writes=["squares"]),  # squares = (i*i for i in range(n))
            ce(2, 0.5, writes=["other"]),
            ce(3, 0.01, reads={"squares": 1}, writes=["squares", "first"]),  # first = next(squares)
        ],
        live={"n": 0, "squares": 3, "other": 2, "first": 3},
    )
    why = "cannot pickle `squares`: TypeError: cannot pickle 'generator' object"
    groups = [
        GroupSpec(0, ("n",), 28),
        GroupSpec(1, ("squares",), 0, storable=False, unstorable_reason=why),
        GroupSpec(2, ("other",), 10 * MB),
        GroupSpec(3, ("first",), 28),
    ]
    plan = make_plan(history, groups, CostModel())
    squares = decision(plan, 1)
    assert not squares.stored
    assert squares.replay_cells == (1, 3)  # creation and the later cell that advanced it
    assert squares.reason.startswith("recomputed: cannot be stored (cannot pickle `squares`")
    assert "cells [1, 3]" in squares.reason
    assert {1, 3} <= set(plan.replay)
    # `first` is written by cell 3, which is replayed anyway: recomputing it is free.
    assert 3 in plan.recomputed_keys
    # `n` is read live by cell 1: no need to replay cell 0 unless it pays.
    assert 2 not in plan.replay
    assert not plan.infeasible


def test_nondeterministic_writer_forces_store_with_reason() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, 0.001, writes=["seed_free"]),
            ce(1, 0.001, hazards=["unseeded randomness: numpy.random.rand"], writes=["noise"]),
        ],
        live={"seed_free": 0, "noise": 1},
    )
    groups = [GroupSpec(0, ("seed_free",), 5 * GB), GroupSpec(1, ("noise",), 5 * GB)]
    plan = make_plan(history, groups, CostModel())
    noise = decision(plan, 1)
    assert noise.stored
    assert noise.reason == (
        "stored: recomputing `noise` needs cell 1, which cannot be replayed faithfully "
        "(unseeded randomness: numpy.random.rand)"
    )
    assert 1 not in plan.replay
    assert plan.recomputed_keys == {0}


def test_raised_flag_counts_as_hazard() -> None:
    history = HistoryGraph(
        executions=[ce(0, writes=["x"], raised=True)],
        live={"x": 0},
    )
    plan = make_plan(history, [GroupSpec(0, ("x",), 10 * GB)], CostModel())
    assert plan.stored_keys == {0}
    assert "cell 0, which cannot be replayed faithfully (raised an exception)" in decision(plan, 0).reason
    assert plan.solver == "trivial"


def test_unpicklable_and_nondeterministic_is_infeasible_and_named() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, writes=["keep"]),
            ce(1, hazards=["clock: time.time"], writes=["conn", "cursor"]),
        ],
        live={"keep": 0, "conn": 1, "cursor": 1},
    )
    groups = [
        GroupSpec(0, ("keep",), 100),
        GroupSpec(7, ("conn", "cursor"), 0, storable=False, unstorable_reason="cannot pickle `conn`: socket"),
    ]
    plan = make_plan(history, groups, CostModel())
    assert [d.key for d in plan.infeasible] == [7]
    bad = plan.infeasible[0]
    assert bad.names == ("conn", "cursor")
    assert not bad.stored
    assert "`conn`, `cursor`" in bad.reason
    assert "cannot pickle `conn`: socket" in bad.reason
    assert "cell 1, which cannot be replayed faithfully (clock: time.time)" in bad.reason
    assert [d.key for d in plan.decisions] == [0]
    assert 1 not in plan.replay


def test_infeasibility_propagates_to_readers_of_infeasible_groups() -> None:
    # `conn` can be neither stored nor recomputed, so cell 2 (which uses it) cannot be replayed
    # either, and the unpicklable `rows` it produced becomes infeasible too.
    history = HistoryGraph(
        executions=[
            ce(0, hazards=["network: db.example.com:5432"], writes=["conn"]),
            ce(1, writes=["query"]),
            ce(2, reads={"conn": 0, "query": 1}, writes=["rows"]),
        ],
        live={"conn": 0, "query": 1, "rows": 2},
    )
    groups = [
        GroupSpec(0, ("conn",), 0, storable=False, unstorable_reason="cannot pickle `conn`"),
        GroupSpec(1, ("query",), 50),
        GroupSpec(2, ("rows",), 0, storable=False, unstorable_reason="cannot pickle `rows`"),
    ]
    plan = make_plan(history, groups, CostModel())
    assert sorted(d.key for d in plan.infeasible) == [0, 2]
    rows = decision(plan, 2)
    assert (
        "needs cell 2, which needs cell 0 (for `conn`), which cannot be replayed faithfully "
        "(network: db.example.com:5432)"
    ) in rows.reason
    assert plan.replay == ()


def test_dead_read_pulls_in_the_earlier_cell() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, 0.1, writes=["df"]),  # df = load()
            ce(1, 0.1, reads={"df": 0}, writes=["clean"]),  # clean = df.dropna()
            ce(2, 0.1, reads={"df": 0}, writes=["df"]),  # df = df.head()   (rebinds df)
        ],
        live={"df": 2, "clean": 1},
    )
    groups = [GroupSpec(0, ("df",), 1 * KB), GroupSpec(1, ("clean",), 2 * GB)]
    plan = make_plan(history, groups, CostModel())
    clean = decision(plan, 1)
    assert not clean.stored
    assert clean.replay_cells == (0, 1)  # df@0 is dead: cell 0 must run before cell 1
    assert plan.replay[:2] == (0, 1)
    assert decision(plan, 0).stored  # df itself: 1 KB stored beats replaying cells 0 and 2


def test_preexisting_variable_is_stored() -> None:
    history = HistoryGraph(
        executions=[ce(0, 0.01, reads={"cfg": PREEXISTING}, writes=["x"])],
        live={"cfg": PREEXISTING, "x": 0},
    )
    groups = [GroupSpec(0, ("cfg",), 10 * GB), GroupSpec(1, ("x",), 10 * GB)]
    plan = make_plan(history, groups, CostModel())
    assert decision(plan, 0).stored
    assert decision(plan, 0).reason == "stored: `cfg` existed before monitoring started"
    # x's cell reads cfg live: cfg is injected before cell 0, so x is recomputable.
    assert decision(plan, 1).stored is False
    assert plan.replay == (0,)


def test_preexisting_unpicklable_is_infeasible() -> None:
    history = HistoryGraph(executions=[ce(0, writes=["y"])], live={"lock": PREEXISTING, "y": 0})
    groups = [GroupSpec(0, ("lock",), 0, storable=False, unstorable_reason="cannot pickle `lock`")]
    plan = make_plan(history, groups, CostModel())
    assert plan.decisions == ()
    assert "`lock` existed before monitoring started" in plan.infeasible[0].reason


def test_dead_read_of_preexisting_version_blocks_replay() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, reads={"x": PREEXISTING}, writes=["y"]),
            ce(1, writes=["x"]),
        ],
        live={"x": 1, "y": 0},
    )
    plan = make_plan(history, [GroupSpec(0, ("y",), 10 * GB)], CostModel())
    assert decision(plan, 0).stored
    assert "reads `x` as it was before monitoring started" in decision(plan, 0).reason


def test_delete_counts_as_a_read_of_the_deleted_version() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, 0.01, writes=["tmp"]),
            ce(1, 0.01, writes=["out"], deletes=["tmp"]),  # out = 1; del tmp
        ],
        live={"out": 1},
    )
    plan = make_plan(history, [GroupSpec(0, ("out",), 1 * GB)], CostModel())
    assert decision(plan, 0).replay_cells == (0, 1)


def test_prefer_checkpoint_recomputes_more_and_restore_stores_more() -> None:
    prefers: tuple[Prefer, ...] = ("balanced", "restore", "checkpoint")
    costs = {p: CostModel(bandwidth=100e6, prefer=p) for p in prefers}
    history = HistoryGraph(
        executions=[
            ce(0, 1.5, writes=["medium"]),  # 100 MB from a 1.5 s cell
            ce(1, 1.0, writes=["small"]),  # 1 KB from a 1 s cell
            ce(2, 3 * 3600.0, writes=["trained"]),  # 1 KB from a 3-hour cell
        ],
        live={"medium": 0, "small": 1, "trained": 2},
    )
    groups = [
        GroupSpec(0, ("medium",), 100 * MB),
        GroupSpec(1, ("small",), 1 * KB),
        GroupSpec(2, ("trained",), KB),
    ]
    balanced = make_plan(history, groups, costs["balanced"])
    restore = make_plan(history, groups, costs["restore"])
    checkpoint = make_plan(history, groups, costs["checkpoint"])
    # balanced: 100 MB costs ~2.2 s end to end (write + read), replay 1.5 s -> recompute
    assert balanced.recomputed_keys == {0}
    # restore: only the read side counts (~1.07 s < 1.5 s) -> store
    assert restore.recomputed_keys == set()
    # checkpoint: recomputing adds nothing to the checkpoint ... except that a 3-hour replay
    # (weighted 1e-6: ~11 ms) outweighs 2 ms of checkpoint time for a 1 KB group.
    assert checkpoint.recomputed_keys == {0, 1}
    assert len(checkpoint.replay) > len(balanced.replay) > len(restore.replay)
    assert restore.est_restore_seconds < balanced.est_restore_seconds
    assert checkpoint.est_checkpoint_seconds < balanced.est_checkpoint_seconds
    assert decision(checkpoint, 1).reason.startswith("recomputed: adds nothing to the checkpoint")
    assert "3.0 h" in decision(checkpoint, 2).reason
    assert "loading" in decision(restore, 0).reason


def test_covariable_group_with_two_writers_needs_both() -> None:
    history = HistoryGraph(
        executions=[
            ce(0, 0.05, writes=["df"]),  # df = load()
            ce(1, 0.05, writes=["unrelated"]),
            ce(2, 0.05, reads={"df": 0}, writes=["view"]),  # view = df[df.x > 0]  (shares buffers)
        ],
        live={"df": 0, "unrelated": 1, "view": 2},
    )
    groups = [GroupSpec(0, ("df", "view"), 4 * GB), GroupSpec(1, ("unrelated",), 10)]
    plan = make_plan(history, groups, CostModel())
    both = decision(plan, 0)
    assert not both.stored
    assert both.replay_cells == (0, 2)
    assert plan.replay == (0, 2)
    # Too expensive to replay: stored as one group, reason mentions both cells.
    slow = HistoryGraph(
        executions=[
            ce(0, 600.0, writes=["df"]),
            ce(1, 0.05, writes=["u"]),
            ce(2, 600.0, reads={"df": 0}, writes=["view"]),
        ],
        live={"df": 0, "u": 1, "view": 2},
    )
    plan = make_plan(slow, [GroupSpec(0, ("df", "view"), 1 * MB), GroupSpec(1, ("u",), 10)], CostModel())
    assert decision(plan, 0).stored
    assert "cells [0, 2]" in decision(plan, 0).reason


def test_shared_lineage_makes_joint_recompute_cheaper() -> None:
    # Each of a, b alone is cheaper to store than to replay cell 0 (2 s) + its own cell, but together
    # they share cell 0 and recomputing both wins.
    history = HistoryGraph(
        executions=[
            ce(0, 2.0, writes=["base"]),
            ce(1, 0.0, reads={"base": 0}, writes=["a"]),
            ce(2, 0.0, reads={"base": 0}, writes=["b"]),
            ce(3, 0.0, reads={"base": 0}, writes=["base"], deletes=[]),  # base mutated afterwards
        ],
        live={"a": 1, "b": 2, "base": 3},
    )
    costs = CostModel()
    size = int(1.5 / (costs.store_cost(GB) / GB))  # each store ~1.5 s
    groups = [GroupSpec(0, ("a",), size), GroupSpec(1, ("b",), size), GroupSpec(2, ("base",), 10 * GB)]
    plan = make_plan(history, groups, costs)
    assert plan.recomputed_keys == {0, 1, 2}
    assert plan.replay == (0, 1, 2, 3)
    assert "shared" not in decision(plan, 2).reason
    assert "shared" in decision(plan, 0).reason or "cheaper" in decision(plan, 0).reason


def test_unneeded_cells_are_never_replayed() -> None:
    history = HistoryGraph(
        executions=[ce(0, 5.0, writes=["a"]), ce(1, 0.0, writes=["b"]), ce(2, 0.0, writes=["c"])],
        live={"a": 0, "b": 1},  # c was deleted by a cell outside monitoring? not live either way
    )
    groups = [GroupSpec(0, ("a",), 10), GroupSpec(1, ("b",), 10 * GB)]
    plan = make_plan(history, groups, CostModel())
    assert plan.replay == (1,)


def test_trivial_when_nothing_to_choose() -> None:
    history = HistoryGraph(executions=[ce(0, hazards=["shell command: ls"], writes=["x"])], live={"x": 0})
    plan = make_plan(history, [GroupSpec(0, ("x",), 10)], CostModel())
    assert plan.solver == "trivial"
    assert plan.stored_keys == {0}
    empty = make_plan(HistoryGraph(), [], CostModel())
    assert empty.decisions == () and empty.replay == () and empty.solver == "trivial"


def test_huge_capacities_do_not_overflow() -> None:
    # Store costs spanning 1e-3 s .. 1e7 s: the integer unit must be rescaled, not overflow int32.
    executions = []
    live = {}
    groups = []
    expected_recomputed = set()
    costs = CostModel()
    for i in range(200):
        nbytes = 10 ** (2 + i % 14)  # 100 B .. 10 PB
        duration = 10.0 ** (i % 7 - 2)  # 0.01 s .. 10,000 s
        executions.append(ce(i, duration, writes=[f"v{i}"]))
        live[f"v{i}"] = i
        groups.append(GroupSpec(i, (f"v{i}",), nbytes))
        if costs.replay_cost(duration) < costs.store_cost(nbytes):
            expected_recomputed.add(i)
    plan = make_plan(HistoryGraph(executions=executions, live=live), groups, costs)
    assert plan.recomputed_keys == expected_recomputed


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([GroupSpec(0, ("nope",), 1)], "not a live variable"),
        ([GroupSpec(0, ("x",), 1), GroupSpec(1, ("x",), 1)], "in two groups"),
        ([GroupSpec(0, ("x",), 1), GroupSpec(0, ("y",), 1)], "duplicate group key"),
        ([GroupSpec(0, (), 1)], "no names"),
        ([GroupSpec(0, ("x",), -1)], "nbytes"),
        ([GroupSpec(0, ("z",), 1)], "history.live names CE 5"),
        # The first problem in group order is the one named.
        ([GroupSpec(0, ("x",), -1), GroupSpec(0, ("nope",), 1)], "group 0: nbytes"),
        ([GroupSpec(3, ("y", "nope"), 1), GroupSpec(3, ("x",), -1)], "group 3: `nope` is not a live"),
    ],
)
def test_inconsistent_groups_are_rejected(groups: list[GroupSpec], message: str) -> None:
    history = HistoryGraph(executions=[ce(0, writes=["x", "y"])], live={"x": 0, "y": 0, "z": 5})
    with pytest.raises(ValueError, match=message):
        make_plan(history, groups, CostModel())


def test_read_from_the_future_is_rejected() -> None:
    history = HistoryGraph(executions=[ce(0, reads={"x": 0}, writes=["x"])], live={"x": 0})
    with pytest.raises(ValueError, match="cell 0 reads `x`"):
        make_plan(history, [GroupSpec(0, ("x",), 1)], CostModel())


def test_long_blocking_chain_is_abbreviated() -> None:
    executions = [ce(0, hazards=["clock: time.time", "raised KeyError"], raised=True, writes=["x"])]
    for i in range(1, 8):
        executions.append(ce(i, reads={"x": i - 1}, writes=["x"]))
    history = HistoryGraph(executions=executions, live={"x": 7})
    plan = make_plan(history, [GroupSpec(0, ("x",), 0, storable=False)], CostModel())
    reason = plan.infeasible[0].reason
    assert reason.startswith(
        "`x` can be neither stored (not serializable) nor recomputed: recomputing `x` needs cell 7"
    )
    assert "…" in reason and reason.endswith(
        "cell 0 (for `x`), which cannot be replayed faithfully (clock: time.time; raised KeyError)"
    )


def test_bitset_helpers_match_plain_python() -> None:
    # The reasons' cell lists and seconds come from int bitsets; check the index arithmetic of the
    # vectorised weighing (sparse and dense sets, offsets, chunk boundaries) against plain sums.
    rng = random.Random(5)
    n = 3_000
    weights = [rng.uniform(0, 2) for _ in range(n)]
    bitsets = []
    for _ in range(300):
        lo = rng.randrange(n)
        hi = rng.randrange(lo, n)
        density = rng.choice([0.001, 0.01, 0.3, 1.0])
        cells = [c for c in range(lo, hi + 1) if rng.random() < density] or [lo]
        bitsets.append(sum(1 << c for c in cells))
    bitsets += [1, 1 << (n - 1), (1 << n) - 1]
    got = _weighted_popcounts(bitsets, np.array(weights))
    for bits, value in zip(bitsets, got, strict=True):
        cells = _bit_indices(bits)
        assert cells == [c for c in range(n) if bits >> c & 1]
        assert value == pytest.approx(sum(weights[c] for c in cells))
        assert _fmt_cell_bits(bits) == _fmt_cells(cells)


@pytest.mark.parametrize("prefer", ["balanced", "restore", "checkpoint"])
def test_vectorised_costs_match_the_scalar_methods_bit_for_bit(prefer: Prefer) -> None:
    """The planner weighs with the array methods; the figures it shows must equal the scalar ones."""
    rng = random.Random(7)
    sizes = [0, -5, 1, 2**40, 3 * 10**12, *(int(10 ** rng.uniform(0, 12)) for _ in range(2000))]
    durations = [0.0, -1.0, 1e9, *(rng.lognormvariate(-3, 3) for _ in range(2000))]
    costs = CostModel(prefer=prefer, read_bandwidth=3e7 if prefer == "restore" else None)
    assert costs.store_costs(sizes).tolist() == [costs.store_cost(n) for n in sizes]
    assert costs.checkpoint_seconds_of(sizes).tolist() == [costs.checkpoint_seconds(n) for n in sizes]
    assert costs.restore_seconds_of(sizes).tolist() == [costs.restore_seconds(n) for n in sizes]
    assert costs.replay_costs(durations).tolist() == [costs.replay_cost(d) for d in durations]
    assert costs.replay_seconds_of(durations).tolist() == [costs.replay_seconds(d) for d in durations]


def test_closure_seconds_match_brute_force() -> None:
    # Closure weights take shortcuts along single-dependency chains; compare with plain sums.
    for seed in range(4):
        history, groups = notebook_like(400, seed)
        costs = CostModel()
        oracle = Oracle(history, groups, costs)
        h = _History(history, groups)
        seconds = [costs.replay_seconds(e.duration) for e in history.executions]
        replayable = [c for c in range(len(seconds)) if oracle.replayable(c)]
        closures = _Closures(h, replayable, seconds)
        for c in replayable:
            cells = oracle.closure([c])
            assert _bit_indices(closures.bits[c]) == sorted(cells)
            assert closures.weight[c] == pytest.approx(sum(seconds[d] for d in cells))


# ------------------------------------------------------------------------------------------------
# Brute force


class Oracle:
    """Exhaustive reference planner for tiny histories (independent of plan.py's implementation)."""

    def __init__(self, history: HistoryGraph, groups: Sequence[GroupSpec], costs: CostModel) -> None:
        self.history, self.groups, self.costs = history, groups, costs
        live = history.live
        self.group_of = {name: gi for gi, g in enumerate(groups) for name in g.names}
        self.writers = [{live[name] for name in g.names} for g in groups]
        self.reads: list[dict[str, int]] = []
        current: dict[str, int] = {}
        for c, e in enumerate(history.executions):
            r = dict(e.reads)
            for name in e.deletes:
                r.setdefault(name, current.get(name, PREEXISTING))
            self.reads.append(r)
            for name in e.deletes:
                current.pop(name, None)
            for name in e.writes:
                current[name] = c
        self.infeasible: set[int] = set()
        self.memo: dict[int, bool] = {}
        while True:
            new = {gi for gi, g in enumerate(groups) if not g.storable and not self.recomputable(gi)}
            if new == self.infeasible:
                break
            self.infeasible = new
            self.memo = {}

    def needs(self, c: int) -> set[int] | None:
        """CEs that replaying c requires directly; None if it cannot be replayed at all."""
        e = self.history.executions[c]
        if e.hazards or e.raised:
            return None
        out = set()
        for name, v in self.reads[c].items():
            gi = self.group_of.get(name)
            if gi is not None and gi not in self.infeasible and self.history.live[name] == v:
                continue
            if v == PREEXISTING:
                return None
            out.add(v)
        return out

    def replayable(self, c: int) -> bool:
        if c not in self.memo:
            deps = self.needs(c)
            self.memo[c] = deps is not None and all(self.replayable(d) for d in deps)
        return self.memo[c]

    def recomputable(self, gi: int) -> bool:
        return all(w != PREEXISTING and self.replayable(w) for w in self.writers[gi])

    def closure(self, seeds: Iterable[int]) -> set[int]:
        todo, seen = list(seeds), set()
        while todo:
            c = todo.pop()
            if c not in seen:
                seen.add(c)
                deps = self.needs(c)
                assert deps is not None
                todo.extend(deps)
        return seen

    def cost(self, recomputed: set[int]) -> float | None:
        """Cost of recomputing exactly ``recomputed`` (storing the other feasible groups), or None."""
        total = 0.0
        for gi, g in enumerate(self.groups):
            if gi in self.infeasible:
                continue
            if gi in recomputed:
                if not self.recomputable(gi):
                    return None
            elif not g.storable:
                return None
            else:
                total += self.costs.store_cost(g.nbytes)
        cells = self.closure(w for gi in recomputed for w in self.writers[gi])
        return total + sum(self.costs.replay_cost(self.history.executions[c].duration) for c in cells)

    def min_cut_optimum(self) -> float:
        """The optimum by networkx's (float) minimum cut on a graph built from this oracle's rules."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(["s", "t"])
        constant = 0.0
        for gi, g in enumerate(self.groups):
            if gi in self.infeasible:
                continue
            if not self.recomputable(gi):
                constant += self.costs.store_cost(g.nbytes)
                continue
            if g.storable:
                graph.add_edge("s", ("g", gi), capacity=self.costs.store_cost(g.nbytes))
            else:
                graph.add_edge("s", ("g", gi))  # no capacity attribute: infinite
            for w in self.writers[gi]:
                graph.add_edge(("g", gi), ("c", w))
        for c, e in enumerate(self.history.executions):
            if self.replayable(c):
                graph.add_edge(("c", c), "t", capacity=self.costs.replay_cost(e.duration))
                for d in self.needs(c) or ():
                    graph.add_edge(("c", c), ("c", d))
        value, _ = nx.minimum_cut(graph, "s", "t")
        return float(value) + constant

    def optimum(self) -> float:
        feasible = [gi for gi in range(len(self.groups)) if gi not in self.infeasible]
        best = None
        for k in range(len(feasible) + 1):
            for subset in itertools.combinations(feasible, k):
                value = self.cost(set(subset))
                if value is not None and (best is None or value < best):
                    best = value
        assert best is not None
        return best


NAMES = "abcdefg"


def random_case(rng: random.Random) -> tuple[HistoryGraph, list[GroupSpec], CostModel]:
    n = rng.randint(1, 8)
    current: dict[str, int] = {name: PREEXISTING for name in NAMES if rng.random() < 0.15}
    executions = []
    for c in range(n):
        reads = {name: v for name, v in current.items() if rng.random() < 0.35}
        write_set = set(rng.sample(NAMES, rng.randint(0, 2)))
        if reads and rng.random() < 0.3:  # in-place mutation of something it read
            write_set.add(rng.choice(sorted(reads)))
        writes = sorted(write_set)  # sorted: set order varies with PYTHONHASHSEED
        deletes = [name for name in current if name not in write_set and rng.random() < 0.1]
        hazards = ["unseeded randomness: random.random"] if rng.random() < 0.12 else []
        raised = rng.random() < 0.04
        duration = rng.choice([0.0, 0.001, rng.uniform(0, 0.1), rng.uniform(0, 5)])
        executions.append(
            ce(c, duration, reads=reads, writes=writes, deletes=deletes, hazards=hazards, raised=raised)
        )
        for name in deletes:
            del current[name]
        for name in writes:
            current[name] = c
    live = dict(current)
    names = sorted(live)
    rng.shuffle(names)
    groups: list[GroupSpec] = []
    k = min(len(names), rng.randint(1, 6)) if names else 0
    buckets: list[list[str]] = [[] for _ in range(k)]
    for i, name in enumerate(names):
        buckets[i if i < k else rng.randrange(k)].append(name)
    for key, bucket in enumerate(buckets):
        nbytes = int(10 ** rng.uniform(1, 10)) if rng.random() < 0.9 else 0
        storable = rng.random() < 0.75
        groups.append(GroupSpec(key * 10 + 3, tuple(bucket), nbytes, storable, "" if storable else "nope"))
    prefer = rng.choice(["balanced", "balanced", "restore", "checkpoint"])
    costs = CostModel(
        bandwidth=10 ** rng.uniform(6, 10),
        read_bandwidth=None if rng.random() < 0.5 else 10 ** rng.uniform(6, 10),
        prefer=prefer,  # type: ignore[arg-type]
        group_overhead=rng.choice([0.0, 0.002]),
        cell_overhead=rng.choice([0.0, 0.001]),
    )
    return HistoryGraph(executions=executions, live=live), groups, costs


def check_against_oracle(
    history: HistoryGraph, groups: list[GroupSpec], costs: CostModel, exhaustive: bool = True
) -> None:
    plan = make_plan(history, groups, costs)
    oracle = Oracle(history, groups, costs)
    index_of = {g.key: gi for gi, g in enumerate(groups)}
    assert {d.key for d in plan.infeasible} == {groups[gi].key for gi in oracle.infeasible}
    assert sorted(d.key for d in plan.decisions) == sorted(
        g.key for gi, g in enumerate(groups) if gi not in oracle.infeasible
    )
    recomputed = {index_of[k] for k in plan.recomputed_keys}
    for gi in recomputed:
        assert oracle.recomputable(gi)
    for k in plan.stored_keys:
        assert groups[index_of[k]].storable
    # The replay set: exactly the closure of the recomputed groups' writers, all replayable.
    replay = set(plan.replay)
    assert list(plan.replay) == sorted(replay)
    assert replay == oracle.closure(w for gi in recomputed for w in oracle.writers[gi])
    for c in replay:
        assert oracle.replayable(c)
    for d in plan.decisions:
        if not d.stored:
            assert set(d.replay_cells) == oracle.closure(oracle.writers[index_of[d.key]])
        assert d.reason
    for d in plan.infeasible:
        assert all(f"`{name}`" in d.reason for name in d.names[:3])
    # Optimality, up to the integer rounding of capacities: one unit (sum of store costs / 2**30)
    # per node in each of the two cuts compared.
    value = oracle.cost(recomputed)
    assert value is not None
    best = oracle.optimum() if exhaustive else oracle.min_cut_optimum()
    unit = sum(costs.store_cost(g.nbytes) for g in groups) / 2**30
    assert value <= best + (len(groups) + len(history.executions) + 1) * unit + 1e-12
    # Estimates.
    stored = [groups[index_of[k]] for k in plan.stored_keys]
    assert plan.est_checkpoint_seconds == pytest.approx(
        sum(costs.checkpoint_seconds(g.nbytes) for g in stored)
    )
    assert plan.est_restore_seconds == pytest.approx(
        sum(costs.restore_seconds(g.nbytes) for g in stored)
        + sum(costs.replay_seconds(history.executions[c].duration) for c in plan.replay)
    )


def test_brute_force_random_histories() -> None:
    rng = random.Random(20240611)
    solved = 0
    for _ in range(600):
        history, groups, costs = random_case(rng)
        check_against_oracle(history, groups, costs)
        solved += 1
    assert solved == 600


def test_brute_force_agrees_with_networkx_on_tiny_histories() -> None:
    pytest.importorskip("networkx")
    rng = random.Random(7)
    for _ in range(100):
        history, groups, costs = random_case(rng)
        oracle = Oracle(history, groups, costs)
        assert oracle.min_cut_optimum() == pytest.approx(oracle.optimum(), rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# Scale


def notebook_like(n: int, seed: int = 1) -> tuple[HistoryGraph, list[GroupSpec]]:
    """A long session: each cell reads a few recent variables, creates about one, sometimes mutates
    or rebinds what it read (so earlier versions go dead), now and then deletes or is nondeterministic."""
    rng = random.Random(seed)
    current: dict[str, int] = {}
    recent: list[str] = []
    executions = []
    counter = 0
    for c in range(n):
        pool = recent[-30:]
        reads = {name: current[name] for name in rng.sample(pool, min(len(pool), rng.randint(0, 3)))}
        writes = [f"v{counter}"]
        counter += 1
        if rng.random() < 0.08:
            writes.append(f"v{counter}")
            counter += 1
        if reads and rng.random() < 0.25:
            writes.append(rng.choice(sorted(reads)))
        deletes = [rng.choice(pool)] if pool and rng.random() < 0.03 else []
        deletes = [name for name in deletes if name not in writes]
        hazards = ["unseeded randomness: numpy.random.rand"] if rng.random() < 0.02 else []
        executions.append(
            ce(c, rng.lognormvariate(-3, 2), reads=reads, writes=writes, deletes=deletes, hazards=hazards)
        )
        for name in deletes:
            del current[name]
            recent.remove(name)
        for name in writes:
            if name not in current:
                recent.append(name)
            current[name] = c
    names = sorted(current)
    rng.shuffle(names)
    groups: list[GroupSpec] = []
    i = 0
    while i < len(names):
        size = 2 if rng.random() < 0.05 else 1
        chunk = tuple(names[i : i + size])
        i += size
        storable = rng.random() > 0.03
        groups.append(GroupSpec(len(groups), chunk, int(10 ** rng.uniform(2, 9)), storable))
    return HistoryGraph(executions=executions, live=current), groups


def test_medium_histories_match_networkx_min_cut() -> None:
    pytest.importorskip("networkx")
    rng = random.Random(99)
    for seed in range(12):
        history, groups = notebook_like(rng.randint(40, 250), seed)
        groups = [
            GroupSpec(g.key, g.names, g.nbytes, g.storable, "" if g.storable else "unpicklable")
            for g in groups
        ]
        prefer = ("balanced", "restore", "checkpoint")[seed % 3]
        costs = CostModel(bandwidth=10 ** rng.uniform(7, 9), prefer=prefer)  # type: ignore[arg-type]
        check_against_oracle(history, groups, costs, exhaustive=False)


@pytest.mark.parametrize("n", [10_000])
def test_scale(n: int) -> None:
    history, groups = notebook_like(n)
    plan = make_plan(history, groups, CostModel())  # its time is measured by `python -m bench scalability`
    assert len(plan.decisions) + len(plan.infeasible) == len(groups)


def test_scale_long_chain() -> None:
    # df = step(df); s_i = summary(df), 5,000 times: every summary's closure is the chain up to it
    # (12.5 million (group, cell) pairs), which the plan keeps as bitsets, not tuples.
    n = 5_000
    executions = [ce(0, 0.001, writes=["df"])]
    live = {}
    for c in range(1, n):
        executions.append(ce(c, 0.001, reads={"df": c - 1}, writes=["df", f"s{c}"]))
        live[f"s{c}"] = c
    live["df"] = n - 1
    groups = [GroupSpec(0, ("df",), GB)]
    groups += [GroupSpec(c, (f"s{c}",), 100, storable=c % 50 != 0) for c in range(1, n)]
    history = HistoryGraph(executions=executions, live=live)
    plan = make_plan(history, groups, CostModel())
    last = decision(plan, n - 1)
    assert not last.stored
    assert last.replay_cells == tuple(range(n))
    assert f"({n} cells)" in last.reason
    assert "cells [0, 1, 2, 3, 4, …, 4998, 4999] (5000 cells) ~10 s" in last.reason  # 5,000 x 2 ms


def test_scale_cascade_of_infeasible_groups() -> None:
    # A chain of unpicklable objects, each derived from the previous, rooted in a cell that read the
    # clock: every one is infeasible, found by propagation rather than one pass per level.
    n = 5_000
    executions = [ce(0, writes=["x0"], hazards=["uuid: uuid.uuid4"])]
    executions += [ce(c, reads={f"x{c - 1}": c - 1}, writes=[f"x{c}"]) for c in range(1, n)]
    history = HistoryGraph(executions=executions, live={f"x{c}": c for c in range(n)})
    groups = [GroupSpec(c, (f"x{c}",), 0, storable=False, unstorable_reason="generator") for c in range(n)]
    plan = make_plan(history, groups, CostModel())
    assert len(plan.infeasible) == n
    assert plan.infeasible[-1].reason.endswith(
        "which needs cell 0 (for `x0`), which cannot be replayed faithfully (uuid: uuid.uuid4)"
    )
