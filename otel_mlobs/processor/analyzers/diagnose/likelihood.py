"""A Chow-Liu tree over discretized columns, scoring each column given its neighbours.

Chow and Liu (1968) showed that the best tree-shaped approximation of a joint distribution is
the maximum spanning tree of pairwise mutual information. Here it links each column to the
columns that predict it best (a fare to its distance, a zone id to its zone name), and every
parameter is a smoothed count in a small table, so a score can always be explained.

The score of column ``j`` in a row is ``log P(x_j | its tree neighbours)``: the likelihood of
the column with the column masked and re-predicted from its Markov blanket (its parent and its
children). A healthy value scores as it did in the reference; a value that disagrees with the
columns it travels with (miles where the fare says kilometres, a rider's history that belongs
to someone else) scores far lower, while a value that is merely more common or rarer than
before (a busy evening) moves the score only a little.

>>> rng = np.random.default_rng(0)
>>> a = rng.integers(0, 4, 2000)
>>> b = (a + (rng.random(2000) < 0.1)) % 4  # b follows a
>>> model = ChowLiuTree.fit(np.stack([a, b], 1), [4, 4])
>>> healthy = model.column_scores(np.stack([a, b], 1)).mean(0)
>>> broken = model.column_scores(np.stack([a, rng.integers(0, 4, 2000)], 1)).mean(0)
>>> bool(broken[1] < healthy[1] - 1.0)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_ALPHA = 0.5  # additive smoothing of every count table (Krichevsky-Trofimov)


def mutual_information(x: np.ndarray, y: np.ndarray, kx: int, ky: int) -> float:
    """Plug-in mutual information (nats) minus the Miller-Madow bias of independent columns."""
    n = len(x)
    if n == 0:
        return 0.0
    joint = np.bincount(x * ky + y, minlength=kx * ky).reshape(kx, ky) / n
    px, py = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(px, py)[nz])).sum())
    bias = (np.count_nonzero(px) - 1) * (np.count_nonzero(py) - 1) / (2 * n)
    return max(0.0, mi - bias)


class ChowLiuTree:
    """Tree-structured model of discrete columns (codes ``0..k_j-1``)."""

    def __init__(
        self,
        n_codes: Sequence[int],
        parent: np.ndarray,
        root_log_p: list[np.ndarray],
        cpts: list[np.ndarray | None],
        mi: np.ndarray,
    ) -> None:
        self.n_codes = list(n_codes)
        self.parent = parent  # -1 for the root(s)
        self.root_log_p = root_log_p  # per column: log P(x_j), used for roots
        self.cpts = cpts  # per column: log P(x_j | x_parent) of shape (k_parent, k_j), or None
        self.mi = mi  # mutual information of each column with its parent (0 for roots)
        d = len(self.n_codes)
        self.children = [np.flatnonzero(parent == j) for j in range(d)]

    @classmethod
    def fit(cls, codes: np.ndarray, n_codes: Sequence[int], min_mi: float = 1e-3) -> ChowLiuTree:
        """Learn structure (maximum spanning tree of mutual information) and tables."""
        n, d = codes.shape
        used = [
            max(int(np.count_nonzero(np.bincount(codes[:, j], minlength=k))), 1)
            for j, k in enumerate(n_codes)
        ]
        weights = np.zeros((d, d))
        for i in range(d):
            for j in range(i + 1, d):
                # Keep only links stronger than chance: for independent columns 2n*MI is
                # chi-squared with df degrees of freedom, so MI above its bias plus three
                # standard deviations is real dependence, not sampling noise.
                df = (used[i] - 1) * (used[j] - 1)
                noise = 3.0 * np.sqrt(2.0 * df) / (2.0 * max(n, 1))
                weights[i, j] = weights[j, i] = max(
                    0.0,
                    mutual_information(codes[:, i], codes[:, j], n_codes[i], n_codes[j]) - noise,
                )
        parent = np.full(d, -1)
        mi = np.zeros(d)
        # Prim's algorithm from the column with the strongest links; edges too weak to be
        # told from noise are left out (a forest), so an unrelated column stays on its own.
        if d:
            in_tree = np.zeros(d, dtype=bool)
            best = np.full(d, -np.inf)
            link = np.full(d, -1)
            start = int(np.argmax(weights.sum(1)))
            in_tree[start] = True
            best[:] = weights[start]
            link[:] = start
            for _ in range(d - 1):
                cand = np.where(in_tree, -np.inf, best)
                j = int(np.argmax(cand))
                in_tree[j] = True
                if cand[j] > min_mi:
                    parent[j], mi[j] = link[j], cand[j]
                better = ~in_tree & (weights[j] > best)
                best[better], link[better] = weights[j][better], j
        root_log_p = [
            np.log((np.bincount(codes[:, j], minlength=k) + _ALPHA) / (n + _ALPHA * k))
            for j, k in enumerate(n_codes)
        ]
        cpts: list[np.ndarray | None] = []
        for j, k in enumerate(n_codes):
            p = parent[j]
            if p < 0:
                cpts.append(None)
                continue
            kp = n_codes[p]
            table = np.bincount(codes[:, p] * k + codes[:, j], minlength=kp * k).reshape(kp, k)
            table = table + _ALPHA
            cpts.append(np.log(table / table.sum(1, keepdims=True)))
        return cls(n_codes, parent, root_log_p, cpts, mi)

    def blanket(self, j: int) -> list[int]:
        """Columns that column ``j`` is scored against (its parent and children)."""
        p = int(self.parent[j])
        return ([p] if p >= 0 else []) + self.children[j].tolist()

    def column_scores(
        self,
        codes: np.ndarray,
        present: np.ndarray | None = None,
        only: Sequence[int] | None = None,
    ) -> np.ndarray:
        """``log P(x_j | blanket)`` per row and column, shape (rows, columns).

        Columns not ``present`` score NaN and are marginalized out of their neighbours' scores
        exactly: an absent child's factor sums to one, and an absent parent leaves the column's
        own marginal. So a vanished column (a schema problem, reported elsewhere) is never
        evidence against the columns it used to travel with. ``only`` limits the columns scored.
        """
        n, d = codes.shape
        present = np.ones(d, dtype=bool) if present is None else present
        out = np.full((n, d), np.nan)
        for j in range(d) if only is None else only:
            if not present[j]:
                continue
            p = int(self.parent[j])
            if p >= 0 and present[p]:
                logits = self.cpts[j][codes[:, p]]  # (n, k_j)
            else:
                logits = np.broadcast_to(self.root_log_p[j], (n, self.n_codes[j])).copy()
            for c in self.children[j]:
                if present[c]:
                    logits = logits + self.cpts[c][:, codes[:, c]].T  # (n, k_j)
            top = logits.max(1, keepdims=True)
            norm = top[:, 0] + np.log(np.exp(logits - top).sum(1))
            out[:, j] = logits[np.arange(n), codes[:, j]] - norm
        return out

    def link_strength(self, j: int) -> float:
        """Total mutual information (nats) between column ``j`` and its blanket."""
        return float(self.mi[j] + sum(self.mi[c] for c in self.children[j]))
