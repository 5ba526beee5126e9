"""Every-row statistics of a table, computed once and shared by the summary and the pointer.

:func:`prepare` sorts a :class:`~otel_mlobs.sdk._tabular.Table`'s columns into three groups and
does the one pass over every row that the SDK makes on the caller's thread:

* numeric, datetime and boolean columns become rows of float64 *segments* (2-D arrays, NaN for
  nulls, datetimes in seconds since the epoch, booleans as 0/1). pandas' own numeric blocks are
  used as segments without copying. Count, nulls, mean, population std, min and max of the finite
  values, and the modular sum of the values' bit patterns are reduced along axis 1, a handful of
  numpy calls per segment rather than per column. Columns holding NaN or infinities go through a
  second, masked pass of their own.
* pandas ``Categorical`` columns keep their codes; their category counts come from one
  ``bincount`` over every row.
* text columns (object, string and fixed-width string arrays) are checked for nulls over every
  row (one C pass when every value is a string) and otherwise left alone: their value statistics
  come from the row sample.

:attr:`Columns.digest` hashes those exact statistics. It seeds the row sample when the caller
gives no seed, so the same data is always sampled the same way and its summary is a function of
its content; the content pointer builds on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from otel_mlobs import semconv
from otel_mlobs.sdk._tabular import Table

NUMERIC = semconv.KIND_NUMERIC
DATETIME = semconv.KIND_DATETIME
BOOLEAN = semconv.KIND_BOOLEAN
CATEGORICAL = semconv.KIND_CATEGORICAL

MAX_CHUNK_BYTES = 8 << 20
"""Segments are reduced in row chunks of at most this many bytes, bounding temporary memory."""

_NAT = np.iinfo(np.int64).min
_ONE_PASS_RATIO = 1e6
_NUMERIC_INFERRED = frozenset({"integer", "floating", "mixed-integer-float", "decimal"})
_DATETIME_INFERRED = frozenset({"datetime", "datetime64", "date"})
_TO_FLOAT = {NUMERIC, DATETIME, BOOLEAN}


@dataclass(slots=True)
class CategoryColumn:
    """A pandas ``Categorical`` column: codes (-1 for null) and every-row category counts."""

    index: int
    codes: np.ndarray
    categories: np.ndarray
    counts: np.ndarray


@dataclass(slots=True)
class TextColumn:
    """A text column: its values (a 1-D object or fixed-width string array), its every-row null
    count, and whether every value is known to be a ``str``."""

    index: int
    values: np.ndarray
    nulls: int
    strings: bool = False


@dataclass(slots=True)
class Columns:
    """A table prepared for summarizing: float segments with their exact statistics, category
    codes and text values. Arrays of statistics are parallel to ``float_index`` (the table
    position of each float row, in segment order)."""

    rows: int
    names: list[str]
    kinds: list[str]
    segments: list[np.ndarray]
    float_index: np.ndarray
    count: np.ndarray
    nulls: np.ndarray
    finite: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    total: np.ndarray
    bits: np.ndarray
    categories: list[CategoryColumn] = field(default_factory=list)
    texts: list[TextColumn] = field(default_factory=list)
    digest: bytes = b""

    @property
    def seed(self) -> int:
        """A sampling seed derived from the content's exact statistics."""
        return int.from_bytes(self.digest[:8], "little")

    def float_rows(self, idx: np.ndarray | None) -> np.ndarray:
        """The float values of rows ``idx`` (all rows when None), shape ``(float columns, k)``."""
        if not self.segments:
            return np.zeros((0, self.rows if idx is None else len(idx)))
        parts = [seg if idx is None else seg[:, idx] for seg in self.segments]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def prepare(table: Table) -> Columns:
    """Classify ``table``'s columns and compute their every-row statistics."""
    n = len(table.columns)
    kinds = [""] * n
    sources: list[tuple[list[int], np.ndarray]] = []  # (table positions, 2-D rows) to convert
    done = np.zeros(n, dtype=bool)
    for positions, block in table.blocks:
        kind = BOOLEAN if block.dtype.kind == "b" else NUMERIC
        for pos in positions.tolist():
            kinds[pos] = kind
        done[positions] = True
        sources.append((positions.tolist(), block))
    cats: list[CategoryColumn] = []
    texts: list[TextColumn] = []
    for i, col in enumerate(table.columns):
        if done[i]:
            continue
        kind, payload = classify(col)
        kinds[i] = kind
        if kind in _TO_FLOAT:
            sources.append(([i], payload[None, :]))
        elif isinstance(payload, TextColumn):
            payload.index = i
            texts.append(payload)
        else:
            codes, categories = payload
            counts = np.bincount(codes.astype(np.intp, copy=False) + 1,
                                 minlength=len(categories) + 1)
            cats.append(CategoryColumn(i, codes, categories, counts))
    segments = _float_segments(sources, table.rows)
    float_index = np.asarray([p for positions, _ in sources for p in positions], dtype=np.intp)
    out = Columns(table.rows, list(table.names), kinds, segments, float_index,
                  *_segment_stats(segments, table.rows), categories=cats, texts=texts)
    out.digest = _digest(out)
    return out


