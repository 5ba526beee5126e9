"""Root-cause ranking over the dataflow graph: what to fix first.

Nodes are (component, column group), each with an error score ζ (1 at the alarm threshold,
above 1 when anomalous, below 1 when quiet). Walking back from the predictions over every path,
a node's score is

    φ_i = max over paths p from the predictions to i of  Π_{j ∈ p, j up to i} ζ_j

Errors propagate downstream, so a chain of anomalous nodes multiplies up and peaks at its
furthest-upstream member, the origin; quiet nodes (ζ < 1) upstream of it shrink the product
again. Because every group of a component reads every group of its upstream components, the
maximum over paths factorizes per component: φ(c, g) = ζ(c, g) · max over downstream d of
best(d), computed in one pass over the components in reverse topological order, O(components +
edges) steps in log space, each scoring all of a component's groups as one array operation; the
top k of all groups come from one sort.

Declared lineage can contain cycles (a model trained on the feedback to its own predictions).
A depth-first walk back from the predictions finds the back edges, reports each cycle, and drops
those edges for the ranking, so the walk always ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

ROOT = "\x00predictions"


@dataclass(slots=True)
class Node:
    """One (component, column group) with its error score and the columns that explain it."""

    component: str
    group: str
    zeta: float
    columns: list[str] = field(default_factory=list)


@dataclass(slots=True)
class GroupTable:
    """All (component, column group) nodes of one component, as arrays.

    ``columns(i)`` lists the columns of group ``i`` (worst first); it is only asked for the
    groups that make the top k, so a component of a thousand singleton columns costs one array.
    """

    component: str
    labels: list[str]
    zeta: np.ndarray
    columns: Callable[[int], list[str]] | None = None


class Suspect:
    """A ranked node with its path score and the path back to the predictions.

    ``columns`` (the group's columns, worst first) may be given as a function: it is called the
    first time someone reads them, so ranking a hundred suspects lists columns only for those
    shown.
    """

    __slots__ = ("_columns", "component", "group", "path", "phi", "rank", "zeta")

    def __init__(
        self,
        rank: int,
        component: str,
        group: str,
        phi: float,
        zeta: float,
        columns: list[str] | Callable[[], list[str]],
        path: list[tuple[str, str]],
    ) -> None:
        self.rank = rank
        self.component = component
        self.group = group
        self.phi = phi
        self.zeta = zeta
        self._columns = columns
        self.path = path  # (component, group) from this node down to the predictions

    @property
    def columns(self) -> list[str]:
        if callable(self._columns):
            self._columns = list(self._columns())
        return self._columns

    def __getstate__(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "component": self.component,
            "group": self.group,
            "phi": self.phi,
            "zeta": self.zeta,
            "_columns": self.columns,
            "path": self.path,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        return (
            f"Suspect(rank={self.rank}, component={self.component!r}, group={self.group!r}, "
            f"phi={self.phi:.4g}, zeta={self.zeta:.4g})"
        )


@dataclass(slots=True)
class Ranking:
    suspects: list[Suspect]
    cycles: list[list[str]]
    sinks: list[str]


def _back_edges(
    upstream: Mapping[str, Sequence[str]], roots: Sequence[str]
) -> tuple[set[tuple[str, str]], list[list[str]]]:
    """Back edges (consumer, producer) of an iterative DFS walking upstream, and their cycles."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[str, str]] = set()
    cycles: list[list[str]] = []
    for root in roots:
        if state.get(root):
            continue
        path = [root]
        stack = [(root, iter(upstream.get(root, ())))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            s = state.get(nxt, 0)
            if s == 1:
                back.add((node, nxt))
                # walking upstream: path[i:] goes consumer → producer; reverse for data flow
                cycles.append(list(reversed(path[path.index(nxt) :])))
            elif s == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(upstream.get(nxt, ()))))
    return back, cycles


def rank(
    nodes: Iterable[Node],
    edges: Iterable[tuple[str, str]],
    sinks: Iterable[str] = (),
    k: int = 5,
) -> Ranking:
    """Rank nodes by φ. ``edges`` are (producer, consumer) component pairs.

    ``sinks`` are the components whose outputs are the predictions (inference); when none is
    given or known, components without consumers are taken. Components no sink reaches are
    ranked on their own (φ = ζ), so nothing observed is ever left out.
    """
    by_comp: dict[str, list[Node]] = {}
    for n in nodes:
        by_comp.setdefault(n.component, []).append(n)
    tables = []
    for comp, members in by_comp.items():

        def columns(i: int, members: list[Node] = members) -> list[str]:
            return list(members[i].columns)

        tables.append(
            GroupTable(
                comp,
                [n.group for n in members],
                np.array([n.zeta for n in members], dtype=np.float64),
                columns,
            )
        )
    return rank_tables(tables, edges, sinks, k)


