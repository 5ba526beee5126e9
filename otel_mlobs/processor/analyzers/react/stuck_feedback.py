"""Where is feedback stuck? Predictions overdue for a label, described by a few predicates.

When one neighbourhood's labels stop arriving, accuracy estimates quietly lean on the rest of the
city. This analyzer keeps a bounded, hashed uniform sample of predictions with their bucketing
features, watches them become *overdue* (no feedback ``overdue_after_s`` after the prediction, by
event time) and *resolved* (feedback arrives, late or not), and describes the overdue set by
predicates over single features and feature pairs (``pickup_zone = East Village ∧
payment_type = cash``).

Some feedback is always late (a long tail of settlements, labels that never come), so the
patterns describe the *excess*: each due prediction is expected to be overdue with the usual
rate for its age (an exponentially weighted history per age bucket, time constant
``window_s``), and a pattern's coverage is its share of the overdue predictions beyond that
expectation, its lift how many times more of its predictions are overdue than expected. The
total excess is counted cell by cell (the values of one feature or pair), each cell only beyond
its sampling noise, so that a stuck neighbourhood's share is not diluted by how many more (or
fewer) predictions elsewhere happened to be late that day: one day of a stalled zone suffices.

Both directions are incremental: a prediction turning overdue adds its predicates to per-single
and per-pair count tables, feedback arriving late removes them again; the expected counts are
recomputed from the bounded sample when patterns are asked for. The sample is a hash
threshold (bottom-k) sample: an id is kept when its 64-bit hash is below ``tau``, so feedback for
a sampled prediction is found by the same hash and nothing else needs remembering. When the
sample fills up, ``tau`` is lowered and the items above it leave, keeping the sample uniform.
This is the stream version of subgroup discovery's coverage/lift quality measures (Lavrač et al.,
"Subgroup Discovery with CN2-SD", JMLR 2004).
"""

from __future__ import annotations

import pickle
from itertools import combinations
from typing import Any, ClassVar

import numpy as np

from otel_mlobs.processor.analyzers.base import Analyzer, Metric
from otel_mlobs.processor.records import FeedbackBatch, Key, PredictionBatch, Record

DAY_S = 86_400.0
_MAX_HASH = np.uint64(0xFFFFFFFFFFFFFFFF)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

EMPTY, PENDING, OVERDUE, RESOLVED = 0, 1, 2, 3
_AGE_BUCKETS = 28  # age buckets over the window (6 h each over 7 days)
MISSING_CODE = 0  # reserved value code: feature absent from a batch or value null


