"""Replication planner: which co-variable groups to store and which cells to replay (pure).

Given the application history graph (:class:`~nbmigrate.history.HistoryGraph`), the co-variable
groups of the live namespace (:class:`GroupSpec`) and a :class:`~nbmigrate.costs.CostModel`, choose
for every group whether to *store* it in the checkpoint or *recompute* it by replaying cells at
restore, minimising the total cost, and explain every decision in words a user can act on.

No IPython, no I/O: data in, :class:`ReplicationPlan` out.

Restore contract
================

The plan assumes what ``restore.py`` does (the cost model and the correctness argument rely on it):

1. Walk the CEs in their original order and replay every CE of ``plan.replay``.
2. Bind each name of a stored group right after the CE that wrote its live version (``PREEXISTING``:
   before CE 0). A group is unpickled once, so aliasing between its names survives per-name binding;
   at the end every stored name is bound again, in case a replayed cell rebound it on the way.
3. After the last CE, delete names that replayed cells created but that are not live at checkpoint
   time (temporaries that a non-replayed cell had deleted).

Model
=====

Reads. A CE records which version ``(name, v)`` of each name it read (``v`` = index of the writing
CE). At restore, a replayed CE ``c`` must see exactly that version.

* *Free read*: ``v`` is still live (``history.live[name] == v``) and ``name`` belongs to a group that
  is feasible (will be stored or recomputed, see below). Then the value is there whatever we decide
  for that group: stored -> it was bound right after CE ``v < c``; recomputed -> all the group's
  writers, ``v`` included, are replayed, and nothing after ``v`` rebinds or mutates ``name`` (``v`` is
  live). No edge is needed.
* Every other read needs CE ``v`` itself to be replayed: a *dependency edge* ``c -> v``. That covers
  dead reads (``name`` was later rebound, mutated or deleted, so no stored copy of that version
  exists) and live reads of names that no feasible group provides.
* A read that needs ``v == PREEXISTING`` (a value from before monitoring started that the checkpoint
  does not provide) cannot be satisfied: the CE is *unreplayable*.
* A CE that deleted a name it did not record as read still needs the name to exist: it is treated as
  reading the version current just before it (recomputed from the history's writes and deletes).

Versions always point backwards (``v < c``), so CEs in index order are a topological order.

Unreplayable CEs. A CE is unreplayable if it has ``hazards`` (``raised=True`` counts as the hazard
"raised an exception"), needs a PREEXISTING version, or depends, transitively, on an unreplayable CE.

Groups. Group ``G`` is recomputable iff all its writers ``W(G) = {live[n] : n in G}`` are replayable
(none PREEXISTING). Recomputing ``G`` means replaying ``closure(W(G))`` (writers plus everything they
depend on). Four kinds of group:

* storable and recomputable: a real choice, left to the minimum cut;
* storable, not recomputable: stored (kept out of the graph);
* recomputable, not storable: recomputed (kept out of the graph); its closure is *forced*;
* neither: *infeasible*, reported by name with the cell and hazard that block recomputation.

Infeasible groups provide nothing, so reads of their names become dependency edges, which can make
more CEs unreplayable and more groups infeasible. The least fixed point is computed before solving
(by propagation along reverse dependencies, linear in the history's size however long the cascade),
so the solve only ever sees finite choices.

Cost. A plan's cost is ``sum(store_cost(G) for stored G) + sum(replay_cost(c) for replayed c)``
(``CostModel.store_cost``/``replay_cost`` include the per-group and per-cell overheads and depend on
``prefer``). Replaying the union of the closures of the recomputed groups is both necessary and
sufficient, so the problem is: choose the recomputed set ``R`` minimising
``store(not R) + replay(closure(W(R)))``. That is a *project selection* (closure) problem, solved by a
minimum s-t cut:

* ``s -> G`` with capacity ``store_cost(G)`` for every choosable group;
* ``G -> w`` with capacity INF for every writer ``w`` of ``G``;
* ``c -> d`` with capacity INF for every dependency edge;
* ``c -> t`` with capacity ``replay_cost(c)``.

For a cut (S, T), INF edges forbid "``G`` in S but a needed CE in T", so the CEs in S include the
closure of the groups in S; the cut's value is the store cost of the groups in T plus the replay cost
of the CEs in S. Groups in S are recomputed, CEs in S replayed. The *minimal* minimum cut (the nodes
reachable from ``s`` in the residual graph of a maximum flow) replays nothing that no recomputed group
needs; the planner also recomputes the replay set as ``closure(W(R))`` afterwards, so this holds by
construction.

Forced CEs (the closure of unstorable groups) are replayed whatever happens, so they are removed from
the graph: edges into them cost nothing. Then storing every choosable group is a finite cut, so any
INF larger than the sum of the store capacities is "infinite" for this graph.

Worked example (``prefer="balanced"``, default ``CostModel``)::

    CE 0  df = load()               1.0 s   writes df                      df: 800 MB
    CE 1  noise = np.random.rand(9)         hazard "unseeded randomness: numpy.random.rand"
    CE 2  df = df.dropna()          2.0 s   reads df@0 (dead: CE 2 rebinds it)
    CE 3  stats = df.describe()     0.1 s   reads df@2 (live)              stats: 1 KB
    live = {df: 2, noise: 1, stats: 3};  groups A = {df}, B = {noise}, C = {stats}

``B``'s writer CE 1 is unreplayable, so ``B`` is stored outright. The graph has ``s -> A`` (store 800 MB:
~7.18 s), ``s -> C`` (~0.004 s), ``A -> CE 2``, ``CE 2 -> CE 0`` (dead read), ``C -> CE 3`` (CE 3's read of
``df@2`` is a free read), and ``CE 0/2/3 -> t`` with 1.001, 2.001 and 0.101 s.
The minimum cut costs 3.002 + 0.004: ``A`` is recomputed by replaying CEs [0, 2], ``C`` is stored
(its replay, 0.101 s, is dearer than 4 ms of storing).

Solver
======

``scipy.sparse.csgraph.maximum_flow`` (Dinic) takes int32 capacities (int64 input is silently
truncated on scipy 1.17). Capacities are therefore expressed in an integer unit chosen per solve:
``unit = (sum of store capacities) / 2**30`` seconds, so that INF = (sum of integer store capacities) + 1
stays near 2**30, below 2**31 - 1, and no flow can overflow (the maximum flow is at most the store-all
cut). Replay capacities are clamped to INF, which changes nothing (such a CE is dearer than storing
everything). Every capacity is rounded to the nearest unit, so the chosen plan's true cost exceeds the
true optimum by at most ``(#groups + #cells) * unit``, i.e. about ``1e-9`` of the total store cost per
node. The source side is then read off with a breadth-first search in the residual graph. Components
of the graph that are a lone group, or a group and one writer that touches nothing else, have a
closed-form minimal cut (recompute iff the store capacity exceeds the replay capacity) and are decided
before the solve, on the same integer capacities, so the solver only sees the rest. When no
group is a real choice (or all choosable groups cost nothing to store) no solve happens:
``solver="trivial"``.

Cost of planning. Graph construction and the analysis are linear in cells + reads + groups (plain
lists and numpy arrays, no per-edge objects beyond the dependency dicts). Each group's reason and
``replay_cells`` need its closure, so they are worked out on first use (for all groups at once), not
by :func:`make_plan`: about half of the work at 10,000 cells, paid only when a plan is shown or
stored; closures are Python-int bitsets (bit ``c`` = CE ``c``), built in one
pass in index order, weighed in one vectorised pass, and only expanded into tuples when
:attr:`GroupDecision.replay_cells` is read. The worst case (a long chain of rebinds with a live result
per step) is ``O(cells**2 / 64)`` word operations, which stays in the hundreds of milliseconds at
10,000 cells, where tuples would hold 50 million entries.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_array
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from .costs import CostModel
from .history import PREEXISTING, HistoryGraph

__all__ = ["GroupDecision", "GroupSpec", "ReplicationPlan", "make_plan"]

_CAP_TARGET = 2**30
"""Integer capacity budget for the sum of all store capacities (INF sits just above it)."""

_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class GroupSpec:
    """One co-variable group of live names, as measured at checkpoint time."""

    key: int
    """Group id (unique within one planning call)."""
    names: tuple[str, ...]
    """Live names of the group (each in ``history.live``; no name in two groups)."""
    nbytes: int
    """Serialized size: pickle bytes plus out-of-band buffers."""
    storable: bool = True
    """False when probing showed the group cannot be serialized."""
    unstorable_reason: str = ""
    """Why it cannot be serialized, e.g. "cannot pickle `squares`: TypeError: ..."."""


@dataclass(frozen=True, init=False)
class GroupDecision:
    """What the plan does with one group, and why.

    The why (:attr:`reason`, :attr:`replay_cells`) is worked out on first use, for all the plan's
    groups at once: it needs every group's closure weighed and formatted, about half of planning a
    long session, and a plan is often made only to be compared or discarded. Equality and ``repr``
    include the reason, as if it were a plain field.
    """

    key: int
    names: tuple[str, ...]
    stored: bool
    store_seconds: float
    """``CostModel.store_cost(nbytes)``: what storing this group costs under ``prefer`` (shown for
    every group so a UI can present the trade-off)."""
    _why: _Explanations = field(repr=False, compare=False)
    _index: int = field(repr=False, compare=False)
    """Position of the group in the planner's input (how ``_why`` knows it)."""

    def __init__(
        self, key: int, names: tuple[str, ...], stored: bool, store_seconds: float, _why: _Explanations, _index: int
    ) -> None:
        # A plan makes one decision per group, thousands in a long session: one dict update costs
        # half of the six frozen-field assignments a generated __init__ would make.
        self.__dict__.update(
            key=key, names=names, stored=stored, store_seconds=store_seconds, _why=_why, _index=_index
        )

    @property
    def reason(self) -> str:
        """Human-readable why, naming cells ("cell 7") and hazards."""
        return self._why.reason(self._index)

    @property
    def replay_bits(self) -> int:
        """:attr:`replay_cells` as a bitset (bit ``c`` set = CE ``c``). Closures overlap heavily in long
        sessions (a 10,000-cell chain with a result per step has 50 million (group, cell) pairs), so the
        plan keeps one int per group and expands it on demand."""
        return self._why.replay_bits(self._index)

    @property
    def replay_cells(self) -> tuple[int, ...]:
        """CEs its recomputation needs (closure of its writers), ascending; empty unless recomputed."""
        return tuple(_bit_indices(self.replay_bits))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroupDecision):
            return NotImplemented
        return self._compared() == other._compared()

    def __repr__(self) -> str:
        return (
            f"GroupDecision(key={self.key!r}, names={self.names!r}, stored={self.stored!r}, "
            f"reason={self.reason!r}, store_seconds={self.store_seconds!r})"
        )

    def _compared(self) -> tuple[int, tuple[str, ...], bool, str, float, int]:
        return (self.key, self.names, self.stored, self.reason, self.store_seconds, self.replay_bits)


