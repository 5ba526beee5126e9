"""Column summaries of one dataset: the pure, vectorized core of the SDK.

:func:`summarize_frame` turns a pandas / polars / numpy / dict dataset into a
:class:`FrameSummary`: per-column statistics plus a bounded uniform row sample. It touches no
OpenTelemetry state, so benchmarks and other producers can call it directly; the SDK's emitter
turns the result into ``mlobs.summary`` and ``mlobs.sample`` events.

Two kinds of statistics
-----------------------
*Exact, over every row*: ``count``, ``nulls``, ``mean``, ``std``, ``min``, ``max`` of every
numeric, datetime and boolean column, and everything about pandas ``Categorical`` columns
(computed once per table by :mod:`otel_mlobs.sdk._columns`, a few numpy calls per block of
columns).

*From a uniform row sample* of ``sketch_rows`` rows (default 512; every row when the dataset is
smaller): the quantile sketch and quantiles, the distinct estimate of numeric, datetime and text
columns, and the top values of text columns. Pass ``sketch_rows=None`` to compute these from every
row instead (KLL over every value, a hash-based distinct count, exact text counts), at a cost
that grows with the rows. The sample's row positions depend only on the row count, the sampling
parameters and ``seed`` (see :mod:`otel_mlobs.sdk._sampling`): they are drawn once per size and
gathered during the pass over the data, and the same data always gets the same summary.

What each column kind gets
--------------------------
``numeric`` (ints, floats, timedeltas in seconds) and ``datetime`` (seconds since the epoch,
tz-aware values converted to UTC):
    ``count`` non-null values and ``nulls`` (NaN/None/NaT; infinities count as values);
    ``mean``, ``std`` (population, ddof=0), ``min`` and ``max`` of the *finite* values.
    ``sketches``: a serialized Apache DataSketches KLL doubles sketch of the sample's finite
    values, mergeable across runs and processor shards. A sample of at most 1,024 finite values
    is held exactly (the sketch's ``k`` is then its item count, at least ``sketch_k``); a larger
    one is compacted by the DataSketches library with ``k = sketch_k``. ``quantiles`` are the
    sketch's answers at ``quantile_levels`` (nearest rank), so they agree with what the processor
    merges. Their rank error is the sample's: a standard deviation of about
    ``sqrt(q (1 - q) / m)`` for ``m`` sampled values, i.e. 2.2% at the median, 1.0% at the
    5%/95% levels and 0.4% at 1%/99% for the default 512 rows (less when the sample is a large
    part of the data, none when it is all of it). The sketch describes the sample (its ``n`` is
    at most ``sketch_rows``), so merged sketches weigh large datasets alike; exact row totals
    are in ``count``.
    ``distinct``: Chao and Lin's (2012) estimator for sampling without replacement,
    ``d + f1**2 / (2 f2 m / (m - 1) + f1 q / (1 - q))`` from the ``d`` distinct sampled values,
    ``f1`` seen once and ``f2`` seen twice, ``q`` the sampled share of the non-null values,
    clipped to ``[d, count]``. It is exact when the sample is the whole column, gives ``count``
    for a column whose sampled values are all different (an id, a continuous measurement) and
    ``d`` for one whose values all recur (a code, a flag); in between it is a lower bound that
    can be low by tens of percent. A column whose exact ``min`` and ``max`` differ has at least
    2.
``categorical`` (pandas/polars categorical, object and string columns):
    ``count`` and ``nulls`` over every row; numeric statistics are NaN and the sketch ``b""``.
    pandas ``Categorical`` columns: exact ``distinct`` and the :data:`TOP_VALUES` most frequent
    values with their exact counts (``top_values``), from one ``bincount`` of the codes.
    Text columns (object, string): ``distinct`` estimated from the sample as above and the most
    frequent sampled values with their sample counts scaled to ``count`` (rounded); when every
    sampled value occurs once (an id column) the top values are omitted. Exact when the sample is
    the whole column or ``sketch_rows=None``.
    Object columns holding only numbers, booleans or datetimes are summarized as those kinds.
``boolean``:
    ``mean`` is the share of ``True`` (``std``, ``min``, ``max`` over 0/1), exact ``distinct`` and
    ``top_values`` ``{"True": n, "False": m}``; no quantiles or sketch.

Cost
----
Per table: five reductions (sum, min, max, bit sum, sum of squares) over each block of numeric
columns, a cache-sized chunk at a time, and one C pass per text column to count its nulls
(:func:`~otel_mlobs.sdk._columns.prepare`, shared with the content pointer); then a sort of the
sampled numbers and a count of the sampled text. Python-level work is a handful of calls per
block or per text column, not per numeric column. Inside a run the first part is all the
caller's thread does when background work is on; the rest runs on the SDK's worker
(:func:`summarize_steps` yields between its parts there). With ``sketch_rows=None``,
1,000,000 rows x 20 columns (15 floats with 5% NaN, 5 six-level string columns) are summarized
within twice a bare pandas pass (``mean``/``std``/``quantile`` plus ``value_counts``); see
``benchmarks/results/summarize.md`` and ``benchmarks/results/sdk_overhead.md`` for figures.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import Counter
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from otel_mlobs import semconv
from otel_mlobs.sdk import _kll
from otel_mlobs.sdk._columns import (
    BOOLEAN,
    CategoryColumn,
    Columns,
    TextColumn,
    prepare,
)
from otel_mlobs.sdk._sampling import plan
from otel_mlobs.sdk._tabular import Table, as_table

DEFAULT_QUANTILE_LEVELS: tuple[float, ...] = semconv.DEFAULT_QUANTILE_LEVELS
DEFAULT_SAMPLE_ROWS = 512
DEFAULT_SKETCH_K = 200
DEFAULT_SKETCH_ROWS = 512
EXACT_SKETCH_MAX = 1024
"""Samples with at most this many finite values are kept whole in their sketch."""
TOP_VALUES = 20
MAX_TOP_VALUE_CHARS = 256
"""Longer top-value keys are cut (trailing ``…``) so one huge string cannot bloat an event."""
MAX_SAMPLE_COLUMN_BYTES = 1 << 20
"""A sampled column whose packed array would exceed this is left out of the sample and counted."""

_LOG = logging.getLogger(__name__)
_OVERSIZED: Any = object()  # a sampled column too large to send
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_MAX_BITMAP_BITS = 24
_FAST_SORT = 256  # numpy sorts rows up to this length with a vectorized network


@dataclass(slots=True)
class FrameSummary:
    """Per-column statistics of one dataset plus a bounded row sample.

    Arrays are parallel to ``columns``. ``quantiles`` has shape ``(len(columns), len(levels))``
    with NaN rows where a column has no quantiles. ``sample_columns``/``sample_values`` hold the
    row sample (sensitive and oversized columns left out), all of ``sample_size`` rows.
    ``shed`` counts sample columns left out because they were too large to send.
    """

    rows: int
    columns: list[str]
    kinds: list[str]
    count: np.ndarray
    nulls: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    quantile_levels: np.ndarray
    quantiles: np.ndarray
    sketches: list[bytes]
    distinct: np.ndarray
    top_values: list[dict[str, int]]
    sample_columns: list[str] = field(default_factory=list)
    sample_values: list[np.ndarray] = field(default_factory=list)
    sample_size: int = 0
    shed: int = 0
    truncated: int = 0

    def top_values_json(self) -> list[str]:
        """``top_values`` as the wire's JSON strings (``""`` where a column has none)."""
        return [json.dumps(t, ensure_ascii=False) if t else "" for t in self.top_values]

    def column(self, name: str) -> dict[str, Any]:
        """All statistics of the first column called ``name``, for reading and tests."""
        i = self.columns.index(name)
        return {
            "kind": self.kinds[i],
            "count": int(self.count[i]),
            "nulls": int(self.nulls[i]),
            "mean": float(self.mean[i]),
            "std": float(self.std[i]),
            "min": float(self.min[i]),
            "max": float(self.max[i]),
            "quantiles": self.quantiles[i],
            "sketch": self.sketches[i],
            "distinct": float(self.distinct[i]),
            "top_values": self.top_values[i],
        }


