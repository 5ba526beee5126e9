"""Bucketing schemes for the importance-weighting estimator, and their accuracy tables.

A scheme maps a row to one of ``n_buckets`` cells. Three families compete:

* :class:`SingleScheme`: one feature quantized (numeric: reference quantiles; categorical: the
  frequent values, the rest "other"), plus a cell for missing or never-seen values;
* :class:`PairScheme`: two coarsely quantized features crossed; a cell's parent is the first
  feature's cell;
* :class:`TreeScheme`: the leaves of a shallow decision tree fitted on the reference to predict
  whether the model is right (categoricals target-encoded, unseen values routed as missing).

A bucket's accuracy is shrunk towards its parent's (and the parent's towards the overall rate)
by ``SHRINK`` pseudo-rows, so a live bucket the reference never saw, or saw a few times, falls
back to its parent instead of to noise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from otel_mlobs.processor.analyzers.detect.refdata import RefData

SHRINK = 10.0
MAX_RARE = 10_000  # reference values remembered as "seen, but rare" per categorical column


def _member(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in ``sorted_values``, or -1."""
    if sorted_values.size == 0:
        return np.full(values.shape[0], -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(sorted_values, values), 0, sorted_values.size - 1)
    return np.where(sorted_values[pos] == values, pos, -1)


class Quantizer:
    """Cells of one column: value cells, then one last cell for missing or unseen values."""

    def __init__(self, name: str, numeric: bool, bins: int, min_count: int = 1) -> None:
        self.name = name
        self.numeric = numeric
        self.bins = bins
        self.min_count = min_count
        self.edges = np.zeros(0)
        self.categories = np.zeros(0, dtype=str)
        self.rare = np.zeros(0, dtype=str)

    @property
    def n_cells(self) -> int:
        return (self.edges.size + 2) if self.numeric else (self.categories.size + 2)

    def fit(self, values: np.ndarray) -> Quantizer:
        if self.numeric:
            v = values[np.isfinite(values)]
            if v.size:
                qs = np.quantile(v, np.linspace(0, 1, self.bins + 1)[1:-1])
                self.edges = np.unique(qs)
        else:
            uniq, counts = np.unique(values, return_counts=True)
            order = np.argsort(-counts, kind="stable")
            keep = order[counts[order] >= self.min_count][: self.bins - 1]
            self.categories = np.sort(uniq[keep])
            rest = np.setdiff1d(uniq, self.categories)
            self.rare = rest[np.argsort(-counts[np.isin(uniq, rest)], kind="stable")][:MAX_RARE]
            self.rare = np.sort(self.rare)
        return self

    def codes(self, values: np.ndarray) -> np.ndarray:
        """Cell of each value: value cells ``0..n-2``, missing/unseen ``n-1``."""
        if self.numeric:
            out = np.searchsorted(self.edges, values, side="right")
            out[~np.isfinite(values)] = self.n_cells - 1
            return out.astype(np.int64)
        out = np.full(values.shape[0], self.n_cells - 1, dtype=np.int64)
        hit = _member(self.categories, values)
        out[hit >= 0] = hit[hit >= 0]  # frequent values
        rare = (_member(self.rare, values) >= 0) & (hit < 0)
        out[rare] = self.categories.size  # "other": seen in the reference, but rarely
        return out

    def describe(self) -> dict[str, Any]:
        if self.numeric:
            return {"feature": self.name, "edges": self.edges.tolist()}
        return {"feature": self.name, "categories": self.categories.tolist()}


