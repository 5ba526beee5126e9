"""Column error scores per (component, column) over event time: corruption, staleness, schema.

Why two scores: a corrupted column (miles sent as kilometres) moves a scalar estimate of its
distribution far from its rolling baseline, while a *stale* column (a feature job that stopped
updating) does the opposite: its run-to-run variation collapses to zero while history varied.
A z-score sees the first and is blind to the second, so both are kept and combined into one
error score ζ that the root-cause ranking multiplies along lineage paths.

Scalar estimates are pluggable: each is a function ``SummaryRecord -> (n_columns,) float`` named
in :data:`ESTIMATORS` (mean, std, null ratio, top-value share), and any other source (a density
model's log-likelihood, say) can be fed per run through :meth:`ComponentSeries.observe`.

Memory is bounded: each component keeps a ring of at most ``max_runs`` runs and
``max_columns`` columns; the oldest run (by event time) is evicted first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy import special

from otel_mlobs import semconv
from otel_mlobs.processor.records import SummaryRecord

DAY_S = 86_400.0

Estimator = Callable[[SummaryRecord], np.ndarray]


def _numeric_mask(rec: SummaryRecord) -> np.ndarray:
    kinds = np.asarray(rec.kinds, dtype=object)
    return (kinds == semconv.KIND_NUMERIC) | (kinds == semconv.KIND_BOOLEAN)


def _est_mean(rec: SummaryRecord) -> np.ndarray:
    out = np.asarray(rec.mean, dtype=np.float64).copy()
    out[~_numeric_mask(rec)] = np.nan  # datetimes trend by design; categoricals have no mean
    return out


def _est_std(rec: SummaryRecord) -> np.ndarray:
    out = np.asarray(rec.std, dtype=np.float64).copy()
    out[~_numeric_mask(rec)] = np.nan
    return out


def _est_null_ratio(rec: SummaryRecord) -> np.ndarray:
    count = np.asarray(rec.count, dtype=np.float64)
    nulls = np.asarray(rec.nulls, dtype=np.float64)
    total = count + nulls
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, nulls / np.maximum(total, 1.0), np.nan)


def _est_top_share(rec: SummaryRecord) -> np.ndarray:
    out = np.full(len(rec.columns), np.nan)
    for i, top in enumerate(rec.top_values):
        if top and rec.kinds[i] == semconv.KIND_CATEGORICAL and rec.count[i] > 0:
            out[i] = max(top.values()) / float(rec.count[i])
    return out


def _quantile(level: float) -> Estimator:
    def est(rec: SummaryRecord) -> np.ndarray:
        levels = np.asarray(rec.quantile_levels, dtype=np.float64)
        q = np.asarray(rec.quantiles, dtype=np.float64).reshape(len(rec.columns), -1)
        if len(levels) == 0 or q.shape[1] != len(levels):
            return np.full(len(rec.columns), np.nan)
        j = np.searchsorted(levels, level)
        if j < len(levels) and levels[j] == level:
            out = q[:, j].copy()
        else:  # interpolate between the neighbouring levels (clamped at the ends)
            out = np.array([np.interp(level, levels, row) for row in q])
        out[~_numeric_mask(rec)] = np.nan
        return out

    return est


ESTIMATORS: dict[str, Estimator] = {
    "mean": _est_mean,
    "std": _est_std,
    "q25": _quantile(0.25),
    "q50": _quantile(0.5),
    "q75": _quantile(0.75),
    "null_ratio": _est_null_ratio,
    "top_share": _est_top_share,
}
"""Named scalar estimates of a column's distribution; :func:`register_estimator` adds more."""

# A floor under the baseline's standard deviation, per estimate: (absolute, relative to |mean|).
# Without it a column that never varied would turn any change, however small, into infinity.
_STD_FLOORS: dict[str, tuple[float, float]] = {
    "null_ratio": (0.005, 0.0),
    "top_share": (0.005, 0.0),
    "novel_share": (0.005, 0.0),
}
NOVEL = "novel_share"  # share of a categorical's rows whose value the baseline never saw
_MAX_VOCAB = 256
_DEFAULT_FLOOR = (1e-12, 1e-3)

_KIND_CODES = {k: i for i, k in enumerate(semconv.COLUMN_KINDS)}

SCORE_CAP = 1_000.0
STALE_TERM_CAP = 6.0  # orders of magnitude one near-zero change can contribute

ColumnId = tuple[str, str, str]  # (role, dataset, column), as the other column analyzers use


