"""A picture of a checkpoint's history graph: cells, live variables, what is stored and what is replayed.

:func:`layout` is pure (manifest in, positioned nodes and edges out) and needs no plotting library;
:func:`draw` renders a layout with matplotlib's object API (no pyplot, no global backend switch), to
any format matplotlib writes (``.png``, ``.svg``, ``.pdf``).

The layout is layered by time: cell execution *i* sits at x = *i* on the bottom row; every live
variable sits above the cell that wrote its live version, stacked when one cell wrote several, and
variables that predate monitoring sit in a column of their own at x = -1. Edges:

* ``write``: cell -> the variable version it left live;
* ``read``: variable -> a cell that read that (live) version;
* ``needs``: cell -> a later cell that read a version the earlier cell wrote and that is no longer live
  (a replay of the later cell needs the earlier one first). Worked example::

      cell 0: xs = [3, 1, 2]
      cell 1: xs.sort()        needs cell 0 (it read xs@0, replaced by xs@1)

  Variable ``xs`` sits above cell 1 (its live writer), with a ``write`` edge from cell 1, and a
  ``needs`` edge runs from cell 0 to cell 1.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .history import PREEXISTING, HistoryGraph
from .manifest import Manifest, VariableRecord

NodeKind = Literal["cell", "variable"]
NodeState = Literal["replayed", "not replayed", "hazard", "stored", "recomputed", "lost"]
EdgeKind = Literal["write", "read", "needs"]

COLOURS: dict[str, str] = {
    "replayed": "#59a14f",
    "not replayed": "#bab0ac",
    "hazard": "#e15759",
    "stored": "#4e79a7",
    "recomputed": "#f28e2b",
    "lost": "#000000",
}


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    label: str
    x: float
    y: float
    state: NodeState
    detail: str = ""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind


@dataclass
class GraphLayout:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


PER_ROW = 3
"""Variables side by side above one cell; more go to further rows."""
SLOT_WIDTH = 0.3
ROW_HEIGHT = 0.9


def first_line(source: str, width: int = 60) -> str:
    """The first non-blank line of a cell, shortened to ``width`` characters."""
    for line in source.splitlines():
        if line.strip():
            text = line.strip()
            return text if len(text) <= width else text[: width - 1] + "…"
    return ""


def variable_state(stored: bool, reason: str) -> NodeState:
    """stored / recomputed / lost (neither storable nor recomputable: a best-effort checkpoint)."""
    if stored:
        return "stored"
    return "recomputed" if reason.startswith("recomputed") else "lost"


def layout(manifest: Manifest) -> GraphLayout:
    """Place the manifest's cells and live variables (see the module docstring)."""
    history = HistoryGraph.from_dict(manifest.history)
    replay = set(manifest.plan.replay)
    groups = {g.key: g for g in manifest.groups}
    out = GraphLayout()

    for ce in history.executions:
        state: NodeState = "replayed" if ce.index in replay else ("hazard" if ce.hazards or ce.raised
                                                                    else "not replayed")
        detail = "; ".join(ce.hazards) if ce.hazards else ("raised" if ce.raised else "")
        out.nodes.append(Node(id=f"cell:{ce.index}", kind="cell", label=f"[{ce.index}] {first_line(ce.source, 24)}",
                              x=float(ce.index), y=0.0, state=state, detail=detail))

    by_column: dict[int, list[VariableRecord]] = defaultdict(list)
    live_version: dict[str, int] = {}
    for var in sorted(manifest.variables, key=lambda v: (v.writer, v.name)):
        by_column[var.writer if var.writer != PREEXISTING else -1].append(var)
    for column, variables in by_column.items():
        per_row = min(PER_ROW, len(variables))
        for k, var in enumerate(variables):
            name = var.name
            group = groups[var.group]
            live_version[name] = var.writer
            row, slot = divmod(k, per_row)
            x = column + (slot - (per_row - 1) / 2) * SLOT_WIDTH
            out.nodes.append(Node(id=f"var:{name}", kind="variable", label=name, x=x, y=1.0 + row * ROW_HEIGHT,
                                  state=variable_state(group.stored, group.reason), detail=var.type))
            if var.writer != PREEXISTING:
                out.edges.append(Edge(f"cell:{var.writer}", f"var:{name}", "write"))

    needs: set[tuple[int, int]] = set()
    for ce in history.executions:
        for name, version in sorted(ce.reads.items()):
            if name in live_version and live_version[name] == version:
                out.edges.append(Edge(f"var:{name}", f"cell:{ce.index}", "read"))
            elif version >= 0 and version != ce.index and (version, ce.index) not in needs:
                needs.add((version, ce.index))
                out.edges.append(Edge(f"cell:{version}", f"cell:{ce.index}", "needs"))
    return out


