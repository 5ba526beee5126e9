"""A fixed-bucket cumulative histogram: bounded memory, mergeable, vectorized observation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from otel_mlobs.processor.analyzers.base import Histogram


class FixedHistogram:
    """Counts of observations per bucket, with bucket bounds fixed at construction.

    Bounds follow Prometheus' ``le`` semantics (a value equal to a bound falls in that bucket);
    NaN observations are skipped, so a missing score never lands in a bucket.

    >>> h = FixedHistogram([1.0, 2.0])
    >>> h.observe([0.5, 2.0, 9.0, float("nan")])
    >>> h.value().buckets
    ((1.0, 1.0), (2.0, 2.0), (inf, 3.0))
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        arr = np.asarray(bounds, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.diff(arr) > 0):
            raise ValueError(f"Invalid 'bounds': {list(bounds)!r}; expected increasing numbers")
        if not np.isfinite(arr).all():
            raise ValueError("Invalid 'bounds': +Inf is implicit, give finite bounds only")
        self.bounds = arr
        self._counts = np.zeros(arr.size + 1, dtype=np.int64)
        self._sum = 0.0

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    def observe(self, values: Sequence[float] | np.ndarray | float) -> None:
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        vals = vals[~np.isnan(vals)]
        if vals.size:
            idx = np.searchsorted(self.bounds, vals, side="left")
            self._counts += np.bincount(idx, minlength=self._counts.size)
            self._sum += float(vals.sum())

    def merge(self, other: FixedHistogram) -> None:
        if not np.array_equal(self.bounds, other.bounds):
            raise ValueError("cannot merge histograms with different bounds")
        self._counts += other._counts
        self._sum += other._sum

    def value(self) -> Histogram:
        cumulative = np.cumsum(self._counts)
        uppers = [*self.bounds.tolist(), float("inf")]
        return Histogram(
            buckets=tuple(zip(uppers, cumulative.astype(float).tolist(), strict=True)),
            sum=self._sum,
        )
