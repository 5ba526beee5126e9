"""Statistics over many event-time windows of one run history at once.

Scoring a batch of new runs needs, for each of them, sums and minima over the runs that came
before it within a window. Done one run at a time that is a gather per run and estimate; here it
is prefix sums (any number of windows for the price of one cumulative sum) and a sparse table
of minima (any window's minimum from two lookups), all over arrays shaped
``(estimates, runs, columns)`` with the runs sorted by event time.
"""

from __future__ import annotations

import numpy as np

_MAX_TABLE = 4_000_000  # elements of one sparse-table chunk (levels x estimates x runs x columns)


def prefix(x: np.ndarray) -> np.ndarray:
    """Cumulative sums down axis 1 with a leading zero row: ``out[:, j] = x[:, :j].sum(1)``."""
    out = np.zeros((x.shape[0], x.shape[1] + 1, x.shape[2]), dtype=np.float64)
    np.cumsum(x, axis=1, out=out[:, 1:])
    return out


def window_sum(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums over rows ``[lo, hi)`` per target from a :func:`prefix` array: (est, targets, cols)."""
    hi = np.maximum(hi, lo)
    return p[:, hi, :] - p[:, lo, :]


def range_min(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Minimum of ``x`` (est, rows, cols) over rows ``[lo, hi)`` per target; +inf when empty.

    A sparse table (minima over every power-of-two run of rows) answers each window from two
    overlapping blocks; it is built in column chunks so memory stays bounded.
    """
    e, r, c = x.shape
    t = len(lo)
    out = np.full((e, t, c), np.inf)
    if r == 0 or t == 0:
        return out
    length = np.maximum(hi - lo, 0)
    nonempty = length > 0
    level = np.zeros(t, dtype=np.int64)
    level[nonempty] = np.floor(np.log2(length[nonempty])).astype(np.int64)
    levels = int(level.max()) + 1
    a = np.where(nonempty, lo, 0)
    b = np.where(nonempty, hi - (1 << level), 0)
    chunk = max(1, _MAX_TABLE // max(1, levels * e * r))
    for c0 in range(0, c, chunk):
        block = x[:, :, c0:c0 + chunk]
        table = np.full((levels, e, r, block.shape[2]), np.inf)
        table[0] = block
        for j in range(1, levels):
            step = 1 << (j - 1)
            table[j, :, : r - step] = np.minimum(table[j - 1, :, : r - step],
                                                 table[j - 1, :, step:])
        # advanced indices around a slice put the target axis first: (targets, est, cols)
        m = np.minimum(table[level, :, a], table[level, :, b]).transpose(1, 0, 2)
        out[:, :, c0:c0 + chunk] = np.where(nonempty[None, :, None], m, np.inf)
    return out