def register_estimator(name: str, fn: Estimator) -> None:
    """Make ``fn`` available as estimate ``name`` (module-level, so snapshots stay picklable)."""
    if not name or not callable(fn):
        raise ValueError("an estimator needs a non-empty name and a callable")
    ESTIMATORS[name] = fn


@dataclass(frozen=True, slots=True)
class ScoreParams:
    """Thresholds shared by every component's series."""

    window_s: float = 7 * DAY_S  # rolling baseline by event time
    min_history: int = 4  # baseline points needed before a score means anything
    spread_windows: float = 4.0  # the spread is learnt over this many windows of history
    z_threshold: float = 4.0  # corruption score at which ζ reaches 1
    stale_runs: int = 3  # recent runs whose changes are compared with history's
    stale_threshold: float = 2.5  # staleness score at which ζ reaches 1
    stale_estimates: tuple[str, ...] = ("mean", "std", "q25", "q50", "q75", "top_share")
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
    df = np.maximum(n - 1, 1).astype(np.float64)
    n_mean = n if n_mean is None else n_mean
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(x - mean) / (sd * np.sqrt(1.0 + 1.0 / np.maximum(n_mean, 1)))
        tail = special.stdtr(df, -t)  # one-sided tail of the t distribution
        z = -special.ndtri(np.maximum(tail, 1e-300))
    return np.where(np.isnan(t), np.nan, np.clip(z, 0.0, SCORE_CAP))


def _nanstats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, sample std and count of non-NaN values down axis 0, without warnings."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=0)
    filled = np.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / n
        dev = np.where(ok, x - mean, 0.0)
        var = (dev * dev).sum(axis=0) / np.maximum(n - 1, 1)
    return mean, np.sqrt(var), n


