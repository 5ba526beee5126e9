"""Statistics over many event-time windows of one run history at once.

Scoring a batch of new runs needs, for each of them, sums and minima over the runs that came
before it within a window, over arrays shaped ``(..., runs, columns)`` with the runs sorted by
event time. Two ways, picked by the work they take:

* few windows (the steady state: a run or two per component between refreshes): one sliced
  reduction per window, which touches only the rows inside it;
* many windows (a burst, or a cold start): prefix sums (any number of windows for the price of
  one cumulative sum) and a sparse table of minima (any window's minimum from two lookups).
"""

from __future__ import annotations

import numpy as np

_MAX_TABLE = 4_000_000  # elements of one sparse-table chunk (levels x estimates x runs x columns)


def rows_at(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x[..., rows, :]`` for ``rows`` shaped (targets, b): b is 1 or one row per column."""
    if rows.shape[1] == 1:
        return x[..., rows[:, 0], :]
    idx = rows.reshape((1,) * (x.ndim - 2) + rows.shape)
    return np.take_along_axis(x, idx, axis=-2)


def prefix(x: np.ndarray) -> np.ndarray:
    """Cumulative sums down the rows (axis -2) with a leading zero row.

    ``out[..., j, :] = x[..., :j, :].sum(-2)``; stack several quantities on leading axes to get
    all their prefix sums from one call.
    """
    shape = list(x.shape)
    shape[-2] += 1
    out = np.zeros(shape, dtype=np.float64)
    np.cumsum(x, axis=-2, out=out[..., 1:, :])
    return out


def window_sum(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums over rows ``[lo, hi)`` per target from a :func:`prefix` array.

    ``lo`` and ``hi`` are (targets, b) with b 1 or one bound per column; the rows axis (-2) of
    ``p`` becomes the targets axis of the result.
    """
    hi = np.maximum(hi, lo)
    return rows_at(p, hi) - rows_at(p, lo)


def _direct(lo: np.ndarray, hi: np.ndarray, rows: int) -> bool:
    """Whether sliced reductions touch fewer rows than a whole-history pass would."""
    if lo.shape[1] > 1:  # per-column bounds: a masked pass over every row per target
        return len(lo) <= 2
    return len(lo) <= 2 or int(np.maximum(hi - lo, 0).sum()) <= 2 * rows


def _masks(lo: np.ndarray, hi: np.ndarray, rows: int) -> np.ndarray:
    """(targets, rows, b) membership of each row in each target's window."""
    r = np.arange(rows)[None, :, None]
    return (r >= lo[:, None, :]) & (r < hi[:, None, :])


def window_sums(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums of ``x`` (..., rows, cols) over rows ``[lo, hi)`` per target: (..., targets, cols).

    ``x`` must be finite (zero what a window should not count): sums run over whole rows.
    """
    rows = x.shape[-2]
    if not _direct(lo, hi, rows):
        return window_sum(prefix(x), lo, hi)
    out = np.empty((*x.shape[:-2], len(lo), x.shape[-1]))
    if lo.shape[1] > 1:
        for j, m in enumerate(_masks(lo, hi, rows)):
            out[..., j, :] = np.einsum("...rc,rc->...c", x, m.astype(np.float64))
        return out
    for j, (a, b) in enumerate(zip(lo[:, 0].tolist(), hi[:, 0].tolist(), strict=True)):
        out[..., j, :] = x[..., a : max(a, b), :].sum(axis=-2)
    return out


def window_mins(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Minimum of ``x`` (est, rows, cols) over rows ``[lo, hi)`` per target; +inf when empty."""
    rows = x.shape[-2]
    if not _direct(lo, hi, rows):
        return range_min(x, lo, hi)
    out = np.empty((*x.shape[:-2], len(lo), x.shape[-1]))
    if lo.shape[1] > 1:
        for j, m in enumerate(_masks(lo, hi, rows)):
            out[..., j, :] = np.where(m, x, np.inf).min(axis=-2)
        return out
    for j, (a, b) in enumerate(zip(lo[:, 0].tolist(), hi[:, 0].tolist(), strict=True)):
        out[..., j, :] = x[..., a : max(a, b), :].min(axis=-2, initial=np.inf)
    return out


def range_min(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Minimum of ``x`` (est, rows, cols) over rows ``[lo, hi)`` per target; +inf when empty.

    ``lo`` and ``hi`` are (targets, b) as in :func:`window_sum`. A sparse table (minima over
    every power-of-two run of rows) answers each window from two overlapping blocks; it is
    built in column chunks so memory stays bounded.
    """
    e, r, c = x.shape
    lo, hi = np.broadcast_to(lo, (len(lo), c)), np.broadcast_to(hi, (len(hi), c))
    t = len(lo)
    out = np.full((e, t, c), np.inf)
    if r == 0 or t == 0:
        return out
    length = np.maximum(hi - lo, 0)
    nonempty = length > 0
    level = np.zeros((t, c), dtype=np.int64)
    level[nonempty] = np.floor(np.log2(length[nonempty])).astype(np.int64)
    levels = int(level.max()) + 1
    a = np.where(nonempty, lo, 0)
    b = np.where(nonempty, hi - (1 << level), 0)
    chunk = max(1, _MAX_TABLE // max(1, levels * e * r))
    for c0 in range(0, c, chunk):
        cols = slice(c0, c0 + chunk)
        block = x[:, :, cols]
        w = block.shape[2]
        table = np.full((levels, e, r, w), np.inf)
        table[0] = block
        for j in range(1, levels):
            step = 1 << (j - 1)
            table[j, :, : r - step] = np.minimum(
                table[j - 1, :, : r - step], table[j - 1, :, step:]
            )
        col = np.arange(w)[None, :]
        ev = np.arange(e)[:, None, None]
        lv, aa, bb = level[:, cols], a[:, cols], b[:, cols]
        m = np.minimum(
            table[lv[None], ev, aa[None], col[None]], table[lv[None], ev, bb[None], col[None]]
        )
        out[:, :, cols] = np.where(nonempty[None, :, cols], m, np.inf)
    return out