class Scheme(ABC):
    """A bucketing: ``cells(features) -> (cells, parents or None)``."""

    name: str
    columns: tuple[str, ...]
    n_buckets: int
    n_parents: int = 0
    parent_of: np.ndarray | None = None

    @abstractmethod
    def fit(self, data: RefData) -> Scheme:
        """A fitted copy of this scheme."""

    @abstractmethod
    def cells(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Bucket of each row and, for hierarchical schemes, its parent cell."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able description."""


class SingleScheme(Scheme):
    def __init__(self, column: str, numeric: bool, bins: int, min_count: int) -> None:
        self.name = f"single:{column}/{bins}"
        self.columns = (column,)
        self._q = Quantizer(column, numeric, bins, min_count)
        self.n_buckets = bins + 1

    def fit(self, data: RefData) -> SingleScheme:
        out = SingleScheme(self.columns[0], self._q.numeric, self._q.bins, self._q.min_count)
        out._q.fit(data.features[self.columns[0]])
        out.n_buckets = out._q.n_cells
        return out

    def cells(self, features):
        return self._q.codes(features[self.columns[0]]), None

    def describe(self):
        return {"kind": "single", **self._q.describe()}


class PairScheme(Scheme):
    def __init__(self, a: tuple[str, bool], b: tuple[str, bool], bins: int, min_count: int):
        self.name = f"pair:{a[0]}x{b[0]}/{bins}"
        self.columns = (a[0], b[0])
        self._qa = Quantizer(a[0], a[1], bins, min_count)
        self._qb = Quantizer(b[0], b[1], bins, min_count)
        self.n_buckets = (bins + 1) ** 2

    def fit(self, data: RefData) -> PairScheme:
        qa, qb = self._qa, self._qb
        out = PairScheme((qa.name, qa.numeric), (qb.name, qb.numeric), qa.bins, qa.min_count)
        out._qa.fit(data.features[qa.name])
        out._qb.fit(data.features[qb.name])
        nb = out._qb.n_cells
        out.n_buckets = out._qa.n_cells * nb
        out.n_parents = out._qa.n_cells
        out.parent_of = np.arange(out.n_buckets) // nb
        return out

    def cells(self, features):
        a = self._qa.codes(features[self._qa.name])
        b = self._qb.codes(features[self._qb.name])
        return a * self._qb.n_cells + b, a

    def describe(self):
        return {"kind": "pair", "first": self._qa.describe(), "second": self._qb.describe()}


class TreeScheme(Scheme):
    def __init__(self, kinds: dict[str, bool], depth: int, min_leaf: int, max_leaves: int):
        self.name = f"tree:depth{depth}"
        self.columns = tuple(kinds)
        self._kinds = dict(kinds)
        self.depth = depth
        self.min_leaf = min_leaf
        self.max_leaves = max_leaves
        self._encoding: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._tree: DecisionTreeClassifier | None = None
        self._leaf_index = np.zeros(0, dtype=np.int64)
        self.n_buckets = max_leaves

    def _matrix(self, features: dict[str, np.ndarray]) -> np.ndarray:
        cols = []
        for name, numeric in self._kinds.items():
            v = features[name]
            if numeric:
                cols.append(v.astype(np.float64))
                continue
            cats, rates = self._encoding[name]  # target encoding; unseen -> NaN (missing)
            pos = np.clip(np.searchsorted(cats, v), 0, max(cats.size - 1, 0))
            hit = cats[pos] == v if cats.size else np.zeros(v.shape[0], dtype=bool)
            cols.append(np.where(hit, rates[pos] if cats.size else np.nan, np.nan))
        return np.column_stack(cols) if cols else np.zeros((0, 0))

    def fit(self, data: RefData) -> TreeScheme:
        out = TreeScheme(self._kinds, self.depth, self.min_leaf, self.max_leaves)
        y = data.correct.astype(np.int64)
        for name, numeric in self._kinds.items():
            if not numeric:
                cats, inv = np.unique(data.features[name], return_inverse=True)
                inv = inv.reshape(-1)
                rates = np.bincount(inv, weights=y, minlength=cats.size) / np.maximum(
                    np.bincount(inv, minlength=cats.size), 1
                )
                out._encoding[name] = (cats, rates)
        x = out._matrix(data.features)
        tree = DecisionTreeClassifier(
            max_depth=self.depth,
            min_samples_leaf=self.min_leaf,
            max_leaf_nodes=self.max_leaves,
            random_state=0,
        )
        tree.fit(x, y)
        out._tree = tree
        leaves = np.flatnonzero(tree.tree_.children_left == -1)
        out._leaf_index = np.full(tree.tree_.node_count, -1, dtype=np.int64)
        out._leaf_index[leaves] = np.arange(leaves.size)
        out.n_buckets = int(leaves.size)
        return out

    def cells(self, features):
        assert self._tree is not None
        return self._leaf_index[self._tree.apply(self._matrix(features))], None

    def describe(self):
        return {"kind": "tree", "depth": self.depth, "features": list(self.columns),
                "leaves": self.n_buckets}  # fmt: skip


@dataclass(slots=True)
class AccuracyTable:
    """Shrunk accuracy and its variance per bucket of a fitted scheme."""

    acc: np.ndarray
    var: np.ndarray
    support: np.ndarray  # reference rows per bucket

    @classmethod
    def fit(cls, scheme: Scheme, data: RefData, shrink: float = SHRINK) -> AccuracyTable:
        cells, parents = scheme.cells(data.features)
        y = data.correct.astype(np.float64)
        root = (y.sum() + 1.0) / (y.size + 2.0)
        prior = np.full(scheme.n_buckets, root)
        if parents is not None and scheme.parent_of is not None:
            m_p = np.bincount(parents, minlength=scheme.n_parents)
            c_p = np.bincount(parents, weights=y, minlength=scheme.n_parents)
            acc_p = (c_p + shrink * root) / (m_p + shrink)
            prior = acc_p[scheme.parent_of]
        m = np.bincount(cells, minlength=scheme.n_buckets).astype(np.float64)
        c = np.bincount(cells, weights=y, minlength=scheme.n_buckets)
        acc = (c + shrink * prior) / (m + shrink)
        return cls(acc, acc * (1.0 - acc) / (m + shrink), m)


def candidates(
    kinds: dict[str, bool], max_buckets: int, min_support: int, n_rows: int
) -> list[Scheme]:
    """Every scheme worth trying on these features within ``max_buckets``."""
    out: list[Scheme] = []
    for name, numeric in kinds.items():
        for bins in (4, 8, 16):
            if bins + 1 <= max_buckets:
                out.append(SingleScheme(name, numeric, bins, min_support))
    for depth in (2, 3, 4, 6):
        leaves = min(2**depth, max_buckets)
        if n_rows >= 2 * min_support:
            out.append(TreeScheme(kinds, depth, min_support, leaves))
    return out


def pair_candidates(
    ranked: list[tuple[str, bool]], max_buckets: int, min_support: int
) -> list[Scheme]:
    """Crosses of the best single features, as fine as ``max_buckets`` allows."""
    bins = 1
    while (bins + 2) ** 2 <= max_buckets:
        bins += 1
    if bins < 2:
        return []
    top = ranked[:3]
    return [PairScheme(a, b, bins, min_support) for i, a in enumerate(top) for b in top[i + 1 :]]