def draw(graph: GraphLayout, path: str | Path, *, title: str = "") -> None:
    """Render ``graph`` to ``path``; the format follows the suffix (png, svg, pdf ...).

    Raises ImportError when matplotlib is missing and ValueError for a format it cannot write.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    fig = Figure(layout="constrained")
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"cannot draw to {path.name}: matplotlib writes {', '.join(sorted(supported))}")

    xs = [n.x for n in graph.nodes] or [0.0]
    ys = [n.y for n in graph.nodes] or [0.0]
    width = min(60.0, max(4.0, 1.1 * (max(xs) - min(xs) + 2)) + 2.2)  # + the legend
    height = min(40.0, max(3.5, 0.7 * (max(ys) + 3)))
    fig.set_size_inches(width, height)
    ax: Any = fig.add_subplot()
    ax.set_axis_off()
    where = {n.id: n for n in graph.nodes}

    styles = {"write": ("-", "#4d4d4d"), "read": ("-", "#9c9c9c"), "needs": ("--", "#b07aa1")}
    for edge in graph.edges:
        a, b = where.get(edge.source), where.get(edge.target)
        if a is None or b is None:
            continue
        style, colour = styles[edge.kind]
        # Edges to upper rows bend, so they do not run through the variables below them.
        bend = 0.25 if edge.kind == "needs" else (0.2 if abs(b.y - a.y) > 1.5 else 0.0)
        ax.annotate("", xy=(b.x, b.y), xytext=(a.x, a.y),
                    arrowprops={"arrowstyle": "-|>", "linestyle": style, "color": colour, "lw": 0.9,
                                "shrinkA": 9, "shrinkB": 9, "connectionstyle": f"arc3,rad={bend}"})
    for n in graph.nodes:
        colour = COLOURS[n.state]
        if n.kind == "cell":
            ax.scatter([n.x], [n.y], marker="s", s=320, c=colour, edgecolors="#333333", zorder=3)
            ax.annotate(n.label, (n.x, n.y), xytext=(0, -14), textcoords="offset points", ha="right",
                        va="top", rotation=35, fontsize=7, family="monospace")
        else:
            ax.scatter([n.x], [n.y], marker="o", s=260, c=colour, edgecolors="#333333", zorder=3)
            ax.annotate(n.label, (n.x, n.y), xytext=(0, 9), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7)
    ax.set_xlim(min(xs) - 1, max(xs) + 1.5)
    ax.set_ylim(-1.6, max(ys) + 0.8)

    legend = [
        Line2D([], [], marker="s", ls="", color=COLOURS["replayed"], label="cell replayed on restore"),
        Line2D([], [], marker="s", ls="", color=COLOURS["not replayed"], label="cell not replayed"),
        Line2D([], [], marker="s", ls="", color=COLOURS["hazard"], label="cell unsafe to replay"),
        Line2D([], [], marker="o", ls="", color=COLOURS["stored"], label="variable stored"),
        Line2D([], [], marker="o", ls="", color=COLOURS["recomputed"], label="variable recomputed"),
        Patch(color=COLOURS["lost"], label="variable not carried"),
        Line2D([], [], ls="--", color=styles["needs"][1], label="needs earlier cell"),
    ]
    fig.legend(handles=legend, loc="outside right upper", fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    fig.savefig(path, format=fmt, dpi=110)
