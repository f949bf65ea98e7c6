"""What storing a variable group or replaying a cell costs, in seconds, for the planner to weigh.

The planner (``plan.py``) chooses, for every co-variable group, between *storing* it (serialise and
write it at checkpoint time, read and deserialise it at restore time) and *recomputing* it (replay the
cells that produced it at restore time). Both sides must be expressed in one currency, and which
seconds count depends on what the user is optimising for, hence ``CostModel.prefer``:

``"balanced"`` (default)
    End-to-end migration time: checkpoint on the old kernel, then restore on the new one. A stored
    group costs serialise + write + read + deserialise (+ a fixed per-blob overhead on each side); a
    recomputed group costs the replay time of its cells. This is what ``migrate`` experiences.

``"restore"``
    Restore time only, for checkpoints taken ahead of time (hibernation, periodic snapshots) where the
    checkpoint runs while nobody waits but the resume is on the user's critical path. A stored group
    costs read + deserialise; a replayed cell still costs its full duration.

``"checkpoint"``
    Checkpoint time only, for eviction with a short grace period (SIGTERM on a spot instance): what
    matters is getting out before the process is killed. Recomputing costs no checkpoint time at all,
    so replay is weighted by a tiny factor (:data:`CHECKPOINT_REPLAY_WEIGHT`) that only serves as a
    tie-breaker: among plans with (nearly) equal checkpoint time, the one that replays less wins. The
    factor is small enough that a 1-hour cell weighs 3.6 ms of checkpoint time: a tiny result of a very
    long cell is still stored, anything else is recomputed.

The per-group and per-cell overheads make "many tiny things" cost something: every stored group is
one blob plus a manifest entry (open, write, fsync/PUT on each side), and every replayed cell pays
``run_cell`` bookkeeping even when its body is instant. They also guarantee strictly positive costs, so
the planner never replays a cell that no recomputed group needs.

Bandwidths and rates are in bytes per second; :func:`parse_bandwidth` turns user text such as
``"100MB/s"`` or ``"10Gbps"`` into that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

Prefer = Literal["balanced", "restore", "checkpoint"]
"""What the planner minimises; see the module docstring."""

CHECKPOINT_REPLAY_WEIGHT = 1e-6
"""Weight of one second of replay when ``prefer == "checkpoint"``: a tie-breaker, not a real cost."""

_PREFER_VALUES: tuple[str, ...] = get_args(Prefer)


@dataclass(frozen=True)
class CostModel:
    """Throughputs and overheads of the checkpoint store and of replay, plus what to optimise.

    The defaults describe a local SSD-ish store (``bandwidth`` 274 MB/s) and pickle protocol 5 with
    out-of-band buffers (large arrays are copied, not encoded, so (de)serialisation runs at memory
    speed). Measure and pass real numbers where known: ``bandwidth`` is the one that matters most for
    a remote store.
    """

    bandwidth: float = 274e6
    """Bytes/s written to the store (and read back, unless ``read_bandwidth`` is given)."""
    read_bandwidth: float | None = None
    """Bytes/s read from the store at restore time; ``None`` means the same as ``bandwidth``."""
    serialize_rate: float = 1.0e9
    """Bytes/s of pickling plus hashing."""
    deserialize_rate: float = 1.5e9
    """Bytes/s of unpickling."""
    prefer: Prefer = "balanced"
    group_overhead: float = 0.002
    """Seconds per stored group on each side (one blob plus one manifest entry)."""
    cell_overhead: float = 0.001
    """Seconds per replayed cell beyond its measured duration (``run_cell`` bookkeeping)."""

    def __post_init__(self) -> None:
        for name in ("bandwidth", "serialize_rate", "deserialize_rate"):
            _check_positive(name, getattr(self, name))
        if self.read_bandwidth is not None:
            _check_positive("read_bandwidth", self.read_bandwidth)
        for name in ("group_overhead", "cell_overhead"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"CostModel.{name} must be a finite number >= 0, got {value!r}")
        if self.prefer not in _PREFER_VALUES:
            raise ValueError(
                f"CostModel.prefer must be one of {', '.join(map(repr, _PREFER_VALUES))}, got {self.prefer!r}"
            )

    @property
    def effective_read_bandwidth(self) -> float:
        """Bytes/s at restore time (``read_bandwidth``, falling back to ``bandwidth``)."""
        return self.bandwidth if self.read_bandwidth is None else self.read_bandwidth

    # -- real seconds, for estimates shown to users ------------------------------------------------

    def checkpoint_seconds(self, nbytes: int) -> float:
        """Seconds storing ``nbytes`` adds to the checkpoint: overhead + serialise + write."""
        n = max(nbytes, 0)
        return self.group_overhead + n / self.serialize_rate + n / self.bandwidth

    def restore_seconds(self, nbytes: int) -> float:
        """Seconds loading ``nbytes`` adds to the restore: overhead + read + deserialise."""
        n = max(nbytes, 0)
        return self.group_overhead + n / self.effective_read_bandwidth + n / self.deserialize_rate

    def replay_seconds(self, duration: float) -> float:
        """Seconds replaying a cell that originally ran ``duration`` seconds adds to the restore."""
        return max(duration, 0.0) + self.cell_overhead

    # -- weights of the objective that ``prefer`` selects ------------------------------------------

    def store_cost(self, nbytes: int) -> float:
        """Seconds storing a group of ``nbytes`` adds to what ``prefer`` minimises.

        Includes ``group_overhead`` (once per side that counts), so the planner uses it as is.
        ``balanced`` counts both sides because a migration pays both; ``restore`` only the read side,
        because the write happened earlier, off the critical path; ``checkpoint`` only the write side.
        """
        if self.prefer == "restore":
            return self.restore_seconds(nbytes)
        if self.prefer == "checkpoint":
            return self.checkpoint_seconds(nbytes)
        return self.checkpoint_seconds(nbytes) + self.restore_seconds(nbytes)

    def replay_cost(self, duration: float) -> float:
        """Seconds replaying a cell of ``duration`` adds to what ``prefer`` minimises.

        Includes ``cell_overhead``. Replay happens at restore, so it counts fully for ``balanced`` and
        ``restore``; for ``checkpoint`` it costs no checkpoint time and is only weighted by
        :data:`CHECKPOINT_REPLAY_WEIGHT`, so that less replay wins among otherwise equal plans.
        """
        seconds = self.replay_seconds(duration)
        if self.prefer == "checkpoint":
            return CHECKPOINT_REPLAY_WEIGHT * seconds
        return seconds


    # -- the same, for many groups or cells at once ------------------------------------------------

    def store_costs(self, nbytes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """:meth:`store_cost` of every size, bit for bit.

        The planner weighs thousands of groups per checkpoint; one Python call per group was a tenth
        of its time. The arithmetic is the scalar methods', operation for operation and in the same
        order (IEEE float64 either way), so plans and the figures shown to users do not change.
        """
        if self.prefer == "restore":
            return self.restore_seconds_of(nbytes)
        if self.prefer == "checkpoint":
            return self.checkpoint_seconds_of(nbytes)
        return self.checkpoint_seconds_of(nbytes) + self.restore_seconds_of(nbytes)

    def checkpoint_seconds_of(self, nbytes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """:meth:`checkpoint_seconds` of every size, bit for bit (see :meth:`store_costs`)."""
        n = np.maximum(np.asarray(nbytes, dtype=np.float64), 0.0)
        return self.group_overhead + n / self.serialize_rate + n / self.bandwidth

    def restore_seconds_of(self, nbytes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """:meth:`restore_seconds` of every size, bit for bit (see :meth:`store_costs`)."""
        n = np.maximum(np.asarray(nbytes, dtype=np.float64), 0.0)
        return self.group_overhead + n / self.effective_read_bandwidth + n / self.deserialize_rate

    def replay_seconds_of(self, durations: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """:meth:`replay_seconds` of every duration, bit for bit (see :meth:`store_costs`)."""
        return np.maximum(np.asarray(durations, dtype=np.float64), 0.0) + self.cell_overhead

    def replay_costs(self, durations: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """:meth:`replay_cost` of every duration, bit for bit (see :meth:`store_costs`)."""
        seconds = self.replay_seconds_of(durations)
        if self.prefer == "checkpoint":
            return CHECKPOINT_REPLAY_WEIGHT * seconds
        return seconds


def _check_positive(name: str, value: object) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"CostModel.{name} must be a finite number > 0 (bytes/s), got {value!r}")


# ------------------------------------------------------------------------------------------------
# parse_bandwidth

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_BANDWIDTH_RE = re.compile(rf"^\s*(?P<num>[+-]?{_NUMBER})\s*(?P<unit>[A-Za-z/ ]*?)\s*$")
_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}
_BINARY_PREFIXES = {"ki": 2.0**10, "mi": 2.0**20, "gi": 2.0**30, "ti": 2.0**40, "pi": 2.0**50}
_EXAMPLES = "'100MB/s', '1.5 GB/s', '50Mbit/s', '10Gbps', '1GiB/s' or plain bytes/s such as '274e6'"


def parse_bandwidth(text: str) -> float:
    """Parse a user-given bandwidth into bytes per second.

    Accepted: a positive number, optionally followed by a unit. Units follow the usual convention:
    ``B``/``byte`` is a byte and ``b``/``bit`` a bit (``bps`` = bits per second); ``k M G T P`` are
    decimal (10**3 ...), ``Ki Mi Gi Ti Pi`` binary (2**10 ...); the rate suffix may be ``/s``,
    ``/sec`` or ``ps`` and may be omitted. A bare number is bytes per second. Examples:
    ``"100MB/s"`` = 1e8, ``"50Mbit/s"`` = 6.25e6, ``"10Gbps"`` = 1.25e9, ``"1GiB/s"`` = 2**30.

    Raises ValueError naming the text and the accepted forms, so a CLI can show it as is.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid bandwidth {text!r}: expected a string such as {_EXAMPLES}")
    match = _BANDWIDTH_RE.match(text)
    if match is None:
        raise ValueError(f"invalid bandwidth {text!r}: expected a number with a unit such as {_EXAMPLES}")
    value = float(match["num"])
    if not math.isfinite(value):
        raise ValueError(f"invalid bandwidth {text!r}: not a finite number")
    if value <= 0:
        raise ValueError(f"invalid bandwidth {text!r}: must be greater than zero")
    factor = _unit_factor(match["unit"].replace(" ", ""))
    if factor is None:
        raise ValueError(
            f"invalid bandwidth {text!r}: unknown unit {match['unit'].strip()!r}; expected e.g. {_EXAMPLES}"
        )
    result = value * factor
    if not math.isfinite(result):
        raise ValueError(f"invalid bandwidth {text!r}: too large")
    return result


