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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_ALPHA = 0.5  # additive smoothing of every count table (Krichevsky-Trofimov)
_TABLE_CELLS = 1 << 15  # largest precomputed score table of one column (cells)
_TREE_CELLS = 1 << 18  # all score tables of one presence pattern (cells; 2 MiB)
_TABLE_MASKS = 4  # column-presence patterns whose score tables are kept
_COUNT_CHUNK = 1 << 20  # (row, pair) cells counted per bincount


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


class CountLayout:
    """Where each column's and each column pair's counts live in two flat count vectors.

    Pair ``(i, j)``, ``i < j``, owns ``k_i * k_j`` consecutive cells (row-major in the codes
    of ``i`` then ``j``), so every pairwise contingency table of a sample is one ``bincount``.
    """

    def __init__(self, n_codes: Sequence[int]) -> None:
        k = np.asarray(n_codes, dtype=np.int64).reshape(-1)
        d = len(k)
        self.k = k
        self.marginal_at = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
        self.pi, self.pj = (a.astype(np.int64) for a in np.triu_indices(d, 1))
        sizes = k[self.pi] * k[self.pj]
        self.pair_at = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.cells = int(sizes.sum())
        self.cell_pair = np.repeat(np.arange(len(sizes)), sizes)
        local = np.arange(self.cells) - self.pair_at[self.cell_pair]
        width = k[self.pj][self.cell_pair]
        self.cell_x = self.marginal_at[self.pi][self.cell_pair] + local // np.maximum(width, 1)
        self.cell_y = self.marginal_at[self.pj][self.cell_pair] + local % np.maximum(width, 1)

    def block(self, joint: np.ndarray, i: int, j: int) -> np.ndarray:
        """Contingency table of columns ``i`` (rows) and ``j`` (columns), ``i != j``."""
        a, b = (i, j) if i < j else (j, i)
        d = len(self.k)
        p = a * d - a * (a + 1) // 2 + (b - a - 1)
        start = int(self.pair_at[p])
        table = joint[start : start + int(self.k[a] * self.k[b])].reshape(self.k[a], self.k[b])
        return table if i < j else table.T


