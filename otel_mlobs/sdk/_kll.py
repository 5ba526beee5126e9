"""Apache DataSketches KLL doubles sketches that hold a small sorted sample exactly.

A KLL sketch whose ``k`` is at least its item count never compacts: it is a plain list of items
at level 0 with weight 1. :func:`exact_sketch` writes that sketch's serialized form (the
DataSketches binary layout, family 15, serial version 1) straight from a sorted numpy row, so the
SDK does not pay the binding's per-call cost for every column; the bytes are those the library
produces for the same items inserted in descending order, and they deserialize, merge and answer
queries like any other KLL sketch. :func:`nearest_rank` gives the quantiles the library answers
for such a sketch (exclusive search, the binding's default), vectorized over many rows.
"""

from __future__ import annotations

import struct

import datasketches
import numpy as np

MIN_K = 8
MAX_K = 65_535
_FAMILY = 15
_M = 8  # DataSketches' default minimum level width
_HEADER = struct.Struct("<BBBBHBBQHBBI")  # preamble, version, family, flags, k, m, -, n, min_k,
#                                           levels, -, levels[0]
_SINGLE = struct.Struct("<BBBBHBB")
_FLAG_SINGLE_ITEM = 4


def exact_sketch(values: np.ndarray, k: int) -> bytes:
    """Serialized KLL doubles sketch holding ``values`` (sorted ascending, finite, at least one)
    exactly; its ``k`` is ``max(k, len(values))``."""
    n = len(values)
    k = max(k, n)
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f"KLL k must lie in [{MIN_K}, {MAX_K}], got {k}")
    data = np.ascontiguousarray(values, dtype="<f8")
    if n == 1:
        return _SINGLE.pack(2, 2, _FAMILY, _FLAG_SINGLE_ITEM, k, _M, 0) + data.tobytes()
    head = _HEADER.pack(5, 1, _FAMILY, 0, k, _M, 0, n, k, 1, 0, k - n)
    return head + data[:1].tobytes() + data[-1:].tobytes() + data.tobytes()


def exact_sketches(rows: np.ndarray, k: int) -> list[bytes]:
    """:func:`exact_sketch` of every row of a 2-D array of sorted finite values (two or more per
    row), built as one array whose rows are the serialized sketches: one ``tobytes`` per row."""
    count, size = rows.shape
    k = max(k, size)
    if size < 2 or not MIN_K <= k <= MAX_K:
        return [exact_sketch(row, k) for row in rows]
    head = np.frombuffer(
        _HEADER.pack(5, 1, _FAMILY, 0, k, _M, 0, size, k, 1, 0, k - size), dtype="<f8"
    )
    buf = np.empty((count, len(head) + 2 + size), dtype="<f8")
    buf[:, : len(head)] = head
    buf[:, len(head)] = rows[:, 0]
    buf[:, len(head) + 1] = rows[:, -1]
    buf[:, len(head) + 2 :] = rows
    return [row.tobytes() for row in buf]


def library_sketch(values: np.ndarray, k: int, levels: list[float]) -> tuple[bytes, np.ndarray]:
    """A compacting KLL sketch of ``values`` built by the DataSketches binding, and its
    quantiles at ``levels``; for samples too large to keep whole."""
    if not values.flags.writeable:  # the binding refuses read-only (copy-on-write) views
        values = values.copy()
    sketch = datasketches.kll_doubles_sketch(k)
    sketch.update(values)
    quantiles = np.asarray(sketch.get_quantiles(levels)) if levels else np.zeros(0)
    return sketch.serialize(), quantiles


def nearest_rank(
    sorted_rows: np.ndarray, lo: np.ndarray, size: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """Quantiles at ``levels`` of rows whose items are ``sorted_rows[r, lo[r]:lo[r] + size[r]]``,
    as an exact KLL sketch of those items answers them: the item at index
    ``min(floor(level * size), size - 1)``. Rows with ``size == 0`` give NaN."""
    k, m = sorted_rows.shape
    if not sorted_rows.size or not len(levels):
        return np.full((k, len(levels)), np.nan)
    safe = np.maximum(size, 1)
    at = (levels[None, :] * safe[:, None].astype(np.float64)).astype(np.int64)
    np.minimum(at, (safe - 1)[:, None], out=at)
    at += (lo + np.arange(k) * m)[:, None]
    out = sorted_rows.reshape(-1)[at]
    out[size == 0] = np.nan
    return out
