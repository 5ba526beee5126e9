"""Fixed rings of event-time panes holding additive per-bucket aggregates.

A pane is ``width_s`` seconds of event time; a ring keeps the last ``n_slots`` of them, so memory is
fixed whatever the stream's length. Two tables per pane:

* ``live``: per bucket, sums over every live prediction (count, estimate sums, ...);
* ``joined``: per hash band and bucket, sums over joined pairs (joined, correct, ...), kept per
  band so that a rise of the join's sampling level removes exactly one band.

Everything is a sum, so a window is the sum of its panes and shards merge by addition. A row older
than the ring's oldest pane is ignored here (its counters elsewhere still see it).
"""

from __future__ import annotations

import numpy as np


def _scatter_add(table: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``table[rows] += values`` with repeated rows summed, via one sort of the touched rows."""
    if rows.size == 0:
        return
    touched, inverse = np.unique(rows, return_inverse=True)
    for j in range(table.shape[1]):
        table[touched, j] += np.bincount(inverse, weights=values[:, j], minlength=touched.size)


class PaneRing:
    """``n_slots`` panes of ``width_s`` seconds with ``live[bucket, stat]`` and
    ``joined[band, bucket, stat]`` tables each."""

    def __init__(
        self, width_s: float, n_slots: int, n_buckets: int, n_live: int, n_bands: int, n_joined: int
    ) -> None:
        if width_s <= 0 or n_slots < 1:
            raise ValueError("width_s must be > 0 and n_slots >= 1")
        self.width_s = float(width_s)
        self.n_slots = n_slots
        self._pane = np.full(n_slots, np.iinfo(np.int64).min, dtype=np.int64)
        self.live = np.zeros((n_slots, n_buckets, n_live))
        self.joined = np.zeros((n_slots, n_bands, n_buckets, n_joined))

    def pane_of(self, ts: np.ndarray) -> np.ndarray:
        """Pane number of each event time."""
        return np.floor(np.asarray(ts, dtype=np.float64) / self.width_s).astype(np.int64)

    def _slots_for(self, panes: np.ndarray) -> np.ndarray:
        """Slot of each pane, recycling slots of older panes; -1 where the pane is too old."""
        slots = panes % self.n_slots
        out = slots.copy()
        for pane in np.unique(panes):  # a batch spans few panes
            slot = pane % self.n_slots
            current = self._pane[slot]
            if pane > current:
                self._pane[slot] = pane
                self.live[slot] = 0.0
                self.joined[slot] = 0.0
            elif pane < current:
                out[panes == pane] = -1
        return out

    def add_live(self, ts: np.ndarray, bucket: np.ndarray, stats: np.ndarray) -> None:
        """Add ``stats`` (rows, n_live) to the live table by pane and bucket."""
        if ts.shape[0] == 0:
            return
        slots = self._slots_for(self.pane_of(ts))
        ok = slots >= 0
        nb = self.live.shape[1]
        flat = slots[ok] * nb + bucket[ok]
        _scatter_add(self.live.reshape(self.n_slots * nb, -1), flat, stats[ok])

    def add_joined(
        self, ts: np.ndarray, band: np.ndarray, bucket: np.ndarray, stats: np.ndarray
    ) -> None:
        """Add ``stats`` (rows, n_joined) to the joined table by pane, band and bucket."""
        if ts.shape[0] == 0:
            return
        slots = self._slots_for(self.pane_of(ts))
        ok = slots >= 0
        _, n_bands, nb, _ = self.joined.shape
        flat = (slots[ok] * n_bands + band[ok].astype(np.int64)) * nb + bucket[ok]
        _scatter_add(self.joined.reshape(self.n_slots * n_bands * nb, -1), flat, stats[ok])

    def drop_band(self, band: int) -> None:
        """Forget one hash band's joined aggregates in every pane."""
        self.joined[:, band] = 0.0

    def clear_buckets(self, buckets: np.ndarray | slice) -> None:
        """Forget some buckets' aggregates in every pane."""
        self.live[:, buckets] = 0.0
        self.joined[:, :, buckets] = 0.0

    def window(self, end_pane: int, n_panes: int) -> tuple[np.ndarray, np.ndarray]:
        """Sum of the panes ``end_pane - n_panes + 1 .. end_pane``: ``(live, joined)``."""
        sel = (self._pane <= end_pane) & (self._pane > end_pane - n_panes)
        return self.live[sel].sum(axis=0), self.joined[sel].sum(axis=0)

    def get(self, pane: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(live, joined)`` of one pane, or None when the ring does not hold it."""
        slot = pane % self.n_slots
        if self._pane[slot] != pane:
            return None
        return self.live[slot], self.joined[slot]

    def panes(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Every filled pane, oldest first: ``(pane number, live, joined)``."""
        filled = np.flatnonzero(self._pane > np.iinfo(np.int64).min)
        order = filled[np.argsort(self._pane[filled])]
        return [(int(self._pane[s]), self.live[s], self.joined[s]) for s in order]