def rank_tables(
    tables: Iterable[GroupTable],
    edges: Iterable[tuple[str, str]],
    sinks: Iterable[str] = (),
    k: int = 5,
) -> Ranking:
    """:func:`rank` over whole components at once (see :class:`GroupTable`)."""
    by_comp = {t.component: t for t in tables if len(t.labels)}
    comps = set(by_comp)
    edge_set = set(edges)
    for a, b in edge_set:
        comps.update((a, b))
    upstream: dict[str, list[str]] = {c: [] for c in comps}
    downstream: dict[str, list[str]] = {c: [] for c in comps}
    for a, b in sorted(edge_set):
        upstream[b].append(a)
        downstream[a].append(b)
    sink_list = sorted(s for s in set(sinks) if s in comps)
    if not sink_list:
        sink_list = sorted(c for c in comps if not downstream[c])
    # Every component must be reachable from the root: first the sinks, then whatever remains.
    order = sink_list + sorted(comps - set(sink_list))
    back, cycles = _back_edges(upstream, order)
    # the self-loops on a sink or isolated node are cycles too
    kept = {(a, b) for a, b in edge_set if (b, a) not in back and a != b}
    for a, b in sorted(edge_set):
        if a == b and [a] not in cycles:
            cycles.append([a])
    down: dict[str, list[str]] = {c: [] for c in comps}
    preds: dict[str, list[str]] = {c: [] for c in comps}
    out_deg = dict.fromkeys(comps, 0)
    for a, b in kept:
        down[a].append(b)
        preds[b].append(a)
        out_deg[a] += 1
    # Reverse topological order (Kahn on out-degree): all consumers before their producers.
    ready = sorted(c for c in comps if out_deg[c] == 0)
    best: dict[str, float] = {}  # log of max φ over the component's groups
    best_group: dict[str, str] = {}
    hop: dict[str, str | None] = {}
    logphi: dict[str, np.ndarray] = {}
    sink_set = set(sink_list)
    while ready:
        c = ready.pop()
        # (log score, next hop); a sink, or a component leading nowhere, reaches the root directly
        options: list[tuple[float, str | None]] = [(best[d], d) for d in down[c] if d in best]
        if c in sink_set or not options:
            options.append((0.0, None))
        base, hop[c] = max(options, key=lambda o: (o[0], o[1] is None, o[1] or ""))
        table = by_comp.get(c)
        if table is None:
            best[c], best_group[c] = base, ""  # unobserved: passes its downstream score through
        else:
            v = base + np.log(np.maximum(table.zeta, 1e-300))
            logphi[c] = v
            top = np.flatnonzero(v == v.max())
            i = min(top, key=lambda j: table.labels[j])  # ties: the first group by name
            best[c], best_group[c] = float(v[i]), table.labels[i]
        for p in preds[c]:
            out_deg[p] -= 1
            if out_deg[p] == 0:
                ready.append(p)
        ready.sort()

    names = sorted(logphi)
    if not names:
        return Ranking([], cycles, sink_list)
    phi = np.concatenate([logphi[c] for c in names])
    zeta = np.concatenate([by_comp[c].zeta for c in names])
    comp_idx = np.concatenate([np.full(len(logphi[c]), i) for i, c in enumerate(names)])
    local = np.concatenate([np.arange(len(logphi[c])) for c in names])
    label_rank = np.concatenate([_ranks(by_comp[c].labels) for c in names])
    top = np.lexsort((label_rank, comp_idx, -zeta, -phi))[:k]
    suspects = []
    for r, j in enumerate(top, start=1):
        table = by_comp[names[comp_idx[j]]]
        i = int(local[j])
        path = [(table.component, table.labels[i])]
        c = hop.get(table.component)
        guard = 0
        while c is not None and guard <= len(comps):
            path.append((c, best_group.get(c, "")))
            c = hop.get(c)
            guard += 1
        cols: list[str] | Callable[[], list[str]] = []
        if table.columns is not None:
            cols = partial(table.columns, i)
        suspects.append(
            Suspect(
                r,
                table.component,
                table.labels[i],
                float(np.exp(phi[j])),
                float(zeta[j]),
                cols,
                path,
            )
        )
    return Ranking(suspects, cycles, sink_list)


def _ranks(labels: list[str]) -> np.ndarray:
    """Position of each label in sorted order (the tie-break between equal scores)."""
    out = np.empty(len(labels), dtype=np.int64)
    out[sorted(range(len(labels)), key=labels.__getitem__)] = np.arange(len(labels))
    return out
