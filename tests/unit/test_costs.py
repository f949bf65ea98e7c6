"""Tests of the cost model (what `prefer` optimises) and of bandwidth parsing."""

from __future__ import annotations

import pytest

from nbmigrate.costs import CHECKPOINT_REPLAY_WEIGHT, CostModel, Prefer, parse_bandwidth


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100MB/s", 100e6),
        ("1.5 GB/s", 1.5e9),
        ("50Mbit/s", 50e6 / 8),
        ("10Gbps", 10e9 / 8),
        ("274e6", 274e6),
        ("1GiB/s", 2**30),
        ("512 KiB/s", 512 * 1024),
        ("2 MiB/sec", 2 * 2**20),
        ("100MBps", 100e6),
        ("100 Mbps", 100e6 / 8),
        ("1 Gb/s", 1e9 / 8),
        ("3kB/s", 3e3),
        ("1 TB/s", 1e12),
        ("10 Gbit / s", 10e9 / 8),
        ("8 bytes/s", 8.0),
        ("16 bits/s", 2.0),
        ("4096 B/s", 4096.0),
        ("1e3/s", 1e3),
        ("  42  ", 42.0),
        (".5GB/s", 0.5e9),
        ("1.25e2 MB/s", 125e6),
        ("100MB", 100e6),  # "/s" may be omitted
    ],
)
def test_parse_bandwidth_forms(text: str, expected: float) -> None:
    assert parse_bandwidth(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a number"),
        ("fast", "expected a number"),
        ("MB/s", "expected a number"),
        ("0", "greater than zero"),
        ("0 MB/s", "greater than zero"),
        ("-5MB/s", "greater than zero"),
        ("1e999", "not a finite number"),
        ("100M", "unknown unit 'M'"),
        ("100ps", "unknown unit 'ps'"),
        ("10 furlongs/s", "unknown unit"),
        ("10 XB/s", "unknown unit"),
        ("1.2.3 MB/s", "invalid bandwidth"),
        ("100 MB/h", "unknown unit"),
    ],
)
def test_parse_bandwidth_errors_name_the_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_bandwidth(text)
    assert repr(text) in str(info.value)
    assert "invalid bandwidth" in str(info.value)


def test_unknown_unit_message_lists_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"'100MB/s'.*'10Gbps'.*'274e6'"):
        parse_bandwidth("3 parsecs")


def test_seconds_for_users() -> None:
    costs = CostModel(bandwidth=100e6, read_bandwidth=200e6, serialize_rate=1e9, deserialize_rate=2e9)
    nbytes = 1_000_000_000
    assert costs.checkpoint_seconds(nbytes) == pytest.approx(0.002 + 1.0 + 10.0)
    assert costs.restore_seconds(nbytes) == pytest.approx(0.002 + 5.0 + 0.5)
    assert costs.replay_seconds(3.0) == pytest.approx(3.001)
    assert costs.replay_seconds(-1.0) == pytest.approx(0.001)  # clock glitches never go negative
    assert costs.checkpoint_seconds(0) == pytest.approx(0.002)


def test_read_bandwidth_defaults_to_bandwidth() -> None:
    costs = CostModel(bandwidth=50e6)
    assert costs.effective_read_bandwidth == 50e6
    assert costs.restore_seconds(50_000_000) == pytest.approx(0.002 + 1.0 + 50e6 / 1.5e9)


def test_prefer_balanced_counts_both_sides() -> None:
    costs = CostModel(prefer="balanced")
    nbytes = 123_456_789
    assert costs.store_cost(nbytes) == pytest.approx(
        costs.checkpoint_seconds(nbytes) + costs.restore_seconds(nbytes)
    )
    assert costs.replay_cost(2.0) == pytest.approx(costs.replay_seconds(2.0))


def test_prefer_restore_counts_only_the_restore_side() -> None:
    costs = CostModel(prefer="restore")
    nbytes = 123_456_789
    assert costs.store_cost(nbytes) == pytest.approx(costs.restore_seconds(nbytes))
    assert costs.replay_cost(2.0) == pytest.approx(costs.replay_seconds(2.0))


def test_prefer_checkpoint_makes_replay_a_tie_breaker() -> None:
    costs = CostModel(prefer="checkpoint")
    nbytes = 123_456_789
    assert costs.store_cost(nbytes) == pytest.approx(costs.checkpoint_seconds(nbytes))
    assert costs.replay_cost(2.0) == pytest.approx(CHECKPOINT_REPLAY_WEIGHT * costs.replay_seconds(2.0))
    # Less replay still wins among equal plans ...
    assert 0 < costs.replay_cost(1.0) < costs.replay_cost(2.0)
    # ... but a minute-long replay weighs less than storing even an empty group.
    assert costs.replay_cost(60.0) < costs.store_cost(0)
    # The documented scale: an hour of replay weighs 3.6 ms of checkpoint time.
    assert costs.replay_cost(3600.0 - costs.cell_overhead) == pytest.approx(3.6e-3)


def test_prefer_orders_store_costs() -> None:
    nbytes = 10**9
    prefers: tuple[Prefer, ...] = ("balanced", "restore", "checkpoint")
    balanced, restore, checkpoint = (CostModel(prefer=p).store_cost(nbytes) for p in prefers)
    assert balanced > checkpoint > restore  # with the defaults, writing is slower than reading


def test_overheads_keep_costs_positive() -> None:
    costs = CostModel()
    assert costs.store_cost(0) > 0
    assert costs.replay_cost(0.0) > 0
    free = CostModel(group_overhead=0.0, cell_overhead=0.0)
    assert free.store_cost(0) == 0.0
    assert free.replay_cost(0.0) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bandwidth": 0},
        {"bandwidth": -1.0},
        {"bandwidth": float("inf")},
        {"bandwidth": float("nan")},
        {"read_bandwidth": 0.0},
        {"serialize_rate": 0},
        {"deserialize_rate": -3},
        {"group_overhead": -0.1},
        {"cell_overhead": float("nan")},
        {"prefer": "fastest"},
    ],
)
def test_invalid_cost_models_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="CostModel"):
        CostModel(**kwargs)  # type: ignore[arg-type]


def test_cost_model_is_frozen_and_hashable() -> None:
    costs = CostModel()
    with pytest.raises(AttributeError):
        costs.bandwidth = 1.0  # type: ignore[misc]
    assert hash(costs) == hash(CostModel())