def summarize_frame(
    data: Any,
    *,
    sensitive: Collection[str] = (),
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int | None = None,
    quantile_levels: Sequence[float] = DEFAULT_QUANTILE_LEVELS,
    sketch_k: int = DEFAULT_SKETCH_K,
    sketch_rows: int | None = DEFAULT_SKETCH_ROWS,
    name: str = "data",
) -> FrameSummary:
    """Summarize every column of ``data`` and draw a uniform row sample.

    Parameters
    ----------
    data
        pandas DataFrame/Series, numpy array (1-D: one column called ``name``; 2-D: columns
        ``"0"``..``"n-1"``; structured: one column per field), dict of 1-D arrays or lists, or a
        polars DataFrame/Series (or a prepared :class:`~otel_mlobs.sdk._columns.Columns`).
        Anything else raises :class:`TypeError`.
    sensitive
        Column names never copied into the sample (they are still summarized).
    sample_rows
        Rows in the uniform sample drawn without replacement (all rows when fewer; 0 disables).
    seed
        Seed of the row sample (and of the ``sketch_rows`` sample); by default a fixed one, so
        tables of one size are sampled at the same rows.
    quantile_levels
        Levels in [0, 1] reported for numeric and datetime columns.
    sketch_k
        Smallest KLL ``k`` (accuracy parameter; normalized rank error about 1.3% at 200 once a
        sketch compacts), in [8, 65535].
    sketch_rows
        Rows of the uniform sample that sketches, quantiles, distinct estimates and text top
        values come from (``None``: every row).

    Examples
    --------
    >>> import numpy as np
    >>> s = summarize_frame({"x": np.array([1.0, 2.0, np.nan, np.inf])}, seed=0)
    >>> s.column("x")["count"], s.column("x")["nulls"], s.column("x")["mean"]
    (3, 1, 1.5)
    """
    steps = summarize_steps(
        data,
        sensitive=sensitive,
        sample_rows=sample_rows,
        seed=seed,
        quantile_levels=quantile_levels,
        sketch_k=sketch_k,
        sketch_rows=sketch_rows,
        name=name,
    )
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def summarize_steps(
    data: Any,
    *,
    sensitive: Collection[str] = (),
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int | None = None,
    quantile_levels: Sequence[float] = DEFAULT_QUANTILE_LEVELS,
    sketch_k: int = DEFAULT_SKETCH_K,
    sketch_rows: int | None = DEFAULT_SKETCH_ROWS,
    name: str = "data",
) -> Generator[None, None, FrameSummary]:
    """:func:`summarize_frame` as a generator that yields between its parts (the float columns,
    each categorical and text column) and returns the summary, so the SDK's worker can let other
    threads have the interpreter in between (``summary = yield from summarize_steps(...)``)."""
    levels = _levels(tuple(quantile_levels))
    if sample_rows < 0:
        raise ValueError(f"sample_rows must be >= 0, got {sample_rows}")
    if sketch_rows is not None and sketch_rows <= 0:
        raise ValueError(f"sketch_rows must be positive or None, got {sketch_rows}")
    if not _kll.MIN_K <= sketch_k <= _kll.MAX_K:
        raise ValueError(f"sketch_k must lie in [{_kll.MIN_K}, {_kll.MAX_K}], got {sketch_k}")
    if isinstance(data, Columns):
        cols = data
        rows = plan(cols.rows, sketch_rows, sample_rows, seed)
    else:
        table = data if isinstance(data, Table) else as_table(data, name)
        rows = plan(table.rows, sketch_rows, sample_rows, seed)
        cols = prepare(table, rows)
    n, ncols = cols.rows, len(cols.names)
    sketch_idx, sample_idx = rows.sketch, rows.sample

    moments = np.full((4, ncols), np.nan)  # mean, std, min, max
    counts = np.zeros((2, ncols), np.int64)  # count, nulls
    out = FrameSummary(
        rows=n,
        columns=list(cols.names),
        kinds=list(cols.kinds),
        count=counts[0],
        nulls=counts[1],
        mean=moments[0],
        std=moments[1],
        min=moments[2],
        max=moments[3],
        quantile_levels=levels,
        quantiles=np.full((ncols, levels.size), np.nan),
        sketches=[b""] * ncols,
        distinct=np.zeros(ncols),
        top_values=[{}] * ncols,
        sample_size=len(sample_idx),
    )
    samples: list[Any] = [None] * ncols
    with np.errstate(all="ignore"):
        _floats(out, cols, levels, sketch_k, sketch_rows, sketch_idx, sample_idx, samples)
    for cat in cols.categories:
        yield
        with np.errstate(all="ignore"):
            samples[cat.index] = _category(out, cat, sample_idx)
    for text in cols.texts:
        yield
        with np.errstate(all="ignore"):
            samples[text.index] = _text(out, text, n, sketch_rows, sketch_idx, sample_idx)
    skip = set(sensitive)
    for col_name, sample in zip(cols.names, samples, strict=True):
        if sample is None or col_name in skip:
            continue
        if sample is _OVERSIZED or sample.nbytes > MAX_SAMPLE_COLUMN_BYTES:
            out.shed += 1
            _LOG.warning(
                "sample of column %r left out: its packed array would exceed %d bytes",
                col_name,
                MAX_SAMPLE_COLUMN_BYTES,
            )
            continue
        out.sample_columns.append(col_name)
        out.sample_values.append(sample)
    return out


