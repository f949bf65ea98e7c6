"""Co-variables: names whose values share objects or memory, so they must travel together.

Pickling two names separately duplicates what they share: after restore ``d["k"] is a`` is False, a
view no longer writes through to its base, ``ax.figure`` is a different figure from ``fig``.  So the
planner stores or recomputes *groups* of names, never part of a group.  Two names are linked when
their fingerprints (:mod:`nbmigrate.fingerprint`) share

* an identity: a mutable object reachable from both (``ids`` intersect), including a class or
  function defined in the session, which cloudpickle pickles by value: an instance and the name
  bound to its class must be pickled together for ``type(obj) is Cls`` to survive;
* memory: raw buffer ranges that overlap (``spans``), which covers numpy views, ``torch.from_numpy``,
  a pandas Series taken from a DataFrame, arrays over one ``bytearray``.

Links are transitive (union-find).  Worked examples::

    a = [1]; d = {"k": a}        -> [["a", "d"]]          the list is in both
    arr = np.arange(9); v = arr[1:]  -> [["arr", "v"]]    v's bytes lie inside arr's
    fig, ax = plt.subplots()      -> [["ax", "fig"]]      ax.figure is fig, fig.axes holds ax
    x = 5; y = 5                  -> [["x"], ["y"]]       ints are immutable: never an identity
    s1 = "abc"; s2 = s1           -> [["s1"], ["s2"]]     same object, but immutable: no aliasing to keep

Cost: O(total ids + S log S) for S spans — one dictionary from id to the first name that reached it,
and one sweep over the spans sorted by start.
"""

from __future__ import annotations

from collections.abc import Mapping

from nbmigrate.fingerprint import Fingerprint

__all__ = ["group_covariables"]


def group_covariables(fps: Mapping[str, Fingerprint]) -> list[list[str]]:
    """Partition the names of ``fps`` into co-variable groups.

    Returns every name exactly once (singletons included); each group's names sorted, groups sorted by
    their first name.  Overlap of spans is strict: ranges that merely touch (``[0, 8)`` and ``[8, 16)``)
    share no byte and do not link.
    """
    names = sorted(fps)
    index = {n: i for i, n in enumerate(names)}
    parent = list(range(len(names)))

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            if ri < rj:
                parent[rj] = ri
            else:
                parent[ri] = rj

    owner: dict[int, int] = {}
    spans: list[tuple[int, int, int]] = []
    for n in names:
        i = index[n]
        fp = fps[n]
        for obj_id in fp.ids:
            first = owner.setdefault(obj_id, i)
            if first != i:
                union(first, i)
        for start, end in fp.spans:
            if end > start:
                spans.append((start, end, i))

    spans.sort()
    run_end = -1
    run_owner = -1
    for start, end, i in spans:
        if start < run_end:
            union(run_owner, i)
            if end > run_end:
                run_end = end
        else:
            run_end, run_owner = end, i

    groups: dict[int, list[str]] = {}
    for n in names:  # names are sorted, so every group comes out sorted
        groups.setdefault(find(index[n]), []).append(n)
    return sorted(groups.values(), key=lambda g: g[0])
