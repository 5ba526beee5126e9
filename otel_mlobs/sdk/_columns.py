"""Every-row statistics of a table, computed once and shared by the summary and the pointer.

:func:`prepare` sorts a :class:`~otel_mlobs.sdk._tabular.Table`'s columns into three groups and
does the one pass over every row that the SDK makes on the caller's thread:

* numeric, datetime and boolean columns become rows of float64 *segments* (2-D arrays, NaN for
  nulls, datetimes in seconds since the epoch, booleans as 0/1): pandas' float64 blocks as they
  are, every other column stacked into one array. Five reductions along axis 1 (sum, min, max,
  sum of squares, and the modular sum of the values' bit patterns) run a cache-sized chunk of
  rows at a time, a handful of numpy calls per chunk rather than per column. They give count,
  nulls, mean, population std (``E[x^2] - mean^2``, or two passes where the mean is large next
  to the spread), min and max of every row at once; rows holding NaN or infinities are
  recomputed together with masks.
* pandas ``Categorical`` columns keep their codes; their category counts come from one
  ``bincount`` over every row.
* text columns (object, string and fixed-width string arrays) are checked for nulls over every
  row (one C pass when every value is a string) and otherwise left alone: their value statistics
  come from the row sample.

:attr:`Columns.digest` hashes those exact statistics; the content pointer builds on it. Rows
named in advance (the sampling plan, :mod:`otel_mlobs.sdk._sampling`) are gathered from the
float columns during the pass, while each chunk is still in cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from otel_mlobs import semconv
from otel_mlobs.sdk._sampling import Plan
from otel_mlobs.sdk._tabular import Table

NUMERIC = semconv.KIND_NUMERIC
DATETIME = semconv.KIND_DATETIME
BOOLEAN = semconv.KIND_BOOLEAN
CATEGORICAL = semconv.KIND_CATEGORICAL

MAX_CHUNK_BYTES = 8 << 20
"""Columns to convert are stacked into one array up to this size; past it each block is
converted on its own, so a wide million-row frame is never duplicated whole."""
CACHE_CHUNK_BYTES = 512 << 10
"""Segments are reduced in chunks of rows of about this size, small enough to stay in a core's
cache across the five reductions."""

_NAT = np.iinfo(np.int64).min
_IN_PLACE = 2  # float64 blocks of at least this many columns are reduced without a copy
_ONE_PASS_RATIO = 1e6
_NUMERIC_INFERRED = frozenset({"integer", "floating", "mixed-integer-float", "decimal"})
_DATETIME_INFERRED = frozenset({"datetime", "datetime64", "date"})
_TO_FLOAT = {NUMERIC, DATETIME, BOOLEAN}


@dataclass(slots=True)
class CategoryColumn:
    """A pandas ``Categorical`` column: codes (-1 for null) and every-row category counts.
    Once detached (``plan`` set), ``codes`` holds only the rows of ``plan.rows``."""

    index: int
    codes: np.ndarray
    categories: np.ndarray
    counts: np.ndarray
    plan: Plan | None = None

    def take(self, idx: np.ndarray) -> np.ndarray:
        """The codes at table rows ``idx``."""
        return self.codes[idx if self.plan is None else _positions(self.plan, idx)]


@dataclass(slots=True)
class TextColumn:
    """A text column: its values (a 1-D object or fixed-width string array), its every-row null
    count, and whether every value is known to be a ``str``. Once detached (``plan`` set),
    ``values`` holds only the rows of ``plan.rows``."""

    index: int
    values: np.ndarray
    nulls: int
    strings: bool = False
    plan: Plan | None = None

    def take(self, idx: np.ndarray | None) -> np.ndarray:
        """The values at table rows ``idx`` (every row when None, unless detached)."""
        if self.plan is None:
            return self.values if idx is None else self.values[idx]
        if idx is None:
            raise LookupError("a detached text column holds only its planned rows")
        return self.values[_positions(self.plan, idx)]


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
    plan: Plan | None = None
    picked: np.ndarray | None = None

    detached: bool = False

    def float_rows(self, idx: np.ndarray | None) -> np.ndarray:
        """The float values of rows ``idx`` (sorted; all rows when None), shape
        ``(float columns, len(idx))``; from the rows gathered in advance when they cover
        ``idx``."""
        if not len(self.float_index):
            return np.zeros((0, self.rows if idx is None else len(idx)))
        if idx is not None and self.picked is not None and self.plan is not None:
            at = self.plan.locate(idx)
            if at is None and self.detached:
                at = _positions(self.plan, idx)
            if at is not None:
                return np.take(self.picked, at, axis=1)  # C order: rows pack without a copy
        if self.detached:
            raise LookupError("detached columns hold only their planned rows")
        parts = [seg if idx is None else seg[:, idx] for seg in self.segments]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def detach(self, copy_rows: int = 0) -> bool:
        """Stop referring to the caller's arrays, keeping what a summary drawn from the plan's
        sample reads later (on the SDK's worker, while the caller may change its data): the
        float rows gathered during the pass, and the text values and category codes at the
        plan's rows, a few hundred values per column. A table of at most ``copy_rows`` rows whose
        summary reads every row (no sketch sample) is copied instead. Returns False, changing
        nothing, when the summary needs every row of a larger table (``sketch_rows=None``)
        or there is no plan; it must then be summarized before the call returns."""
        plan = self.plan
        if plan is None or self.picked is None:
            return False
        if plan.sketch is None:
            if self.rows > copy_rows:
                return False
            self.segments = [np.array(seg) for seg in self.segments]
            for text in self.texts:
                text.values = text.values.copy()
            for cat in self.categories:
                cat.codes = cat.codes.copy()
            return True
        self.segments = []
        self.detached = True
        for text in self.texts:
            text.values, text.plan = text.values[plan.rows], plan
        for cat in self.categories:
            cat.codes, cat.plan = cat.codes[plan.rows], plan
        return True


def _positions(plan: Plan, idx: np.ndarray) -> np.ndarray:
    """Positions in ``plan.rows`` of the table rows ``idx``, which must all be planned."""
    at = plan.locate(idx)
    if at is not None:
        return at
    at = np.searchsorted(plan.rows, idx)
    if len(at) and (at[-1] >= len(plan.rows) or not np.array_equal(plan.rows[at], idx)):
        raise LookupError("rows outside the plan were asked of detached columns")
    return at


def prepare(table: Table, plan: Plan | None = None) -> Columns:
    """Classify ``table``'s columns and compute their every-row statistics; gather the float
    values of the rows ``plan`` names on the way."""
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
        if type(col) is np.ndarray and col.ndim == 1 and col.dtype.kind in "fiu":
            # Numbers are converted where the segment is filled: no float64 copy first.
            kinds[i] = NUMERIC
            sources.append(([i], col[None, :]))
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
            counts = np.bincount(
                codes.astype(np.intp, copy=False) + 1, minlength=len(categories) + 1
            )
            cats.append(CategoryColumn(i, codes, categories, counts))
    rows = None if plan is None else plan.rows
    picked = None if rows is None else np.empty((sum(len(p) for p, _ in sources), len(rows)))
    with np.errstate(all="ignore"):  # NaN and infinities are data here, not errors
        segments, sources, sums = _reduce_sources(sources, table.rows, rows, picked)
        stats = _finish_stats(segments, table.rows, *sums)
    float_index = np.asarray([p for positions, _ in sources for p in positions], dtype=np.intp)
    out = Columns(
        table.rows,
        list(table.names),
        kinds,
        segments,
        float_index,
        *stats,
        categories=cats,
        texts=texts,
        plan=plan,
        picked=picked,
    )
    out.digest = _digest(out)
    return out


Source = tuple[list[int], np.ndarray]  # (table positions, 2-D rows of any numeric dtype)


def _reduce_sources(
    sources: list[Source], n: int, rows: np.ndarray | None, picked: np.ndarray | None
) -> tuple[list[np.ndarray], list[Source], tuple[np.ndarray, ...]]:
    """Float64 segments holding the rows of ``sources``, the sources in segment order, and the
    plain reductions of every row (sum, min, max, bit sum, sum of squares); ``picked`` receives
    the values at positions ``rows``.

    float64 blocks of several columns are reduced where they lie, never copied; the other
    columns (integers and booleans to convert, single columns) are stacked into one array. Each
    segment is filled and reduced a cache-sized chunk of rows at a time, so the five reductions
    read from cache rather than memory. Past :data:`MAX_CHUNK_BYTES` of converted columns each
    source becomes a segment of its own, so a wide million-row frame is never duplicated whole.
    """
    total_rows = sum(len(positions) for positions, _ in sources)
    sums = tuple(
        np.empty(total_rows, dtype)
        for dtype in (np.float64, np.float64, np.float64, np.uint64, np.float64)
    )
    if not total_rows or not n:  # nothing to reduce: _finish_stats reports NaN
        if picked is not None:
            picked[:] = np.nan
        return ([np.zeros((total_rows, n))] if total_rows else []), sources, sums
    kept: list[Source] = []
    rest: list[Source] = []
    for src in sources:
        (kept if src[1].dtype == np.float64 and len(src[0]) >= _IN_PLACE else rest).append(src)
    segments = [block for _, block in kept]
    pieces: list[tuple[np.ndarray, int]] = []
    if sum(len(positions) for positions, _ in rest) * n * 8 <= MAX_CHUNK_BYTES:
        pieces = [(block, j) for _, block in rest for j in range(len(block))]
        if pieces:
            segments.append(np.empty((len(pieces), n)))  # filled chunk by chunk below
    else:
        segments += [
            block if block.dtype == np.float64 else block.astype(np.float64) for _, block in rest
        ]
    step = max(1, CACHE_CHUNK_BYTES // max(8 * n, 1))
    at = 0
    for k, seg in enumerate(segments):
        filling = bool(pieces) and k == len(segments) - 1
        for lo in range(0, len(seg), step):
            hi = min(lo + step, len(seg))
            if filling:
                for r in range(lo, hi):
                    block, j = pieces[r]
                    seg[r] = block[j]
            part = seg[lo:hi]
            _reduce(part, at + lo, sums)
            if picked is not None:
                np.take(part, rows, axis=1, out=picked[at + lo : at + hi])  # no temporary
        at += len(seg)
    return segments, kept + rest, sums


def _reduce(x: np.ndarray, at: int, sums: tuple[np.ndarray, ...]) -> None:
    end = at + len(x)
    total, lo, hi, bits, squares = sums
    np.add.reduce(x, axis=1, out=total[at:end])
    np.minimum.reduce(x, axis=1, out=lo[at:end])
    np.maximum.reduce(x, axis=1, out=hi[at:end])
    np.add.reduce(x.view(np.uint64), axis=1, out=bits[at:end])
    np.vecdot(x, x, out=squares[at:end])


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
    # The two common pandas columns first, before the slower generic dtype checks below.
    if isinstance(dtype, pd.StringDtype):
        return CATEGORICAL, _string_array_text(col)
    if isinstance(dtype, np.dtype) and dtype.kind == "M":  # naive datetimes
        return DATETIME, time_seconds(np.asarray(col))
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
                np.asarray(stamps.dt.tz_convert(None), dtype="datetime64[ns]")
            )
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
    if len(ticks) and ticks.min() == _NAT:  # one cheap reduction instead of a mask per call
        out[ticks == _NAT] = np.nan
    return out


# --- every-row statistics of float segments -------------------------------------------------


def _finish_stats(
    segments: list[np.ndarray],
    n: int,
    total: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    bits: np.ndarray,
    squares: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """count, nulls, finite, mean, std, min, max, total, bits from the plain reductions. Rows whose
    plain sum is finite hold no NaN and no infinity, so the reductions serve as they are; the
    others are recomputed with masks."""
    b = len(total)
    count = np.full(b, n, dtype=np.int64)
    nulls = np.zeros(b, dtype=np.int64)
    if n == 0 or b == 0:
        nan = np.full(b, np.nan)
        return (
            count,
            nulls,
            count.copy(),
            nan,
            nan.copy(),
            nan.copy(),
            nan.copy(),
            np.zeros(b),
            np.zeros(b, np.uint64),
        )
    present = count.copy()
    mean = total / n
    var = np.maximum(squares / n - mean * mean, 0.0)
    dirty = np.flatnonzero(~np.isfinite(total))
    # E[x^2] - mean^2 loses about eps * mean^2 / var of relative precision: exact enough
    # while the mean is within 1,000 standard deviations of zero; other rows (timestamps,
    # large offsets) take the two-pass form.
    shifted = np.flatnonzero(~(mean * mean <= _ONE_PASS_RATIO * var) & np.isfinite(total))
    if len(shifted):
        dev = _gather_rows(segments, shifted)
        dev -= mean[shifted][:, None]
        var[shifted] = np.vecdot(dev, dev) / n
    if len(dirty):  # a copy: segments may be the caller's own blocks
        _masked_rows(
            _gather_rows(segments, dirty),
            dirty,
            count,
            nulls,
            present,
            total,
            mean,
            var,
            lo,
            hi,
            bits,
        )
    return count, nulls, present, mean, np.sqrt(var), lo, hi, total, bits


def _masked_rows(
    d: np.ndarray,
    rows: np.ndarray,
    count: np.ndarray,
    nulls: np.ndarray,
    present: np.ndarray,
    total: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    bits: np.ndarray,
) -> None:
    """Statistics of rows ``rows`` (values ``d``, a copy this may overwrite) that hold NaN or
    infinities: nulls are NaN, moments and extremes cover the finite values, and the bit sum
    counts nulls as 0.0 (one bit pattern for every kind of NaN)."""
    n = d.shape[1]
    nan = np.isnan(d)
    finite = np.isfinite(d)
    nulls[rows] = np.count_nonzero(nan, axis=1)
    count[rows] = n - nulls[rows]
    kept = np.count_nonzero(finite, axis=1)
    present[rows] = kept
    np.copyto(d, 0.0, where=nan)
    bits[rows] = d.view(np.uint64).sum(axis=1)
    np.copyto(d, np.nan, where=~finite)
    lo[rows] = np.fmin.reduce(d, axis=1)
    hi[rows] = np.fmax.reduce(d, axis=1)
    np.copyto(d, 0.0, where=~finite)
    total[rows] = d.sum(axis=1)
    mean[rows] = total[rows] / kept
    d -= mean[rows][:, None]
    np.copyto(d, 0.0, where=~finite)
    var[rows] = np.vecdot(d, d) / kept


def _gather_rows(segments: list[np.ndarray], wanted: np.ndarray) -> np.ndarray:
    """A new array holding the float rows numbered ``wanted`` (sorted, numbered across
    segments)."""
    out = np.empty((len(wanted), segments[0].shape[1]))
    at = 0
    k = 0
    want = wanted.tolist()
    for seg in segments:
        stop = k
        while stop < len(want) and want[stop] < at + len(seg):
            stop += 1
        if stop > k:
            out[k:stop] = seg[np.asarray(want[k:stop]) - at]
            k = stop
        at += len(seg)
    return out


def _digest(cols: Columns) -> bytes:
    """SHA-256 of the names, kinds and exact statistics that do not depend on how the data is
    stored: float columns' count, nulls, min, max and bit sum in table order (not the
    floating-point sums, whose last bits may differ between numpy builds), and the null counts
    of text and categorical columns (so a ``Categorical`` and an object column of the same
    strings agree)."""
    head = "\x00".join(
        f"{name}\x00{kind}" for name, kind in zip(cols.names, cols.kinds, strict=True)
    )
    h = hashlib.sha256(
        f"mlobs-columns-v2\n{cols.rows}\n{head}\n".encode("utf-8", errors="surrogatepass")
    )
    if len(cols.float_index):
        order = np.argsort(cols.float_index)
        stats = np.empty((6, len(order)), dtype="<i8")
        stats[0] = cols.float_index[order]
        for row, values in enumerate(
            (
                cols.count,
                cols.nulls,
                cols.min.view(np.int64),
                cols.max.view(np.int64),
                cols.bits.view(np.int64),
            ),
            1,
        ):
            np.take(values, order, out=stats[row])
        h.update(stats.tobytes())
    text = [(c.index, int(c.counts[0])) for c in cols.categories]
    text += [(t.index, t.nulls) for t in cols.texts]
    h.update(repr(sorted(text)).encode())
    return h.digest()
