"""The bounded prediction/feedback join.

Predictions wait in a fixed-size pending table (numpy arrays, one row per slot, a free-slot stack
and a :class:`SlotIndex` from id hash to slot) until their feedback arrives; the joined pair then
leaves the table and becomes part of time-pane aggregates, freeing its slot.

Bounded-join guarantee
----------------------
While the pending predictions fit ``max_pending`` the join is exact. When a batch would overflow
it, the inclusion level rises by one: the sample keeps the ids whose hash has at least ``level``
leading zero bits, an inclusion probability of ``2**-level`` that depends on the id alone, so
predictions and feedback agree on it without talking to each other. The level only ever rises, and
aggregates downstream are kept per hash band, so a rise drops exactly one band everywhere (pending
rows, held feedback, pane aggregates) and every figure keeps describing one uniform sample.
Feedback whose id falls outside the sample is dropped on arrival and counted (``unsampled``).

Feedback for an id not pending is held in a small buffer (``orphan_capacity`` rows,
``orphan_ttl_s`` seconds of event time) in case its prediction arrives late, then counted as
``orphaned``. Predictions still unanswered ``pending_ttl_s`` after their event time leave as
``expired``; if the table is full at the deepest level the oldest are ``evicted``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otel_mlobs.processor.analyzers.detect.hashing import hash_band
from otel_mlobs.processor.analyzers.detect.slotindex import SlotIndex

DROP_REASONS = ("unsampled", "orphaned", "invalid_label", "duplicate")
UNJOINED_REASONS = ("expired", "evicted")


@dataclass(slots=True)
class Joined:
    """Pairs joined by one call: one row per prediction that met its feedback."""

    pred_ts: np.ndarray  # float64
    feedback_ts: np.ndarray  # float64
    predicted: np.ndarray  # int32 class codes
    true: np.ndarray  # int32 class codes
    band: np.ndarray  # int8
    payload: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.pred_ts.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """Whether each prediction was right."""
        return self.predicted == self.true


def _last_occurrence(keys: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each distinct key, in ascending index order."""
    rev = keys[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    return np.sort(keys.shape[0] - 1 - first_in_rev)


class PredictionJoin:
    """Pending predictions, held feedback and the sampling level of one model.

    ``payload`` names extra per-prediction columns (e.g. bucket, estimate) carried to the pair.
    """

    def __init__(
        self,
        max_pending: int = 100_000,
        *,
        n_levels: int = 12,
        orphan_capacity: int = 10_000,
        orphan_ttl_s: float = 3600.0,
        pending_ttl_s: float = 7 * 86400.0,
        payload: dict[str, np.dtype | type] | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if orphan_capacity < 0:
            raise ValueError(f"orphan_capacity must be >= 0, got {orphan_capacity}")
        if orphan_ttl_s < 0 or pending_ttl_s <= 0:
            raise ValueError("orphan_ttl_s must be >= 0 and pending_ttl_s > 0")
        self.max_pending = max_pending
        self.n_levels = n_levels
        self.orphan_capacity = orphan_capacity
        self.orphan_ttl_s = orphan_ttl_s
        self.pending_ttl_s = pending_ttl_s
        cap = max_pending
        self._key = np.zeros(cap, dtype=np.uint64)
        self._ts = np.zeros(cap, dtype=np.float64)
        self._label = np.zeros(cap, dtype=np.int32)
        self._band = np.zeros(cap, dtype=np.int8)
        self._used = np.zeros(cap, dtype=bool)
        self.payload = {k: np.zeros(cap, dtype=dt) for k, dt in (payload or {}).items()}
        self._free = np.arange(cap - 1, -1, -1, dtype=np.int32)  # stack, top at the end
        self._n_free = cap
        self._index = SlotIndex(cap)
        self._o_key = np.zeros(0, dtype=np.uint64)
        self._o_label = np.zeros(0, dtype=np.int32)
        self._o_ts = np.zeros(0, dtype=np.float64)
        self._o_band = np.zeros(0, dtype=np.int8)
        self.level = 0
        self.watermark = -np.inf
        self.duplicates = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.unjoined = dict.fromkeys(UNJOINED_REASONS, 0)

    # ---- read-only views -------------------------------------------------------------------
    @property
    def sample_rate(self) -> float:
        """Inclusion probability of an id: ``2**-level``."""
        return 2.0**-self.level

    @property
    def pending(self) -> int:
        """Predictions waiting for feedback (in the sample)."""
        return self.max_pending - self._n_free

    @property
    def held(self) -> int:
        """Feedback rows held while their prediction may still arrive."""
        return int(self._o_key.shape[0])

    def pending_view(self) -> tuple[np.ndarray, np.ndarray]:
        """``(occupied mask, prediction times)`` of the pending table (no copies)."""
        return self._used, self._ts

    # ---- slots -------------------------------------------------------------------------------
    def _release(self, slots: np.ndarray) -> None:
        if slots.size == 0:
            return
        self._index.delete(self._key[slots])
        self._used[slots] = False
        self._free[self._n_free : self._n_free + slots.size] = slots
        self._n_free += slots.size

    def _allocate(self, n: int) -> np.ndarray:
        self._n_free -= n
        return self._free[self._n_free : self._n_free + n].copy()

    def _raise_level(self) -> None:
        """Drop the lowest kept band from the pending table and the held feedback."""
        gone = self.level
        self.level += 1
        slots = np.flatnonzero(self._used & (self._band == gone))
        self._release(slots)
        held_out = self._o_band < self.level
        if held_out.any():
            self.dropped["unsampled"] += int(held_out.sum())
            self._keep_orphans(~held_out)

    def _evict_oldest(self, n: int) -> None:
        slots = np.flatnonzero(self._used)
        n = min(n, slots.size)
        if n <= 0:
            return
        oldest = slots[np.argpartition(self._ts[slots], n - 1)[:n]]
        self._release(oldest)
        self.unjoined["evicted"] += n

    # ---- time --------------------------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Move the event-time watermark; expire pending predictions and held feedback."""
        if not np.isfinite(t) or t <= self.watermark:
            return
        self.watermark = t
        old = np.flatnonzero(self._used & (self._ts < t - self.pending_ttl_s))
        if old.size:
            self.unjoined["expired"] += old.size
            self._release(old)
        if self._o_ts.size:
            stale = self._o_ts < t - self.orphan_ttl_s
            if stale.any():
                self.dropped["orphaned"] += int(stale.sum())
                self._keep_orphans(~stale)

    # ---- predictions -------------------------------------------------------------------------
    def add_predictions(
        self,
        keys: np.ndarray,
        ts: np.ndarray,
        labels: np.ndarray,
        payload: dict[str, np.ndarray] | None = None,
    ) -> Joined:
        """Admit predictions into the pending table; returns pairs made with held feedback."""
        payload = payload or {}
        bands = hash_band(keys, self.n_levels)
        keep = np.flatnonzero(bands >= self.level)
        if keep.size:
            last = _last_occurrence(keys[keep])
            self.duplicates += keep.size - last.size
            keep = keep[last]
        slots = self._index.lookup(keys[keep])
        again = slots >= 0
        if again.any():  # a repeated id replaces the pending prediction: the later one wins
            self.duplicates += int(again.sum())
            self._write(slots[again], keep[again], keys, ts, labels, bands, payload)
        new = keep[~again]
        while new.size > self._n_free and self.level < self.n_levels:
            self._raise_level()
            new = new[bands[new] >= self.level]
        if new.size > self.max_pending:
            new = new[np.argsort(ts[new], kind="stable")[-self.max_pending :]]
        if new.size > self._n_free:
            self._evict_oldest(new.size - self._n_free)
        if new.size:
            slots_new = self._allocate(new.size)
            self._write(slots_new, new, keys, ts, labels, bands, payload)
            self._index.insert(keys[new], slots_new)
        return self._match_orphans()

    def _write(self, slots, rows, keys, ts, labels, bands, payload) -> None:
        self._key[slots] = keys[rows]
        self._ts[slots] = ts[rows]
        self._label[slots] = labels[rows]
        self._band[slots] = bands[rows]
        self._used[slots] = True
        for name, col in self.payload.items():
            if name in payload:
                col[slots] = payload[name][rows]

    # ---- feedback ----------------------------------------------------------------------------
    def add_feedback(self, keys: np.ndarray, labels: np.ndarray, ts: np.ndarray) -> Joined:
        """Join feedback with pending predictions; hold the rest briefly."""
        n = keys.shape[0]
        rows = np.arange(n)
        if n:
            last = _last_occurrence(keys)
            self.dropped["duplicate"] += n - last.size
            rows = last
        bands = hash_band(keys[rows], self.n_levels)
        sampled = bands >= self.level
        self.dropped["unsampled"] += int((~sampled).sum())
        rows, bands = rows[sampled], bands[sampled]
        slots = self._index.lookup(keys[rows])
        hit = slots >= 0
        joined = self._pairs(slots[hit], labels[rows[hit]], ts[rows[hit]])
        miss = rows[~hit]
        if miss.size:
            self._hold(keys[miss], labels[miss], ts[miss], bands[~hit])
        return joined

    def _pairs(self, slots: np.ndarray, true: np.ndarray, fb_ts: np.ndarray) -> Joined:
        out = Joined(
            pred_ts=self._ts[slots].copy(),
            feedback_ts=np.asarray(fb_ts, dtype=np.float64),
            predicted=self._label[slots].copy(),
            true=np.asarray(true, dtype=np.int32),
            band=self._band[slots].copy(),
            payload={k: v[slots].copy() for k, v in self.payload.items()},
        )
        self._release(slots)
        return out

    # ---- held feedback -----------------------------------------------------------------------
    def _keep_orphans(self, mask: np.ndarray) -> None:
        self._o_key = self._o_key[mask]
        self._o_label = self._o_label[mask]
        self._o_ts = self._o_ts[mask]
        self._o_band = self._o_band[mask]

    def _hold(self, keys, labels, ts, bands) -> None:
        if self._o_key.size:  # a newer label for an id already held replaces it
            fresh = ~np.isin(self._o_key, keys)
            self.dropped["duplicate"] += int((~fresh).sum())
            self._keep_orphans(fresh)
        self._o_key = np.concatenate([self._o_key, keys])
        self._o_label = np.concatenate([self._o_label, labels.astype(np.int32)])
        self._o_ts = np.concatenate([self._o_ts, ts.astype(np.float64)])
        self._o_band = np.concatenate([self._o_band, bands])
        over = self._o_key.size - self.orphan_capacity
        if over > 0:
            self.dropped["orphaned"] += over
            keep = np.ones(self._o_key.size, dtype=bool)
            keep[np.argsort(self._o_ts, kind="stable")[:over]] = False
            self._keep_orphans(keep)

    def _match_orphans(self) -> Joined:
        if not self._o_key.size:
            return self._pairs(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
        slots = self._index.lookup(self._o_key)
        hit = slots >= 0
        joined = self._pairs(slots[hit], self._o_label[hit], self._o_ts[hit])
        if hit.any():
            self._keep_orphans(~hit)
        return joined