def _unit_factor(unit: str) -> float | None:
    """Bytes/s per one ``unit`` (already stripped of spaces), or None if not a bandwidth unit."""
    core = unit
    lowered = core.lower()
    for suffix in ("/sec", "/s"):
        if lowered.endswith(suffix):
            core = core[: -len(suffix)]
            break
    else:
        # "ps" as in Mbps / MBps; it needs a unit before it ("ps" alone is not a unit).
        if lowered.endswith("ps") and len(core) > 2:
            core = core[:-2]
    if core == "":
        return 1.0 if unit == "" or unit.lower() in ("/s", "/sec") else None
    # The base unit: bits or bytes. Single letters are case-sensitive (b = bit, B = byte).
    lowered = core.lower()
    per_unit: float
    for word, size in (("bytes", 1.0), ("byte", 1.0), ("bits", 0.125), ("bit", 0.125)):
        if lowered.endswith(word):
            per_unit = size
            prefix = lowered[: -len(word)]
            break
    else:
        if core.endswith("B"):
            per_unit = 1.0
        elif core.endswith("b"):
            per_unit = 0.125
        else:
            return None
        prefix = lowered[:-1]
    if prefix in _PREFIXES:
        return per_unit * _PREFIXES[prefix]
    if prefix in _BINARY_PREFIXES:
        return per_unit * _BINARY_PREFIXES[prefix]
    return None
