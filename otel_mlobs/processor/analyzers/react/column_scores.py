"""Column error scores per (component, column) over event time: corruption, staleness, schema.

Why two scores: a corrupted column (miles sent as kilometres) moves a scalar estimate of its
distribution far from its rolling baseline, while a *stale* column (a feature job that stopped
updating) does the opposite: its run-to-run variation collapses to zero while history varied.
A z-score sees the first and is blind to the second, so both are kept and combined into one
error score ζ that the root-cause ranking multiplies along lineage paths.

Ingest and scoring are split. :meth:`ComponentSeries.add_summary` only writes a run's estimates
(a few vectorized assignments over its columns) and marks the run pending;
:meth:`ComponentSeries.score_pending` scores every pending run at once, with window sums from
prefix sums and window minima from a sparse table (:mod:`.window_stats`), so the cost of a
refresh grows with the history kept, not with the number of runs that arrived since the last.

Memory is bounded: each component keeps a ring of at most ``max_runs`` runs and
``max_columns`` columns; the oldest run (by event time) is evicted first. A run evicted before
any refresh scored it is never scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from otel_mlobs.processor.analyzers.react.estimates import (
    COUNT,
    DEFAULT_FLOOR,
    ESTIMATORS,
    NOISE,
    NOVEL,
    STD_FLOORS,
    kind_masks,
    register_estimator,
)
from otel_mlobs.processor.analyzers.react.scoring import (
    SCORE_CAP,
    Block,
    Planes,
    corruption,
    floors_of,
    predictive_z,
    staleness,
)
from otel_mlobs.processor.records import SummaryRecord

DAY_S = 86_400.0
_MAX_VOCAB = 256
_MAX_LAYOUTS = 1_024

ColumnId = tuple[str, str, str]  # (role, dataset, column), as the other column analyzers use
STALE_ESTIMATES: tuple[str, ...] = ("mean", "std", "top_share", "second_share", COUNT)

__all__ = [
    "DAY_S",
    "ESTIMATORS",
    "STALE_ESTIMATES",
    "ColumnScores",
    "ComponentSeries",
    "ScoreParams",
    "predictive_z",
    "register_estimator",
    "score_all",
    "zeta",
]


@dataclass(frozen=True, slots=True)
class ScoreParams:
    """Thresholds shared by every component's series."""

    window_s: float = 7 * DAY_S  # rolling baseline by event time
    min_history: int = 4  # baseline points needed before a score means anything
    spread_windows: float = 4.0  # the spread is learnt over this many windows of history
    z_threshold: float = 4.0  # corruption score at which ζ reaches 1
    stale_runs: int = 3  # recent runs whose changes are compared with history's
    stale_threshold: float = 2.5  # staleness score at which ζ reaches 1
    stale_estimates: tuple[str, ...] = STALE_ESTIMATES
    schema_ratio: float = 3.0  # ζ of a column that vanished or changed kind
    zeta_floor: float = 0.5  # ζ of a perfectly quiet column

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.z_threshold <= 0 or self.stale_threshold <= 0:
            raise ValueError("window_s, z_threshold and stale_threshold must be positive")
        if self.min_history < 2 or self.stale_runs < 2:
            raise ValueError("min_history and stale_runs must be at least 2")
        if not 0 < self.zeta_floor <= 1:
            raise ValueError("zeta_floor must be in (0, 1]")


def zeta(ratio: np.ndarray, floor: float) -> np.ndarray:
    """Map a score/threshold ratio to ζ: ``floor`` at 0, 1 at the threshold, the ratio above it.

    Below the threshold ζ rises as the fourth power, so noise just under the threshold stays
    well below 1 and cannot pass for the quiet link of an anomalous chain.

    Above 1, ζ multiplies a path's score up (an anomaly); below, it shrinks it, so the product
    along a lineage path peaks at the furthest-upstream node of a chain of anomalies.
    """
    r = np.clip(np.nan_to_num(ratio, nan=0.0), 0.0, SCORE_CAP)
    return np.where(r >= 1.0, r, floor + (1.0 - floor) * r**4)


