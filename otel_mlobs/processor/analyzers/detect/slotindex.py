"""A vectorized open-addressing hash table from 64-bit id hashes to table slots.

The join keeps pending predictions in fixed numpy arrays (one row per slot); this index finds the
slot of a batch of hashes without a Python dict entry per row. Linear probing over power-of-two
arrays: every probe round is one numpy pass over the still-unresolved keys, and at the load kept
here (at most about 0.6 live + deleted) rounds stay few. Deletions leave tombstones, swept by a
rebuild when they pile up, so the cost per operation stays constant on average.
"""

from __future__ import annotations

import numpy as np

_EMPTY = -1
_TOMBSTONE = -2
_MAX_LOAD = 0.6


class SlotIndex:
    """Map unique uint64 keys (already well-mixed hashes) to int32 slot numbers."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        size = 1 << max(4, int(np.ceil(np.log2(capacity / _MAX_LOAD * 1.5))))
        self._keys = np.zeros(size, dtype=np.uint64)
        self._slots = np.full(size, _EMPTY, dtype=np.int32)
        self._mask = np.uint64(size - 1)
        self._live = 0
        self._dead = 0

    def __len__(self) -> int:
        return self._live

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """Table position of each key, or -1 when absent."""
        n = keys.shape[0]
        out = np.full(n, -1, dtype=np.int64)
        pos = (keys & self._mask).astype(np.int64)
        active = np.arange(n)
        mask = int(self._mask)
        while active.size:
            p = pos[active]
            s = self._slots[p]
            hit = (s >= 0) & (self._keys[p] == keys[active])
            out[active[hit]] = p[hit]
            go_on = ~(hit | (s == _EMPTY))
            active = active[go_on]
            pos[active] = (p[go_on] + 1) & mask
        return out

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, or -1 when absent."""
        keys = np.asarray(keys, dtype=np.uint64)
        p = self._positions(keys)
        found = p >= 0
        out = np.full(keys.shape[0], -1, dtype=np.int64)
        out[found] = self._slots[p[found]]
        return out

    def insert(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Add keys that are unique and absent (the caller checked with :meth:`lookup`)."""
        keys = np.asarray(keys, dtype=np.uint64)
        slots = np.asarray(slots, dtype=np.int32)
        n = keys.shape[0]
        if n == 0:
            return
        if self._live + self._dead + n > _MAX_LOAD * self._slots.shape[0]:
            self._rebuild()
        mask = int(self._mask)
        pos = (keys & self._mask).astype(np.int64)
        active = np.arange(n)
        done = np.zeros(n, dtype=bool)
        reused = 0
        while active.size:
            p = pos[active]
            s = self._slots[p]
            free = s < 0
            cand, cand_p = active[free], p[free]
            uniq_p, first = np.unique(cand_p, return_index=True)
            winners = cand[first]
            reused += int((self._slots[uniq_p] == _TOMBSTONE).sum())
            self._keys[uniq_p] = keys[winners]
            self._slots[uniq_p] = slots[winners]
            done[winners] = True
            rest = ~done[active]
            active = active[rest]
            pos[active] = (p[rest] + 1) & mask
        self._live += n
        self._dead -= reused

    def delete(self, keys: np.ndarray) -> int:
        """Remove the keys that are present; returns how many were."""
        p = self._positions(np.asarray(keys, dtype=np.uint64))
        p = np.unique(p[p >= 0])
        self._slots[p] = _TOMBSTONE
        self._live -= p.size
        self._dead += p.size
        return int(p.size)

    def clear(self) -> None:
        """Forget every key."""
        self._slots.fill(_EMPTY)
        self._live = 0
        self._dead = 0

    def _rebuild(self) -> None:
        """Re-insert the live keys into a clean table, sweeping tombstones."""
        live = self._slots >= 0
        keys, slots = self._keys[live].copy(), self._slots[live].copy()
        self.clear()
        if keys.size:
            self.insert(keys, slots)