@dataclass
class TreeCounts:
    """Sufficient statistics of a tree fit: row count, per-column and pairwise code counts.

    Counts add and subtract, so leave-one-run-out fits need one count per run, not a refit
    per left-out run.
    """

    n: int
    marginal: np.ndarray
    joint: np.ndarray

    @classmethod
    def of(cls, codes: np.ndarray, layout: CountLayout) -> TreeCounts:
        """Count one code matrix (rows, columns)."""
        n, d = codes.shape
        marginal = np.bincount(
            (codes + layout.marginal_at).ravel(), minlength=int(layout.k.sum())
        ).astype(np.int64)
        joint = np.zeros(layout.cells, dtype=np.int64)
        if n and len(layout.pi):
            step = max(1, _COUNT_CHUNK // len(layout.pi))
            kj = layout.k[layout.pj][:, None]
            at = layout.pair_at[:, None]
            codes_t = np.ascontiguousarray(codes.T)  # whole rows per column: cheap gathers
            for start in range(0, n, step):
                part = codes_t[:, start : start + step]
                flat = part[layout.pi] * kj
                flat += part[layout.pj]
                flat += at
                joint += np.bincount(flat.ravel(), minlength=layout.cells)
        return cls(n, marginal, joint)

    def __add__(self, other: TreeCounts) -> TreeCounts:
        return TreeCounts(
            self.n + other.n, self.marginal + other.marginal, self.joint + other.joint
        )

    def __sub__(self, other: TreeCounts) -> TreeCounts:
        return TreeCounts(
            self.n - other.n, self.marginal - other.marginal, self.joint - other.joint
        )


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
        layout = CountLayout(n_codes)
        counts = TreeCounts.of(np.asarray(codes, dtype=np.int64), layout)
        return cls.from_counts(counts, layout, min_mi)

    @classmethod
    def from_counts(
        cls, counts: TreeCounts, layout: CountLayout, min_mi: float = 1e-3
    ) -> ChowLiuTree:
        """:meth:`fit` from counts made with ``layout``."""
        k = layout.k
        d, n = len(k), counts.n
        seen = (counts.marginal > 0).astype(np.int64)
        used = np.maximum(np.add.reduceat(seen, layout.marginal_at), 1) if d else seen
        weights = np.zeros((d, d))
        if d > 1:
            pair_mi = np.zeros(len(layout.pi))
            if n > 0:
                # sum (c/n) log(c n / (a b)) over a pair's cells is
                # (sum c log c)/n + log n - (sum a log a + sum b log b)/n: one pass over cells
                joint = counts.joint.astype(np.float64)
                cell_terms = joint * np.log(np.maximum(joint, 1.0))
                pair_sum = np.bincount(
                    layout.cell_pair, weights=cell_terms, minlength=len(layout.pi)
                )
                marginal = counts.marginal.astype(np.float64)
                col_sum = np.add.reduceat(
                    marginal * np.log(np.maximum(marginal, 1.0)), layout.marginal_at
                )
                pair_mi = (pair_sum - col_sum[layout.pi] - col_sum[layout.pj]) / n + np.log(n)
                # Miller-Madow bias of independent columns
                bias = (used[layout.pi] - 1) * (used[layout.pj] - 1) / (2 * n)
                pair_mi = np.maximum(0.0, pair_mi - bias)
            # Keep only links stronger than chance: for independent columns 2n*MI is
            # chi-squared with df degrees of freedom, so MI above its bias plus three
            # standard deviations is real dependence, not sampling noise.
            df = (used[layout.pi] - 1) * (used[layout.pj] - 1)
            noise = 3.0 * np.sqrt(2.0 * df) / (2.0 * max(n, 1))
            w = np.maximum(0.0, pair_mi - noise)
            weights[layout.pi, layout.pj] = w
            weights[layout.pj, layout.pi] = w
        parent = np.full(d, -1)
        mi = np.zeros(d)
        # Prim's algorithm from the column with the strongest links; edges too weak to be
        # told from noise are left out (a forest), so an unrelated column stays on its own.
        if d:
            # plain lists: for a few dozen columns this beats numpy's per-call overhead
            w = weights.tolist()
            start = int(np.argmax(weights.sum(1)))
            in_tree = [False] * d
            in_tree[start] = True
            best, link = list(w[start]), [start] * d
            for _ in range(d - 1):
                j, top = -1, -np.inf
                for i in range(d):
                    if not in_tree[i] and (j < 0 or best[i] > top):
                        j, top = i, best[i]
                in_tree[j] = True
                if top > min_mi:
                    parent[j], mi[j] = link[j], top
                row = w[j]
                for i in range(d):
                    if not in_tree[i] and row[i] > best[i]:
                        best[i], link[i] = row[i], j
        root_log_p = []
        for j in range(d):
            at, kj = int(layout.marginal_at[j]), int(k[j])
            root_log_p.append(np.log((counts.marginal[at : at + kj] + _ALPHA) / (n + _ALPHA * kj)))
        cpts: list[np.ndarray | None] = []
        for j in range(d):
            p = parent[j]
            if p < 0:
                cpts.append(None)
                continue
            table = layout.block(counts.joint, int(p), j) + _ALPHA
            cpts.append(np.log(table / table.sum(1, keepdims=True)))
        return cls([int(x) for x in k], parent, root_log_p, cpts, mi)

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

        Each column's score depends only on its own code and its blanket's codes, so for every
        column with a small blanket the score of every combination is computed once (per
        presence pattern) and a row's score is one lookup: all such columns are scored by a
        single gather. Columns with too many combinations are computed row by row as before.
        """
        n, d = codes.shape
        present = np.ones(d, dtype=bool) if present is None else np.asarray(present, dtype=bool)
        tables = self._tables(present)
        codes_t = np.asarray(codes).T
        if only is None:
            cols, stride, blanket, start = tables.cols, tables.stride, tables.blanket, tables.start
            sizes, slow = tables.sizes, tables.slow
        else:
            wanted = np.zeros(d, dtype=bool)
            wanted[list(only)] = True
            keep = wanted[tables.cols]
            cols, stride = tables.cols[keep], tables.stride[keep]
            blanket, start, sizes = tables.blanket[keep], tables.start[keep], tables.sizes[keep]
            slow = [j for j in tables.slow if wanted[j]]
        out = np.empty((d, n))
        if len(cols) < d:
            out.fill(np.nan)
        if len(cols):
            idx = codes_t[cols].astype(tables.index_dtype)
            idx += start[:, None]
            # columns come largest blanket first: slot a concerns only the first few rows
            for a in range(blanket.shape[1]):
                m = int(np.count_nonzero(sizes > a))
                idx[:m] += codes_t[blanket[:m, a]] * stride[:m, a, None]
            out[cols] = np.take(tables.flat, idx)
        for j in slow:
            out[j] = self._column_score(codes, present, j)
        return out.T

    def _column_score(self, codes: np.ndarray, present: np.ndarray, j: int) -> np.ndarray:
        """One column's scores computed row by row (the blanket has too many combinations)."""
        n = len(codes)
        p = int(self.parent[j])
        if p >= 0 and present[p]:
            logits = self.cpts[j][codes[:, p]]  # (n, k_j)
        else:
            logits = np.broadcast_to(self.root_log_p[j], (n, self.n_codes[j])).copy()
        for c in self.children[j]:
            if present[c]:  # log P(x_c | x_j = each code): a row gather from the table's transpose
                logits += np.ascontiguousarray(self.cpts[c].T)[codes[:, c]]  # (n, k_j)
        top = logits.max(1, keepdims=True)
        norm = top[:, 0] + np.log(np.exp(logits - top).sum(1))
        return logits[np.arange(n), codes[:, j]] - norm

    def _tables(self, present: np.ndarray) -> _ScoreTables:
        cache = self.__dict__.setdefault("_score_tables", {})
        key = present.tobytes()
        found = cache.get(key)
        if found is None:
            if len(cache) >= _TABLE_MASKS:
                cache.pop(next(iter(cache)))
            found = cache[key] = _ScoreTables(self, present)
        return found

    def __getstate__(self) -> dict:
        # Score tables are derived from the fitted tables: rebuilt on first use after a restore.
        return {k: v for k, v in self.__dict__.items() if k != "_score_tables"}

    def link_strength(self, j: int) -> float:
        """Total mutual information (nats) between column ``j`` and its blanket."""
        return float(self.mi[j] + sum(self.mi[c] for c in self.children[j]))


class _ScoreTables:
    """``log P(x_j | blanket)`` for every combination of codes, per column, for one presence
    pattern; laid out in one flat array so that many columns are scored by one gather."""

    def __init__(self, tree: ChowLiuTree, present: np.ndarray) -> None:
        d = len(tree.n_codes)
        cols, parts, blankets, strides, starts, slow = [], [], [], [], [], []
        at = 0
        for j in range(d):
            if not present[j]:
                continue
            table, blanket = _score_table(tree, present, j, _TREE_CELLS - at)
            if table is None:
                slow.append(j)
                continue
            shape = table.shape
            stride = [math.prod(shape[a + 1 :]) for a in range(len(blanket))]
            cols.append(j)
            parts.append(table.ravel())
            blankets.append(blanket)
            strides.append(stride)
            starts.append(at)
            at += table.size
        width = max((len(b) for b in blankets), default=0)
        order = sorted(range(len(cols)), key=lambda i: -len(blankets[i]))
        cols, blankets, strides, starts = (
            [seq[i] for i in order] for seq in (cols, blankets, strides, starts)
        )
        self.sizes = np.array([len(b) for b in blankets], dtype=np.int64)
        self.cols = np.array(cols, dtype=np.int64)
        # blanket slots past a column's own neighbours point at column 0 with stride 0
        self.blanket = np.zeros((len(cols), width), dtype=np.int64)
        self.stride = np.zeros((len(cols), width), dtype=np.int64)
        for i, (b, s) in enumerate(zip(blankets, strides, strict=True)):
            self.blanket[i, : len(b)] = b
            self.stride[i, : len(s)] = s
        self.start = np.array(starts, dtype=np.int64)
        self.flat = np.concatenate(parts) if parts else np.zeros(0)
        # 32-bit cell numbers when they fit: half the memory traffic of the index arithmetic
        small = len(self.flat) < np.iinfo(np.int32).max
        self.index_dtype = np.int32 if small else np.intp
        self.start = self.start.astype(self.index_dtype)
        self.stride = self.stride.astype(self.index_dtype)
        self.slow = slow


def _score_table(
    tree: ChowLiuTree, present: np.ndarray, j: int, room: int
) -> tuple[np.ndarray | None, list[int]]:
    """Scores of column ``j`` over all (blanket codes..., own code), or ``None`` if the table
    would be larger than ``_TABLE_CELLS`` or than the ``room`` left."""
    p = int(tree.parent[j])
    has_parent = p >= 0 and bool(present[p])
    kids = [int(c) for c in tree.children[j] if present[c]]
    blanket = ([p] if has_parent else []) + kids
    k = tree.n_codes
    shape = [k[b] for b in blanket] + [k[j]]
    if math.prod(shape) > min(_TABLE_CELLS, room):
        return None, blanket
    m = len(blanket)
    if has_parent:
        logits = tree.cpts[j].reshape([k[p]] + [1] * (m - 1) + [k[j]])
    else:
        logits = tree.root_log_p[j].reshape([1] * m + [k[j]])
    for a, c in enumerate(kids, start=1 if has_parent else 0):
        view = [1] * (m + 1)
        view[a], view[-1] = k[c], k[j]
        logits = logits + tree.cpts[c].T.reshape(view)
    if list(logits.shape) != shape:  # every blanket axis has a term: this never broadcasts
        logits = np.broadcast_to(logits, shape)
    top = logits.max(-1, keepdims=True)
    norm = top + np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return logits - norm, blanket
