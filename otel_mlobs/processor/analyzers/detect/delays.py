"""How long feedback takes: a delay histogram and the share of predictions now overdue.

The delay of a joined pair is its feedback's event time minus its prediction's. Delays are counted
in fine log-spaced bins (quantiles to within ~5%) and in coarse Prometheus buckets. A pending
prediction is *overdue* once it has waited longer than the historical p95 delay: a rising share of
overdue predictions is the first sign that feedback is stuck.
"""

from __future__ import annotations

import numpy as np

PROM_BUCKETS = (
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0,
    86400.0, 172800.0, 345600.0, 604800.0, 1209600.0, 2592000.0,
)  # fmt: skip
_FINE_MIN, _FINE_MAX, _FINE_BINS = 0.1, 1e9, 200
_FINE_EDGES = np.geomspace(_FINE_MIN, _FINE_MAX, _FINE_BINS + 1)


class DelayTracker:
    """Histogram of feedback delays and the p95 that defines "overdue"."""

    def __init__(self, quantile: float = 0.95, min_count: int = 20) -> None:
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.quantile = quantile
        self.min_count = min_count
        self._fine = np.zeros(_FINE_BINS + 2, dtype=np.int64)  # [<min, bins..., >=max]
        self._coarse = np.zeros(len(PROM_BUCKETS) + 1, dtype=np.int64)
        self._sum = 0.0
        self._count = 0

    @property
    def count(self) -> int:
        """Delays observed."""
        return self._count

    def add(self, delays: np.ndarray) -> None:
        """Observe delays in seconds (negative ones, clock skew, count as zero)."""
        d = np.maximum(np.asarray(delays, dtype=np.float64), 0.0)
        d = d[np.isfinite(d)]
        if d.size == 0:
            return
        fine = np.searchsorted(_FINE_EDGES, d, side="right")
        self._fine += np.bincount(fine, minlength=self._fine.size)
        coarse = np.searchsorted(np.asarray(PROM_BUCKETS), d, side="left")
        self._coarse += np.bincount(coarse, minlength=self._coarse.size)
        self._sum += float(d.sum())
        self._count += int(d.size)

    def histogram(self) -> tuple[tuple[tuple[float, float], ...], float]:
        """Cumulative ``((upper bound, count), ...)`` with +Inf last, and the sum."""
        cum = np.cumsum(self._coarse)
        bounds = (*PROM_BUCKETS, float("inf"))
        return tuple(zip(bounds, cum.astype(float).tolist(), strict=True)), self._sum

    def quantile_value(self, q: float | None = None) -> float | None:
        """Delay quantile (interpolated within a fine bin); None before ``min_count`` delays."""
        if self._count < self.min_count:
            return None
        q = self.quantile if q is None else q
        cum = np.cumsum(self._fine)
        target = q * self._count
        i = int(np.searchsorted(cum, target, side="left"))
        if i == 0:
            return 0.0
        if i > _FINE_BINS:
            return float(_FINE_MAX)
        lo, hi = _FINE_EDGES[i - 1], _FINE_EDGES[i]
        below = cum[i - 1]
        frac = (target - below) / max(self._fine[i], 1)
        return float(lo * (hi / lo) ** frac)

    def overdue(self, used: np.ndarray, pred_ts: np.ndarray, now: float) -> int | None:
        """Pending predictions older than the delay quantile; None while it is unknown."""
        limit = self.quantile_value()
        if limit is None or not np.isfinite(now):
            return None
        return int((used & (pred_ts < now - limit)).sum())