@dataclass(frozen=True)
class ReplicationPlan:
    """The planner's answer: decisions per group, cells to replay, and estimates."""

    decisions: tuple[GroupDecision, ...]
    """One per feasible group, in input order."""
    replay: tuple[int, ...]
    """CE indices to replay, ascending (original order)."""
    infeasible: tuple[GroupDecision, ...]
    """Groups that can be neither stored nor faithfully recomputed (``stored=False``), with a reason
    naming the variables and the cell/hazard that blocks recomputation."""
    est_checkpoint_seconds: float
    """Sum of ``checkpoint_seconds`` over stored groups."""
    est_restore_seconds: float
    """Sum of ``restore_seconds`` over stored groups plus ``replay_seconds`` over replayed cells."""
    solver: str
    """``"scipy-maxflow"`` or ``"trivial"`` (no decision needed a solve)."""
    solve_seconds: float
    """Wall time of :func:`make_plan`."""

    @property
    def stored_keys(self) -> frozenset[int]:
        return frozenset(d.key for d in self.decisions if d.stored)

    @property
    def recomputed_keys(self) -> frozenset[int]:
        return frozenset(d.key for d in self.decisions if not d.stored)


# ------------------------------------------------------------------------------------------------
# Analysis of the history: dependencies and replayability


_OWN = -1
"""``parent`` value (see ``_History.replayability``): the CE is blocked by its own hazard or read."""
_OK = -2
"""``parent`` value: the CE is replayable."""