@functools.lru_cache(maxsize=16)
def _levels(levels: tuple[float, ...]) -> np.ndarray:
    """Validated quantile levels as a read-only array (validated once per distinct tuple)."""
    arr = np.asarray(levels, dtype=np.float64).reshape(-1)
    if arr.size and (np.any(arr < 0) or np.any(arr > 1) or np.any(np.isnan(arr))):
        raise ValueError(f"quantile levels must lie in [0, 1], got {arr.tolist()}")
    arr.setflags(write=False)
    return arr


# --- numeric, datetime and boolean columns ---------------------------------------------------


def _floats(
    out: FrameSummary,
    cols: Columns,
    levels: np.ndarray,
    sketch_k: int,
    sketch_rows: int | None,
    sketch_idx: np.ndarray | None,
    sample_idx: np.ndarray,
    samples: list[Any],
) -> None:
    at = cols.float_index
    if not len(at):
        return
    out.count[at], out.nulls[at] = cols.count, cols.nulls
    out.mean[at], out.std[at], out.min[at], out.max[at] = cols.mean, cols.std, cols.min, cols.max
    boolean = np.array([out.kinds[i] == BOOLEAN for i in at.tolist()], dtype=bool)
    sketched = np.flatnonzero(~boolean)
    drawn = cols.float_rows(sketch_idx) if sketch_rows is not None else None
    if len(sample_idx):
        same = drawn is not None and _same_rows(sketch_idx, sample_idx, cols.rows)
        rows = drawn if same else cols.float_rows(sample_idx)
        for j, i in enumerate(at.tolist()):
            samples[i] = rows[j]
    for j in np.flatnonzero(boolean).tolist():
        i = int(at[j])
        trues = int(round(cols.total[j]))
        ordered = sorted(
            {"True": trues, "False": int(cols.count[j]) - trues}.items(), key=lambda kv: -kv[1]
        )
        out.top_values[i] = {k: v for k, v in ordered if v}
        out.distinct[i] = float(len(out.top_values[i]))
    if not len(sketched):
        return
    if drawn is None:
        _floats_every_row(out, cols, sketched, levels, sketch_k)
    else:
        _floats_sampled(
            out,
            cols,
            sketched,
            drawn if len(sketched) == len(at) else drawn[sketched],
            levels,
            sketch_k,
        )


