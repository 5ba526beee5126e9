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


GRID_LEVELS = np.round(np.linspace(0.05, 0.95, 19), 4)
"""Levels of the per-record quantile grid (every 5th percentile from 5 to 95)."""
_GRID_LEVEL_LIST = [float(x) for x in GRID_LEVELS]


class SummaryView:
    """A validated, columnar view of one :class:`SummaryRecord`, computed once per record.

    Holds the per-column statistics as numpy arrays (ints as ``int64``), the deserialized run
    sketches (``None`` where a column has none), how many values each sketch saw, and lazily the
    quantile grid at :data:`GRID_LEVELS`. Build it with :func:`summary_view`.
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
        "sketches",
        "std",
        "top",
        "total",
        "_grid",
        "_index",
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
        self.kinds = np.asarray(record.kinds, dtype=object) if n else np.empty(0, dtype=object)
        self.rows = int(record.rows)
        self.count = np.asarray(record.count, dtype=np.int64)
        self.nulls = np.asarray(record.nulls, dtype=np.int64)
        self.total = self.count + self.nulls
        self.mean = np.asarray(record.mean, dtype=np.float64)
        self.std = np.asarray(record.std, dtype=np.float64)
        self.min = np.asarray(record.min, dtype=np.float64)
        self.max = np.asarray(record.max, dtype=np.float64)
        self.distinct = np.asarray(record.distinct, dtype=np.float64)
        self.levels = np.asarray(record.quantile_levels, dtype=np.float64)
        self.quantiles = (
            np.asarray(record.quantiles, dtype=np.float64).reshape(n, -1)
            if n
            else np.empty((0, len(self.levels)))
        )
        self.top = [t or {} for t in record.top_values]
        self.sketches = [_deserialize(b) for b in record.sketches]
        sizes = np.array([s.n if s is not None else 0 for s in self.sketches], dtype=np.int64)
        # Every column's sketch is built from the same row sample, so the largest sketch tells
        # how many rows the distributional statistics of the record's text columns saw too.
        sample_rows = int(sizes.max()) if n and sizes.max() > 0 else -1
        self.sampled = np.where(sizes > 0, sizes, sample_rows)
        self.measured = np.where(self.sampled < 0, self.count, np.minimum(self.sampled, self.count))
        self._grid: np.ndarray | None = None
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def index(self) -> dict[str, int]:
        """Column name -> position."""
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self.names)}
        return self._index

    @property
    def grid(self) -> np.ndarray:
        """(columns, 19) quantiles at :data:`GRID_LEVELS` from each column's sketch, falling
        back to interpolating the summary quantiles; NaN rows where neither exists."""
        if self._grid is None:
            grid = np.full((len(self.names), len(GRID_LEVELS)), np.nan)
            for i, sketch in enumerate(self.sketches):
                if sketch is not None:
                    grid[i] = sketch.get_quantiles(_GRID_LEVEL_LIST)
                elif self.quantiles.shape[1] and np.isfinite(self.quantiles[i]).any():
                    grid[i] = np.interp(GRID_LEVELS, self.levels, self.quantiles[i])
            self._grid = grid
        return self._grid


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


def sketch_size(blob: bytes) -> int:
    """Number of values a sketch has seen (0 without one)."""
    sketch = load_sketch(bytes(blob or b""))
    return int(sketch.n) if sketch is not None else 0


def merge_sketches(blobs: Sequence[bytes]) -> bytes:
    """One serialized sketch of the union of ``blobs`` (``b""`` when all are empty)."""
    merged: kll_doubles_sketch | None = None
    for blob in blobs:
        sketch = load_sketch(blob)
        if sketch is None:
            continue
        if merged is None:
            merged = kll_doubles_sketch(sketch.k)
        merged.merge(sketch)
    return merged.serialize() if merged is not None else b""


def share_below(blob: bytes, x: float) -> float:
    """Share of the sketch's values strictly below ``x`` (NaN without a sketch)."""
    sketch = load_sketch(blob)
    return float(sketch.get_rank(x, inclusive=False)) if sketch is not None else float("nan")


def share_above(blob: bytes, x: float) -> float:
    """Share of the sketch's values strictly above ``x`` (NaN without a sketch)."""
    sketch = load_sketch(blob)
    return 1.0 - float(sketch.get_rank(x, inclusive=True)) if sketch is not None else float("nan")


def cdf(blob: bytes, points: np.ndarray) -> np.ndarray:
    """``P(X <= x)`` at each of ``points`` (sorted, unique); NaN without a sketch."""
    sketch = load_sketch(blob)
    if sketch is None or not len(points):
        return np.full(len(points), np.nan)
    return np.asarray(sketch.get_cdf(points.tolist(), inclusive=True)[:-1])


def quantiles(blob: bytes, levels: Sequence[float]) -> np.ndarray:
    """Quantiles of the sketch at ``levels`` (NaN without a sketch)."""
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