def _float_segments(sources: list[tuple[list[int], np.ndarray]], n: int) -> list[np.ndarray]:
    """The float64 rows of ``sources``: one stacked array when it is small (a single copy that
    converts as it goes, then one numpy call per statistic), else each source as it is (float64
    blocks are not copied), so a wide million-row frame is never duplicated whole."""
    total = sum(len(positions) for positions, _ in sources)
    if not total:
        return []
    if total * n * 8 <= MAX_CHUNK_BYTES:
        x = np.empty((total, n))
        at = 0
        for positions, rows in sources:
            x[at:at + len(positions)] = rows
            at += len(positions)
        return [x]
    return [rows if rows.dtype == np.float64 else rows.astype(np.float64) for _, rows in sources]


# --- classifying one column ----------------------------------------------------------------------


def classify(col: Any) -> tuple[str, Any]:
    """(kind, payload): float64 values with NaN nulls for numeric, datetime and boolean columns;
    ``(codes, categories)`` for pandas categoricals; a :class:`TextColumn` for text."""
    if isinstance(col, np.ndarray):
        k = col.dtype.kind
        if k in "fiu":
            return NUMERIC, np.ascontiguousarray(col, dtype=np.float64)
        if k == "b":
            return BOOLEAN, col.astype(np.float64)
        if k == "M":
            return DATETIME, time_seconds(col)
        if k == "m":
            return NUMERIC, time_seconds(col)
        if k == "O":
            return _classify_object(col)
        if k in "US":
            return CATEGORICAL, TextColumn(-1, col, 0, strings=k == "U")
        return CATEGORICAL, _object_text(col.astype(object))
    if isinstance(col, pd.Categorical):
        return CATEGORICAL, (np.asarray(col.codes), np.asarray(col.categories, dtype=object))
    dtype = getattr(col, "dtype", None)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return DATETIME, time_seconds(np.asarray(col.tz_convert(None)))
    if dtype is not None and pd.api.types.is_bool_dtype(dtype):
        return BOOLEAN, col.to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype is not None and pd.api.types.is_numeric_dtype(dtype):
        return NUMERIC, col.to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype is not None and pd.api.types.is_datetime64_any_dtype(dtype):
        return DATETIME, time_seconds(np.asarray(col))
    if isinstance(dtype, pd.StringDtype):
        return CATEGORICAL, _string_array_text(col)
    if isinstance(col, pd.api.extensions.ExtensionArray):
        return CATEGORICAL, _object_text(np.asarray(col, dtype=object))
    return classify(np.asarray(col))


def _classify_object(col: np.ndarray) -> tuple[str, Any]:
    # One C pass answers the common case, a column of strings without nulls.
    if pd.api.types.infer_dtype(col, skipna=False) == "string":
        return CATEGORICAL, TextColumn(-1, col, 0, strings=True)
    inferred = pd.api.types.infer_dtype(col, skipna=True)
    try:
        if inferred in _NUMERIC_INFERRED:
            values = pd.to_numeric(pd.Series(col, copy=False), errors="coerce")
            return NUMERIC, values.to_numpy(dtype=np.float64, na_value=np.nan)
        if inferred == "boolean":
            values = np.full(len(col), np.nan)
            present = ~pd.isna(col)
            values[present] = col[present].astype(bool)
            return BOOLEAN, values
        if inferred in _DATETIME_INFERRED:
            stamps = pd.to_datetime(pd.Series(col, copy=False), utc=True, errors="coerce")
            return DATETIME, time_seconds(
                np.asarray(stamps.dt.tz_convert(None), dtype="datetime64[ns]"))
    except (TypeError, ValueError, OverflowError):
        pass  # mixed content after all: summarize as text
    return CATEGORICAL, _object_text(col)


def _object_text(col: np.ndarray) -> TextColumn:
    return TextColumn(-1, col, int(np.count_nonzero(pd.isna(col))))