def _floats_sampled(
    out: FrameSummary,
    cols: Columns,
    rows: np.ndarray,
    drawn: np.ndarray,
    levels: np.ndarray,
    sketch_k: int,
) -> None:
    """Sketches, quantiles and distinct estimates of float rows ``rows`` from their sample."""
    ordered = _sort_rows(drawn)
    k, m = ordered.shape
    zero = np.zeros(k, np.int64)
    nan, neg, pos = zero, zero, zero
    # NaN sorts last and infinities at the ends; only columns that hold any need counting.
    if bool((cols.finite[rows] < cols.rows).any()):
        nan = np.count_nonzero(np.isnan(ordered), axis=1)
        neg = np.count_nonzero(ordered == -np.inf, axis=1)
        pos = np.count_nonzero(ordered == np.inf, axis=1)
    present = m - nan
    finite = present - neg - pos
    at = cols.float_index[rows]
    quantiles = _kll.nearest_rank(ordered, neg, finite, levels)
    plain = (finite == m) & (m >= 2) & (m <= EXACT_SKETCH_MAX)
    if bool(plain.any()):
        for i, sketch in zip(
            at[plain].tolist(), _kll.exact_sketches(ordered[plain], sketch_k), strict=True
        ):
            out.sketches[i] = sketch
    level_list = levels.tolist()
    for j in np.flatnonzero(~plain & (finite > 0)).tolist():
        lo, size = int(neg[j]), int(finite[j])
        values = ordered[j, lo : lo + size]
        if size <= EXACT_SKETCH_MAX:
            out.sketches[at[j]] = _kll.exact_sketch(values, sketch_k)
        else:
            out.sketches[at[j]], quantiles[j] = _kll.library_sketch(values, sketch_k, level_list)
    out.quantiles[at] = quantiles
    d, f1, f2 = _run_counts(ordered, present)
    varied = (cols.min[rows] < cols.max[rows]).tolist()  # then at least two distinct values
    out.distinct[at] = [
        max(_chao_lin_one(*args), 2.0) if more else _chao_lin_one(*args)
        for *args, more in zip(
            d.tolist(),
            f1.tolist(),
            f2.tolist(),
            present.tolist(),
            cols.count[rows].tolist(),
            varied,
            strict=True,
        )
    ]


