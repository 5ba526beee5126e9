"""A dataset's constraint suite compiled for vectorized judging.

The constraint objects say what a check means and how to explain a violation; judging them one
by one costs a Python call chain per check per run, and a 20-column dataset has ~170 checks.
A :class:`SuitePlan` lays every check of a suite out as one slot in flat arrays (kind of check,
column, reference parameters), shares their counts through a :class:`~.constraints.Ledger` and
their healthy histories through a :class:`~.tuning.ThresholdBank`, and judges a run's summary
for all slots at once: each statistic is computed for every slot in a handful of numpy
operations, and only the sketch lookups (range shares, quantile displacement) and category
tables loop, once per column. The verdicts are the same as the objects' own ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from otel_mlobs import semconv
from otel_mlobs.processor.analyzers.diagnose import columns as colmod
from otel_mlobs.processor.analyzers.diagnose.columns import (
    S_COUNT,
    S_DISTINCT,
    S_HAS_TOP,
    S_KIND,
    S_MAX,
    S_MEAN,
    S_MEASURED,
    S_MIN,
    S_NULLS,
    S_STD,
    S_TOTAL,
    SummaryView,
)
from otel_mlobs.processor.analyzers.diagnose.constraints import (
    MIN_VALUES_SOFT,
    AboveRange,
    BelowRange,
    CategoryMix,
    Constraint,
    Duplicates,
    HasValues,
    KindMatches,
    Ledger,
    NotFrozen,
    NotRepeated,
    NullShare,
    Present,
    Shape,
    SoftConstraint,
    TimeLag,
    TrueShare,
    UnseenCategories,
)
from otel_mlobs.processor.analyzers.diagnose.tuning import ThresholdBank

# Slot kinds. Checks of any other class (present, judged when a run closes) keep OTHER and are
# left to their own objects.
(OTHER, PRESENT, KIND, HAS_VALUES, NOT_FROZEN, FRESH, NULLS, ABOVE, BELOW, SHAPE, DOMAIN, MIX,
 DUPS, TRUE_SHARE, TIME_LAG) = range(15)  # fmt: skip
_KIND_OF = {
    Present: PRESENT,
    KindMatches: KIND,
    HasValues: HAS_VALUES,
    NotFrozen: NOT_FROZEN,
    NotRepeated: FRESH,
    NullShare: NULLS,
    AboveRange: ABOVE,
    BelowRange: BELOW,
    Shape: SHAPE,
    UnseenCategories: DOMAIN,
    CategoryMix: MIX,
    Duplicates: DUPS,
    TrueShare: TRUE_SHARE,
    TimeLag: TIME_LAG,
}
_CLASS_CODES = {"hard": 0, "soft": 1, "drift": 2}
_NOT_FROZEN_MIN = NotFrozen._MIN_VALUES
_CATEGORICAL = colmod.KIND_CODES[semconv.KIND_CATEGORICAL]
_FP_ROWS = [S_COUNT, S_NULLS, S_MEAN, S_STD, S_MIN, S_MAX]
_LEVELS = np.asarray(colmod.GRID_LEVELS)


@dataclass(slots=True)
class Judgement:
    """Runs' summaries judged by a plan: per run and slot (``(runs, slots)`` arrays), whether
    the check applied, its statistic, band and size, and whether it fired."""

    applied: np.ndarray  # bool
    fired: np.ndarray  # bool
    value: np.ndarray  # float
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray  # float (value counts)

    def run(self, r: int) -> Judgement:
        """Run ``r``'s row alone (1-D arrays over slots)."""
        return Judgement(
            self.applied[r], self.fired[r], self.value[r], self.low[r], self.high[r], self.n[r]
        )