def _string_array_text(col: Any) -> TextColumn:
    values = np.asarray(col, dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        return TextColumn(-1, values, 0, strings=True)
    return TextColumn(-1, values, int(np.count_nonzero(col.isna())))


def time_seconds(arr: np.ndarray) -> np.ndarray:
    """Seconds since the epoch (float64, NaN for NaT) of a datetime64 or timedelta64 array."""
    unit, step = np.datetime_data(arr.dtype)
    ticks = arr.view(np.int64)
    per_second = np.timedelta64(1, "s") / np.timedelta64(step, unit)
    out = ticks / per_second
    out[ticks == _NAT] = np.nan
    return out


# --- every-row statistics of float segments -------------------------------------------------


def _segment_stats(segments: list[np.ndarray], n: int) -> tuple[np.ndarray, ...]:
    """count, nulls, finite, mean, std, min, max, total, bits of every float row, in segment
    order."""
    parts = []
    for seg in segments:
        step = max(1, MAX_CHUNK_BYTES // max(8 * n, 1))
        for lo in range(0, len(seg), step):
            parts.append(_block_stats(seg[lo:lo + step], n))
    if not parts:
        empty = np.zeros(0)
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), empty,
                empty, empty, empty, empty, np.zeros(0, np.uint64))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _block_stats(x: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Statistics of each row of ``x`` (never modified). Rows whose plain sum is finite hold no
    NaN and no infinity, so one unmasked pass serves them; the others are masked separately."""
    b = len(x)
    count = np.full(b, n, dtype=np.int64)
    nulls = np.zeros(b, dtype=np.int64)
    with np.errstate(all="ignore"):
        total = x.sum(axis=1)
        if n == 0:
            nan = np.full(b, np.nan)
            return (count, nulls, count.copy(), nan, nan.copy(), nan.copy(), nan.copy(), total,
                    np.zeros(b, np.uint64))
        dirty = np.flatnonzero(~np.isfinite(total))
        present = count.copy()
        mean = total / n
        lo = x.min(axis=1)
        hi = x.max(axis=1)
        bits = x.view(np.uint64).sum(axis=1)
        var = np.maximum(np.vecdot(x, x) / n - mean * mean, 0.0)
        # E[x^2] - mean^2 loses about eps * mean^2 / var of relative precision: exact enough
        # while the mean is within 1,000 standard deviations of zero; other rows (timestamps,
        # large offsets) take the two-pass form.
        shifted = np.flatnonzero(~(mean * mean <= _ONE_PASS_RATIO * var))
        shifted = shifted[np.isfinite(total[shifted])]
        if len(shifted):
            dev = x[shifted] - mean[shifted][:, None]
            var[shifted] = np.vecdot(dev, dev) / n
        if len(dirty):
            d = x[dirty]  # a copy: the masked pass may write into it
            nan = np.isnan(d)
            finite = np.isfinite(d)
            nulls[dirty] = np.count_nonzero(nan, axis=1)
            count[dirty] = n - nulls[dirty]
            kept = np.count_nonzero(finite, axis=1)
            present[dirty] = kept
            np.copyto(d, 0.0, where=nan)  # canonical nulls for the bit sum; infinities stay
            bits[dirty] = d.view(np.uint64).sum(axis=1)
            np.copyto(d, np.nan, where=~finite)
            lo[dirty] = np.fmin.reduce(d, axis=1)
            hi[dirty] = np.fmax.reduce(d, axis=1)
            np.copyto(d, 0.0, where=~finite)
            total[dirty] = d.sum(axis=1)
            mean[dirty] = total[dirty] / kept
            d -= mean[dirty][:, None]
            np.copyto(d, 0.0, where=~finite)
            var[dirty] = np.vecdot(d, d) / kept
    return count, nulls, present, mean, np.sqrt(var), lo, hi, total, bits


def _digest(cols: Columns) -> bytes:
    """SHA-256 of the names, kinds and exact statistics that do not depend on how the data is
    stored: float columns' count, nulls, min, max and bit sum in table order (not the
    floating-point sums, whose last bits may differ between numpy builds), and the null counts
    of text and categorical columns (so a ``Categorical`` and an object column of the same
    strings agree)."""
    h = hashlib.sha256(f"mlobs-columns-v1\n{cols.rows}\n".encode())
    for name, kind in zip(cols.names, cols.kinds, strict=True):
        h.update(name.encode("utf-8", errors="surrogatepass") + b"\x00" + kind.encode() + b"\x00")
    order = np.argsort(cols.float_index, kind="stable")
    for arr in (cols.float_index, cols.count, cols.nulls, cols.min, cols.max, cols.bits):
        h.update(np.ascontiguousarray(arr[order]).astype(arr.dtype.newbyteorder("<")).tobytes())
    text = [(c.index, int(c.counts[0])) for c in cols.categories]
    text += [(t.index, t.nulls) for t in cols.texts]
    for index, nulls in sorted(text):
        h.update(f"{index}\x00{nulls}\x00".encode())
    return h.digest()