def _floats_every_row(
    out: FrameSummary, cols: Columns, rows: np.ndarray, levels: np.ndarray, sketch_k: int
) -> None:
    """Sketches over every finite value and hash-based distinct counts (``sketch_rows=None``)."""
    level_list = levels.tolist()
    wanted = set(rows.tolist())
    j = 0
    for seg in cols.segments:
        for row in seg:
            if j in wanted:
                i = int(cols.float_index[j])
                present = row[~np.isnan(row)]
                finite = present[np.isfinite(present)]
                out.distinct[i] = _distinct_estimate(present)
                if len(finite) and len(finite) <= EXACT_SKETCH_MAX:
                    finite = np.sort(finite)
                    out.sketches[i] = _kll.exact_sketch(finite, sketch_k)
                    out.quantiles[i] = _kll.nearest_rank(
                        finite[None, :], np.zeros(1, np.int64), np.array([len(finite)]), levels
                    )[0]
                elif len(finite):
                    out.sketches[i], out.quantiles[i] = _kll.library_sketch(
                        finite, sketch_k, level_list
                    )
            j += 1


def _same_rows(sketch_idx: np.ndarray | None, sample_idx: np.ndarray, n: int) -> bool:
    """Whether the sample rows are the sketch rows (all ``n`` rows when ``sketch_idx`` is None)."""
    if sketch_idx is None:
        return len(sample_idx) == n
    return sample_idx is sketch_idx or np.array_equal(sample_idx, sketch_idx)


def _sort_rows(x: np.ndarray) -> np.ndarray:
    """``np.sort(x, axis=1)`` (NaN last). Rows up to twice :data:`_FAST_SORT` long are sorted as
    two halves with numpy's vectorized small-array sort, then merged by a stable (run-aware)
    sort: about twice as fast as one plain sort of such rows."""
    m = x.shape[1]
    if m <= _FAST_SORT or m > 2 * _FAST_SORT:
        return np.sort(x, axis=1)
    half = m // 2
    out = np.empty_like(x)
    out[:, :half] = np.sort(x[:, :half], axis=1)
    out[:, half:] = np.sort(x[:, half:], axis=1)
    return np.sort(out, axis=1, kind="stable")


