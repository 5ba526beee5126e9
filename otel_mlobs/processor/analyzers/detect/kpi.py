"""Business KPIs beside accuracy: is the model's accuracy what moves the business figure?

KPI values (``mlobs.kpi`` events) are averaged per event-time pane, hourly and daily, for a few
KPI names per model; the analyzer pairs each pane's KPI mean with the same pane's accuracy and
reports their Pearson correlation over the last 7 days of hours and the kept days.
"""

from __future__ import annotations

import numpy as np

MAX_KPIS = 8
KPI_WINDOWS: dict[str, tuple[int, int]] = {"7d": (0, 168), "30d": (1, 30)}
"""Correlation window -> (ring: 0 hourly, 1 daily; panes)."""


class KpiPanes:
    """Sum and count of one KPI per pane in a fixed ring."""

    def __init__(self, width_s: float, n_slots: int) -> None:
        self.width_s = width_s
        self.n_slots = n_slots
        self.pane = np.full(n_slots, np.iinfo(np.int64).min, dtype=np.int64)
        self.sum = np.zeros(n_slots)
        self.count = np.zeros(n_slots)

    def add(self, value: float, t: float) -> None:
        p = int(np.floor(t / self.width_s))
        s = p % self.n_slots
        if p > self.pane[s]:
            self.pane[s], self.sum[s], self.count[s] = p, 0.0, 0.0
        elif p < self.pane[s]:
            return
        self.sum[s] += value
        self.count[s] += 1.0

    def means(self, panes: np.ndarray) -> np.ndarray:
        """Mean per requested pane number; NaN where there is none."""
        s = panes % self.n_slots
        ok = (self.pane[s] == panes) & (self.count[s] > 0)
        out = np.full(panes.shape[0], np.nan)
        out[ok] = self.sum[s][ok] / self.count[s][ok]
        return out


class KpiTracker:
    """A few named KPIs, each in an hourly and a daily ring."""

    def __init__(self, history_days: int = 30, max_kpis: int = MAX_KPIS) -> None:
        self.history_days = history_days
        self.max_kpis = max_kpis
        self._kpis: dict[str, tuple[KpiPanes, KpiPanes]] = {}
        self.rejected = 0  # values of KPI names beyond max_kpis, or not finite

    @property
    def names(self) -> list[str]:
        return sorted(self._kpis)

    def add(self, name: str, value: float, t: float) -> None:
        if not (np.isfinite(value) and np.isfinite(t)):
            self.rejected += 1
            return
        if name not in self._kpis:
            if len(self._kpis) >= self.max_kpis:
                self.rejected += 1
                return
            self._kpis[name] = (KpiPanes(3600.0, 169), KpiPanes(86400.0, self.history_days + 1))
        hourly, daily = self._kpis[name]
        hourly.add(value, t)
        daily.add(value, t)

    def means(self, name: str, ring: int, panes: np.ndarray) -> np.ndarray:
        return self._kpis[name][ring].means(panes)


def correlation(x: np.ndarray, y: np.ndarray, min_points: int = 3) -> tuple[float | None, int]:
    """Pearson correlation over the points where both are finite, and how many there were."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < min_points:
        return None, n
    xs, ys = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    denom = np.sqrt((xs * xs).sum() * (ys * ys).sum())
    if denom <= 0:
        return None, n
    return float((xs * ys).sum() / denom), n