class SuitePlan:
    """Every vectorizable check of one suite, one slot each.

    Parameters
    ----------
    constraints
        Column name -> its constraints (a suite's ``constraints``), as built.
    window
        Healthy runs remembered per soft check (the bank's ring size).
    """

    def __init__(self, constraints: Mapping[str, Sequence[Constraint]], window: int) -> None:
        self.checks: list[Constraint] = []
        self.columns: list[str] = []  # plan column id -> name
        kinds, cols, rows, order = [], [], [], []
        for name, checks in constraints.items():
            vectorized = [c for c in checks if type(c) in _KIND_OF]
            if not vectorized:
                continue
            col = len(self.columns)
            self.columns.append(name)
            # Hard checks first, each group in list order: the order the objects are judged in.
            ranked = sorted(range(len(vectorized)), key=lambda i: vectorized[i].cls != "hard")
            for rank, i in enumerate(ranked):
                c = vectorized[i]
                self.checks.append(c)
                kinds.append(_KIND_OF[type(c)])
                cols.append(col)
                order.append(rank)
        self.ledger = Ledger.of(self.checks)
        softs = [c for c in self.checks if isinstance(c, SoftConstraint)]
        self.bank = ThresholdBank(window)
        banked = self.bank.adopt_many([c.threshold for c in softs])  # type: ignore[misc]
        for c, b in zip(softs, banked, strict=True):
            c.threshold = b  # type: ignore[assignment]
        row_of = {id(c): b.row for c, b in zip(softs, banked, strict=True)}
        rows = [row_of.get(id(c), -1) for c in self.checks]
        self.kind = np.array(kinds, dtype=np.int64)
        self.col = np.array(cols, dtype=np.int64)
        self.row = np.array(rows, dtype=np.int64)
        self.order = np.array(order, dtype=np.int64)
        self.cls_code = np.array([_CLASS_CODES[c.cls] for c in self.checks], dtype=np.int64)
        self.alerting = np.zeros(len(self.checks), dtype=bool)  # fired, maybe still active
        self._col_ids = {name: i for i, name in enumerate(self.columns)}
        self.column_set = frozenset(self.columns)
        self._layouts: dict[tuple[str, ...], np.ndarray] = {}
        self._of = {k: np.flatnonzero(self.kind == k) for k in range(15)}
        self._is = {k: self.kind == k for k in range(15)}
        self.soft = np.flatnonzero(self.row >= 0)  # slots with a band
        self.soft_rows = self.row[self.soft]
        sk = self.kind[self.soft]
        self._soft_is = {k: sk == k for k in range(15)}
        self._soft_at = {k: np.flatnonzero(sk == k) for k in range(15)}
        # fmt: off
        self._hard_counted = self._is[KIND] | self._is[PRESENT]
        # fmt: on
        self.ref_kind = [getattr(c, "kind", "") for c in self.checks]
        self.lo = np.array([getattr(c, "lo", np.nan) for c in self.checks], dtype=np.float64)
        self.hi = np.array([getattr(c, "hi", np.nan) for c in self.checks], dtype=np.float64)
        self.domains: dict[int, dict[str, float]] = {
            int(s): self.checks[s].domain  # type: ignore[attr-defined]
            for s in np.flatnonzero(self._is[DOMAIN] | self._is[MIX])
        }
        self._init_ranges()
        self._init_shape()
        self._init_fresh()
        self._ref_code: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.checks)

    def __getstate__(self) -> dict:
        state = {k: getattr(self, k) for k in self.__dict__}
        state["_ref_code"] = None  # kind codes are per process
        return state

    def column_id(self, name: str) -> int:
        """Plan column id of ``name``; -1 when no check of it is compiled here."""
        return self._col_ids.get(name, -1)

    # -- reference data ------------------------------------------------------------------
    def _init_shape(self) -> None:
        """Every shape check's reference in one sorted key array, so one search places every
        run quantile of every column in its own reference: check j's distinct reference values
        ``v`` as ``j + 1j * v`` (complex numbers sort by real part first), and beside them how
        many reference values lie below each. References too large to expand are left to their
        sketches (``shape_kll``)."""
        slots = self._of[SHAPE]
        self.shape_index = np.full(len(self.checks), -1, dtype=np.int64)
        self.shape_index[slots] = np.arange(len(slots))
        self.shape_kll = np.zeros(len(slots), dtype=bool)
        keys, cums, starts, cum_starts, sizes = [], [], [], [], []
        at = cum_at = 0
        for j, s in enumerate(slots):
            items = _sorted_items(self.checks[s].ref_sketch)  # type: ignore[attr-defined]
            if items is None:
                self.shape_kll[j] = True
                items = np.empty(0)
            values, counts = np.unique(items, return_counts=True)
            keys.append(j + 1j * values)
            cums.append(np.concatenate([[0], np.cumsum(counts)]))
            starts.append(at)
            cum_starts.append(cum_at)
            sizes.append(len(items))
            at += len(values)
            cum_at += len(values) + 1
        self.shape_keys = np.concatenate(keys) if keys else np.empty(0, dtype=np.complex128)
        self.shape_cum = np.concatenate(cums) if cums else np.empty(0, dtype=np.int64)
        self.shape_offset = np.array(cum_starts, dtype=np.int64) - np.array(starts, np.int64)
        self.shape_size = np.array(sizes, dtype=np.int64)

    def _init_ranges(self) -> None:
        """Range checks per column: both ends of a column's band are read in one pass over
        its values, so lay them out by column (soft positions, -1 where an end is unchecked)."""
        soft_col = self.col[self.soft]
        pairs: dict[int, list[int]] = {}
        for kind, end in ((ABOVE, 0), (BELOW, 1)):
            for j in self._soft_at[kind]:
                pairs.setdefault(int(soft_col[j]), [-1, -1])[end] = int(j)
        ends = np.array(list(pairs.values()), dtype=np.int64).reshape(-1, 2)
        self.range_ref = np.where(ends[:, 0] >= 0, ends[:, 0], ends[:, 1])  # reads the column
        self.range_high = np.where(ends[:, 0] >= 0, self.hi[self.soft[ends[:, 0]]], np.nan)
        self.range_low = np.where(ends[:, 1] >= 0, self.lo[self.soft[ends[:, 1]]], np.nan)
        self.range_a = np.flatnonzero(ends[:, 0] >= 0)
        self.range_b = np.flatnonzero(ends[:, 1] >= 0)
        self.range_a_pos = ends[self.range_a, 0]
        self.range_b_pos = ends[self.range_b, 1]

    def _init_fresh(self) -> None:
        slots = self._of[FRESH]
        self.fp_known = np.zeros(len(slots), dtype=bool)
        self.fp = np.full((6, len(slots)), np.inf)  # count, nulls, rounded mean, std, min, max
        self.fp_top: list[tuple] = [()] * len(slots)
        for j, s in enumerate(slots):
            last = self.checks[s]._last  # type: ignore[attr-defined]
            if last is None:
                continue
            count, nulls, moments, top = last
            self.fp_known[j] = True
            self.fp[:, j] = [count, nulls, *(np.inf if m is None else m for m in moments)]
            self.fp_top[j] = top

    def _codes(self) -> np.ndarray:
        if self._ref_code is None:
            self._ref_code = np.array([colmod.kind_code(k) for k in self.ref_kind], np.float64)
        return self._ref_code

    # -- judging -------------------------------------------------------------------------
    def layout(self, names: Sequence[str]) -> np.ndarray:
        """Record position of each plan column for a record with columns ``names`` (-1:
        absent); cached per column list, which a producer rarely changes."""
        key = tuple(names)
        pos = self._layouts.get(key)
        if pos is None:
            pos = np.full(len(self.columns), -1, dtype=np.int64)
            for i, name in enumerate(names):
                col = self._col_ids.get(name)
                if col is not None:
                    pos[col] = i
            if len(self._layouts) >= 8:
                self._layouts.clear()
            self._layouts[key] = pos
        return pos

    def judge(
        self,
        views: Sequence[SummaryView],
        event_times: Sequence[float],
        skips: Sequence[np.ndarray | None] | None = None,
    ) -> Judgement:
        """Judge every slot on each of several runs' summaries of this dataset, in one pass.

        ``skips`` marks, per view, record columns not to judge (already judged in that run).
        Every run is judged against the bands as they stand (learning waits for runs to
        close), and fresh checks compare each run with the previous one judged. Counts are
        updated in the ledger.
        """
        runs, size = len(views), len(self)
        pos = np.array([self.layout(v.names) for v in views], dtype=np.int64).reshape(runs, -1)
        pos = pos[:, self.col]  # (runs, slots)
        present = pos >= 0
        for r, skip in enumerate(skips or ()):
            if skip is not None and skip.any():
                present[r] &= ~skip[np.maximum(pos[r], 0)]
        at = np.maximum(pos, 0)
        x = np.stack([v.stats[:, p] if len(v) else np.full((11, size), np.nan)
                      for v, p in zip(views, at, strict=True)])  # fmt: skip
        count, total, distinct, std = x[:, S_COUNT], x[:, S_TOTAL], x[:, S_DISTINCT], x[:, S_STD]
        ok = present & ~self.ledger.muted
        # -- hard checks
        with np.errstate(invalid="ignore"):
            frozen = (distinct <= 1) | ((std == 0) & (x[:, S_KIND] <= 1))  # numeric, datetime
            applies = (
                self._hard_counted
                | (self._is[HAS_VALUES] & (total > 0))
                | (self._is[NOT_FROZEN] & (count >= _NOT_FROZEN_MIN) & np.isfinite(distinct))
            )
            breaks = (
                (self._is[KIND] & (x[:, S_KIND] != self._codes()))
                | (self._is[HAS_VALUES] & (count == 0))
                | (self._is[NOT_FROZEN] & frozen)
            )
        applied = ok & applies
        fired = applied & breaks
        value = fired.astype(np.float64)
        n = np.where(self._is[HAS_VALUES], total, np.where(self._is[NOT_FROZEN], count, 0.0))
        if len(self._of[FRESH]):
            self._judge_fresh(views, x, at, ok, applied, fired, value, n)
        # -- soft checks; a column broken outright skips them: they would only repeat the news
        soft = self.soft
        low = np.full((runs, size), np.nan)
        high = np.full((runs, size), np.nan)
        if len(soft):
            broken = np.zeros((runs, len(self.columns) + 1), dtype=bool)
            rr, ss = np.nonzero(fired)
            broken[rr, self.col[ss]] = True
            xs = x[:, :, soft]
            active = ok[:, soft] & ~broken[:, self.col[soft]] & self.bank.ready(self.soft_rows)
            s_value, s_n = self._soft_values(views, xs, at[:, soft], active, event_times)
            s_applied = active & np.isfinite(s_value)
            if s_applied.any():
                rows = np.broadcast_to(self.soft_rows, s_value.shape)
                lo, hi = self.bank.bounds(rows, s_n)
                with np.errstate(invalid="ignore"):
                    s_fired = s_applied & ((s_value < lo) | (s_value > hi))
                applied[:, soft] = s_applied
                fired[:, soft] = s_fired
                value[:, soft] = np.where(s_applied, s_value, 0.0)
                low[:, soft] = lo
                high[:, soft] = hi
                n[:, soft] = s_n
        self.ledger.evaluations += applied.sum(axis=0)
        self.ledger.violations += fired.sum(axis=0)
        return Judgement(applied, fired, value, low, high, n)

    def _judge_fresh(
        self,
        views: Sequence[SummaryView],
        x: np.ndarray,
        at: np.ndarray,
        ok: np.ndarray,
        applied: np.ndarray,
        fired: np.ndarray,
        value: np.ndarray,
        n: np.ndarray,
    ) -> None:
        """Fingerprint checks: each run against the last one judged before it (this batch's
        earlier runs included)."""
        slots = self._of[FRESH]
        xf = x[:, :, slots]
        count, mean, std = xf[:, S_COUNT], xf[:, S_MEAN], xf[:, S_STD]
        with np.errstate(invalid="ignore"):
            content = np.where(
                xf[:, S_KIND] == _CATEGORICAL,
                (xf[:, S_HAS_TOP] > 0) & (count > 1),
                np.isfinite(mean) & np.isfinite(std) & (std > 0),
            )
        use = ok[:, slots] & (count >= 2) & content  # (runs, fresh)
        applied[:, slots] = use
        n[:, slots] = np.where(use, count, 0.0)
        if not use.any():
            return
        fps = xf[:, _FP_ROWS]  # (runs, 6, fresh): count, nulls, mean, std, min, max
        moments = fps[:, 2:]
        # Non-finite moments all fingerprint alike (as None does in ColumnSummary.fingerprint).
        fps[:, 2:] = np.where(np.isfinite(moments), np.round(moments, 12), np.inf)
        for r, view in enumerate(views):
            u = use[r]
            if not u.any():
                continue
            same = u & self.fp_known & (fps[r] == self.fp).all(axis=0)
            j = np.flatnonzero(u)
            tops = [
                tuple(sorted(t.items())) if (t := view.top[int(i)]) else () for i in at[r, slots[j]]
            ]
            for k in np.flatnonzero(same[j]):
                same[j[k]] = tops[k] == self.fp_top[j[k]]
            for k, jj in enumerate(j):
                self.fp_top[jj] = tops[k]
            self.fp[:, u] = fps[r][:, u]
            self.fp_known |= u
            fired[r, slots] = same
            value[r, slots] = same

    def _soft_values(
        self,
        views: Sequence[SummaryView],
        xs: np.ndarray,
        at: np.ndarray,
        active: np.ndarray,
        event_times: Sequence[float],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The statistic and its size for each soft slot (NaN where it cannot be measured)."""
        is_ = self._soft_is
        count, total = xs[:, S_COUNT], xs[:, S_TOTAL]
        with np.errstate(invalid="ignore", divide="ignore"):
            nulls = xs[:, S_NULLS] / total
            distinct = xs[:, S_DISTINCT]
            dups = np.where(
                np.isfinite(distinct),
                np.maximum(0.0, 1.0 - distinct / np.maximum(count, 1)),
                np.nan,
            )
            value = np.where(
                is_[NULLS],
                nulls,
                np.where(is_[DUPS], dups, np.where(is_[TRUE_SHARE], xs[:, S_MEAN], np.nan)),
            )
        counted = is_[TRUE_SHARE] | is_[TIME_LAG]
        n = np.where(is_[NULLS], total, np.where(counted, count, xs[:, S_MEASURED]))
        active = active & (np.where(is_[NULLS], total, count) >= MIN_VALUES_SOFT)
        soft = self.soft
        # Sketch statistics are computed for every range and shape check of every run at once
        # (cheaper than selecting the active ones); inactive results are dropped below.
        shape_at = self._soft_at[SHAPE]
        grids = []
        for r, view in enumerate(views):
            act = active[r]
            if len(self.range_ref) and act[self.range_ref].any():
                above, below = view.outside(at[r, self.range_ref], self.range_high, self.range_low)
                value[r, self.range_a_pos] = above[self.range_a]
                value[r, self.range_b_pos] = below[self.range_b]
            if len(shape_at):
                grids.append(view.grid[at[r, shape_at]])
            for j in self._soft_at[TIME_LAG][act[self._soft_at[TIME_LAG]]]:
                value[r, j] = view.median(int(at[r, j])) - event_times[r]
            for kind in (DOMAIN, MIX):
                for j in self._soft_at[kind][act[self._soft_at[kind]]]:
                    i = int(at[r, j])
                    top = view.top[i]
                    if not top:
                        continue
                    domain = self.domains[int(soft[j])]
                    c = max(int(view.count[i]), 1)
                    value[r, j] = (
                        sum(k for v, k in top.items() if v not in domain) / c
                        if kind == DOMAIN
                        else category_distance(domain, top, c)
                    )
        if grids:
            index = np.tile(self.shape_index[soft[shape_at]], len(views))
            shift = self._displacement(np.concatenate(grids), index)
            value[:, shape_at] = shift.reshape(len(views), len(shape_at))
        value[~active] = np.nan
        return value, n

    def _displacement(self, run_q: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Median displacement of each row of run quantiles (at the grid levels) in the
        reference of shape check ``index`` (see :func:`.constraints.quantile_displacement`)."""
        out = np.full(len(index), np.nan)
        finite = np.isfinite(run_q).all(axis=1)
        for k in np.flatnonzero(finite & self.shape_kll[index]):
            shape: Shape = self.checks[self._of[SHAPE][index[k]]]  # type: ignore[assignment]
            out[k] = quantile_gap_kll(shape.ref_sketch, run_q[k])
        ok = finite & (self.shape_size[index] > 0)
        if not ok.any():
            return out
        q, j = run_q[ok], index[ok][:, None]
        # Values <= q are exactly the values < nextafter(q): one search gives both ranks.
        keys = np.concatenate([q, np.nextafter(q, np.inf)], axis=1) * 1j + j
        found = self.shape_cum[np.searchsorted(self.shape_keys, keys) + self.shape_offset[j]]
        ranks = found / self.shape_size[j]
        rank = np.minimum(np.maximum(_LEVELS, ranks[:, :19]), ranks[:, 19:])
        out[ok] = np.sort(np.abs(rank - _LEVELS), axis=1)[:, 9]
        return out


def _sorted_items(blob: bytes) -> np.ndarray | None:
    """Every value a reference sketch stands for, sorted (see :func:`.columns.ranked_values`);
    ``None`` for a sketch too large to expand, empty for no sketch."""
    values = colmod.ranked_values(blob)
    if values is not None:
        return values
    return None if colmod.load_sketch(blob) is not None else np.empty(0)


def quantile_gap_kll(ref_sketch: bytes, run_q: np.ndarray) -> float:
    """Median displacement of ``run_q`` (at the grid levels) in a reference sketch, through
    the sketch's own CDF (for references too large to expand)."""
    sketch = colmod.load_sketch(ref_sketch)
    if sketch is None:
        return float("nan")
    split = sorted(set(run_q.tolist()))
    below = dict(zip(split, sketch.get_cdf(split, inclusive=False), strict=False))
    upto = dict(zip(split, sketch.get_cdf(split, inclusive=True), strict=False))
    b = np.array([below[q] for q in run_q.tolist()])
    u = np.array([upto[q] for q in run_q.tolist()])
    rank = np.minimum(np.maximum(_LEVELS, b), u)
    return float(np.sort(np.abs(rank - _LEVELS))[9])


def category_distance(domain: Mapping[str, float], top: Mapping[str, int], count: int) -> float:
    """Total variation distance between reference shares and a run's top values (values
    beyond both lists pooled as one "other"); the statistic of :func:`.category_tvd`."""
    diff = ref_sum = run_sum = 0.0
    for c, share in domain.items():
        run = top.get(c, 0) / count
        diff += abs(share - run)
        ref_sum += share
        run_sum += run
    for c, k in top.items():
        if c not in domain:
            run = k / count
            diff += run
            run_sum += run
    return 0.5 * (diff + abs(max(0.0, 1 - ref_sum) - max(0.0, 1 - run_sum)))
