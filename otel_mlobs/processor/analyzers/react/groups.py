"""Co-erroneous column groups: columns whose error scores rise and fall together.

A stuck weather join freezes five columns at once; reporting five findings hides that there is
one fault. Columns whose per-run error scores are strongly correlated over recent runs are
clustered spectrally (normalized graph Laplacian of the thresholded correlation affinity, the
eigengap picks the number of groups, k-means on the row-normalized eigenvectors), following
Ng, Jordan & Weiss, "On Spectral Clustering" (NIPS 2001).

The correlation matrix is *sampled*: only the ``max_columns`` columns with the largest recent
error take part (the rest stay singletons), which bounds the eigen-decomposition per component.
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

    ``series`` is runs × columns of error scores ζ. Only columns whose peak ζ reached
    ``active`` are clustered (a quiet column's noise correlates with nothing worth reporting).
    Groups are returned sorted by their first column name, members by name.
    """
    n = series.shape[1] if series.ndim == 2 else 0
    if n == 0:
        return []
    peak = series.max(axis=0) if len(series) else np.zeros(n)
    cand = np.flatnonzero(peak >= active)
    if len(cand) > max_columns:
        cand = cand[np.argsort(-peak[cand], kind="stable")[:max_columns]]
    assigned = np.full(n, -1, dtype=np.int64)
    if len(cand) >= 2 and len(series) >= 3:
        corr = correlation(series[:, cand])
        aff = np.where(corr >= min_corr, corr, 0.0)
        labels = spectral_groups(aff, max_groups)
        assigned[cand] = labels
    groups: dict[int, list[int]] = {}
    nxt = int(assigned.max()) + 1
    for i in range(n):
        lab = int(assigned[i])
        if lab < 0:
            lab = nxt
            nxt += 1
        groups.setdefault(lab, []).append(i)
    out = [sorted(g, key=lambda i: names[i]) for g in groups.values()]
    return sorted(out, key=lambda g: names[g[0]])