class _History:
    """Per-CE dependency lists and blockers derived from a HistoryGraph and the group layout."""

    def __init__(self, history: HistoryGraph, groups: Sequence[GroupSpec]) -> None:
        executions = history.executions
        n = len(executions)
        live = history.live
        self.n = n
        self.live_version: dict[str, int]
        """``history.live`` of the grouped names, kept so that reasons worked out later do not see
        cells recorded after planning."""

        # Validated in bulk (a few C-level passes); only a failing layout takes the per-group loop,
        # which names the first problem.
        group_of = {name: gi for gi, g in enumerate(groups) for name in g.names}
        versions = [live.get(name, -2) for name in group_of]
        if (
            len({g.key for g in groups}) != len(groups)
            or len(group_of) != sum(len(g.names) for g in groups)
            or any(not g.names or g.nbytes < 0 for g in groups)
            or (versions and not (min(versions) >= PREEXISTING and max(versions) < n))
        ):
            _check_groups(groups, live, n)
        self.writers: list[tuple[int, ...]] = [
            (live[g.names[0]],) if len(g.names) == 1 else tuple(sorted({live[name] for name in g.names}))
            for g in groups
        ]

        # Own blockers (hazards, PREEXISTING reads) and dependency lists. Free reads (live version of
        # a grouped name) add no edge; those of unstorable groups are kept, because such a group may
        # turn out infeasible, and then its free reads become dependencies (see feasibility()).
        # `free[name]` is the live version of a grouped name: one dict probe per read decides it (no
        # version is below PREEXISTING, so the default -2 never matches).
        free = self.live_version = {name: live[name] for name in group_of}
        unstorable_of = {name: gi for name, gi in group_of.items() if not groups[gi].storable}
        own_block: list[str | None] = [None] * n
        all_deps: list[dict[int, str]] = []
        self.own_block, self.deps = own_block, all_deps
        self.free_reads: dict[int, list[tuple[int, str, int]]] = {}
        # Writers of each name so far, kept only for names some CE deletes (a delete reads the version
        # current just before it): most sessions delete few names, and this spares a dict store per write.
        deleted = {name for ce in executions for name in ce.deletes}
        current: dict[str, int] = {}
        for c, ce in enumerate(executions):
            if ce.index != c:
                raise ValueError(f"history.executions[{c}] has index {ce.index}; expected {c}")
            if ce.hazards or ce.raised:
                own_block[c] = _hazard_block(ce.hazards, ce.raised)
            reads = ce.reads
            if ce.deletes:
                reads = dict(reads)
                for name in ce.deletes:
                    reads.setdefault(name, current.get(name, PREEXISTING))
                for name in ce.deletes:
                    current.pop(name, None)
            deps: dict[int, str] = {}
            all_deps.append(deps)
            for name, v in reads.items():
                if v >= c or v < PREEXISTING:
                    raise ValueError(
                        f"cell {c} reads `{name}` as written by CE {v}, which did not run before it"
                    )
                if free.get(name, -2) == v:
                    if name in unstorable_of:
                        self.free_reads.setdefault(unstorable_of[name], []).append((c, name, v))
                    continue
                if v != PREEXISTING:
                    if v not in deps:
                        deps[v] = name
                elif own_block[c] is None:
                    own_block[c] = (
                        f"which reads `{name}`, which existed before monitoring started and will not "
                        "be in the checkpoint"
                        if live.get(name) == PREEXISTING
                        else f"which reads `{name}` as it was before monitoring started"
                    )
            if deleted:
                for name in ce.writes:
                    if name in deleted:
                        current[name] = c
        self.durations = [float(ce.duration) for ce in executions]

    def replayability(self) -> list[int]:
        """Per CE: ``_OK``, ``_OWN`` (own blocker) or the unreplayable CE it depends on.

        Also records, per blocked CE, the length of its blocking chain and that chain's last hop, so
        that :meth:`why_unreplayable` is O(1) even for thousands of blocked cells on one long chain.
        """
        n = self.n
        parent = [_OK] * n
        depth = [0] * n
        last = [-1] * n  # the CE just before the chain's root (-1: the chain is the CE itself)
        own = self.own_block
        for c in range(n):
            if own[c] is not None:
                parent[c] = _OWN
                continue
            for d in self.deps[c]:
                if parent[d] != _OK:
                    parent[c] = d
                    depth[c] = depth[d] + 1
                    last[c] = c if parent[d] == _OWN else last[d]
                    break
        self._depth, self._last = depth, last
        return parent

    def feasibility(self, groups: Sequence[GroupSpec]) -> tuple[list[int], list[bool]]:
        """Replayability of every CE (see :meth:`replayability`) and infeasibility of every group.

        An unstorable group that cannot be recomputed is infeasible; it then provides nothing, so its
        free reads become dependencies, which can block more CEs and make more groups infeasible.
        This computes the least fixed point by propagation from the newly blocked CEs along reverse
        dependencies: O(cells + reads) in total, however long the cascade.
        """
        parent = self.replayability()
        infeasible = [False] * len(groups)
        watch: dict[int, list[int]] = {}  # CE -> unstorable groups it writes
        pending: list[int] = []  # newly infeasible groups
        for gi, g in enumerate(groups):
            if g.storable:
                continue
            ws = self.writers[gi]
            if ws[0] == PREEXISTING or any(parent[w] != _OK for w in ws):
                infeasible[gi] = True
                pending.append(gi)
            else:
                for w in ws:
                    watch.setdefault(w, []).append(gi)
        if not pending:
            return parent, infeasible
        depth, last, own = self._depth, self._last, self.own_block
        rdeps: list[list[int]] = [[] for _ in range(self.n)]
        for c, deps in enumerate(self.deps):
            for d in deps:
                rdeps[d].append(c)
        blocked: list[int] = []  # newly unreplayable CEs

        def block(c: int, d: int) -> None:
            parent[c] = d
            if d == _OWN:
                depth[c], last[c] = 0, -1
            else:
                depth[c] = depth[d] + 1
                last[c] = c if parent[d] == _OWN else last[d]
            blocked.append(c)

        while pending or blocked:
            while pending:
                for c, name, v in self.free_reads.get(pending.pop(), ()):
                    if v == PREEXISTING:
                        if own[c] is None:
                            own[c] = (
                                f"which reads `{name}`, which existed before monitoring started and "
                                "cannot be checkpointed"
                            )
                        if parent[c] == _OK:
                            block(c, _OWN)
                    else:
                        self.deps[c].setdefault(v, name)
                        rdeps[v].append(c)
                        if parent[v] != _OK and parent[c] == _OK:
                            block(c, v)
            while blocked:
                c = blocked.pop()
                for gi in watch.get(c, ()):
                    if not infeasible[gi]:
                        infeasible[gi] = True
                        pending.append(gi)
                for r in rdeps[c]:
                    if parent[r] == _OK:
                        block(r, c)
        return parent, infeasible

    def why_unreplayable(self, c: int, parent: list[int]) -> str:
        """'cell 9, which needs cell 4 (for `y`), which cannot be replayed faithfully (raised KeyError)'.

        Chains longer than four hops show the first two and the last: "…, which needs cell 0 ...".
        """
        text = f"cell {c}"
        hops: list[tuple[int, str] | None] = []
        depth = self._depth[c]
        cur = c
        for _ in range(min(depth, 4 if depth <= 4 else 2)):
            d = parent[cur]
            hops.append((d, self.deps[cur][d]))
            cur = d
        if depth > 4:
            before_root = self._last[c]
            root = parent[before_root]
            hops += [None, (root, self.deps[before_root][root])]
            cur = root
        for hop in hops:
            text += ", …" if hop is None else f", which needs cell {hop[0]} (for `{hop[1]}`)"
        blocked = self.own_block[cur]
        assert blocked is not None
        return f"{text}, {blocked}"

    def closure(self, seeds: Iterable[int]) -> bytearray:
        """Mark ``seeds`` and every CE they depend on (transitively)."""
        need = bytearray(self.n)
        top = -1
        for s in seeds:
            need[s] = 1
            top = max(top, s)
        deps = self.deps
        for c in range(top, -1, -1):
            if need[c]:
                for d in deps[c]:
                    need[d] = 1
        return need


