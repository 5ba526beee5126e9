"""One column's summary in one run, and the sketch arithmetic the checks share.

A :class:`SummaryRecord` is columnar (one array per statistic). Vectorized checks read it
through :func:`summary_view`, which validates it, deserializes its sketches and computes each
column's quantile grid once per record: the view is cached by record identity, so the several
analyzers that judge the same record share that work without the record being mutated. Checks
that reason one column at a time use :func:`columns_of`, which slices the same view into
:class:`ColumnSummary` objects. :func:`load_sketch` deserializes each distinct blob once (bytes
objects cache their hash, so a lookup costs a dict probe).
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from datasketches import kll_doubles_sketch

from otel_mlobs import semconv
from otel_mlobs.processor.records import SummaryRecord

NUMERIC_KINDS = (semconv.KIND_NUMERIC, semconv.KIND_DATETIME)


@dataclass(slots=True)
class ColumnSummary:
    """The summary statistics of one column of one dataset in one run."""

    name: str
    kind: str
    rows: int
    count: int
    nulls: int
    mean: float
    std: float
    min: float
    max: float
    distinct: float
    levels: np.ndarray
    quantiles: np.ndarray
    sketch: bytes
    top: dict[str, int] = field(default_factory=dict)
    sampled: int = -1  # values the sketch / top values were computed from (-1: every value)

    @property
    def measured(self) -> int:
        """Values behind the distributional statistics: producers may compute sketches, top
        values and distinct estimates from a row sample, and sampling noise follows its size."""
        return self.count if self.sampled < 0 else min(self.sampled, self.count)

    @property
    def total(self) -> int:
        """Values plus nulls (the SDK may summarize a column of a sampled frame)."""
        return self.count + self.nulls

    @property
    def null_fraction(self) -> float:
        """Share of nulls; NaN for an empty dataset."""
        return self.nulls / self.total if self.total else float("nan")

    def has_content(self) -> bool:
        """Whether the fingerprint says more than a row count: an id column summarized as text
        may carry nothing but its count, which two healthy runs can share by chance."""
        if self.kind == "categorical":
            return bool(self.top) and self.count > 1
        return math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0

    def fingerprint(self) -> tuple:
        """The exact statistics a frozen feed repeats bit for bit from one run to the next.

        Quantiles and the distinct estimate are left out: producers may compute them from a
        row sample or a randomized sketch, so the same data can give slightly different ones.
        """
        top = tuple(sorted(self.top.items()))
        moments = (_r(self.mean), _r(self.std), _r(self.min), _r(self.max))
        return (self.count, self.nulls, moments, top)


def _r(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 12)


_GRID_EXACT = np.linspace(0.05, 0.95, 19)
GRID_LEVELS = np.round(_GRID_EXACT, 4)
"""Levels of the per-record quantile grid (every 5th percentile from 5 to 95)."""
_GRID_LEVEL_LIST = [float(x) for x in GRID_LEVELS]


KIND_CODES: dict[str, int] = {
    semconv.KIND_NUMERIC: 0,
    semconv.KIND_DATETIME: 1,
    semconv.KIND_CATEGORICAL: 2,
    semconv.KIND_BOOLEAN: 3,
}
"""Column kinds as small ints for vectorized comparison; unknown kinds get the next code."""


def kind_code(kind: str) -> int:
    """The int code of ``kind`` (stable for the life of the process)."""
    return KIND_CODES.setdefault(kind, len(KIND_CODES))


# Rows of SummaryView.stats.
(S_COUNT, S_NULLS, S_TOTAL, S_MEAN, S_STD, S_MIN, S_MAX, S_DISTINCT, S_MEASURED, S_KIND,
 S_HAS_TOP) = range(11)  # fmt: skip


class SummaryView:
    """A validated, columnar view of one :class:`SummaryRecord`, computed once per record.

    ``stats`` holds the per-column statistics as one ``(11, columns)`` float matrix (rows
    ``S_COUNT`` ... ``S_HAS_TOP``) so a compiled check suite gathers them in one operation.
    Sketches are read without deserializing where possible: a KLL sketch in exact mode (one
    level, every value weighted 1, what producers send for a row sample) is its items, so the
    items of all such columns are sorted once into one NaN-padded matrix, and quantiles and
    ranks are indexing and counting on it, value for value what the sketch returns. Other
    sketches are deserialized. Build it with :func:`summary_view`.
    """

    __slots__ = (
        "count",
        "dataset",
        "distinct",
        "kinds",
        "levels",
        "max",
        "mean",
        "measured",
        "min",
        "names",
        "nulls",
        "quantiles",
        "rows",
        "sampled",
        "stats",
        "std",
        "top",
        "total",
        "_exact",
        "_grid",
        "_index",
        "_kll",
        "_matrix",
        "_row",
        "_sizes",
    )

    def __init__(self, record: SummaryRecord) -> None:
        n = len(record.columns)
        arrays = (
            record.kinds,
            record.count,
            record.nulls,
            record.mean,
            record.std,
            record.min,
            record.max,
            record.distinct,
            record.sketches,
            record.top_values,
        )
        if any(len(a) != n for a in arrays):
            raise ValueError(f"summary of {record.dataset!r}: per-column arrays differ in length")
        self.dataset = record.dataset
        self.names = list(record.columns)
        self.kinds = list(record.kinds)
        self.rows = int(record.rows)
        self.count = np.asarray(record.count, dtype=np.int64).reshape(n)
        self.nulls = np.asarray(record.nulls, dtype=np.int64).reshape(n)
        self.total = self.count + self.nulls
        self.mean = np.asarray(record.mean, dtype=np.float64).reshape(n)
        self.std = np.asarray(record.std, dtype=np.float64).reshape(n)
        self.min = np.asarray(record.min, dtype=np.float64).reshape(n)
        self.max = np.asarray(record.max, dtype=np.float64).reshape(n)
        self.distinct = np.asarray(record.distinct, dtype=np.float64).reshape(n)
        self.levels = np.asarray(record.quantile_levels, dtype=np.float64)
        self.quantiles = (
            np.asarray(record.quantiles, dtype=np.float64).reshape(n, -1)
            if n
            else np.empty((0, len(self.levels)))
        )
        self.top = [t or {} for t in record.top_values]
        self._exact: list[tuple[int, np.ndarray]] = []
        self._kll: dict[int, kll_doubles_sketch] = {}
        sizes = np.zeros(n, dtype=np.int64)
        for i, blob in enumerate(record.sketches):
            if not blob:
                continue
            items = _exact_items(blob)
            if items is not None:
                self._exact.append((i, items))
                sizes[i] = len(items)
                continue
            sketch = _deserialize(blob)
            if sketch is not None:
                self._kll[i] = sketch
                sizes[i] = sketch.n
        self._sizes = sizes
        # Every column's sketch is built from the same row sample, so the largest sketch tells
        # how many rows the distributional statistics of the record's text columns saw too.
        sample_rows = int(sizes.max()) if n and sizes.max() > 0 else -1
        self.sampled = np.where(sizes > 0, sizes, sample_rows)
        self.measured = np.where(self.sampled < 0, self.count, np.minimum(self.sampled, self.count))
        codes = [kind_code(k) for k in self.kinds]
        has_top = [bool(t) for t in self.top]
        self.stats = np.array(
            [
                self.count,
                self.nulls,
                self.total,
                self.mean,
                self.std,
                self.min,
                self.max,
                self.distinct,
                self.measured,
                codes,
                has_top,
            ],
            dtype=np.float64,
        ).reshape(11, n)
        self._grid: np.ndarray | None = None
        self._index: dict[str, int] | None = None
        self._matrix: np.ndarray | None = None
        self._row: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def index(self) -> dict[str, int]:
        """Column name -> position."""
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self.names)}
        return self._index

    def has_sketch(self, i: int) -> bool:
        """Whether column ``i`` came with a readable, non-empty sketch."""
        return bool(self._sizes[i] > 0)

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(matrix, row): exact-mode items sorted per row, NaN-padded; row of each column in
        the matrix (-1 without an exact-mode sketch)."""
        if self._matrix is None:
            row = np.full(len(self.names), -1, dtype=np.int64)
            if not self._exact:
                self._matrix, self._row = np.empty((0, 0)), row
                return self._matrix, row
            cols = [i for i, _ in self._exact]
            lengths = np.array([len(x) for _, x in self._exact], dtype=np.int64)
            width = int(lengths.max())
            matrix = np.full((len(cols), width), np.nan)
            for k, (_, items) in enumerate(self._exact):
                matrix[k, : len(items)] = items
            matrix.sort(axis=1)  # NaN padding sorts last
            row[cols] = np.arange(len(cols))
            self._matrix, self._row = matrix, row
        return self._matrix, self._row  # type: ignore[return-value]

    @property
    def grid(self) -> np.ndarray:
        """(columns, 19) quantiles at :data:`GRID_LEVELS` from each column's sketch, falling
        back to interpolating the summary quantiles; NaN rows where neither exists."""
        if self._grid is None:
            grid = np.full((len(self.names), len(GRID_LEVELS)), np.nan)
            matrix, row = self._sorted()
            if len(matrix):
                cols = np.flatnonzero(row >= 0)
                n = self._sizes[cols][:, None]
                # A sketch's (exclusive) quantile at rank r is its floor(r * n)-th item.
                at = np.minimum(np.floor(GRID_LEVELS * n).astype(np.int64), n - 1)
                grid[cols] = np.take_along_axis(matrix, at, axis=1)
            for i, sketch in self._kll.items():
                grid[i] = sketch.get_quantiles(_GRID_LEVEL_LIST)
            for i in np.flatnonzero(self._sizes == 0):
                if self.quantiles.shape[1] and np.isfinite(self.quantiles[i]).any():
                    grid[i] = np.interp(_GRID_EXACT, self.levels, self.quantiles[i])
            self._grid = grid
        return self._grid

    def median(self, i: int) -> float:
        """Column ``i``'s median from its sketch, else interpolated from the summary."""
        if self.has_sketch(i):
            return float(self.grid[i, 9])  # the grid's 0.5 level
        return float(np.interp(0.5, self.levels, self.quantiles[i]))

    def share_beyond(self, cols: np.ndarray, x: np.ndarray, above: bool) -> np.ndarray:
        """Per column of ``cols``: share of its values strictly above (``above``) or strictly
        below ``x``, from its sketch, else from the summary quantiles (as :func:`share_above`
        and :func:`share_below`, and the coarse fallback, would give)."""
        nan = np.full(len(cols), np.nan)
        return self.outside(cols, x, nan)[0] if above else self.outside(cols, nan, x)[1]

    def outside(
        self, cols: np.ndarray, high: np.ndarray, low: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per column of ``cols`` (distinct): the share of its values above ``high`` and the
        share below ``low`` (NaN where the edge is NaN), as :meth:`share_beyond` gives them."""
        above = np.full(len(cols), np.nan)
        below = np.full(len(cols), np.nan)
        matrix, row = self._sorted()
        r = row[cols]
        exact = r >= 0
        if exact.any():
            block, n = matrix[r[exact]], self._sizes[cols[exact]]
            # As the sketch reads ranks: above = 1 - rank(inclusive), below = rank(exclusive).
            above[exact] = 1.0 - (block <= high[exact][:, None]).sum(axis=1) / n
            below[exact] = (block < low[exact][:, None]).sum(axis=1) / n
        for k in np.flatnonzero(~exact):
            i = int(cols[k])
            sketch = self._kll.get(i)
            for edge, out, up in ((high[k], above, True), (low[k], below, False)):
                if sketch is not None:
                    rank = float(sketch.get_rank(float(edge), inclusive=up))
                else:
                    rank = float(
                        cdf_from_quantiles(self.levels, self.quantiles[i], np.array([edge]))[0]
                    )
                out[k] = 1.0 - rank if up else rank
        above[np.isnan(high)] = np.nan
        below[np.isnan(low)] = np.nan
        return above, below


_HEADER = struct.Struct("<BBBBHBxQHBxI")  # preamble .. n, min_k, levels, first level offset


def _exact_items(blob: bytes) -> np.ndarray | None:
    """The items of a serialized KLL doubles sketch in exact mode (one level, so each item
    weighs 1), read in place; ``None`` for any other layout."""
    # Full-format preamble: 5 ints, serial version 1, family 15 (KLL); flags neither empty
    # nor single-item; one level starting at offset 0. Then min, max and the n items.
    if len(blob) < 40:
        return None
    pre, ver, fam, flags, _, _, n, _, levels, first = _HEADER.unpack_from(blob)
    if pre != 5 or ver != 1 or fam != 15 or flags & 0b101 or levels != 1 or first != 0:
        return None
    if n < 1 or len(blob) != 40 + 8 * n:
        return None
    return np.frombuffer(blob, dtype="<f8", count=n, offset=40)


def _weighted(blob: bytes) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(retained items, their weights, min, max) of a serialized KLL doubles sketch, read in
    place; ``None`` for a layout not understood. An item at level ``h`` weighs ``2**h``."""
    if len(blob) < 20 or blob[0] != 5 or blob[1] != 1 or blob[2] != 15 or blob[3] & 0b101:
        return None
    levels = blob[18]
    n = int.from_bytes(blob[8:16], "little")
    head = 20 + 4 * levels + 16  # preamble, level offsets, min and max
    if levels < 1 or len(blob) < head or (len(blob) - head) % 8:
        return None
    offsets = np.frombuffer(blob, dtype="<u4", count=levels, offset=20).astype(np.int64)
    retained = (len(blob) - head) // 8
    bounds = np.append(offsets - offsets[0], retained)
    if (np.diff(bounds) < 0).any():
        return None
    items = np.frombuffer(blob, dtype="<f8", count=retained, offset=head)
    weights = np.repeat(2 ** np.arange(levels, dtype=np.int64), np.diff(bounds))
    if int(weights.sum()) != n:
        return None
    low, high = struct.unpack_from("<dd", blob, head - 16)
    return items, weights, low, high


def weighted_items(blob: bytes) -> np.ndarray | None:
    """Every value a serialized KLL doubles sketch stands for: each retained item repeated by
    its weight (2 to the power of its level), unsorted; ``None`` for a layout not understood."""
    parsed = _weighted(blob)
    return None if parsed is None else np.repeat(parsed[0], parsed[1])


def _deserialize(blob: bytes | None) -> kll_doubles_sketch | None:
    if not blob:
        return None
    try:
        sketch = kll_doubles_sketch.deserialize(bytes(blob))
    except (RuntimeError, ValueError):
        return None
    return None if sketch.is_empty() else sketch


_VIEWS: OrderedDict[int, tuple[SummaryRecord, SummaryView]] = OrderedDict()
_MAX_VIEWS = 64


def summary_view(record: SummaryRecord) -> SummaryView:
    """The cached :class:`SummaryView` of ``record`` (bad lengths raise ``ValueError``).

    Keyed by ``id(record)`` with the record itself kept alongside, so an id reused after the
    record is freed never returns a stale view; a record mutated after its first view is
    judged as it first was (records are immutable once decoded).
    """
    hit = _VIEWS.get(id(record))
    if hit is not None and hit[0] is record:
        return hit[1]
    view = SummaryView(record)
    _VIEWS[id(record)] = (record, view)
    if len(_VIEWS) > _MAX_VIEWS:
        _VIEWS.popitem(last=False)
    return view


def columns_of(record: SummaryRecord) -> Iterator[ColumnSummary]:
    """Slice a columnar record into per-column views (bad lengths raise ``ValueError``)."""
    view = summary_view(record)
    levels = view.levels
    rows = view.rows
    for i, name in enumerate(view.names):
        yield ColumnSummary(
            name=name,
            kind=record.kinds[i],
            rows=rows,
            count=int(view.count[i]),
            nulls=int(view.nulls[i]),
            mean=float(view.mean[i]),
            std=float(view.std[i]),
            min=float(view.min[i]),
            max=float(view.max[i]),
            distinct=float(view.distinct[i]),
            levels=levels,
            quantiles=view.quantiles[i],
            sketch=bytes(record.sketches[i] or b""),
            top=dict(view.top[i]),
            sampled=int(view.sampled[i]),
        )


@lru_cache(maxsize=1024)
def load_sketch(blob: bytes) -> kll_doubles_sketch | None:
    """Deserialize a KLL sketch once; ``None`` for an empty or unreadable blob."""
    if not blob:
        return None
    try:
        sketch = kll_doubles_sketch.deserialize(blob)
    except (RuntimeError, ValueError):
        return None
    return None if sketch.is_empty() else sketch


@lru_cache(maxsize=1024)
def _exact_sorted(blob: bytes) -> np.ndarray | None:
    """The sorted items of an exact-mode sketch (read-only), ``None`` for any other."""
    items = _exact_items(blob) if blob else None
    if items is None:
        return None
    out = np.sort(items)
    out.flags.writeable = False
    return out


def exact_values(blob: bytes) -> np.ndarray | None:
    """The sorted values of an exact-mode sketch (read-only, cached), ``None`` for any other:
    ``searchsorted(..) / n`` on them is exactly the sketch's rank."""
    return _exact_sorted(blob) if blob else None


_MAX_EXPANDED = 200_000


@lru_cache(maxsize=256)
def ranked_values(blob: bytes) -> np.ndarray | None:
    """Every value a sketch stands for (each item repeated by its weight), sorted and
    read-only, so ``searchsorted(..) / n`` is exactly the sketch's rank; ``None`` for no sketch,
    a layout not understood, or more than 200,000 values."""
    exact = _exact_sorted(blob) if blob else None
    if exact is not None:
        return exact
    items = weighted_items(blob) if blob and len(blob) >= 20 else None
    if items is None or not len(items) or len(items) > _MAX_EXPANDED:
        return None
    out = np.sort(items)
    out.flags.writeable = False
    return out


def sketch_size(blob: bytes) -> int:
    """Number of values a sketch has seen (0 without one)."""
    blob = bytes(blob or b"")
    items = _exact_sorted(blob)
    if items is not None:
        return len(items)
    sketch = load_sketch(blob)
    return int(sketch.n) if sketch is not None else 0


_MAX_K = 65_535  # the sketch library's largest k


MERGED_VALUES = 4_096
"""Values a merged reference keeps when its inputs hold more: rank error at most 1/4096 on top
of the inputs' own, finer than a KLL merge at the inputs' k, and 32 KiB per column."""


def merge_sketches(blobs: Sequence[bytes], exact_up_to: int = 0) -> bytes:
    """One serialized sketch of the union of ``blobs`` (``b""`` when all are empty), the same
    bytes for the same inputs in any process.

    The inputs' values (each retained item with its weight) are pooled. When there are at most
    ``max(exact_up_to, MERGED_VALUES)`` of them (and the sketch library's largest ``k``), the
    result keeps every one; otherwise it keeps ``MERGED_VALUES`` evenly spaced order statistics
    of the pool, the pool's minimum and maximum among them, so a reference over a long window
    stays at 32 KiB a column. Either way it is an exact-mode sketch. The library's own merge
    compacts with its process-wide random generator, so merged references (and everything
    judged against them) would differ from run to run and from shard to shard on one stream.
    """
    parts = [p for p in (_pooled_part(blob) for blob in blobs) if p is not None]
    if not parts:
        return b""
    items = np.concatenate([p[0] for p in parts])
    weights = np.concatenate([p[1] for p in parts])
    low, high = min(p[2] for p in parts), max(p[3] for p in parts)
    total = float(weights.sum())
    whole = min(max(exact_up_to, MERGED_VALUES), _MAX_K)
    if total <= whole and (weights == np.round(weights)).all():
        values = np.repeat(items, weights.astype(np.int64))
    else:
        keep = max(1, min(MERGED_VALUES, round(total)))
        order = np.argsort(items, kind="stable")
        items, cum = items[order], np.cumsum(weights[order], dtype=np.float64)
        ranks = (np.arange(keep) + 0.5) * (cum[-1] / keep)
        values = items[np.minimum(np.searchsorted(cum, ranks, "right"), len(items) - 1)]
        if keep > 1:
            values[0], values[-1] = low, high
    merged = kll_doubles_sketch(max(len(values), 8))
    merged.update(values)
    return merged.serialize()


def _pooled_part(blob: bytes) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(items, weights, min, max) of one input to :func:`merge_sketches`: read in place, or
    for a layout this module does not parse (a single-item sketch), evenly spaced quantiles
    from the library, each weighing an equal share of its count."""
    blob = bytes(blob or b"")
    parsed = _weighted(blob) if blob else None
    if parsed is not None:
        return parsed if len(parsed[0]) else None
    sketch = load_sketch(blob)
    if sketch is None:
        return None
    m = int(min(sketch.n, 1_024))
    levels = ((np.arange(m) + 0.5) / m).tolist()
    items = np.asarray(sketch.get_quantiles(levels), dtype=np.float64)
    return (
        items,
        np.full(m, sketch.n / m),
        float(sketch.get_min_value()),
        float(sketch.get_max_value()),
    )


# An exact-mode sketch (every value weighted 1, what producers send for a row sample) answers
# from its sorted items, value for value as the sketch library does: rank(x) counts items below
# (or up to) x, and the (exclusive) quantile at r is item floor(r * n). Other sketches (merged
# references), and NaN arguments, ask the library.


def share_below(blob: bytes, x: float) -> float:
    """Share of the sketch's values strictly below ``x`` (NaN without a sketch)."""
    items = _exact_sorted(blob)
    if items is not None and not math.isnan(x):
        return float(np.searchsorted(items, x, "left") / len(items))
    sketch = load_sketch(blob)
    return float(sketch.get_rank(x, inclusive=False)) if sketch is not None else float("nan")


def share_above(blob: bytes, x: float) -> float:
    """Share of the sketch's values strictly above ``x`` (NaN without a sketch)."""
    items = _exact_sorted(blob)
    if items is not None and not math.isnan(x):
        return 1.0 - float(np.searchsorted(items, x, "right") / len(items))
    sketch = load_sketch(blob)
    return 1.0 - float(sketch.get_rank(x, inclusive=True)) if sketch is not None else float("nan")


def cdf(blob: bytes, points: np.ndarray) -> np.ndarray:
    """``P(X <= x)`` at each of ``points`` (sorted, unique); NaN without a sketch."""
    items = _exact_sorted(blob)
    if items is not None and len(points) and not np.isnan(points).any():
        return np.searchsorted(items, points, "right") / len(items)
    sketch = load_sketch(blob)
    if sketch is None or not len(points):
        return np.full(len(points), np.nan)
    return np.asarray(sketch.get_cdf(points.tolist(), inclusive=True)[:-1])


def quantiles(blob: bytes, levels: Sequence[float]) -> np.ndarray:
    """Quantiles of the sketch at ``levels`` (NaN without a sketch)."""
    items = _exact_sorted(blob)
    if items is not None:
        at = np.asarray(levels, dtype=np.float64)
        if at.size and ((at >= 0) & (at <= 1)).all():
            n = len(items)
            return items[np.minimum(np.floor(at * n).astype(np.int64), n - 1)]
    sketch = load_sketch(blob)
    if sketch is None:
        return np.full(len(levels), np.nan)
    return np.asarray(sketch.get_quantiles(list(levels)))


def cdf_from_quantiles(levels: np.ndarray, values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A coarse CDF from summary quantiles, for producers that send no sketch."""
    ok = np.isfinite(values)
    if ok.sum() < 2:
        return np.full(len(points), np.nan)
    return np.interp(points, values[ok], levels[ok], left=0.0, right=1.0)