class ComponentSeries:
    """Per-run scalar estimates and scores of one component's columns, in a bounded ring.

    Columns are identified like everywhere else by (role, dataset, column); their display label
    is ``dataset.column`` (prefixed with the role in the rare case a component reads and writes
    a dataset of the same name). Estimates live in one ``(estimates, runs, columns)`` array, so
    every estimate is scored by the same few array operations (:mod:`.scoring`).

    **Corruption** of a run's column: the largest, over the corruption estimates, distance of
    the estimate from the mean of the clean runs of the window before it (anomalous runs stay
    out, so an incident keeps scoring until the window has drained and a new normal is learnt),
    with the spread learnt from run-to-run changes between clean runs over ``spread_windows``
    windows when there are more of them than baseline points, judged by
    :func:`~.scoring.predictive_z`.

    **Staleness**: per staleness estimate, the last ``k = stale_runs - 1`` run-to-run changes
    are *collapsed* when each is one fresh data could not make (ten times below the change
    sampling noise alone makes between two fresh runs, :data:`~.estimates.NOISE`; an exact
    repeat for an estimate without a noise model) and smaller than every clean change in
    history. A collapsed estimate contributes ``k × min_j -log10(|change_j| / reference_j)``
    (each term capped at 6), the reference being the smaller of the usual change (geometric
    mean of the clean history's changes) and that noise; contributions are averaged over the
    usable estimates. The history is the spread horizon's changes before the recent ones and
    before any freeze already running (a trailing run of collapsed changes), so a feed that
    stays frozen stays flagged. Usable means history varied: enough clean changes, none of them
    (near) zero, and fresh data would move the estimate (non-zero noise). A column that is zero
    most days, a near-constant flag whose days differ by its binomial noise, or a sticky
    category earn nothing: that is their normal, not a freeze. Only columns whose latest change
    collapsed in some estimate are examined further; the others score 0 from two rows.
    """

    def __init__(
        self,
        params: ScoreParams,
        estimators: Iterable[str] = ("mean", "std"),
        max_runs: int = 256,
        max_columns: int = 2048,
    ) -> None:
        if max_runs < params.min_history + params.stale_runs:
            raise ValueError("max_runs must hold at least min_history + stale_runs runs")
        self.params = params
        self.max_runs = max_runs
        self.max_columns = max_columns
        corr = [e for e in estimators if e in ESTIMATORS]
        stale = [e for e in params.stale_estimates if e in ESTIMATORS]
        needs = [n for e in stale for n in NOISE.get(e, ((), None))[0] if n in ESTIMATORS]
        self.names: list[str] = list(dict.fromkeys([*corr, *stale, *needs, COUNT, NOVEL]))
        self._plane = {name: i for i, name in enumerate(self.names)}
        self._builtin = np.array([self._plane[n] for n in self.names if n != NOVEL])
        self._estimators = [ESTIMATORS[n] for n in self.names if n != NOVEL]
        self._corr_planes = [self._plane[n] for n in (*corr, NOVEL)]
        self._stale_planes = [self._plane[n] for n in stale]
        self._planes = self._make_planes()
        self.ids: list[ColumnId] = []
        self.columns: list[str] = []  # display labels, parallel to ids
        self._labels: set[str] = set()
        self._col_index: dict[ColumnId, int] = {}
        self._datasets: dict[tuple[str, str], int] = {}
        self._col_dataset = np.zeros(0, dtype=np.int64)
        self._layouts: dict[tuple[str, str, tuple[str, ...]], tuple[np.ndarray, np.ndarray | None]]
        self._layouts = {}
        self.dropped_columns = 0
        self._vocab: dict[int, dict[str, float]] = {}  # column -> value -> last clean sighting
        self._tops: dict[int, dict[int, dict[str, int]]] = {}  # pending slot -> column -> top
        self.run_ids: list[str] = [""] * max_runs
        self._run_slot: dict[str, int] = {}
        self._free = list(range(max_runs - 1, -1, -1))
        self._pending: set[int] = set()
        self.version = 0  # bumped whenever scores or columns change
        self.times = np.full(max_runs, np.nan)
        cap = 16
        e = len(self.names)
        self.present = np.zeros((max_runs, cap), dtype=bool)
        self.kind = np.full((max_runs, cap), -1, dtype=np.int8)
        self.est = np.full((e, max_runs, cap), np.nan)
        self.corruption = np.zeros((max_runs, cap))
        self.staleness = np.zeros((max_runs, cap))
        self.signature = np.full((2, max_runs, cap), params.zeta_floor)  # ζ of both, per run

    # --- layout -------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.present.shape[1]

    @property
    def pending(self) -> int:
        """Runs written since the last :meth:`score_pending`."""
        return len(self._pending)

    def _grow(self, need: int) -> None:
        cap = self.capacity
        if need <= cap:
            return
        new = max(need, 2 * cap)

        def widen(a: np.ndarray, fill: float | int | bool) -> np.ndarray:
            out = np.full((*a.shape[:-1], new), fill, dtype=a.dtype)
            out[..., :cap] = a
            return out

        self.present = widen(self.present, False)
        self.kind = widen(self.kind, -1)
        self.corruption = widen(self.corruption, 0.0)
        self.staleness = widen(self.staleness, 0.0)
        self.signature = widen(self.signature, self.params.zeta_floor)
        self.est = widen(self.est, np.nan)

    def _make_planes(self) -> Planes:
        return Planes(
            tuple(self.names),
            tuple(self._corr_planes),
            tuple(self._stale_planes),
            floors_of(self.names, self._corr_planes, STD_FLOORS, DEFAULT_FLOOR),
        )

    def _add_plane(self, name: str) -> int:
        """A plane for an estimate fed from outside (scored for corruption, not staleness)."""
        i = self._plane[name] = len(self.names)
        self.names.append(name)
        self._corr_planes.append(i)
        self._planes = self._make_planes()
        self.est = np.concatenate([self.est, np.full((1, *self.est.shape[1:]), np.nan)])
        return i

    def index_of(self, role: str, dataset: str, column: str) -> int | None:
        return self._col_index.get((role, dataset, column))

    def column_indices(self, role: str, dataset: str, names: Iterable[str]) -> np.ndarray:
        """Indices of columns, adding new ones; -1 once ``max_columns`` is reached."""
        out = []
        ds = self._datasets.setdefault((role, dataset), len(self._datasets))
        for name in names:
            cid = (role, dataset, name)
            i = self._col_index.get(cid)
            if i is None:
                if len(self.ids) >= self.max_columns:
                    self.dropped_columns += 1
                    out.append(-1)
                    continue
                label = f"{dataset}.{name}" if dataset else name
                if label in self._labels:
                    label = f"{role}:{label}"
                i = self._col_index[cid] = len(self.ids)
                self.ids.append(cid)
                self.columns.append(label)
                self._labels.add(label)
                self._col_dataset = np.append(self._col_dataset, ds)
                self.version += 1
            out.append(i)
        idx = np.asarray(out, dtype=np.int64)
        self._grow(len(self.ids))
        return idx

    def _layout(
        self, role: str, dataset: str, names: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(column indices kept, mask of kept positions or None when all are), cached."""
        key = (role, dataset, tuple(names))
        hit = self._layouts.get(key)
        if hit is None:
            idx = self.column_indices(role, dataset, names)
            keep = idx >= 0
            hit = (idx[keep], None if keep.all() else keep)
            if not keep.all():
                return hit  # not cached: each such record counts its dropped columns
            if len(self._layouts) >= _MAX_LAYOUTS:
                self._layouts.clear()
            self._layouts[key] = hit
        return hit

    def _slot(self, run_id: str, event_time: float) -> int:
        slot = self._run_slot.get(run_id)
        if slot is not None:
            return slot
        if self._free:
            slot = self._free.pop()
        else:
            slot = int(np.nanargmin(self.times))
            del self._run_slot[self.run_ids[slot]]
            self._pending.discard(slot)
            self._tops.pop(slot, None)
            self.version += 1
        self._run_slot[run_id] = slot
        self.run_ids[slot] = run_id
        self.times[slot] = event_time
        self.present[slot] = False
        self.kind[slot] = -1
        self.est[:, slot] = np.nan
        return slot  # its corruption and staleness are written when it is scored

    # --- ingest (cheap: called for every record) ----------------------------------------------
    def add_summary(self, rec: SummaryRecord) -> None:
        """Write one summary chunk's estimates into its run's row; scoring waits for a refresh."""
        cols, keep = self._layout(rec.role, rec.dataset, rec.columns)
        if len(cols) == 0:
            return
        slot = self._slot(rec.run_id, rec.event_time)
        _, categorical, codes, any_cat = kind_masks(rec)
        values = np.empty((len(self._builtin), len(rec.columns)))
        for row, fn in enumerate(self._estimators):
            values[row] = fn(rec)
        if keep is not None:
            values, codes, categorical = values[:, keep], codes[keep], categorical[keep]
        self.est[self._builtin[:, None], slot, cols] = values
        self.present[slot, cols] = True
        self.kind[slot, cols] = codes
        if any_cat:
            tops = (
                rec.top_values
                if keep is None
                else [t for t, k in zip(rec.top_values, keep, strict=True) if k]
            )
            mine = self._tops.setdefault(slot, {})
            for j in np.flatnonzero(categorical):
                if tops[j]:
                    mine[int(cols[j])] = tops[j]
        self._pending.add(slot)

    def observe(
        self,
        run_id: str,
        event_time: float,
        role: str,
        dataset: str,
        column: str,
        estimate: str,
        value: float,
    ) -> None:
        """Feed one external scalar estimate (e.g. a likelihood score) for a run's column."""
        if estimate == NOVEL:
            raise ValueError(f"'{NOVEL}' is computed here and cannot be fed")
        idx = self.column_indices(role, dataset, [column])
        if idx[0] < 0:
            return
        plane = self._plane.get(estimate)
        if plane is None:
            plane = self._add_plane(estimate)
        slot = self._slot(run_id, event_time)
        self.present[slot, idx] = True
        self.est[plane, slot, idx] = value
        self._pending.add(slot)

    # --- scoring (at refresh: every pending run at once) --------------------------------------
    def _plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(runs in time order, positions of the pending ones, their window bounds).

        Bounds are ``(lo, hi, lo_long)`` rows per pending run (a (3, pending) array). Runs
        older than every window in play are not read and are left out.
        """
        p = self.params
        order = self.rows_until()
        where = np.empty(self.max_runs, dtype=np.int64)
        where[order] = np.arange(len(order))
        tp = np.sort(where[np.fromiter(self._pending, dtype=np.int64)])
        ts = self.times[order]
        t = ts[tp]
        bounds = np.stack(
            [
                np.searchsorted(ts, t - p.window_s, "left"),
                np.searchsorted(ts, t, "left"),
                np.searchsorted(ts, t - p.spread_windows * p.window_s, "left"),
            ]
        )
        first = int(min(bounds[0].min(), bounds[2].min()))
        return order[first:], tp - first, bounds - first

    def score_pending(self) -> bool:
        """Score every run written since the last call; False when there was nothing to do."""
        if not self._pending:
            return False
        p = self.params
        order, tp, (lo, hi, lo_long) = self._plan()
        block = Block(
            self.est[:, order, : len(self.columns)],
            tp[:, None],
            lo[:, None],
            hi[:, None],
            lo_long[:, None],
        )
        targets = order[tp]
        corr = self.corruption[order, : len(self.columns)]  # a copy, in time order
        corr[tp] = 0.0  # provisionally clean
        # A run's score depends on which earlier runs were clean, so the pending runs are scored
        # together and rescored until their clean/anomalous split stops changing; each pass
        # settles at least the earliest unsettled run, and one or two passes are the rule.
        # A pass takes the runs from ``start`` on: those before it kept their split, so their
        # scores (which only earlier runs influence) are final.
        start = 0
        novel = self._plane[NOVEL]
        while start < len(tp):
            before = corr[tp] >= p.z_threshold
            if self._tops:
                self._novel_shares(targets, ~before)
                block.est[novel] = self.est[novel][order, : len(self.columns)]
            z = corruption(block.part(start), corr < p.z_threshold, self._planes, p.min_history)
            corr[tp[start:]] = z
            flipped = np.flatnonzero(((z >= p.z_threshold) != before[start:]).any(axis=1))
            if len(flipped) == 0:
                break
            start += int(flipped[0]) + 1
        stale = staleness(block, corr >= p.z_threshold, self._planes, p.stale_runs, p.min_history)
        self._commit(targets, corr[tp], stale)
        return True

    def _commit(self, targets: np.ndarray, corr: np.ndarray, stale: np.ndarray) -> None:
        """Store the final scores of ``targets`` and what their clean runs teach."""
        p = self.params
        n = len(self.columns)
        if self._tops:  # what the runs teach, now that it is settled which of them were clean
            learned = self._novel_shares(targets, corr < p.z_threshold)
            for col, seen in learned.items():
                vocab = self._vocab.setdefault(col, {})
                for v, when in seen.items():
                    vocab[v] = max(vocab.get(v, -np.inf), when)
        self.corruption[targets, :n] = corr
        self.staleness[targets, :n] = stale
        self.signature[:, targets, :n] = zeta(
            np.stack([corr / p.z_threshold, stale / p.stale_threshold]), p.zeta_floor
        )
        for s in targets:
            self._tops.pop(int(s), None)
        self._pending.clear()
        self.version += 1

    def _novel_shares(self, targets: np.ndarray, clean: np.ndarray) -> dict[int, dict[str, float]]:
        """Share of each categorical's counted rows whose value no clean recent run showed.

        A renamed category ('Credit card' → 'Card') keeps every share-based estimate as it was;
        only the vocabulary gives it away. NaN until the column has a vocabulary. Pending runs
        are taken in time order, each learning from the earlier ones that ``clean`` marks clean
        (an anomalous run does not teach the vocabulary); returns what they taught.
        """
        learned: dict[int, dict[str, float]] = {}
        plane, count = self._plane[NOVEL], self._plane[COUNT]
        empty: dict[str, float] = {}
        for j, slot in enumerate(targets):
            tops = self._tops.get(int(slot))
            if not tops:
                continue
            when = float(self.times[slot])
            horizon = when - self.params.window_s
            for col, top in tops.items():
                base = self._vocab.get(col, empty)
                extra = learned.get(col, empty)
                total = self.est[count, slot, col]
                share = np.nan
                if (base or extra) and total > 0:
                    unseen = sum(
                        c
                        for v, c in top.items()
                        if max(base.get(v, -np.inf), extra.get(v, -np.inf)) < horizon
                    )
                    share = unseen / float(total)
                self.est[plane, slot, col] = share
                if not clean[j, col]:
                    continue  # an anomalous run does not teach the vocabulary
                mine = learned.setdefault(col, {})
                for v in top:
                    if v in base or v in mine or len(base) + len(mine) < _MAX_VOCAB:
                        mine[v] = max(mine.get(v, -np.inf), when)
        return learned

    def stackable(self, order: np.ndarray, tp: np.ndarray) -> bool:
        """Whether this refresh has exactly one run to score and it is the latest one."""
        return len(tp) == 1 and tp[0] == len(order) - 1 and len(self.columns) > 0

    # --- read ---------------------------------------------------------------------------------
    def rows_until(self, at: float | None = None) -> np.ndarray:
        """Slots of runs at or before ``at`` (all when None), oldest first."""
        valid = ~np.isnan(self.times)
        if at is not None:
            valid &= self.times <= at
        rows = np.flatnonzero(valid)
        return rows[np.argsort(self.times[rows], kind="stable")]

    def schema(self, at: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per column of the latest run: vanished, changed kind, newly appeared (bool arrays)."""
        n = len(self.columns)
        none = np.zeros(n, dtype=bool)
        rows = self.rows_until(at)
        if len(rows) == 0:
            return none, none, none
        last = rows[-1]
        t = self.times[last]
        base = rows[:-1][self.times[rows[:-1]] >= t - self.params.window_s]
        if len(base) < self.params.min_history:
            return none, none, none
        pres = self.present[base, :n]
        seen = pres.mean(axis=0)
        now = self.present[last, :n]
        # a dataset the run did not log at all is a run that logged less, not lost columns
        ds = self._col_dataset[:n]
        logged = np.zeros(len(self._datasets), dtype=bool)
        logged[ds[now]] = True
        vanished = (seen >= 0.5) & ~now & logged[ds]
        kinds = np.where(pres, self.kind[base, :n], -1)
        counts = (
            np.stack([(kinds == code).sum(axis=0) for code in range(int(kinds.max()) + 1)])
            if kinds.max() >= 0
            else np.zeros((1, n), dtype=np.int64)
        )
        usual = np.where(counts.sum(axis=0) > 0, counts.argmax(axis=0), -1)
        changed = now & (usual >= 0) & (self.kind[last, :n] != usual)
        new = now & (seen == 0)
        return vanished, changed, new

    def latest(self, at: float | None = None) -> ColumnScores | None:
        """Scores of every column at the latest run at or before ``at``."""
        rows = self.rows_until(at)
        if len(rows) == 0:
            return None
        last = rows[-1]
        n = len(self.columns)
        vanished, changed, new = self.schema(at)
        return ColumnScores(
            run_id=self.run_ids[last],
            event_time=float(self.times[last]),
            ids=list(self.ids),
            columns=list(self.columns),
            corruption=self.corruption[last, :n].copy(),
            staleness=self.staleness[last, :n].copy(),
            vanished=vanished,
            changed_kind=changed,
            new=new,
            params=self.params,
        )

    def error_signature(self, at: float | None = None, runs: int = 32) -> np.ndarray:
        """Each column's recent errors as one vector: (2 × runs, columns) of ζ.

        Corruption and staleness occupy separate coordinates, so a column that went wrong one
        way never looks co-erroneous with one that went wrong the other way in the same run.
        """
        rows = self.rows_until(at)[-runs:]
        n = len(self.columns)
        return self.signature[:, rows, :n].reshape(2 * len(rows), n)


def score_all(series: Iterable[ComponentSeries]) -> None:
    """Score the pending runs of every component, those with one new run side by side.

    The usual refresh finds one new run per component. Their columns are laid side by side in
    one block, each component's history aligned so that its new run sits on the last row, and
    scored by one pass of array operations with per-column windows, instead of one pass (and
    its fixed cost) per component. Components with several pending runs, a late run, or
    estimates of their own are scored one by one.
    """
    stack: list[tuple[ComponentSeries, np.ndarray, np.ndarray]] = []
    for s in series:
        if not s.pending:
            continue
        order, tp, bounds = s._plan()
        if s.stackable(order, tp) and (not stack or s._planes.names == stack[0][0]._planes.names):
            stack.append((s, order, bounds))
        else:
            s.score_pending()
    if len(stack) == 1:
        stack[0][0].score_pending()
    elif stack:
        _score_side_by_side(stack)


def _score_side_by_side(stack: list[tuple[ComponentSeries, np.ndarray, np.ndarray]]) -> None:
    first = stack[0][0]
    p, planes = first.params, first._planes
    rows = max(len(order) for _, order, _ in stack)
    total = sum(len(s.columns) for s, _, _ in stack)
    est = np.full((len(planes.names), rows, total), np.nan)
    corr = np.zeros((rows, total))
    bounds = np.zeros((3, 1, total), dtype=np.int64)
    c0 = 0
    for s, order, b in stack:
        n = len(s.columns)
        cols, off = slice(c0, c0 + n), rows - len(order)
        if s._tops:  # one run: its novel shares need no earlier pending run's verdict
            s._novel_shares(order[-1:], np.ones((1, n), dtype=bool))
        est[:, off:, cols] = s.est[:, order, :n]
        corr[off:, cols] = s.corruption[order, :n]
        bounds[:, 0, cols] = b[:, 0, None] + off
        c0 += n
    corr[-1] = 0.0
    block = Block(est, np.full((1, total), rows - 1), bounds[0], bounds[1], bounds[2])
    z = corruption(block, corr < p.z_threshold, planes, p.min_history)
    corr[-1] = z[0]
    stale = staleness(block, corr >= p.z_threshold, planes, p.stale_runs, p.min_history)
    c0 = 0
    for s, order, _ in stack:
        n = len(s.columns)
        s._commit(order[-1:], z[:, c0 : c0 + n], stale[:, c0 : c0 + n])
        c0 += n


@dataclass(slots=True)
class ColumnScores:
    """One run's scores for every column of a component, with the evidence behind them."""

    run_id: str
    event_time: float
    ids: list[ColumnId]
    columns: list[str]
    corruption: np.ndarray
    staleness: np.ndarray
    vanished: np.ndarray
    changed_kind: np.ndarray
    new: np.ndarray
    params: ScoreParams

    @property
    def schema(self) -> np.ndarray:
        """Schema-change evidence as a score ratio: vanished or re-typed columns weigh most."""
        p = self.params
        return np.where(
            self.vanished | self.changed_kind, p.schema_ratio, np.where(self.new, 1.0, 0.0)
        )

    @property
    def ratio(self) -> np.ndarray:
        p = self.params
        return np.maximum.reduce(
            [self.corruption / p.z_threshold, self.staleness / p.stale_threshold, self.schema]
        )

    @property
    def zeta(self) -> np.ndarray:
        """The column error score ζ used by groups and ranking."""
        return zeta(self.ratio, self.params.zeta_floor)

    def evidence(self, i: int) -> list[str]:
        """Why column ``i`` scores as it does, in words (empty when quiet)."""
        p = self.params
        out = []
        if self.vanished[i]:
            out.append("missing from the latest run")
        if self.changed_kind[i]:
            out.append("column kind changed")
        if self.new[i]:
            out.append("new column")
        if self.corruption[i] >= p.z_threshold:
            out.append(
                f"{self.corruption[i]:.1f} sd (normal-equivalent) from its rolling "
                f"{p.window_s / DAY_S:g}-day baseline"
            )
        if self.staleness[i] >= p.stale_threshold:
            out.append(
                f"frozen: the last {p.stale_runs - 1} run-to-run changes were "
                f"{self.staleness[i]:.1f} orders of magnitude below what fresh data "
                "moves"
            )
        return out