def hash_ids(ids: np.ndarray) -> np.ndarray:
    """Stable 64-bit hashes of string ids (FNV-1a over code points, splitmix64 finish).

    Vectorized over rows (the loop runs over character positions), independent of the numpy
    string width, so a prediction id and its feedback id hash alike wherever they come from.
    """
    a = np.asarray(ids)
    if a.dtype.kind != "U":
        a = a.astype(str)
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    width = max(a.dtype.itemsize // 4, 1)
    codes = np.ascontiguousarray(a).view(np.uint32).reshape(n, width).astype(np.uint64)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    for j in range(width):
        c = codes[:, j]
        h = np.where(c != 0, (h ^ c) * _FNV_PRIME, h)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


class _Encoder:
    """Turns one bucketing feature into small integer codes: categories or quantile bins."""

    def __init__(self, values: np.ndarray, max_values: int, bins: int) -> None:
        self.max_values = max_values
        v = np.asarray(values)
        self.numeric = v.dtype.kind == "f" or (
            v.dtype.kind in "iu" and len(np.unique(v)) > max_values
        )
        self.vocab: dict[str, int] = {}
        self.edges = np.zeros(0)
        if self.numeric:
            finite = v[np.isfinite(v.astype(np.float64))].astype(np.float64)
            if len(finite):
                qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
                self.edges = np.unique(qs)

    @property
    def other_code(self) -> int:
        return self.max_values + 1

    def encode(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values)
        if self.numeric:
            x = v.astype(np.float64)
            codes = np.searchsorted(self.edges, x, side="right") + 1
            return np.where(np.isfinite(x), codes, MISSING_CODE).astype(np.int16)
        s = v.astype(str) if v.dtype.kind != "U" else v
        uniq, inv = np.unique(s, return_inverse=True)
        table = np.empty(len(uniq), dtype=np.int16)
        for i, u in enumerate(uniq):  # loop over distinct values, not rows
            code = self.vocab.get(u)
            if code is None:
                if u in ("", "nan", "None"):
                    code = MISSING_CODE
                elif len(self.vocab) < self.max_values:
                    code = self.vocab[u] = len(self.vocab) + 1
                else:
                    code = self.other_code
            table[i] = code
        return table[inv.reshape(-1)]

    def describe(self, code: int) -> tuple[str, str]:
        """(operator, value) of a predicate on this feature."""
        if code == MISSING_CODE:
            return "is", "missing"
        if code == self.other_code:
            return "in", "(other values)"
        if self.numeric:
            lo = "-inf" if code == 1 else f"{self.edges[code - 2]:.4g}"
            hi = "inf" if code - 1 >= len(self.edges) else f"{self.edges[code - 1]:.4g}"
            return "in", f"[{lo}, {hi})"
        for k, c in self.vocab.items():
            if c == code:
                return "=", k
        return "=", f"#{code}"


class StuckFeedbackAnalyzer(Analyzer):
    """Predicates describing the predictions whose feedback is overdue, per model.

    Parameters
    ----------
    capacity : predictions kept in the hashed sample.
    window_s : predictions older than this (event time) leave the sample and the counts.
    overdue_after_s : a prediction without feedback this long is overdue. ``None`` learns it:
        ``delay_factor`` × the ``delay_quantile`` of observed feedback delays, at least
        ``min_overdue_s``; ``default_overdue_s`` until ``min_delays`` delays were seen.
    max_features, max_values, numeric_bins : bounds of the bucketing features' encoding.
    top_k, min_count, min_lift : how many patterns to report, and what makes one.
    min_excess_share : overdue predictions beyond the usual must make up at least this share of
        all overdue ones before anything is reported (below it, feedback flows as usual).
    noise_z : Poisson standard errors of each cell's overdue count taken as noise, not excess.

    Examples
    --------
    >>> import numpy as np
    >>> from otel_mlobs.processor.records import FeedbackBatch, Key, PredictionBatch
    >>> a = StuckFeedbackAnalyzer(Key("taxi", "", "tip"), overdue_after_s=60.0)
    >>> zone = np.array(["A", "B"] * 50)
    >>> def predict(ids, t):
    ...     a.update(PredictionBatch(Key("taxi", "serve", "tip"), "1", ids, np.full(100, t),
    ...                              None, (), None, {"zone": zone}))
    >>> def label(ids, t):
    ...     a.update(FeedbackBatch(Key("taxi", "", "tip"), ids, ids, np.full(len(ids), t)))
    >>> day1, day2 = np.arange(100).astype(str), np.arange(100, 200).astype(str)
    >>> predict(day1, 0.0); label(day1, 100.0)  # a healthy day: every label arrives
    >>> predict(day2, 1000.0); label(day2[zone == "A"], 1100.0)  # zone B's labels stall
    >>> [(p["pattern"], round(p["coverage"], 2), p["lift"] > 10) for p in a.patterns()]
    [('zone = B', 1.0, True)]
    >>> label(day2[zone == "B"], 1200.0)  # they arrive late: the pattern is gone
    >>> a.patterns()
    []
    """

    name: ClassVar[str] = "stuck_feedback"
    accepts: ClassVar[tuple[type, ...]] = (PredictionBatch, FeedbackBatch)

    def __init__(
        self,
        key: Key,
        capacity: int = 20_000,
        window_s: float = 7 * DAY_S,
        overdue_after_s: float | None = None,
        default_overdue_s: float = DAY_S,
        min_overdue_s: float = 3_600.0,
        delay_quantile: float = 0.95,
        delay_factor: float = 2.0,
        min_delays: int = 50,
        max_features: int = 8,
        max_values: int = 32,
        numeric_bins: int = 4,
        top_k: int = 5,
        min_count: int = 5,
        min_lift: float = 1.5,
        min_excess_share: float = 0.05,
        noise_z: float = 2.0,
    ) -> None:
        super().__init__(key)
        if capacity < 16:
            raise ValueError("Invalid 'capacity': must be at least 16")
        if window_s <= 0 or default_overdue_s <= 0 or min_overdue_s <= 0:
            raise ValueError("window_s, default_overdue_s and min_overdue_s must be positive")
        if overdue_after_s is not None and overdue_after_s <= 0:
            raise ValueError("Invalid 'overdue_after_s': must be positive or None")
        if not 0 < delay_quantile < 1 or delay_factor <= 0:
            raise ValueError("delay_quantile must be in (0, 1) and delay_factor positive")
        if min(max_features, max_values, numeric_bins, top_k, min_count) < 1 or min_lift < 1:
            raise ValueError("bounds must be at least 1 and min_lift at least 1")
        if noise_z < 0:
            raise ValueError("Invalid 'noise_z': must be non-negative")
        self.capacity = capacity
        self.window_s = window_s
        self.overdue_after_s = overdue_after_s
        self.default_overdue_s = default_overdue_s
        self.min_overdue_s = min_overdue_s
        self.delay_quantile = delay_quantile
        self.delay_factor = delay_factor
        self.min_delays = min_delays
        self.max_features = max_features
        self.max_values = max_values
        self.numeric_bins = numeric_bins
        self.top_k = top_k
        self.min_count = min_count
        self.min_lift = min_lift
        self.min_excess_share = min_excess_share
        self.noise_z = noise_z
        self._reset()

    def _reset(self) -> None:
        n = self.capacity
        self._hash = np.zeros(n, dtype=np.uint64)
        self._ts = np.zeros(n)
        self._state = np.zeros(n, dtype=np.int8)
        self._codes = np.zeros((n, self.max_features), dtype=np.int16)
        self._keys = np.zeros(0, dtype=np.uint64)  # hashes of the live slots, sorted
        self._kslots = np.zeros(0, dtype=np.int64)  # their slots
        self._free = np.arange(n - 1, -1, -1, dtype=np.int64)  # empty slots, taken from the end
        self._settled_at = -np.inf  # event time of the last pass over the whole sample
        self._threshold: float | None = None  # learned overdue_after, until new delays come
        self._unsettled = False  # predictions or feedback booked since the last settle
        self._tau = _MAX_HASH
        self._features: list[str] = []
        self._enc: list[_Encoder] = []
        self._pairs: list[tuple[int, int]] = []
        v = self.max_values + 2
        npairs = self.max_features * (self.max_features - 1) // 2
        self._od1 = np.zeros((self.max_features, v), dtype=np.int64)
        self._od2 = np.zeros((npairs, v, v), dtype=np.int64)
        self._rho = np.full(_AGE_BUCKETS, np.nan)  # usual overdue rate per age bucket
        self._rho_time = -np.inf
        self._delays = np.full(1024, np.nan)
        self._delay_pos = 0
        self._delays_seen = 0
        self._now = -np.inf
        self._predictions_total = 0
        self._feedback_matched_total = 0
        self._late_total = 0
        self._cache: list[dict[str, Any]] | None = None

    @classmethod
    def key_for(cls, record: Record) -> Key:
        return Key(record.key.pipeline, "", record.key.model)

    # --- properties -----------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return float(self._now)

    @property
    def overdue_after(self) -> float:
        """Seconds without feedback after which a prediction counts as overdue."""
        if self.overdue_after_s is not None:
            return self.overdue_after_s
        if self._delays_seen < self.min_delays:
            return self.default_overdue_s
        if self._threshold is None:
            seen = self._delays[: min(self._delays_seen, len(self._delays))]  # filled part
            q = float(np.quantile(seen, self.delay_quantile))
            self._threshold = max(self.min_overdue_s, self.delay_factor * q)
        return self._threshold

    @property
    def sample_rate(self) -> float:
        return float(self._tau) / float(_MAX_HASH)

    @property
    def sampled(self) -> int:
        return int((self._state != EMPTY).sum())

    @property
    def overdue(self) -> int:
        return int((self._state == OVERDUE).sum())

    # --- count tables ---------------------------------------------------------------------------
    def _tables(
        self, slots: np.ndarray, weights: np.ndarray | float, one: np.ndarray, two: np.ndarray
    ) -> None:
        """Add ``weights`` of ``slots`` to the single and pair tables ``one`` and ``two``."""
        f = len(self._features)
        codes = self._codes[slots, :f].astype(np.int64)
        w = np.broadcast_to(np.asarray(weights, dtype=one.dtype), (len(slots),))
        fi = np.broadcast_to(np.arange(f), codes.shape)
        np.add.at(one, (fi.ravel(), codes.ravel()), np.repeat(w, f))
        for p, (i, j) in enumerate(self._pairs):
            np.add.at(two[p], (codes[:, i], codes[:, j]), w)

    def _count(self, slots: np.ndarray, sign: int) -> None:
        if len(slots) == 0 or not self._features:
            return
        self._tables(slots, sign, self._od1, self._od2)
        self._cache = None

    def _set_state(self, slots: np.ndarray, new: int) -> None:
        """Move ``slots`` to state ``new``, keeping the count tables and the index in step."""
        if len(slots) == 0:
            return
        old = self._state[slots]
        if new != OVERDUE:
            self._count(slots[old == OVERDUE], -1)
        else:
            self._count(slots[old != OVERDUE], +1)
        self._state[slots] = new
        self._cache = None
        if new == EMPTY:
            gone = slots[old != EMPTY]
            keep = self._state[self._kslots] != EMPTY
            self._keys, self._kslots = self._keys[keep], self._kslots[keep]
            self._free = np.concatenate([self._free, gone])

    # --- ingest ---------------------------------------------------------------------------------
    def update(self, record: Record) -> None:
        if isinstance(record, PredictionBatch):
            if not record.reference:
                self._add_predictions(record)
        elif isinstance(record, FeedbackBatch):
            self._add_feedback(record)

    def _ensure_features(self, features: dict[str, np.ndarray]) -> None:
        if self._features or not features:
            return
        self._features = sorted(features)[: self.max_features]
        self._enc = [
            _Encoder(features[n], self.max_values, self.numeric_bins) for n in self._features
        ]
        self._pairs = list(combinations(range(len(self._features)), 2))

    def _add_predictions(self, rec: PredictionBatch) -> None:
        n = len(rec)
        if n == 0:
            return
        self._predictions_total += n
        self._ensure_features(rec.features)
        h = hash_ids(rec.ids)
        _, first = np.unique(h, return_index=True)
        keep = np.zeros(n, dtype=bool)
        keep[first] = True
        keep &= h < self._tau
        keep &= ~self._lookup(h)[1]
        rows = np.flatnonzero(keep)
        if len(rows) == 0:
            self._advance(float(np.max(rec.timestamps)))
            return
        if len(self._free) < len(rows):
            rows = self._make_room(h, rows)
        slots = self._free[len(self._free) - len(rows) :]
        self._free = self._free[: len(self._free) - len(rows)]
        self._hash[slots] = h[rows]
        self._ts[slots] = np.asarray(rec.timestamps, dtype=np.float64)[rows]
        codes = np.zeros((len(rows), self.max_features), dtype=np.int16)
        for i, (name, enc) in enumerate(zip(self._features, self._enc, strict=True)):
            col = rec.features.get(name)
            if col is not None and len(col) == n:
                codes[:, i] = enc.encode(np.asarray(col)[rows])
        self._codes[slots] = codes
        self._state[slots] = PENDING
        order = np.argsort(self._hash[slots], kind="stable")
        keys, slots = self._hash[slots][order], slots[order]
        at = np.searchsorted(self._keys, keys)
        self._keys = np.insert(self._keys, at, keys)
        self._kslots = np.insert(self._kslots, at, slots)
        self._cache = None
        self._unsettled = True
        self._advance(float(np.max(rec.timestamps)))

    def _make_room(self, h: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Lower ``tau`` so that sample plus newcomers fit; evict and filter accordingly."""
        live = np.flatnonzero(self._state != EMPTY)
        allh = np.concatenate([self._hash[live], h[rows]])
        target = int(self.capacity * 0.9)
        if len(allh) > target:
            self._tau = np.partition(allh, target)[target]
        out = live[self._hash[live] >= self._tau]
        self._set_state(out, EMPTY)
        return rows[h[rows] < self._tau]

    def _lookup(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, found) for each hash."""
        keys = self._keys
        if len(keys) == 0:
            return np.zeros(len(h), dtype=np.int64), np.zeros(len(h), dtype=bool)
        pos = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
        return self._kslots[pos], keys[pos] == h

    def _add_feedback(self, rec: FeedbackBatch) -> None:
        if len(rec) == 0:
            return
        h = hash_ids(rec.ids)
        slots, found = self._lookup(h)
        ts = np.asarray(rec.timestamps, dtype=np.float64)
        slots, ts = slots[found], ts[found]
        live = self._state[slots]
        fresh = (live == PENDING) | (live == OVERDUE)
        slots, ts = slots[fresh], ts[fresh]
        self._feedback_matched_total += len(slots)
        # overdue as of now, whether or not the last pass over the sample has marked it yet
        late = (self._state[slots] == OVERDUE) | (self._ts[slots] + self.overdue_after <= self._now)
        self._late_total += int(late.sum())
        delays = np.maximum(ts - self._ts[slots], 0.0)
        delays = delays[-len(self._delays) :]  # a ring of recent delays, bounded
        ring = (self._delay_pos + np.arange(len(delays))) % len(self._delays)
        self._delays[ring] = delays
        self._delay_pos = int((self._delay_pos + len(delays)) % len(self._delays))
        self._delays_seen += len(delays)
        self._threshold = None
        self._unsettled = True
        self._set_state(slots, RESOLVED)
        self._advance(float(np.max(rec.timestamps)))
        # Right after feedback is the settled moment to learn from: between a prediction batch
        # and the feedback that follows it, shares look worse than they are. At most once per
        # settling interval of event time, as learning passes over the whole sample.
        if self._now - self._rho_time >= self.settle_every_s:
            self.settle()
            self._learn_rates()

    @property
    def settle_every_s(self) -> float:
        """Event time between two passes over the whole sample during ingest (a sixth of an
        age bucket: an hour for the default week); reads always settle first."""
        return self.window_s / _AGE_BUCKETS / 6

    def _advance(self, now: float) -> None:
        """Move event time forward; pass over the sample only once per settling interval."""
        if now > self._now:
            self._now = now
        if self._now - self._settled_at >= self.settle_every_s:
            self.settle()

    def advance(self, now: float) -> None:
        """Move event time forward to ``now`` and settle every prediction's state."""
        if now > self._now:
            self._now = now
        self.settle()

    def settle(self) -> None:
        """Expire old predictions and mark overdue ones as of the current event time.

        Recomputes every live item's state against the current threshold, so a learned
        threshold that moves turns items back to pending as well as forward to overdue. Ingest
        calls it once per :attr:`settle_every_s` of event time; every read calls it first.
        """
        if self._settled_at == self._now and not self._unsettled:
            return
        self._settled_at = self._now
        self._unsettled = False
        live = self._state != EMPTY
        expired = np.flatnonzero(live & (self._ts < self._now - self.window_s))
        if len(expired):
            self._set_state(expired, EMPTY)
        open_ = (self._state == PENDING) | (self._state == OVERDUE)
        due = self._ts + self.overdue_after <= self._now
        self._set_state(np.flatnonzero(open_ & due & (self._state == PENDING)), OVERDUE)
        self._set_state(np.flatnonzero(open_ & ~due & (self._state == OVERDUE)), PENDING)

    def _age_buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """(due slots, their age bucket)."""
        live = self._state != EMPTY
        age = self._now - self._ts
        due = np.flatnonzero(live & (age >= self.overdue_after))
        width = self.window_s / _AGE_BUCKETS
        b = np.minimum((age[due] // width).astype(np.int64), _AGE_BUCKETS - 1)
        return due, b

    def _learn_rates(self) -> None:
        """Fold the current overdue share per age bucket into its exponentially weighted usual."""
        if not np.isfinite(self._now) or self._now <= self._rho_time:
            return
        due, b = self._age_buckets()
        n_due = np.bincount(b, minlength=_AGE_BUCKETS)
        n_od = np.bincount(b[self._state[due] == OVERDUE], minlength=_AGE_BUCKETS)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(n_due > 0, n_od / np.maximum(n_due, 1), np.nan)
        w = (
            1.0
            if not np.isfinite(self._rho_time)
            else 1.0 - np.exp(-(self._now - self._rho_time) / self.window_s)
        )
        seen = ~np.isnan(frac)
        fresh = seen & np.isnan(self._rho)
        self._rho[fresh] = frac[fresh]
        upd = seen & ~fresh
        self._rho[upd] += w * (frac[upd] - self._rho[upd])
        self._rho_time = self._now

    # --- patterns -------------------------------------------------------------------------------
    def _predicates(self, parts: list[tuple[int, int]]) -> list[dict[str, str]]:
        out = []
        for f, code in parts:
            op, value = self._enc[f].describe(code)
            out.append({"feature": self._features[f], "op": op, "value": value})
        return out

    def refresh(self) -> None:
        """Settle the sample, so that scrapes in between find it ready."""
        self.settle()

    def patterns(self) -> list[dict[str, Any]]:
        """Top-k predicates over the excess overdue predictions, by coverage × log2(lift)."""
        self.settle()
        if self._cache is not None:
            return self._cache
        cands: list[tuple[float, float, float, int, list[tuple[int, int]]]] = []
        total_od = self.overdue
        if total_od and self._features:
            due, b = self._age_buckets()
            known = ~np.isnan(self._rho)
            usual = float(np.mean(self._rho[known])) if known.any() else 0.0
            w = np.where(known[b], self._rho[b], usual) if len(due) else np.zeros(0)
            exp1 = np.zeros(self._od1.shape)
            exp2 = np.zeros(self._od2.shape)
            if len(due):
                self._tables(due, w, exp1, exp2)
            f = len(self._features)
            tables = [(self._od1[i], exp1[i], [(i,)]) for i in range(f)]
            tables += [(self._od2[p], exp2[p], [(i, j)]) for p, (i, j) in enumerate(self._pairs)]
            excess_total = self._excess(tables)
            if excess_total >= max(self.min_count, self.min_excess_share * total_od):
                for od, exp, (feats,) in tables:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        cov = (od - exp) / excess_total
                        lift = od / np.maximum(exp, 0.5)
                    ok = (od >= self.min_count) & (lift >= self.min_lift) & (cov > 0)
                    for idx in zip(*np.nonzero(ok), strict=True):
                        c, li = float(cov[idx]), float(lift[idx])
                        parts = list(zip(feats, (int(x) for x in idx), strict=True))
                        cands.append((c * np.log2(li), c, li, int(od[idx]), parts))
        cands.sort(key=lambda x: (-x[0], -x[1], str(x[4])))
        chosen: list[tuple[float, float, float, int, list[tuple[int, int]]]] = []
        for cand in cands:
            if len(chosen) >= self.top_k:
                break
            if any(self._redundant(cand, prev) for prev in chosen):
                continue
            chosen.append(cand)
        out = []
        for rank, (_, cov, lift, od, parts) in enumerate(chosen, start=1):
            preds = self._predicates(parts)
            text = " ∧ ".join(f"{p['feature']} {p['op']} {p['value']}" for p in preds)
            out.append(
                {
                    "rank": rank,
                    "pattern": text,
                    "predicates": preds,
                    "coverage": min(cov, 1.0),
                    "lift": lift,
                    "overdue_sampled": od,
                }
            )
        self._cache = out
        return out

    def _excess(self, tables: list[tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]]) -> float:
        """The overdue predictions beyond the usual, with sampling noise taken out.

        Overdue minus expected over the whole sample sums the noise of every cell with the
        excess; here each cell of a partition of the sample (the values of one feature, or of
        a pair) counts only the part of its excess beyond ``noise_z`` Poisson standard errors,
        and the partition that explains most is taken. A stuck neighbourhood is then measured
        at its own size instead of blurred by how busy the rest of the city happened to be.
        """
        best = 0.0
        for od, exp, _ in tables:
            beyond = od - exp - self.noise_z * np.sqrt(np.maximum(exp, 1.0))
            best = max(best, float(np.maximum(beyond, 0.0).sum()))
        return best

    @staticmethod
    def _redundant(cand: tuple, prev: tuple) -> bool:
        """A refinement or generalization of a chosen pattern that says nothing new."""
        a, b = set(cand[4]), set(prev[4])
        if a < b:  # cand is more general: redundant unless it covers clearly more
            return cand[1] <= 1.1 * prev[1]
        if b < a:  # cand refines prev: redundant unless its lift is clearly higher
            return cand[2] < 1.5 * prev[2]
        return False

    # --- contract -------------------------------------------------------------------------------
    def restore(self, blob: bytes) -> None:
        state = pickle.loads(blob)  # noqa: S301 - our own snapshots only
        if "_keys" not in state:
            raise ValueError(
                "stuck-feedback snapshot of an earlier layout (no hash index): it "
                "cannot be read, the analyzer starts afresh"
            )
        self.__dict__.update(state)

    def metrics(self) -> list[Metric]:
        self.settle()
        lab = self.labels()
        out = [
            Metric(
                "mlobs_stuck_feedback_sampled",
                "gauge",
                "Predictions in the stuck-feedback sample (within the window)",
                lab,
                float(self.sampled),
            ),
            Metric(
                "mlobs_stuck_feedback_overdue_sampled",
                "gauge",
                "Sampled predictions overdue for feedback",
                lab,
                float(self.overdue),
            ),
            Metric(
                "mlobs_stuck_feedback_sample_rate_ratio",
                "gauge",
                "Share of prediction ids the hashed sample keeps",
                lab,
                self.sample_rate,
            ),
            Metric(
                "mlobs_stuck_feedback_overdue_after_seconds",
                "gauge",
                "Feedback delay after which a prediction counts as overdue",
                lab,
                float(self.overdue_after),
                unit="seconds",
            ),
            Metric(
                "mlobs_stuck_feedback_late_total",
                "counter",
                "Sampled predictions whose feedback arrived after they were overdue",
                lab,
                float(self._late_total),
            ),
        ]
        for p in self.patterns():
            pl = self.labels(rank=str(p["rank"]), pattern=p["pattern"])
            out.append(
                Metric(
                    "mlobs_stuck_feedback_pattern_coverage",
                    "gauge",
                    "Share of overdue predictions the pattern matches (top-k)",
                    pl,
                    p["coverage"],
                )
            )
            out.append(
                Metric(
                    "mlobs_stuck_feedback_pattern_lift",
                    "gauge",
                    "How many times more of the pattern's predictions are overdue "
                    "than usual for their age (top-k)",
                    pl,
                    p["lift"],
                )
            )
        return out

    def query(self, **params: Any) -> dict[str, Any]:
        self.settle()
        out = super().query()
        rate = self.sample_rate
        out.update(
            now=None if not np.isfinite(self._now) else self.now,
            overdue_after_s=self.overdue_after,
            sample_rate=rate,
            sampled=self.sampled,
            overdue_sampled=self.overdue,
            overdue_estimated=self.overdue / rate if rate > 0 else None,
            late_feedback_sampled=self._late_total,
            features=list(self._features),
            patterns=self.patterns(),
        )
        return out
