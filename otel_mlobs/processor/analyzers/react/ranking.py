"""Root-cause ranking over the dataflow graph: what to fix first.

Nodes are (component, column group), each with an error score ζ (1 at the alarm threshold,
above 1 when anomalous, below 1 when quiet). Walking back from the predictions over every path,
a node's score is

    φ_i = max over paths p from the predictions to i of  Π_{j ∈ p, j up to i} ζ_j

Errors propagate downstream, so a chain of anomalous nodes multiplies up and peaks at its
furthest-upstream member, the origin; quiet nodes (ζ < 1) upstream of it shrink the product
again. Because every group of a component reads every group of its upstream components, the
maximum over paths factorizes per component: φ(c, g) = ζ(c, g) · max over downstream d of
best(d), computed in one pass in reverse topological order, O(nodes + edges), in log space.

Declared lineage can contain cycles (a model trained on the feedback to its own predictions).
A depth-first walk back from the predictions finds the back edges, reports each cycle, and drops
those edges for the ranking, so the walk always ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
class Suspect:
    """A ranked node with its path score and the path back to the predictions."""

    rank: int
    component: str
    group: str
    phi: float
    zeta: float
    columns: list[str]
    path: list[tuple[str, str]]  # (component, group) from this node down to the predictions


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
                cycles.append(list(reversed(path[path.index(nxt):])))
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
    for a, b in edge_set:
        if a == b and [a] not in cycles:
            cycles.append([a])
    down: dict[str, list[str]] = {c: [] for c in comps}
    out_deg = dict.fromkeys(comps, 0)
    for a, b in kept:
        down[a].append(b)
        out_deg[a] += 1
    # Reverse topological order (Kahn on out-degree): all consumers before their producers.
    ready = sorted(c for c in comps if out_deg[c] == 0)
    preds: dict[str, list[str]] = {c: [] for c in comps}
    for a, b in kept:
        preds[b].append(a)
    best: dict[str, float] = {}  # log of max φ over the component's groups
    best_group: dict[str, str] = {}
    hop: dict[str, str | None] = {}
    phi: dict[tuple[str, str], float] = {}
    sink_set = set(sink_list)
    while ready:
        c = ready.pop()
        # (log score, next hop); a sink, or a component leading nowhere, reaches the root directly
        options: list[tuple[float, str | None]] = [(best[d], d) for d in down[c] if d in best]
        if c in sink_set or not options:
            options.append((0.0, None))
        base, hop[c] = max(options, key=lambda o: (o[0], o[1] is None, o[1] or ""))
        top = -np.inf
        for n in by_comp.get(c, ()):
            v = base + float(np.log(max(n.zeta, 1e-300)))
            phi[(c, n.group)] = v
            if v > top:
                top, best_group[c] = v, n.group
        if not by_comp.get(c):
            top = base  # an unobserved component passes its downstream score through
            best_group[c] = ""
        best[c] = top
        for p in preds[c]:
            out_deg[p] -= 1
            if out_deg[p] == 0:
                ready.append(p)
        ready.sort()

    all_nodes = [n for c in sorted(by_comp) for n in by_comp[c]]
    all_nodes.sort(key=lambda n: (-phi[(n.component, n.group)], -n.zeta, n.component, n.group))
    suspects = []
    for r, n in enumerate(all_nodes[:k], start=1):
        path = [(n.component, n.group)]
        c = hop.get(n.component)
        guard = 0
        while c is not None and guard <= len(comps):
            path.append((c, best_group.get(c, "")))
            c = hop.get(c)
            guard += 1
        suspects.append(Suspect(r, n.component, n.group, float(np.exp(phi[(n.component,
                        n.group)])), n.zeta, list(n.columns), path))
    return Ranking(suspects, cycles, sink_list)
