"""Co-erroneous column groups: columns whose error scores rise and fall together.

A stuck weather join freezes five columns at once; reporting five findings hides that there is
one fault. Columns whose per-run error scores are strongly correlated over recent runs form the
edges of a graph (correlation at least ``min_corr``); its connected components are the groups.
That is what spectral clustering of the thresholded affinity finds when the affinity is
block-structured, the usual case (the columns of one fault move as one), for the price of a
correlation matrix and a graph traversal. Only a component that is not a clique (a chain of
columns each close to the next but not to all) is split spectrally (normalized graph
Laplacian, the eigengap picks the number of groups, k-means on the row-normalized
eigenvectors), following Ng, Jordan & Weiss, "On Spectral Clustering" (NIPS 2001).

The correlation matrix is *sampled*: only the ``max_columns`` columns with the largest recent
error take part (the rest stay singletons), which bounds the work per component.
"""

from __future__ import annotations

import numpy as np


def correlation(series: np.ndarray) -> np.ndarray:
    """Pearson correlation between the columns of ``series`` (runs × columns); 0 where flat."""
    x = series - series.mean(axis=0)
    norm = np.sqrt((x * x).sum(axis=0))
    ok = norm > 1e-12
    x = np.where(ok, x / np.where(ok, norm, 1.0), 0.0)
    c = x.T @ x
    np.fill_diagonal(c, 1.0)
    return np.clip(c, -1.0, 1.0)


def _kmeans(points: np.ndarray, k: int, iters: int = 50) -> np.ndarray:
    """Deterministic k-means with farthest-point seeding (no randomness, so groups are stable)."""
    centers = [points[0]]
    dist = ((points - centers[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        centers.append(points[int(np.argmax(dist))])
        dist = np.minimum(dist, ((points - centers[-1]) ** 2).sum(axis=1))
    c = np.asarray(centers)
    labels = np.zeros(len(points), dtype=np.int64)
    for it in range(iters):
        d = ((points[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
        new = d.argmin(axis=1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = points[labels == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return labels


def spectral_groups(affinity: np.ndarray, max_groups: int, eig_gap: float = 0.05) -> np.ndarray:
    """Cluster labels (0..k-1) of a symmetric non-negative affinity matrix.

    k is the number of normalized-Laplacian eigenvalues below ``eig_gap`` (exactly the number of
    connected components when the affinity is block-structured), capped at ``max_groups``.
    """
    n = len(affinity)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    w = affinity.copy()
    np.fill_diagonal(w, 0.0)
    deg = w.sum(axis=1)
    isolated = deg <= 0
    inv = np.where(isolated, 0.0, 1.0 / np.sqrt(np.where(isolated, 1.0, deg)))
    lap = np.eye(n) - inv[:, None] * w * inv[None, :]
    vals, vecs = np.linalg.eigh(lap)
    k = int(np.clip((vals < eig_gap).sum(), 1, max(1, max_groups)))
    emb = vecs[:, :k]
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.where(norms > 0, norms, 1.0)
    labels = _kmeans(emb, k)
    # An isolated column has no edge to anyone: it is its own group whatever k-means said.
    nxt = labels.max() + 1
    for i in np.flatnonzero(isolated):
        labels[i] = nxt
        nxt += 1
    return labels


def connected_components(adj: np.ndarray) -> np.ndarray:
    """Component ids 0..k-1 of a small symmetric boolean adjacency (diagonal set).

    Every node takes the smallest id among its neighbours until nothing changes: at most the
    graph's diameter rounds of one matrix operation, which beats a general graph library's
    call overhead on the few dozen columns grouping ever sees.
    """
    m = len(adj)
    lab = np.arange(m)
    while True:
        new = np.where(adj, lab[None, :], m).min(axis=1)
        if np.array_equal(new, lab):
            break
        lab = new
    return np.unique(lab, return_inverse=True)[1].reshape(-1).astype(np.int64)


def group_labels(
    series: np.ndarray,
    *,
    min_corr: float = 0.8,
    active: float = 1.0,
    max_columns: int = 128,
    max_groups: int = 32,
) -> np.ndarray:
    """Group id (0, 1, ...) of every column of ``series`` (runs × columns of error scores ζ).

    Only columns whose peak ζ reached ``active`` are grouped (a quiet column's noise correlates
    with nothing worth reporting); every other column is a group of its own. Ids are arbitrary.
    """
    n = series.shape[1] if series.ndim == 2 else 0
    labels = np.arange(n, dtype=np.int64)
    if n == 0 or len(series) < 3:
        return labels
    peak = series.max(axis=0)
    cand = np.flatnonzero(peak >= active)
    if len(cand) > max_columns:
        cand = cand[np.sort(np.argsort(-peak[cand], kind="stable")[:max_columns])]
    if len(cand) < 2:
        return labels
    corr = correlation(series[:, cand])
    adj = corr >= min_corr
    np.fill_diagonal(adj, True)
    comp = connected_components(adj)
    k = int(comp.max()) + 1
    if k == len(cand):
        return labels  # no two candidates move together
    sub = comp
    nxt = k
    for c in np.flatnonzero(np.bincount(comp) >= 3):
        members = np.flatnonzero(comp == c)
        block = adj[np.ix_(members, members)]
        if block.all():
            continue  # a clique: the columns of one fault, moving as one
        aff = np.where(block, corr[np.ix_(members, members)], 0.0)
        split = spectral_groups(aff, max_groups)
        sub[members] = np.where(split == 0, c, nxt + split - 1)
        nxt += int(split.max())
    labels[cand] = n + sub  # ids clear of the singletons' own
    return labels


def co_error_groups(
    series: np.ndarray,
    names: list[str],
    *,
    min_corr: float = 0.8,
    active: float = 1.0,
    max_columns: int = 128,
    max_groups: int = 32,
) -> list[list[int]]:
    """Groups of column indices whose error series move together; singletons for the rest.

    Groups are returned sorted by their first column name, members by name.
    """
    labels = group_labels(
        series, min_corr=min_corr, active=active, max_columns=max_columns, max_groups=max_groups
    )
    return groups_by_name(labels, names)


def groups_by_name(labels: np.ndarray, names: list[str]) -> list[list[int]]:
    """Member lists of each label, members sorted by name, groups by their first member's."""
    by_name = sorted(range(len(names)), key=names.__getitem__)
    groups: dict[int, list[int]] = {}
    for i in by_name:  # visiting columns in name order keeps every member list sorted
        groups.setdefault(int(labels[i]), []).append(i)
    return list(groups.values())
