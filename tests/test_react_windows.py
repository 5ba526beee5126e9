"""Window statistics of the react scores against plain loops, on both of their paths."""

from __future__ import annotations

import numpy as np
import pytest

from otel_mlobs.processor.analyzers.react.groups import connected_components
from otel_mlobs.processor.analyzers.react.window_stats import (
    range_min,
    rows_at,
    window_mins,
    window_sums,
)


def _bounds(rng: np.random.Generator, targets: int, rows: int, per_column: int) -> tuple:
    lo = rng.integers(0, rows, (targets, per_column))
    hi = np.minimum(lo + rng.integers(0, rows, (targets, per_column)), rows)
    hi[0] = lo[0]  # an empty window too
    return lo, hi


def _naive(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, reduce, empty: float) -> np.ndarray:
    e, _, c = x.shape
    out = np.full((e, len(lo), c), empty)
    for j in range(len(lo)):
        for col in range(c):
            a, b = lo[j, col if lo.shape[1] > 1 else 0], hi[j, col if hi.shape[1] > 1 else 0]
            if b > a:
                out[:, j, col] = reduce(x[:, a:b, col], axis=1)
    return out


@pytest.mark.parametrize("targets", [1, 2, 9])  # 1-2 targets: sliced; 9: prefix sums and table
@pytest.mark.parametrize("per_column", [False, True])
def test_window_sums_and_minima_match_loops(targets, per_column):
    rng = np.random.default_rng(targets + 10 * per_column)
    x = rng.normal(size=(3, 40, 6))
    lo, hi = _bounds(rng, targets, 40, 6 if per_column else 1)
    np.testing.assert_allclose(window_sums(x, lo, hi), _naive(x, lo, hi, np.sum, 0.0), atol=1e-12)
    np.testing.assert_array_equal(window_mins(x, lo, hi), _naive(x, lo, hi, np.min, np.inf))
    np.testing.assert_array_equal(range_min(x, lo, hi), _naive(x, lo, hi, np.min, np.inf))


def test_rows_at_takes_one_row_per_target_and_column():
    x = np.arange(2 * 5 * 3, dtype=float).reshape(2, 5, 3)
    shared = rows_at(x, np.array([[4], [1]]))
    assert shared.shape == (2, 2, 3) and (shared[:, 0] == x[:, 4]).all()
    per_col = rows_at(x, np.array([[0, 2, 4]]))
    assert per_col[1, 0].tolist() == [x[1, 0, 0], x[1, 2, 1], x[1, 4, 2]]


def test_connected_components_match_a_graph_traversal():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = int(rng.integers(1, 30))
        adj = rng.random((m, m)) < 0.08
        adj = adj | adj.T
        np.fill_diagonal(adj, True)
        got = connected_components(adj)
        seen = np.full(m, -1)  # breadth-first reference
        for start in range(m):
            if seen[start] >= 0:
                continue
            frontier = [start]
            seen[start] = start
            while frontier:
                nxt = [j for i in frontier for j in np.flatnonzero(adj[i]) if seen[j] < 0]
                for j in nxt:
                    seen[j] = start
                frontier = nxt
        same_got = got[:, None] == got[None, :]
        same_ref = seen[:, None] == seen[None, :]
        assert (same_got == same_ref).all()
