"""One column's summary in one run, and the sketch arithmetic the checks share.

A :class:`SummaryRecord` is columnar (one array per statistic); the checks reason one column at a
time, so :func:`columns_of` slices it into :class:`ColumnSummary` views. KLL sketches arrive
serialized; :func:`load_sketch` deserializes each distinct blob once (bytes objects cache their
hash, so a lookup costs a dict probe).
"""

from __future__ import annotations

import math
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


def columns_of(record: SummaryRecord) -> Iterator[ColumnSummary]:
    """Slice a columnar record into per-column views (bad lengths raise ``ValueError``)."""
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
    quantiles = np.asarray(record.quantiles, dtype=np.float64).reshape(n, -1) if n else None
    # Every column's sketch is built from the same row sample, so the largest sketch tells how
    # many rows the distributional statistics of the record's text columns saw too.
    sizes = [sketch_size(b) for b in record.sketches]
    sample_rows = max(sizes) if any(x > 0 for x in sizes) else -1
    for i, name in enumerate(record.columns):
        yield ColumnSummary(
            name=name,
            kind=record.kinds[i],
            rows=int(record.rows),
            count=int(record.count[i]),
            nulls=int(record.nulls[i]),
            mean=float(record.mean[i]),
            std=float(record.std[i]),
            min=float(record.min[i]),
            max=float(record.max[i]),
            distinct=float(record.distinct[i]),
            levels=np.asarray(record.quantile_levels, dtype=np.float64),
            quantiles=quantiles[i] if quantiles is not None else np.empty(0),
            sketch=bytes(record.sketches[i] or b""),
            top=dict(record.top_values[i] or {}),
            sampled=sizes[i] if sizes[i] > 0 else sample_rows,
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