class ComponentSeries:
    """Per-run scalar estimates and scores of one component's columns, in a bounded ring.

    Columns are identified like everywhere else by (role, dataset, column); their display label
    is ``dataset.column`` (prefixed with the role in the rare case a component reads and writes
    a dataset of the same name).
    """

    def __init__(self, params: ScoreParams, max_runs: int = 256, max_columns: int = 2048) -> None:
        if max_runs < params.min_history + params.stale_runs:
            raise ValueError("max_runs must hold at least min_history + stale_runs runs")
        self.params = params
        self.max_runs = max_runs
        self.max_columns = max_columns
        self.ids: list[ColumnId] = []
        self.columns: list[str] = []  # display labels, parallel to ids
        self._col_index: dict[ColumnId, int] = {}
        self.dropped_columns = 0
        self._vocab: dict[int, dict[str, float]] = {}  # column -> value -> last clean sighting
        self.run_ids: list[str] = [""] * max_runs
        self._run_slot: dict[str, int] = {}
        self.times = np.full(max_runs, np.nan)
        cap = 16
        self.present = np.zeros((max_runs, cap), dtype=bool)
        self.kind = np.full((max_runs, cap), -1, dtype=np.int8)
        self.est: dict[str, np.ndarray] = {}
        self.corruption = np.zeros((max_runs, cap))
        self.staleness = np.zeros((max_runs, cap))

    # --- layout -------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.present.shape[1]

    def _grow(self, need: int) -> None:
        cap = self.capacity
        if need <= cap:
            return
        new = max(need, 2 * cap)

        def widen(a: np.ndarray, fill: float | int | bool) -> np.ndarray:
            out = np.full((a.shape[0], new), fill, dtype=a.dtype)
            out[:, :cap] = a
            return out

        self.present = widen(self.present, False)
        self.kind = widen(self.kind, -1)
        self.corruption = widen(self.corruption, 0.0)
        self.staleness = widen(self.staleness, 0.0)
        self.est = {k: widen(v, np.nan) for k, v in self.est.items()}

    def index_of(self, role: str, dataset: str, column: str) -> int | None:
        return self._col_index.get((role, dataset, column))

    def column_indices(self, role: str, dataset: str, names: Iterable[str]) -> np.ndarray:
        """Indices of columns, adding new ones; -1 once ``max_columns`` is reached."""
        out = []
        for name in names:
            cid = (role, dataset, name)
            i = self._col_index.get(cid)
            if i is None:
                if len(self.ids) >= self.max_columns:
                    self.dropped_columns += 1
                    out.append(-1)
                    continue
                label = f"{dataset}.{name}" if dataset else name
                if label in self.columns:
                    label = f"{role}:{label}"
                i = self._col_index[cid] = len(self.ids)
                self.ids.append(cid)
                self.columns.append(label)
            out.append(i)
        idx = np.asarray(out, dtype=np.int64)
        self._grow(len(self.ids))
        return idx

    def _slot(self, run_id: str, event_time: float) -> int:
        slot = self._run_slot.get(run_id)
        if slot is not None:
            return slot
        free = np.flatnonzero(np.isnan(self.times))
        if len(free):
            slot = int(free[0])
        else:
            slot = int(np.nanargmin(self.times))
            del self._run_slot[self.run_ids[slot]]
        self._run_slot[run_id] = slot
        self.run_ids[slot] = run_id
        self.times[slot] = event_time
        self.present[slot] = False
        self.kind[slot] = -1
        self.corruption[slot] = 0.0
        self.staleness[slot] = 0.0
        for arr in self.est.values():
            arr[slot] = np.nan
        return slot

    # --- ingest -------------------------------------------------------------------------------
    def add_summary(self, rec: SummaryRecord, estimators: Iterable[str]) -> None:
        """Fold one summary chunk into its run's row and rescore the columns it carries."""
        idx = self.column_indices(rec.role, rec.dataset, rec.columns)
        keep = idx >= 0
        if not keep.any():
            return
        cols = idx[keep]
        slot = self._slot(rec.run_id, rec.event_time)
        self.present[slot, cols] = True
        codes = np.asarray([_KIND_CODES.get(k, -1) for k in rec.kinds], dtype=np.int8)
        self.kind[slot, cols] = codes[keep]
        for name in estimators:
            values = np.asarray(ESTIMATORS[name](rec), dtype=np.float64)
            self._store(name, slot, cols, values[keep])
        self._store(NOVEL, slot, cols, self._novel_share(rec, idx)[keep])
        self._score(slot, cols)
        self._learn_vocab(rec, idx, slot)

    def _novel_share(self, rec: SummaryRecord, idx: np.ndarray) -> np.ndarray:
        """Share of a categorical's counted rows whose value no clean recent run showed.

        A renamed category ('Credit card' → 'Card') keeps every share-based estimate as it was;
        only the vocabulary gives it away. NaN until the column has a vocabulary.
        """
        out = np.full(len(rec.columns), np.nan)
        horizon = rec.event_time - self.params.window_s
        for j, top in enumerate(rec.top_values):
            vocab = self._vocab.get(int(idx[j])) if idx[j] >= 0 else None
            if not top or not vocab or rec.count[j] <= 0:
                continue
            unseen = sum(c for v, c in top.items() if vocab.get(v, -np.inf) < horizon)
            out[j] = unseen / float(rec.count[j])
        return out

    def _learn_vocab(self, rec: SummaryRecord, idx: np.ndarray, slot: int) -> None:
        for j, top in enumerate(rec.top_values):
            i = int(idx[j])
            if not top or i < 0 or self.corruption[slot, i] >= self.params.z_threshold:
                continue  # an anomalous run does not teach the vocabulary
            vocab = self._vocab.setdefault(i, {})
            for v in top:
                if v in vocab or len(vocab) < _MAX_VOCAB:
                    vocab[v] = max(vocab.get(v, -np.inf), rec.event_time)

    def observe(self, run_id: str, event_time: float, role: str, dataset: str, column: str,
                estimate: str, value: float) -> None:
        """Feed one external scalar estimate (e.g. a likelihood score) for a run's column."""
        idx = self.column_indices(role, dataset, [column])
        if idx[0] < 0:
            return
        slot = self._slot(run_id, event_time)
        self.present[slot, idx] = True
        self._store(estimate, slot, idx, np.asarray([value], dtype=np.float64))
        self._score(slot, idx)

    def _store(self, name: str, slot: int, cols: np.ndarray, values: np.ndarray) -> None:
        arr = self.est.get(name)
        if arr is None:
            arr = self.est[name] = np.full((self.max_runs, self.capacity), np.nan)
        arr[slot, cols] = values

    def _score(self, slot: int, cols: np.ndarray) -> None:
        p = self.params
        t = self.times[slot]
        valid = ~np.isnan(self.times)
        window = valid & (self.times >= t - p.window_s) & (self.times < t)
        window[slot] = False
        rows = np.flatnonzero(window)
        corr = np.zeros(len(cols))
        stale = np.zeros(len(cols))
        if len(rows):
            # Baseline points that were themselves anomalous stay out of the baseline, so an
            # incident keeps scoring until the window has drained and a new normal is learnt.
            clean = self.corruption[np.ix_(rows, cols)] < p.z_threshold
            # The spread comes from run-to-run changes over a longer horizon (more degrees of
            # freedom than seven points give), changes touching an anomalous run left out.
            long = np.flatnonzero(valid & (self.times >= t - p.spread_windows * p.window_s)
                                  & (self.times < t))
            long = long[np.argsort(self.times[long], kind="stable")]
            ok_long = self.corruption[np.ix_(long, cols)] < p.z_threshold
            ok_step = ok_long[1:] & ok_long[:-1]
            for name, arr in self.est.items():
                hist = np.where(clean, arr[np.ix_(rows, cols)], np.nan)
                mean, std, n = _nanstats(hist)
                steps = np.where(ok_step, np.diff(arr[np.ix_(long, cols)], axis=0), np.nan)
                n_steps = (~np.isnan(steps)).sum(axis=0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    step_sd = np.sqrt(np.nansum(steps * steps, axis=0) / (2 * n_steps))
                use_steps = n_steps > n
                sd = np.where(use_steps, step_sd, std)
                dof_n = np.where(use_steps, n_steps + 1, n)
                absf, relf = _STD_FLOORS.get(name, _DEFAULT_FLOOR)
                sd = np.maximum(np.nan_to_num(sd), np.maximum(absf, relf * np.abs(mean)))
                z = predictive_z(arr[slot, cols], mean, sd, dof_n, n)
                z = np.where((n >= p.min_history) & ~np.isnan(z), z, 0.0)
                corr = np.maximum(corr, z)
            stale = self._staleness(slot, rows, cols)
        self.corruption[slot, cols] = corr
        self.staleness[slot, cols] = stale

    def _staleness(self, slot: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """How far below every usual change the last runs' changes fell, in orders of magnitude.

        For each estimate, when each of the last ``stale_runs - 1`` run-to-run changes is
        smaller than *every* change in the clean history, each contributes ``-log10(|change| /
        median |change|)``; contributions are summed over changes and averaged over estimates.
        History changes touching a corrupted run are left out (a level shift is not
        variability), and a column whose history already had changes as small (a column that
        is zero most days, a sticky category) earns nothing: that is its normal, not a freeze.
        """
        p = self.params
        order = np.concatenate([rows[np.argsort(self.times[rows], kind="stable")], [slot]])
        k = p.stale_runs - 1
        if len(order) < p.min_history + k + 1:
            return np.zeros(len(cols))
        total = np.zeros(len(cols))
        used = np.zeros(len(cols))
        bad = self.corruption[np.ix_(order, cols)] >= p.z_threshold
        bad_step = bad[1:] | bad[:-1]
        for name in p.stale_estimates:
            arr = self.est.get(name)
            if arr is None:
                continue
            x = arr[np.ix_(order, cols)]
            d = np.abs(np.diff(x, axis=0))
            hist = np.where(bad_step[:-k], np.nan, d[:-k])
            recent = d[-k:]
            n_h = (~np.isnan(hist)).sum(axis=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
                med = np.nanmedian(hist, axis=0)
                low = np.nanmin(hist, axis=0)
                scale = np.nanmax(np.abs(x), axis=0)
            usable = (n_h >= p.min_history) & (low > 1e-9 * np.nan_to_num(scale)) & \
                ~np.isnan(recent).any(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                terms = -np.log10(recent / np.where(usable, med, 1.0))
            # frozen *now*: every recent change, the latest included, is below all of history's
            terms = np.where((recent < low).all(axis=0), terms, 0.0)
            terms = np.clip(np.nan_to_num(terms, nan=0.0, posinf=STALE_TERM_CAP), 0.0,
                            STALE_TERM_CAP)
            total += np.where(usable, terms.sum(axis=0), 0.0)
            used += usable
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(used > 0, total / np.maximum(used, 1), 0.0)

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
        logged = {(r, d) for (r, d, _), here in zip(self.ids, now, strict=True) if here}
        in_logged = np.array([(r, d) in logged for r, d, _ in self.ids], dtype=bool)
        vanished = (seen >= 0.5) & ~now & in_logged
        kinds = np.where(pres, self.kind[base, :n], -1)
        usual = np.array([np.bincount(k[k >= 0]).argmax() if (k >= 0).any() else -1
                          for k in kinds.T], dtype=np.int8)
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
                       f"{self.staleness[i]:.1f} orders of magnitude below usual")
        return out