def _run_counts(
    ordered: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: distinct values among the first ``present[r]`` items of sorted row ``r`` (the
    rest are NaN), and how many of them occur exactly once and exactly twice."""
    k, m = ordered.shape
    if m == 0 or k == 0:
        zero = np.zeros(k, np.int64)
        return zero, zero.copy(), zero.copy()
    flat = ordered.reshape(-1)
    # new[p]: a run starts at p. NaN never equals anything, so each trailing NaN is a run of
    # one of its own; those are taken off below. Two sentinels close the last row.
    new = np.empty(k * m + 2, dtype=bool)
    np.not_equal(flat[1:], flat[:-1], out=new[1 : k * m])
    new[0 : k * m : m] = True
    new[k * m :] = True
    here, nxt, after = new[: k * m], new[1 : k * m + 1], new[2:]
    marks = np.empty((3, k * m), dtype=bool)
    marks[0] = here
    np.logical_and(here, nxt, out=marks[1])
    np.logical_and(here, after, out=marks[2])
    marks[2] &= ~nxt
    d, f1, f2 = np.count_nonzero(marks.reshape(3, k, m), axis=2)
    nan = m - present
    return d - nan, f1 - nan, f2


def _chao_lin_one(d: int, f1: int, f2: int, m: int, population: int) -> float:
    """Chao & Lin (2012) richness estimator for a sample of ``m`` of ``population`` values drawn
    without replacement, from the sample's ``d`` distinct values, ``f1`` seen once and ``f2``
    seen twice; clipped to ``[d, population]``, and ``d`` when the sample is everything."""
    if not f1 or m >= population:
        return float(d)
    q = m / population
    denom = (2 * f2 * m / (m - 1) if m > 1 else 0.0) + f1 * q / (1 - q)
    return float(min(max(d + f1 * f1 / denom, d), population))


def _distinct_estimate(values: np.ndarray) -> float:
    """Linear counting over a hash bitmap of at least twice ``len(values)`` slots."""
    m = len(values)
    if m == 0:
        return 0.0
    bits = min(max((2 * m - 1).bit_length(), 10), _MAX_BITMAP_BITS)
    size = 1 << bits
    h = (values + 0.0).view(np.uint64)  # + 0.0 folds -0.0 into 0.0 and copies
    h ^= h >> _S33
    h *= _FMIX1
    h ^= h >> _S33
    h *= _FMIX2
    h ^= h >> _S33
    seen = np.zeros(size, dtype=bool)
    seen[(h >> np.uint64(64 - bits)).view(np.intp)] = True  # intp: no checked cast
    empty = size - int(np.count_nonzero(seen))
    if empty == 0:
        return float(m)
    return float(min(round(size * math.log(size / empty)), m))


# --- categorical and text columns -----------------------------------------------------------


def _category(out: FrameSummary, cat: CategoryColumn, sample_idx: np.ndarray) -> np.ndarray | None:
    i = cat.index
    out.nulls[i] = int(cat.counts[0])
    counts = cat.counts[1:]
    out.count[i] = int(counts.sum())
    nonzero = np.flatnonzero(counts)
    out.distinct[i] = float(len(nonzero))
    if len(nonzero):
        out.top_values[i] = _top_values(out, counts, cat.categories, nonzero)
    if not len(sample_idx):
        return None
    picked = cat.take(sample_idx)
    used, where = np.unique(picked, return_inverse=True)
    strings = [_as_text(cat.categories[c]) if c >= 0 else "" for c in used.tolist()]
    return _text_array(strings, where.reshape(-1), len(sample_idx))


def _text(
    out: FrameSummary,
    text: TextColumn,
    n: int,
    sketch_rows: int | None,
    sketch_idx: np.ndarray | None,
    sample_idx: np.ndarray,
) -> np.ndarray | None:
    i = text.index
    out.nulls[i] = text.nulls
    out.count[i] = count = n - text.nulls
    if sketch_rows is None:  # every row, exactly
        codes, uniques = _factorize(text.values)
        counts = np.bincount(codes.astype(np.intp, copy=False) + 1, minlength=len(uniques) + 1)
        nonzero = np.flatnonzero(counts[1:])
        out.distinct[i] = float(len(nonzero))
        if len(nonzero):
            out.top_values[i] = _top_values(out, counts[1:], uniques, nonzero)
        drawn = None
    else:
        drawn = _text_values(text, sketch_idx)
        seen = _sample_counts(drawn)
        _text_statistics(out, i, seen, count, sampled=sketch_idx is not None)
    if not len(sample_idx):
        return None
    distinct = None  # the sampled strings' distinct values, when they were just counted
    if drawn is None or not _same_rows(sketch_idx, sample_idx, n):
        drawn = _text_values(text, sample_idx)
    elif drawn[1] is None:  # strings only (no null flags): counted as they are
        distinct = seen
    items, missing = drawn
    if missing is not None:
        items = ["" if gone else _as_text(v) for v, gone in zip(items, missing, strict=True)]
    # The longest value is among the distinct ones: a few dozen lengths instead of every row's.
    width = max(map(len, items if distinct is None else distinct), default=0)
    if 4 * width * len(items) > MAX_SAMPLE_COLUMN_BYTES:
        return _OVERSIZED  # judged before the fixed-width array is ever built
    return np.array(items, dtype=f"<U{max(width, 1)}")


def _text_values(text: TextColumn, idx: np.ndarray | None) -> tuple[list[Any], list[bool] | None]:
    """The values at rows ``idx`` (all rows when None) as a list, with their null flags unless
    every value is known to be a string."""
    picked = text.take(idx)
    if picked.dtype.kind == "S":
        picked = np.char.decode(picked, "utf-8", errors="replace")
    if text.strings or picked.dtype.kind == "U":
        return picked.tolist(), None
    return picked.tolist(), pd.isna(picked).tolist()


def _sample_counts(drawn: tuple[list[Any], list[bool] | None]) -> Counter:
    """Occurrences of each non-null value in a (small) sample."""
    items, missing = drawn
    if missing is not None:
        items = [v for v, gone in zip(items, missing, strict=True) if not gone]
    try:
        return Counter(items)
    except TypeError:  # unhashable objects (lists, dicts): count their text
        return Counter(map(str, items))


def _text_statistics(out: FrameSummary, i: int, seen: Counter, count: int, sampled: bool) -> None:
    """Distinct estimate and top values of a text column from its sampled counts."""
    m = sum(seen.values())
    if not m:
        return
    d = len(seen)
    f1 = f2 = 0
    if sampled:
        per_count = Counter(seen.values())
        f1, f2 = per_count.get(1, 0), per_count.get(2, 0)
    out.distinct[i] = _chao_lin_one(d, f1, f2, m, count) if sampled else float(d)
    if sampled and f1 == d:
        return  # every sampled value is unique: an id-like column has no top values
    scale = count / m if sampled else 1
    top: dict[str, int] = {}
    for value, c in seen.most_common(TOP_VALUES):
        key = _cut(out, _as_text(value))
        top[key] = top.get(key, 0) + round(c * scale)
    out.top_values[i] = top


def _text_array(strings: list[str], where: np.ndarray, rows: int) -> np.ndarray:
    width = max(map(len, strings), default=0)
    if 4 * width * rows > MAX_SAMPLE_COLUMN_BYTES:
        return _OVERSIZED  # judged before the fixed-width array is ever built
    return np.array(strings, dtype=str)[where]


def _factorize(col: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
    except TypeError:  # unhashable objects (lists, dicts): compare their text
        values = np.asarray(col, dtype=object)
        present = ~pd.isna(values)
        text = np.full(len(values), None, dtype=object)
        text[present] = np.fromiter(
            (str(v) for v in values[present]), dtype=object, count=int(present.sum())
        )  # rare path: Python is fine
        codes, uniques = pd.factorize(text, use_na_sentinel=True)
    return np.asarray(codes), np.asarray(uniques, dtype=object)


def _top_values(
    out: FrameSummary, counts: np.ndarray, uniques: np.ndarray, nonzero: np.ndarray
) -> dict[str, int]:
    if len(nonzero) > TOP_VALUES:
        part = np.argpartition(-counts[nonzero], TOP_VALUES - 1)[:TOP_VALUES]
        nonzero = np.sort(nonzero[part])
    order = nonzero[np.lexsort((nonzero, -counts[nonzero]))]
    top: dict[str, int] = {}
    for code in order.tolist():
        key = _cut(out, _as_text(uniques[code]))
        top[key] = top.get(key, 0) + int(counts[code])
    return top


def _cut(out: FrameSummary, key: str) -> str:
    if len(key) > MAX_TOP_VALUE_CHARS:
        out.truncated += 1
        return key[: MAX_TOP_VALUE_CHARS - 1] + "…"
    return key


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
