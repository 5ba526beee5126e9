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

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

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
from otel_mlobs.processor.analyzers.react.window_stats import prefix, range_min, window_sum
from otel_mlobs.processor.records import SummaryRecord

DAY_S = 86_400.0
SCORE_CAP = 1_000.0
STALE_TERM_CAP = 6.0  # orders of magnitude one near-zero change can contribute
_MAX_VOCAB = 256
_MAX_LAYOUTS = 1_024

ColumnId = tuple[str, str, str]  # (role, dataset, column), as the other column analyzers use
STALE_ESTIMATES: tuple[str, ...] = ("mean", "std", "top_share", COUNT)

__all__ = ["DAY_S", "ESTIMATORS", "STALE_ESTIMATES", "ColumnScores", "ComponentSeries",
           "ScoreParams", "predictive_z", "register_estimator", "zeta"]


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


def predictive_z(x: np.ndarray, mean: np.ndarray, sd: np.ndarray, n: np.ndarray,
                 n_mean: np.ndarray | None = None) -> np.ndarray:
    """Distance of ``x`` from a baseline of ``n`` points, in normal-equivalent standard deviations.

    Seven daily points estimate a spread poorly, and a plain z-score over them fires on noise
    (|t| > 4 happens 1% of the time with 6 degrees of freedom). The distance is therefore
    judged with the Student-t predictive distribution of a new point, ``t = |x - mean| /
    (sd · sqrt(1 + 1/n))`` with ``n - 1`` degrees of freedom, and its tail probability is
    expressed back as the normal quantile: 4 means as unlikely as 4 sd of a normal. ``n`` sets
    the degrees of freedom of the spread, ``n_mean`` (default ``n``) the points in the mean.
    """
    n_mean = n if n_mean is None else n_mean
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(x - mean) / (sd * np.sqrt(1.0 + 1.0 / np.maximum(n_mean, 1)))
    t, n = np.broadcast_arrays(t, n)
    z = np.full(t.shape, np.nan)
    ok = ~np.isnan(t)  # the tail is costly: only where there is a distance to judge
    df = np.maximum(n[ok] - 1, 1).astype(np.float64)
    tail = special.stdtr(df, -t[ok])  # one-sided tail of the t distribution
    z[ok] = np.clip(-special.ndtri(np.maximum(tail, 1e-300)), 0.0, SCORE_CAP)
    return z