def _check_groups(groups: Sequence[GroupSpec], live: dict[str, int], n: int) -> None:
    """Raise ValueError naming the first inconsistent group (its key, name or writer)."""
    group_of: dict[str, int] = {}
    seen_keys: set[int] = set()
    for gi, g in enumerate(groups):
        if g.key in seen_keys:
            raise ValueError(f"duplicate group key {g.key}")
        seen_keys.add(g.key)
        if not g.names:
            raise ValueError(f"group {g.key} has no names")
        if g.nbytes < 0:
            raise ValueError(f"group {g.key}: nbytes must be >= 0, got {g.nbytes}")
        for name in g.names:
            if name not in live:
                raise ValueError(f"group {g.key}: `{name}` is not a live variable of the history")
            if name in group_of:
                raise ValueError(f"`{name}` is in two groups ({groups[group_of[name]].key} and {g.key})")
            group_of[name] = gi
        for w in sorted({live[name] for name in g.names}):
            if not PREEXISTING <= w < n:
                raise ValueError(f"history.live names CE {w} as writer of a name, but there are {n} CEs")
    raise AssertionError("_check_groups called on consistent groups")


def _hazard_block(hazards: Sequence[str], raised: bool) -> str:
    """'which cannot be replayed faithfully (unseeded randomness: numpy.random.rand; clock: time.time)'.

    Hazards are labels such as ``"clock: time.time"``, ``"raised ValueError"`` or ``"read data.csv,
    which has changed since"``; the wrapper reads well with all of them.
    """
    labels = [h.strip() for h in hazards if h.strip()]
    labels = ["raised an exception" if h == "raised" else h for h in labels]
    if raised and not any(h.startswith("raised") for h in labels):
        labels.append("raised an exception")
    return f"which cannot be replayed faithfully ({'; '.join(dict.fromkeys(labels))})"


# ------------------------------------------------------------------------------------------------
# Formatting


def _fmt_seconds(s: float) -> str:
    """0.0004 -> '0.4 ms', 0.123 -> '0.12 s', 4.5 -> '4.5 s', 45 -> '45 s', 300 -> '5 min', 7200 -> '2 h'."""
    if s < 0.01:
        return f"{s * 1e3:.1g} ms" if s < 0.00095 else f"{s * 1e3:.0f} ms"
    if s < 0.995:
        return f"{s:.2g} s"
    if s < 9.95:
        return f"{s:.1f} s"
    if s < 99.5:
        return f"{s:.0f} s"
    if s < 3570:
        return f"{s / 60:.1f} min" if s < 597 else f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h" if s < 35820 else f"{s / 3600:.0f} h"