class ComponentSeries:
    """Per-run scalar estimates and scores of one component's columns, in a bounded ring.

    Columns are identified like everywhere else by (role, dataset, column); their display label
    is ``dataset.column`` (prefixed with the role in the rare case a component reads and writes
    a dataset of the same name). Estimates live in one ``(estimates, runs, columns)`` array, so
    every estimate is scored by the same few array operations.
    """

    def __init__(self, params: ScoreParams, estimators: Iterable[str] = ("mean", "std"),
                 max_runs: int = 256, max_columns: int = 2048) -> None:
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
        self.est = widen(self.est, np.nan)

    def _add_plane(self, name: str) -> int:
        """A plane for an estimate fed from outside (scored for corruption, not staleness)."""
        i = self._plane[name] = len(self.names)
        self.names.append(name)
        self._corr_planes.append(i)
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

    def _layout(self, role: str, dataset: str,
                names: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
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
            tops = rec.top_values if keep is None else \
                [t for t, k in zip(rec.top_values, keep, strict=True) if k]
            mine = self._tops.setdefault(slot, {})
            for j in np.flatnonzero(categorical):
                if tops[j]:
                    mine[int(cols[j])] = tops[j]
        self._pending.add(slot)

    def observe(self, run_id: str, event_time: float, role: str, dataset: str, column: str,
                estimate: str, value: float) -> None:
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
    def score_pending(self) -> bool:
        """Score every run written since the last call; False when there was nothing to do."""
        if not self._pending:
            return False
        p = self.params
        n = len(self.columns)
        order = self.rows_until()
        where = np.empty(self.max_runs, dtype=np.int64)
        where[order] = np.arange(len(order))
        tp = np.sort(where[np.fromiter(self._pending, dtype=np.int64)])
        targets = order[tp]
        ts = self.times[order]
        t = ts[tp]
        win = (np.searchsorted(ts, t - p.window_s, "left"), np.searchsorted(ts, t, "left"),
               np.searchsorted(ts, t - p.spread_windows * p.window_s, "left"))
        corr = self.corruption[order, :n]  # a copy, in time order
        corr[tp] = 0.0  # provisionally clean
        learned: dict[int, dict[str, float]] = {}
        # A run's score depends on which earlier runs were clean, so the pending runs are scored
        # together and rescored until their clean/anomalous split stops changing; each pass
        # settles at least the earliest unsettled run, and one or two passes are the rule.
        # A pass takes the runs from ``start`` on: those before it kept their split, so their
        # scores (which only earlier runs influence) are final.
        start = 0
        while start < len(tp):
            before = corr[tp] >= p.z_threshold
            if self._tops:
                self._novel_shares(targets, ~before)
            part = tp[start:]
            z = self._corruption(order, corr < p.z_threshold, part,
                                 tuple(w[start:] for w in win))  # type: ignore[arg-type]
            corr[part] = z
            flipped = np.flatnonzero(((z >= p.z_threshold) != before[start:]).any(axis=1))
            if len(flipped) == 0:
                break
            start += int(flipped[0]) + 1
        if self._tops:  # what the runs teach, now that it is settled which of them were clean
            learned = self._novel_shares(targets, corr[tp] < p.z_threshold)
        for col, seen in learned.items():
            vocab = self._vocab.setdefault(col, {})
            for v, when in seen.items():
                vocab[v] = max(vocab.get(v, -np.inf), when)
        self.corruption[targets, :n] = corr[tp]
        self.staleness[targets, :n] = self._staleness(order, corr >= p.z_threshold, tp, win)
        for s in targets:
            self._tops.pop(int(s), None)
        self._pending.clear()
        self.version += 1
        return True

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
                    unseen = sum(c for v, c in top.items()
                                 if max(base.get(v, -np.inf), extra.get(v, -np.inf)) < horizon)
                    share = unseen / float(total)
                self.est[plane, slot, col] = share
                if not clean[j, col]:
                    continue  # an anomalous run does not teach the vocabulary
                mine = learned.setdefault(col, {})
                for v in top:
                    if v in base or v in mine or len(base) + len(mine) < _MAX_VOCAB:
                        mine[v] = max(mine.get(v, -np.inf), when)
        return learned

    def _corruption(self, order: np.ndarray, clean: np.ndarray, tp: np.ndarray,
                    win: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Corruption of the runs at positions ``tp`` of ``order``: (targets, columns).

        Baseline: the clean runs of the window before each target (anomalous runs stay out, so
        an incident keeps scoring until the window has drained and a new normal is learnt).
        Spread: run-to-run changes between clean runs over a longer horizon (more degrees of
        freedom than seven points give), when there are more of them than baseline points.
        """
        p = self.params
        lo, hi, lo_long = win
        n = clean.shape[1]
        x = self.est[self._corr_planes][:, order, :n]
        ok = clean[None] & ~np.isnan(x)
        ref = np.nan_to_num(x[:, tp[0], :])[:, None, :]  # shift: sums of squares stay precise
        dev = np.where(ok, x - ref, 0.0)
        cnt = window_sum(prefix(ok.astype(np.float64)), lo, hi)
        s1 = window_sum(prefix(dev), lo, hi)
        s2 = window_sum(prefix(dev * dev), lo, hi)
        step_ok = ok[:, 1:] & ok[:, :-1]
        step = np.where(step_ok, np.diff(x, axis=1), 0.0)
        # step i joins rows i and i+1: both inside [lo_long, hi) means i in [lo_long, hi - 1)
        a, b = lo_long, np.maximum(hi - 1, lo_long)
        n_steps = window_sum(prefix(step_ok.astype(np.float64)), a, b)
        ss = window_sum(prefix(step * step), a, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_dev = s1 / cnt
            var = np.maximum(s2 - cnt * mean_dev * mean_dev, 0.0) / np.maximum(cnt - 1, 1)
            step_sd = np.sqrt(ss / (2 * n_steps))
        mean = mean_dev + ref
        use_steps = n_steps > cnt
        sd = np.where(use_steps, step_sd, np.sqrt(var))
        dof_n = np.where(use_steps, n_steps + 1, cnt)
        floors = np.array([STD_FLOORS.get(self.names[i], DEFAULT_FLOOR)
                           for i in self._corr_planes])[:, :, None, None]
        sd = np.maximum(np.nan_to_num(sd), np.maximum(floors[:, 0], floors[:, 1] * np.abs(mean)))
        z = predictive_z(x[:, tp, :], mean, sd, dof_n, cnt)
        z = np.where((cnt >= p.min_history) & ~np.isnan(z), z, 0.0)
        return z.max(axis=0)

    def _staleness(self, order: np.ndarray, bad: np.ndarray, tp: np.ndarray,
                   win: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """How far below fresh data's change the last runs' changes fell, in orders of magnitude.

        Per estimate, each of the last ``k = stale_runs - 1`` run-to-run changes is compared with
        its *reference*: the smaller of the usual change in the window (geometric mean of the
        clean history's changes) and the change sampling noise alone would cause between two
        fresh runs. When every one of them is smaller than every clean change in history, the
        estimate contributes ``k × min_j -log10(|change_j| / reference_j)`` (each term capped at
        :data:`STALE_TERM_CAP`); contributions are averaged over the usable estimates.

        Usable means history varied: enough clean changes, none of them (near) zero, and fresh
        data would move the estimate (non-zero noise). A column that is zero most days, a
        near-constant flag whose days differ by its binomial noise, or a sticky category earn
        nothing: that is their normal, not a freeze.
        """
        p = self.params
        lo, hi, _ = win
        k = p.stale_runs - 1
        n = bad.shape[1]
        out = np.zeros((len(tp), n))
        if not self._stale_planes or len(order) < p.min_history + k + 1:
            return out
        x = self.est[self._stale_planes][:, order, :n]
        nz = self._noise(order, n)
        d = np.abs(np.diff(x, axis=1))  # change i joins rows i and i+1
        dn = np.hypot(nz[:, 1:], nz[:, :-1])
        hist_ok = ~(bad[1:] | bad[:-1])[None] & ~np.isnan(d)
        # history: changes i in [lo, hi - k); recent: i in [hi - k, hi - 1) and the target's own
        h_hi = np.maximum(hi - k, lo)
        n_h = window_sum(prefix(hist_ok.astype(np.float64)), lo, h_hi)
        pos = hist_ok & (d > 0)
        with np.errstate(divide="ignore"):
            logs = np.where(pos, np.log10(np.where(pos, d, 1.0)), 0.0)
        usual = 10.0 ** (window_sum(prefix(logs), lo, h_hi) /
                         np.maximum(window_sum(prefix(pos.astype(np.float64)), lo, h_hi), 1))
        low = range_min(np.where(hist_ok, d, np.inf), lo, h_hi)
        prev = np.maximum(hi - 1, 0)
        last = np.abs(x[:, tp, :] - x[:, prev, :])
        last_noise = np.hypot(nz[:, tp, :], nz[:, prev, :])
        recent = [last]
        noise = [last_noise]
        for j in range(1, k):
            i = np.maximum(hi - 1 - j, 0)
            recent.append(d[:, i, :])
            noise.append(dn[:, i, :])
        rd, rn = np.stack(recent), np.stack(noise)  # (k, estimates, targets, columns)
        ref = np.fmin(usual[None], rn)
        scale = np.fmax(np.abs(x[:, tp, :]), np.abs(x[:, prev, :]))
        enough = (hi - lo >= p.min_history + k)[None, :, None]
        usable = (enough & (n_h >= p.min_history) & (low > 1e-9 * np.nan_to_num(scale))
                  & ~np.isnan(rd).any(axis=0) & (ref > 0).all(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            terms = -np.log10(rd / np.where(ref > 0, ref, 1.0))
        terms = np.clip(np.nan_to_num(terms, nan=0.0, posinf=STALE_TERM_CAP), 0.0,
                        STALE_TERM_CAP)
        frozen = (rd < low[None]).all(axis=0)  # every recent change below all of history's
        score = np.where(usable & frozen, k * terms.min(axis=0), 0.0)
        used = usable.sum(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.where(used > 0, score.sum(axis=0) / np.maximum(used, 1), 0.0)

    def _noise(self, order: np.ndarray, n: int) -> np.ndarray:
        """Sampling noise of each staleness estimate in the runs ``order``: (estimates, runs, n)."""
        out = np.full((len(self._stale_planes), len(order), n), np.nan)
        for j, plane in enumerate(self._stale_planes):
            model = NOISE.get(self.names[plane])
            if model is None or any(need not in self._plane for need in model[0]):
                continue  # no model of its noise: judged against history alone
            planes = {need: self.est[self._plane[need]][order, :n] for need in model[0]}
            out[j] = model[1](planes)
        return out

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
        counts = np.stack([(kinds == code).sum(axis=0) for code in range(int(kinds.max()) + 1)]) \
            if kinds.max() >= 0 else np.zeros((1, n), dtype=np.int64)
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
        p = self.params
        return np.concatenate([zeta(self.corruption[rows, :n] / p.z_threshold, p.zeta_floor),
                               zeta(self.staleness[rows, :n] / p.stale_threshold, p.zeta_floor)])


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
        return np.where(self.vanished | self.changed_kind, p.schema_ratio,
                        np.where(self.new, 1.0, 0.0))

    @property
    def ratio(self) -> np.ndarray:
        p = self.params
        return np.maximum.reduce([self.corruption / p.z_threshold,
                                  self.staleness / p.stale_threshold, self.schema])

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
            out.append(f"{self.corruption[i]:.1f} sd (normal-equivalent) from its rolling "
                       f"{p.window_s / DAY_S:g}-day baseline")
        if self.staleness[i] >= p.stale_threshold:
            out.append(f"frozen: the last {p.stale_runs - 1} run-to-run changes were "
                       f"{self.staleness[i]:.1f} orders of magnitude below what fresh data "
                       "moves")
        return out