def _fmt_cells(cells: Sequence[int]) -> str:
    if len(cells) == 1:
        return f"cell {cells[0]}"
    if len(cells) <= 8:
        return f"cells [{', '.join(map(str, cells))}]"
    head = ", ".join(map(str, cells[:5]))
    tail = ", ".join(map(str, cells[-2:]))
    return f"cells [{head}, …, {tail}] ({len(cells)} cells)"


def _fmt_names(names: Sequence[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    if len(quoted) <= 4:
        return ", ".join(quoted)
    return f"{', '.join(quoted[:3])} and {len(quoted) - 3} more"


# ------------------------------------------------------------------------------------------------
# Bitsets of CE closures (Python ints: OR of 10k-bit ints is a few hundred ns)


def _bit_indices(bits: int) -> list[int]:
    """Positions of the set bits of ``bits``, ascending."""
    if bits.bit_count() <= 16:
        out = []
        while bits:
            low = bits & -bits
            out.append(low.bit_length() - 1)
            bits ^= low
        return out
    raw = np.frombuffer(bits.to_bytes((bits.bit_length() + 7) // 8, "little"), dtype=np.uint8)
    idx: list[int] = np.flatnonzero(np.unpackbits(raw, bitorder="little")).tolist()
    return idx


def _fmt_cell_bits(bits: int) -> str:
    """_fmt_cells of a bitset without expanding it (it may hold thousands of cells).

    Only small windows at both ends of the int are looked at: operations on the whole int would cost
    O(cells) each, and there is one such call per group.
    """
    count = bits.bit_count()
    if count == 1:  # most groups: a result of live values
        return f"cell {bits.bit_length() - 1}"
    if count <= 8:
        return _fmt_cells(_bit_indices(bits))
    width = 256
    while (low := bits & ((1 << width) - 1)).bit_count() < 5:
        width *= 4
    head = []
    for _ in range(5):
        lowest = low & -low
        head.append(lowest.bit_length() - 1)
        low ^= lowest
    top = bits.bit_length() - 1
    shift = max(0, top - 255)
    while (high := bits >> shift).bit_count() < 2:
        shift = max(0, shift - 1024)
    second = (high ^ (1 << (top - shift))).bit_length() - 1 + shift
    return f"cells [{', '.join(map(str, head))}, …, {second}, {top}] ({count} cells)"


_WEIGH_CHUNK = 1 << 16
"""Bytes of bitsets weighed per numpy pass: small arrays stay in cache and avoid page faults."""

_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(np.float64)
"""_BYTE_BITS[v, k] = bit k of byte value v."""


def _weighted_popcounts(bitsets: Sequence[int], weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``sum(weights[c] for c in bits)`` for every bitset.

    Sparse bitsets (the common case) are summed bit by bit. Dense ones go through per-byte lookup
    tables: ``table[j, v]`` is the weight of the bits set in byte value ``v`` at byte position ``j``,
    so a bitset weighs the sum of ``table[j, byte_j]`` over its bytes (from its lowest non-zero byte),
    in chunks of :data:`_WEIGH_CHUNK` bytes.
    """
    out = np.zeros(len(bitsets), dtype=np.float64)
    dense: list[int] = []
    w = weights.tolist()
    for i, bits in enumerate(bitsets):
        if bits.bit_count() <= 32:
            total = 0.0
            while bits:
                low = bits & -bits
                total += w[low.bit_length() - 1]
                bits ^= low
            out[i] = total
        else:
            dense.append(i)
    if not dense:
        return out
    padded = np.zeros(-(-len(weights) // 8) * 8, dtype=np.float64)
    padded[: len(weights)] = weights
    flat = (padded.reshape(-1, 8) @ _BYTE_BITS.T).ravel()  # [byte position * 256 + byte value]
    first = [((bitsets[i] & -bitsets[i]).bit_length() - 1) // 8 for i in dense]
    lengths = [(bitsets[i].bit_length() + 7) // 8 - f for i, f in zip(dense, first, strict=True)]
    start = 0
    while start < len(dense):
        stop, total_bytes = start, 0
        while stop < len(dense) and (total_bytes < _WEIGH_CHUNK or stop == start):
            total_bytes += lengths[stop]
            stop += 1
        parts = (
            (bitsets[dense[k]] >> (8 * first[k])).to_bytes(lengths[k], "little") for k in range(start, stop)
        )
        raw = np.frombuffer(b"".join(parts), dtype=np.uint8)
        lens = np.array(lengths[start:stop], dtype=np.int64)
        starts = np.array(first[start:stop], dtype=np.int64)
        offsets = np.zeros(len(lens), dtype=np.intp)
        np.cumsum(lens[:-1], out=offsets[1:])
        # Index into `flat` of every byte: 256 * (byte position in its bitset) + byte value. Built
        # as a running sum of steps: +256 per byte, and a jump at the start of each bitset.
        step = np.full(len(raw), 256, dtype=np.int32)
        step[0] = 256 * starts[0]
        step[offsets[1:]] = 256 * (starts[1:] - (starts[:-1] + lens[:-1] - 1))
        index = np.cumsum(step, dtype=np.int32)
        index += raw
        out[dense[start:stop]] = np.add.reduceat(flat.take(index), offsets)
        start = stop
    return out


# ------------------------------------------------------------------------------------------------
# The solve


def _min_cut_recomputed(
    h: _History,
    flow_groups: list[int],
    store_cost: list[float],
    replay_cost: list[float],
    forced: bytearray,
    replayable: list[bool],
) -> tuple[list[int], str]:
    """Return the flow groups to recompute (minimal minimum cut) and the solver name."""
    g_count = len(flow_groups)
    total = float(sum(store_cost[gi] for gi in flow_groups))
    if g_count == 0 or total <= 0.0:
        return [], "trivial"
    unit = total / _CAP_TARGET
    n = h.n
    store_int = np.rint(np.array([store_cost[gi] for gi in flow_groups]) / unit).astype(np.int64)
    inf = int(store_int.sum()) + 1
    assert inf < _INT32_MAX

    active = np.array(replayable, dtype=bool) & (np.frombuffer(bytes(forced), dtype=np.uint8) == 0)

    # Edge lists straight from the writer tuples and dependency dicts (C-level iteration: this runs
    # over every read of the session): group j -> writer CE, CE -> CE it depends on.
    writers = h.writers
    gw_counts = np.fromiter((len(writers[gi]) for gi in flow_groups), dtype=np.int64, count=g_count)
    gw_g = np.repeat(np.arange(g_count, dtype=np.int64), gw_counts)
    gw_c = np.fromiter(
        chain.from_iterable(writers[gi] for gi in flow_groups), dtype=np.int64, count=int(gw_counts.sum())
    )
    keep = active[gw_c]
    gw_g, gw_c = gw_g[keep], gw_c[keep]
    dep_counts = np.fromiter(map(len, h.deps), dtype=np.int64, count=n)
    dep_u = np.repeat(np.arange(n, dtype=np.int64), dep_counts)
    dep_v = np.fromiter(chain.from_iterable(h.deps), dtype=np.int64, count=int(dep_counts.sum()))
    keep = active[dep_u] & active[dep_v]
    dep_u, dep_v = dep_u[keep], dep_v[keep]
    replay_int = np.zeros(n, dtype=np.int64)
    replay_int[active] = np.minimum(
        np.rint(np.array(replay_cost, dtype=np.float64)[active] / unit), float(inf)
    ).astype(np.int64)

    # Closed-form components. A group whose writers are all replayed anyway forms {s -> G} alone; a
    # group with one writer that no other group or cell needs and that needs no cell (a result of live
    # values only: most groups of a session) forms {s -> G -> w -> t}. Their minimal minimum cut
    # recomputes G iff its store capacity exceeds the replay capacity (0 when alone), exactly what the
    # solver would find, so only the rest of the graph goes to it: half the nodes in long sessions.
    writer_count = np.bincount(gw_g, minlength=g_count)
    in_degree = np.bincount(gw_c, minlength=n) + np.bincount(dep_v, minlength=n)
    out_degree = np.bincount(dep_u, minlength=n)
    only = np.zeros(g_count, dtype=np.int64)
    only[gw_g] = gw_c  # the writer, for groups with one
    pair = (writer_count == 1) & (in_degree[only] == 1) & (out_degree[only] == 0)
    closed = pair | (writer_count == 0)
    chosen = np.flatnonzero(closed & (store_int > np.where(pair, replay_int[only], 0)))
    open_groups = np.flatnonzero(~closed)
    if len(open_groups):
        cells = active.copy()
        cells[only[pair]] = False
        solved = _solve(open_groups, store_int, gw_g, gw_c, dep_u, dep_v, replay_int, cells, inf)
        chosen = np.union1d(chosen, open_groups[solved])
    return [flow_groups[j] for j in chosen.tolist()], "scipy-maxflow"


def _solve(
    groups: npt.NDArray[np.int64],
    store_int: npt.NDArray[np.int64],
    gw_g: npt.NDArray[np.int64],
    gw_c: npt.NDArray[np.int64],
    dep_u: npt.NDArray[np.int64],
    dep_v: npt.NDArray[np.int64],
    replay_int: npt.NDArray[np.int64],
    cells: npt.NDArray[np.bool_],
    inf: int,
) -> npt.NDArray[np.int64]:
    """Positions in ``groups`` of the groups on the source side of the minimal minimum cut.

    The graph holds ``groups`` and the CEs ``cells`` only, renumbered densely (the solver's work per
    phase grows with the node count): 0 = source, 1 = sink, then the groups, then the CEs.
    """
    g_new = np.full(len(store_int), -1, dtype=np.int64)
    g_new[groups] = np.arange(2, 2 + len(groups))
    cell_ids = np.flatnonzero(cells)
    base = 2 + len(groups)
    c_new = np.full(len(cells), -1, dtype=np.int64)
    c_new[cell_ids] = np.arange(base, base + len(cell_ids))
    keep = g_new[gw_g] >= 0
    gw_s, gw_d = g_new[gw_g[keep]], c_new[gw_c[keep]]
    dep_s, dep_d = c_new[dep_u], c_new[dep_v]
    replay = replay_int[cell_ids]
    pos = replay > 0
    stores = store_int[groups]
    s_pos = stores > 0

    rows = np.concatenate([np.zeros(int(s_pos.sum()), np.int64), gw_s, dep_s, base + np.flatnonzero(pos)])
    cols = np.concatenate([2 + np.flatnonzero(s_pos), gw_d, dep_d, np.ones(int(pos.sum()), np.int64)])
    caps = np.concatenate([stores[s_pos], np.full(len(gw_s) + len(dep_s), inf, np.int64), replay[pos]])
    size = base + len(cell_ids)
    # Deduplicate (u, v) pairs so that summing duplicates can never overflow int32.
    keys, first = np.unique(rows * size + cols, return_index=True)
    rows, cols, caps = keys // size, keys % size, caps[first]
    graph = csr_array((caps.astype(np.int32), (rows, cols)), shape=(size, size))
    graph.sort_indices()
    result = maximum_flow(graph, 0, 1, method="dinic")

    residual = graph.astype(np.int64) - result.flow.astype(np.int64)
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, 0, directed=True, return_predecessors=False)
    reached_groups: npt.NDArray[np.int64] = reached[(reached >= 2) & (reached < base)] - 2
    return reached_groups


def make_plan(history: HistoryGraph, groups: Sequence[GroupSpec], costs: CostModel) -> ReplicationPlan:
    """Choose, for every group, store or recompute at minimum cost; see the module docstring.

    Raises ValueError if ``groups`` or ``history`` are inconsistent (a name not live or in two
    groups, a duplicate key, a read of a version from the future). Groups that can be neither stored
    nor recomputed are not an error here: they are returned in ``plan.infeasible`` and the caller
    decides (refuse the checkpoint, or proceed without them after telling the user).
    """
    t0 = time.perf_counter()
    h = _History(history, groups)
    n = h.n

    parent, infeasible = h.feasibility(groups)
    replayable = [p == _OK for p in parent]
    ok = [*replayable, False]  # ok[PREEXISTING] is False
    recomputable = [ok[ws[0]] if len(ws) == 1 else all(ok[w] for w in ws) for ws in h.writers]

    nbytes = [g.nbytes for g in groups]
    store_cost: list[float] = costs.store_costs(nbytes).tolist()
    replay_cost: list[float] = costs.replay_costs(h.durations).tolist()

    forced_groups = [gi for gi, g in enumerate(groups) if not g.storable and not infeasible[gi]]
    flow_groups = [gi for gi, g in enumerate(groups) if g.storable and recomputable[gi]]
    forced = h.closure(w for gi in forced_groups for w in h.writers[gi])

    chosen, solver = _min_cut_recomputed(h, flow_groups, store_cost, replay_cost, forced, replayable)
    recomputed = set(forced_groups) | set(chosen)
    need = h.closure(w for gi in recomputed for w in h.writers[gi])
    replay = tuple(c for c in range(n) if need[c])

    replay_seconds: list[float] = costs.replay_seconds_of(h.durations).tolist()
    why = _Explanations(
        h, groups, costs, store_cost, replay_seconds, parent, forced_groups, flow_groups, recomputed, need
    )
    decisions: list[GroupDecision] = []
    infeasible_decisions: list[GroupDecision] = []
    est_checkpoint = 0.0
    est_restore = 0.0
    checkpoint_seconds: list[float] = costs.checkpoint_seconds_of(nbytes).tolist()
    restore_seconds: list[float] = costs.restore_seconds_of(nbytes).tolist()
    for gi, g in enumerate(groups):
        stored = gi not in recomputed and not infeasible[gi]
        decision = GroupDecision(g.key, tuple(g.names), stored, store_cost[gi], why, gi)
        if infeasible[gi]:
            infeasible_decisions.append(decision)
            continue
        if decision.stored:
            est_checkpoint += checkpoint_seconds[gi]
            est_restore += restore_seconds[gi]
        decisions.append(decision)
    est_restore += sum(replay_seconds[c] for c in replay)

    return ReplicationPlan(
        decisions=tuple(decisions),
        replay=replay,
        infeasible=tuple(infeasible_decisions),
        est_checkpoint_seconds=est_checkpoint,
        est_restore_seconds=est_restore,
        solver=solver,
        solve_seconds=time.perf_counter() - t0,
    )


def _group_blocker(h: _History, g: GroupSpec, parent: list[int]) -> str | None:
    """Why ``g`` cannot be recomputed, or None if it can."""
    for name in g.names:
        if h.live_version[name] == PREEXISTING:
            return f"`{name}` existed before monitoring started"
    for name in g.names:
        w = h.live_version[name]
        if parent[w] != _OK:
            return f"recomputing `{name}` needs {h.why_unreplayable(w, parent)}"
    return None


class _Explanations:
    """The reasons and replay cells of one plan's groups, worked out together on first use.

    Everything here only explains a plan already made: the closure of every choosable or recomputed
    group (int bitsets), its replay seconds, and for groups stored by choice the part of it not
    replayed anyway. Done in one batch because the closures share most of their work (see
    :class:`_Closures`), so rendering one reason costs about as much as rendering all of them.
    """

    def __init__(
        self,
        h: _History,
        groups: Sequence[GroupSpec],
        costs: CostModel,
        store_cost: list[float],
        replay_seconds: list[float],
        parent: list[int],
        forced_groups: list[int],
        flow_groups: list[int],
        recomputed: set[int],
        need: bytearray,
    ) -> None:
        self._inputs = (h, tuple(groups), costs, store_cost, replay_seconds, parent, forced_groups, flow_groups,
                        recomputed, need)
        self._reasons: list[str] = []
        self._bits: dict[int, int] = {}

    def reason(self, gi: int) -> str:
        if not self._reasons:
            self._work_out()
        return self._reasons[gi]

    def replay_bits(self, gi: int) -> int:
        if not self._reasons:
            self._work_out()
        return self._bits.get(gi, 0)

    def _work_out(self) -> None:
        h, groups, costs, store_cost, replay_seconds, parent, forced_groups, flow_groups, recomputed, need = (
            self._inputs
        )
        closures = _Closures(
            h, [w for gi in (*forced_groups, *flow_groups) for w in h.writers[gi]], replay_seconds
        )
        replay_bits = int.from_bytes(
            np.packbits(np.frombuffer(bytes(need), dtype=np.uint8), bitorder="little").tobytes(), "little"
        )
        unreplayed = ~replay_bits
        closure_of: dict[int, int] = {}
        extra_of: dict[int, int] = {}
        single_writer: dict[int, int] = {}  # group -> its only writer (its closure is that CE's)
        untouched: dict[int, int] = {}  # the same, for stored groups none of whose cells are replayed
        for gi in (*forced_groups, *flow_groups):
            gbits = closures.of_group(h.writers[gi])
            closure_of[gi] = gbits
            if len(h.writers[gi]) == 1:
                single_writer[gi] = h.writers[gi][0]
            if gi not in recomputed:
                if gbits & replay_bits:
                    extra_of[gi] = gbits & unreplayed
                else:
                    extra_of[gi] = gbits
                    if gi in single_writer:
                        untouched[gi] = single_writer[gi]
        closure_s = closures.weigh(closure_of, single_writer)
        extra_s = closures.weigh(extra_of, untouched)

        reasons: list[str] = []
        flow_set = set(flow_groups)
        for gi, g in enumerate(groups):
            if gi in recomputed:
                cells = self._bits[gi] = closure_of[gi]
                if gi not in flow_set:
                    why = g.unstorable_reason or "not serializable"
                    reason = (
                        f"recomputed: cannot be stored ({why}); replaying {_fmt_cell_bits(cells)} takes "
                        f"~{_fmt_seconds(closure_s[gi])}"
                    )
                else:
                    reason = _recomputed_reason(costs, store_cost[gi], _fmt_cell_bits(cells), closure_s[gi])
            elif gi in closure_of:  # stored by choice
                extra = extra_of[gi]
                reason = _stored_reason(
                    costs,
                    store_cost[gi],
                    _fmt_cell_bits(extra) if extra else "",
                    extra_s[gi],
                    shared=extra != closure_of[gi],
                )
            elif g.storable:  # stored: cannot be recomputed
                reason = f"stored: {_group_blocker(h, g, parent)}"
            else:
                why = g.unstorable_reason or "not serializable"
                blocker = _group_blocker(h, g, parent)
                reason = f"{_fmt_names(g.names)} can be neither stored ({why}) nor recomputed: {blocker}"
            reasons.append(reason)
        self._reasons = reasons


class _Closures:
    """Closures of CEs as int bitsets (bit ``c`` = CE ``c``), and their replay seconds.

    Weights avoid weighing dense bitsets where they can: a CE with at most one dependency has
    ``weight(c) = seconds(c) + weight(dep)`` exactly (``c`` is not in its dependency's closure), so
    along a chain of rebinds only the CEs with several dependencies are weighed as bitsets. Those, and
    multi-writer groups, go through :func:`_weighted_popcounts` in one batch.
    """

    def __init__(self, h: _History, seeds: list[int], seconds: list[float]) -> None:
        need = h.closure(seeds)
        self.seconds = seconds
        self.bits: dict[int, int] = {}
        anchor: dict[int, int] = {}  # CE -> the multi-dependency CE its chain starts from (or -1)
        offset: dict[int, float] = {}  # CE -> seconds of its chain down to (excluding) the anchor
        deps = h.deps
        for c in range(h.n):
            if not need[c]:
                continue
            dc = deps[c]
            if len(dc) <= 1:
                b = 1 << c
                if dc:
                    (d,) = dc
                    b |= self.bits[d]
                    anchor[c], offset[c] = anchor[d], offset[d] + seconds[c]
                else:
                    anchor[c], offset[c] = -1, seconds[c]
            else:
                b = 1 << c
                for d in dc:
                    b |= self.bits[d]
                anchor[c], offset[c] = c, 0.0
            self.bits[c] = b
        anchors = sorted({a for a in anchor.values() if a >= 0})
        weighed = _weighted_popcounts([self.bits[a] for a in anchors], np.array(seconds, dtype=np.float64))
        base = dict(zip(anchors, weighed.tolist(), strict=True))
        self.weight = {c: offset[c] + (base[a] if a >= 0 else 0.0) for c, a in anchor.items()}

    def of_group(self, writers: tuple[int, ...]) -> int:
        gbits = 0
        for w in writers:
            gbits |= self.bits[w]
        return gbits

    def weigh(self, bitsets: dict[int, int], closure_of_ce: dict[int, int]) -> dict[int, float]:
        """Seconds of every ``bitsets[k]``; ``closure_of_ce[k] = w`` says that bitset is exactly the
        closure of CE ``w``, whose seconds are known already."""
        out = {k: self.weight[w] for k, w in closure_of_ce.items()}
        rest = [k for k in bitsets if k not in out]
        weighed = _weighted_popcounts([bitsets[k] for k in rest], np.array(self.seconds, dtype=np.float64))
        out.update(zip(rest, weighed.tolist(), strict=True))
        return out


def _recomputed_reason(costs: CostModel, store_s: float, cells: str, replay_s: float) -> str:
    if costs.prefer == "checkpoint":
        return (
            f"recomputed: adds nothing to the checkpoint (storing would add ~{_fmt_seconds(store_s)}); "
            f"replaying {cells} takes ~{_fmt_seconds(replay_s)} at restore"
        )
    store_what = "store" if costs.prefer == "balanced" else "loading"
    if replay_s <= store_s:
        return (
            f"recomputed: cheaper (replaying {cells} ~{_fmt_seconds(replay_s)} vs "
            f"{store_what} ~{_fmt_seconds(store_s)})"
        )
    return (
        f"recomputed: cheaper together with other recomputed variables that need the same cells "
        f"(replaying {cells} ~{_fmt_seconds(replay_s)}, shared; {store_what} "
        f"~{_fmt_seconds(store_s)})"
    )


def _stored_reason(costs: CostModel, store_s: float, extra: str, extra_s: float, shared: bool) -> str:
    if not extra:
        return f"stored: as cheap as recomputing (storing costs ~{_fmt_seconds(store_s)})"
    more = " more" if shared else ""
    if costs.prefer == "checkpoint":
        return (
            f"stored: replaying {extra}{more} would take ~{_fmt_seconds(extra_s)} at "
            f"restore; storing adds only ~{_fmt_seconds(store_s)} to the checkpoint"
        )
    store_what = "store" if costs.prefer == "balanced" else "loading"
    return (
        f"stored: cheaper ({store_what} ~{_fmt_seconds(store_s)} vs replaying "
        f"{extra}{more} ~{_fmt_seconds(extra_s)})"
    )
