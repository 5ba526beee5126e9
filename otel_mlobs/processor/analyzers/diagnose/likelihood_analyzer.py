"""Column likelihood scores: which columns of a dataset stopped agreeing with the others.

For every dataset a component reads or writes (row samples required), a
:class:`~.likelihood.ChowLiuTree` is fit on the samples of the first ``reference_runs`` runs.
Each later run's sample is scored column by column, ``log P(x_j | neighbours)`` averaged over
its rows, and compared with the reference. The alert threshold is common to all columns: a drop
of at least ``min_drop`` nats per row (the column became ``e^min_drop`` times less likely given
the columns it travels with), widened for small runs by the sampling noise of a mean of ``n``
rows and for noisy columns by their healthy run-to-run spread. The same test runs on a sliding
event-time window of ``window_s`` seconds, which catches a fault spread thinly over small runs.

A column that no other column predicts (its link to its tree neighbours carries less than
``min_link`` nats) is scored and exported but never alerts: its score only says how common its
values are, which is drift, not breakage. When two neighbouring columns both drop, the one that
stops dropping once its neighbour is masked out is reported as collateral of that neighbour
rather than as a second broken column.

A run costs a fixed handful of array passes over its sample, not a loop over columns: the
model's :class:`~.discretize.RowCoder` codes every column at once, the tree scores every column
by one gather from its score tables, and every column's band is judged in one
:class:`~.tuning.ThresholdBank` pass. Samples of one dataset that arrive in the same ingest
batch are coded and scored together (:meth:`LikelihoodAnalyzer.update_many`).
"""

from __future__ import annotations

import contextlib
import pickle
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from otel_mlobs.processor.analyzers.base import Analyzer, BatchFailures, Metric
from otel_mlobs.processor.analyzers.diagnose.alerts import AlertBook
from otel_mlobs.processor.analyzers.diagnose.discretize import ColumnCoder, RowCoder, fit_coder
from otel_mlobs.processor.analyzers.diagnose.likelihood import ChowLiuTree, CountLayout, TreeCounts
from otel_mlobs.processor.analyzers.diagnose.reference import SampleReference
from otel_mlobs.processor.analyzers.diagnose.tuning import (
    BankedThreshold,
    Precision,
    RobustThreshold,
    ThresholdBank,
)
from otel_mlobs.processor.records import Key, Record, RunRecord, SampleRecord

DatasetKey = tuple[str, str]
_MIN_VARYING_ROWS = 5
_MIN_RUN_ROWS = 30  # a run-level alert needs this many rows; smaller runs count in the window
_TIE_MARGIN = 0.05  # total variation: a column whose own shares moved this much more changed
_KEPT_REFERENCE_ROWS = 2000


@dataclass
class _Column:
    name: str
    ref_mean: float
    ref_hist: np.ndarray  # share of reference rows per code
    unit_sd: float
    link: float
    threshold: RobustThreshold | BankedThreshold
    precision: Precision = field(default_factory=lambda: Precision(2.0, 2.0))
    last_mean: float = float("nan")
    last_n: int = 0
    window_mean: float = float("nan")
    window_n: int = 0


@dataclass
class _Model:
    coders: list[ColumnCoder]
    tree: ChowLiuTree
    columns: list[_Column]
    skipped: dict[str, str]
    ref_codes: np.ndarray  # a few reference rows, to re-score under a different mask
    window: deque = field(default_factory=deque)  # (event_time, sums, counts)
    rows_scored: int = 0
    runs_scored: int = 0
    bank: ThresholdBank | None = None  # every column's band, judged in one pass


class _Scored(NamedTuple):
    """One sample's codes, presence mask and scores, computed ahead of its bookkeeping."""

    codes: np.ndarray
    present: np.ndarray
    scores: np.ndarray


class _Scoring:
    """What scoring one model needs per run, derived from it once and never persisted: the
    compiled row coder, per-column arrays, alert sources, baselines per presence pattern and
    running window totals."""

    def __init__(self, key: DatasetKey, model: _Model, history: int, min_link: float) -> None:
        if model.bank is None:  # a model restored from before thresholds were banked
            model.bank = ThresholdBank(window=history)
            for col in model.columns:
                col.threshold = model.bank.adopt(col.threshold)
        self.coder = RowCoder(model.coders)
        self.rows = np.array([c.threshold.row for c in model.columns], dtype=np.int64)
        self.ref_means = np.array([c.ref_mean for c in model.columns])
        self.links = np.array([c.link for c in model.columns])
        self.linked = self.links >= min_link  # the columns that may alert
        self.any_linked = bool(self.linked.any())
        self.rows_all = np.arange(len(model.columns))
        self.sources = [
            tuple(f"{key[0]}/{key[1]}/{c.name}/likelihood_{s}" for s in ("run", "window"))
            for c in model.columns
        ]
        self.baselines: dict[bytes, np.ndarray] = {}
        d = len(model.columns)
        self.w_sums, self.w_counts = np.zeros(d), np.zeros(d, dtype=np.int64)
        for _, sums, counts in model.window:
            self.w_sums += sums
            self.w_counts += counts
        self.latest = max((t for t, _, _ in model.window), default=-np.inf)
        self.pops = 0
        # the latest figures per column, written to the columns when read (see ``sync``)
        self.last_mean = np.array([c.last_mean for c in model.columns], dtype=np.float64)
        self.last_n = np.array([c.last_n for c in model.columns], dtype=np.int64)
        self.window_mean = np.array([c.window_mean for c in model.columns], dtype=np.float64)
        self.stale = False

    def sync(self, model: _Model) -> None:
        """Write the latest per-column figures into the model's columns."""
        if not self.stale:
            return
        for j, col in enumerate(model.columns):
            col.last_mean, col.last_n = float(self.last_mean[j]), int(self.last_n[j])
            col.window_mean, col.window_n = float(self.window_mean[j]), int(self.w_counts[j])
        self.stale = False


class LikelihoodAnalyzer(Analyzer):
    """Per-column likelihood under a tree density model of one component's datasets.

    Parameters
    ----------
    key
        The component's routing key.
    reference_runs
        Runs whose samples train the model.
    roles
        Which datasets to model: ``("output",)`` for outputs only, or inputs too.
    min_drop
        The common alert threshold, in nats per row.
    k
        Robust standard deviations of healthy variability (and sampling noise) a drop must
        also exceed.
    window_s
        Sliding event-time window, in seconds, for the windowed score.
    min_link
        Columns whose tree neighbours carry less information (nats) never alert.
    bins
        Quantile bins per numeric column.
    max_datasets
        Datasets modelled per component.
    max_columns
        Columns modelled per dataset (the first ones); fitting costs the square of this.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> a = LikelihoodAnalyzer(Key("taxi", "clean"), reference_runs=3)
    >>> def run(i, scale=1.0):
    ...     miles = rng.gamma(2.0, 2.0, 500)
    ...     fare = 3 + 2.5 * miles + rng.normal(0, 0.5, 500)
    ...     cols = {"trip_distance": miles * scale, "fare_amount": fare}
    ...     a.update(SampleRecord(a.key, f"r{i}", i * 86400.0, "output", "trips", 500, cols))
    >>> for i in range(4):
    ...     run(i)
    >>> a.alerts()
    []
    >>> run(4, scale=1.609)  # miles became kilometres
    >>> [(x.cls, x.columns) for x in a.alerts()]
    [('soft', ('trip_distance',))]
    """

    name: ClassVar[str] = "likelihood"
    accepts: ClassVar[tuple[type, ...]] = (SampleRecord, RunRecord)

    def __init__(
        self,
        key: Key,
        reference_runs: int = 5,
        roles: tuple[str, ...] = ("input", "output"),
        min_drop: float = 1.0,
        k: float = 5.0,
        window_s: float = 7 * 86400.0,
        min_link: float = 0.05,
        bins: int = 10,
        max_datasets: int = 16,
        max_columns: int = 64,
        history: int = 60,
    ) -> None:
        super().__init__(key)
        if reference_runs < 1 or bins < 2 or max_datasets < 1 or history < 2:
            raise ValueError("reference_runs >= 1, bins >= 2, max_datasets >= 1, history >= 2")
        if not (min_drop > 0 and k > 0 and window_s > 0 and min_link >= 0):
            raise ValueError("min_drop, k and window_s must be > 0 and min_link >= 0")
        bad = set(roles) - {"input", "output"}
        if bad or not roles:
            raise ValueError(f"Invalid 'roles' {roles!r}. Valid values are: ('input', 'output')")
        self.reference_runs = int(reference_runs)
        self.roles = tuple(roles)
        self.min_drop = float(min_drop)
        self.k = float(k)
        self.window_s = float(window_s)
        self.min_link = float(min_link)
        self.bins = int(bins)
        self.max_datasets = int(max_datasets)
        if max_columns < 2:
            raise ValueError("max_columns must be >= 2")
        self.max_columns = int(max_columns)
        self.history = int(history)
        self._references: dict[DatasetKey, SampleReference] = {}
        self._models: dict[DatasetKey, _Model] = {}
        self._seen: deque[tuple[str, str, str]] = deque(maxlen=256)
        self._book = AlertBook(self.name, key.pipeline, key.component)
        self._rng = np.random.default_rng(0)
        self._ignored = 0
        self._fast: dict[DatasetKey, _Scoring] = {}

    # -- reading ------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether at least one dataset has a fitted model."""
        return bool(self._models)

    def alerts(self) -> list:
        """Active alerts, newest first."""
        return self._book.active()

    # -- update -------------------------------------------------------------------------------
    def update(self, record: Record, scored: _Scored | None = None) -> None:
        if isinstance(record, RunRecord):
            if not record.ok:
                for ref in self._references.values():
                    ref.drop(record.run_id)
            return
        if not isinstance(record, SampleRecord) or record.role not in self.roles:
            return
        ident = (record.run_id, record.role, record.dataset)
        if ident in self._seen or not record.columns:
            return
        self._seen.append(ident)
        key = (record.role, record.dataset)
        model = self._models.get(key)
        if model is not None:
            self._score(key, model, record, scored)
            return
        ref = self._references.get(key)
        if ref is None:
            if len(self._references) + len(self._models) >= self.max_datasets:
                self._ignored += 1
                return
            ref = self._references[key] = SampleReference(self.reference_runs)
        ref.add(record.run_id, record.event_time, record.columns, self._rng)
        if ref.complete:
            self._models[key] = self._fit(ref)
            del self._references[key]

    # -- fitting ------------------------------------------------------------------------------
    def _fit(self, ref: SampleReference) -> _Model:
        names = ref.columns()
        times = [t for _, t, _ in ref.samples]
        coders, skipped = [], {}
        for name in names[self.max_columns :]:
            skipped[name] = f"beyond the first {self.max_columns} columns (max_columns)"
        names = names[: self.max_columns]
        for name in names:
            coder = fit_coder(name, [c[name] for _, _, c in ref.samples], times, bins=self.bins)
            if coder is None:
                skipped[name] = "identifier-like: a new range or new values every run"
            else:
                coders.append(coder)
        stacked, _, bounds = RowCoder(coders).encode_many([(c, t) for _, t, c in ref.samples])
        encoded = [stacked[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        varying = []
        for j, coder in enumerate(coders):
            counts = np.bincount(stacked[:, j], minlength=coder.n_codes)
            if len(stacked) - counts.max() < _MIN_VARYING_ROWS:
                skipped[coder.name] = "(nearly) constant in the reference: nothing to learn"
            else:
                varying.append(j)
        coders = [coders[j] for j in varying]
        encoded = [e[:, varying] for e in encoded]
        layout = CountLayout([c.n_codes for c in coders])
        counts = [TreeCounts.of(e, layout) for e in encoded]
        total = counts[0]
        for c in counts[1:]:
            total = total + c
        tree = ChowLiuTree.from_counts(total, layout)
        # Leave one run out: each reference run scored by a tree that never saw it, so the
        # baseline and its spread are honest out-of-sample figures. Counts subtract, so each
        # left-out tree costs its tables, not a recount.
        run_means, rows = [], []
        for i, codes in enumerate(encoded):
            loo = ChowLiuTree.from_counts(total - counts[i], layout) if len(encoded) > 1 else tree
            scores = loo.column_scores(codes)
            run_means.append(np.nanmean(scores, 0))
            rows.append(scores.T)  # (columns, rows): each column's scores contiguous
        run_means = np.array(run_means)
        all_codes = np.concatenate(encoded)
        ref_means = np.median(run_means, axis=0)
        unit_sds = np.nanstd(np.concatenate(rows, axis=1), axis=1)
        columns = []
        bank = ThresholdBank(window=self.history)
        for j, coder in enumerate(coders):
            ref_mean = float(ref_means[j])
            unit_sd = float(unit_sds[j])
            threshold = RobustThreshold(
                "upper", self.min_drop, k=self.k, window=self.history, noise="mean", unit_sd=unit_sd
            )
            for m in run_means[:, j]:
                threshold.observe(ref_mean - float(m))
            hist = np.bincount(all_codes[:, j], minlength=coder.n_codes) / len(all_codes)
            columns.append(
                _Column(
                    coder.name,
                    ref_mean,
                    hist,
                    unit_sd,
                    tree.link_strength(j),
                    bank.adopt(threshold),
                )
            )
        keep = self._rng.permutation(len(all_codes))[:_KEPT_REFERENCE_ROWS]
        kept = all_codes[np.sort(keep)].astype(np.int16)
        return _Model(coders, tree, columns, skipped, kept, bank=bank)

    # -- scoring ------------------------------------------------------------------------------
    def update_many(self, records: Sequence[Record]) -> None:
        """Apply ``records`` in order; the samples of datasets already modelled are coded and
        scored together first (one coding pass per sample, one scoring pass per dataset), and
        the per-run bookkeeping then runs record by record, as :meth:`update` would. A sample
        the joint pass cannot code is left to be scored on its own, so one malformed record
        fails alone (:class:`BatchFailures`)."""
        pending: dict[DatasetKey, list[tuple[int, SampleRecord]]] = {}
        for i, rec in enumerate(records):
            if (
                isinstance(rec, SampleRecord)
                and rec.columns
                and rec.role in self.roles
                and (rec.role, rec.dataset) in self._models
            ):
                pending.setdefault((rec.role, rec.dataset), []).append((i, rec))
        scored: dict[int, _Scored] = {}
        for key, items in pending.items():
            # on failure each sample of the dataset is scored, or fails, on its own below
            with contextlib.suppress(Exception):
                scored.update(self._score_together(key, items))
        failures: list[tuple[Record, BaseException]] = []
        for i, rec in enumerate(records):
            try:
                self.update(rec, scored.get(i))
            except Exception as exc:  # noqa: BLE001 - reported with the batch
                failures.append((rec, exc))
        if failures:
            raise BatchFailures(failures)

    def _score_together(
        self, key: DatasetKey, items: list[tuple[int, SampleRecord]]
    ) -> dict[int, _Scored]:
        model = self._models[key]
        fast = self._scoring(key, model)
        codes, present, bounds = fast.coder.encode_many(
            [(rec.columns, rec.event_time) for _, rec in items]
        )
        out: dict[int, _Scored] = {}
        if (present == present[0]).all():
            scores = model.tree.column_scores(codes, present[0])
            for s, (i, _) in enumerate(items):
                a, b = bounds[s], bounds[s + 1]
                out[i] = _Scored(codes[a:b], present[0], scores[a:b])
            return out
        # samples with different columns present are scored under their own masks
        for s, (i, _) in enumerate(items):
            part = codes[bounds[s] : bounds[s + 1]]
            out[i] = _Scored(part, present[s], model.tree.column_scores(part, present[s]))
        return out

    def _scoring(self, key: DatasetKey, model: _Model) -> _Scoring:
        fast = self._fast.get(key)
        if fast is None:
            fast = self._fast[key] = _Scoring(key, model, self.history, self.min_link)
        return fast

    def _score(
        self, key: DatasetKey, model: _Model, rec: SampleRecord, scored: _Scored | None = None
    ) -> None:
        fast = self._scoring(key, model)
        if scored is None:
            codes, present = fast.coder.encode(rec.columns, rec.event_time)
            scores = model.tree.column_scores(codes, present) if len(codes) else None
        else:
            codes, present, scores = scored.codes, scored.present, scored.scores
        n = len(codes)
        if n == 0:
            return
        whole = bool(present.all())
        sums = np.add.reduce(scores, 0)
        if not whole:
            sums = np.where(present, sums, 0.0)
        model.rows_scored += n
        model.runs_scored += 1
        baseline = self._baselines(model, present, fast)
        means = sums / n
        drops = baseline - means
        live = np.flatnonzero(present) if not whole else fast.rows_all
        fast.last_mean[live] = means[live]
        fast.last_n[live] = n
        fast.stale = True
        bank = model.bank
        d = len(present)
        fired_mask = np.zeros(d, dtype=bool)
        if n >= _MIN_RUN_ROWS and fast.any_linked:
            check = present & fast.linked
            if check.any():
                fired_mask[check] = bank.violated(fast.rows[check], drops[check], n)
        fired = {j: float(drops[j]) for j in np.flatnonzero(fired_mask).tolist()}
        # The window pools the runs that passed on their own: it exists to catch a fault
        # spread too thinly over small runs, not to echo a run that already alerted.
        if whole and not fired:  # baseline is the reference: every column counts
            counts = np.full(d, n, dtype=np.int64)
            self._slide(model, fast, rec.event_time, sums, counts)
        else:
            counts = np.where(present & ~fired_mask & (baseline == fast.ref_means), n, 0)
            self._slide(model, fast, rec.event_time, np.where(counts > 0, sums, 0.0), counts)
        w_counts = fast.w_counts
        w_means = fast.window_mean
        w_means.fill(np.nan)
        np.divide(fast.w_sums, w_counts, out=w_means, where=w_counts > 0)
        # The window only speaks for faults the single runs are too small to show.
        window_hit = np.zeros(d, dtype=bool)
        if fast.any_linked:
            cand = present & fast.linked & ~fired_mask & (w_counts > n)
            if cand.any():
                window_hit[cand] = bank.violated(
                    fast.rows[cand], (fast.ref_means - w_means)[cand], w_counts[cand]
                )
        collateral = self._collateral(model, codes, present, fired) if len(fired) > 1 else {}
        run_hit = [j for j in fired if j not in collateral]
        for j in sorted({*run_hit, *np.flatnonzero(window_hit).tolist()}):
            if j in run_hit:
                self._fire(key, model, rec, j, "run", codes, scores, baseline, collateral)
            if window_hit[j]:
                self._fire(key, model, rec, j, "window", codes, scores, baseline, collateral)
        if self._book.active():
            for j in live.tolist():
                run_src, window_src = fast.sources[j]
                if j not in run_hit:
                    self._book.resolve(run_src, rec.event_time)
                if not window_hit[j]:
                    self._book.resolve(window_src, rec.event_time)
        if n >= _MIN_RUN_ROWS:
            if whole and not fired:
                bank.observe(fast.rows, drops)
            else:
                healthy = present & ~fired_mask
                bank.observe(fast.rows[healthy], drops[healthy])

    def _slide(
        self, model: _Model, fast: _Scoring, t: float, sums: np.ndarray, counts: np.ndarray
    ) -> None:
        """Add one run to the event-time window and drop the runs it has moved past."""
        model.window.append((t, sums, counts))
        fast.w_sums += sums
        fast.w_counts += counts
        fast.latest = max(fast.latest, t)
        popped = False
        while model.window and model.window[0][0] < fast.latest - self.window_s:
            _, old_sums, old_counts = model.window.popleft()
            fast.w_sums -= old_sums
            fast.w_counts -= old_counts
            popped = True
        if popped:
            fast.pops += 1
            if fast.pops % 256 == 0 or not model.window:  # rounding never accumulates
                fast.w_sums = np.sum([s for _, s, _ in model.window], 0) + np.zeros_like(sums)

    def _fire(
        self,
        key: DatasetKey,
        model: _Model,
        rec: SampleRecord,
        j: int,
        scope: str,
        codes: np.ndarray,
        scores: np.ndarray,
        baseline: np.ndarray,
        collateral: dict[int, int],
    ) -> None:
        self._scoring(key, model).sync(model)
        col = model.columns[j]
        n = len(codes)
        mean, rows = (col.last_mean, n) if scope == "run" else (col.window_mean, col.window_n)
        reference = baseline[j] if scope == "run" else col.ref_mean
        drop = reference - mean
        low, high = col.threshold.bounds(rows)
        self._book.fire(
            source=f"{key[0]}/{key[1]}/{col.name}/likelihood_{scope}",
            cls="soft",
            severity="critical" if drop > 3 * high else "warning",
            role=key[0],
            dataset=key[1],
            columns=(col.name,),
            check=f"likelihood_{scope}",
            explanation=self._explain(
                model,
                j,
                codes,
                scores,
                reference,
                drop,
                scope,
                rows,
                [model.columns[c].name for c, nb in collateral.items() if nb == j],
            ),
            run_id=rec.run_id,
            event_time=rec.event_time,
            value=drop,
            threshold=high,
            rows=rows,
            origin="input" if key[0] == "input" else "introduced",
        )

    @staticmethod
    def _baselines(model: _Model, present: np.ndarray, fast: _Scoring) -> np.ndarray:
        """Reference mean score per column under this run's set of present columns: a column
        whose neighbour is missing is scored on what is left, against the same in reference."""
        if present.all():
            return fast.ref_means
        found = fast.baselines.get(present.tobytes())
        if found is not None:
            return found
        base = fast.ref_means.copy()
        touched = [
            j
            for j in range(len(base))
            if present[j] and not all(present[b] for b in model.tree.blanket(j))
        ]
        if touched:
            ref = model.tree.column_scores(model.ref_codes.astype(np.int64), present, only=touched)
            base[touched] = np.nanmean(ref[:, touched], 0)
        if len(fast.baselines) >= 8:
            fast.baselines.pop(next(iter(fast.baselines)))
        fast.baselines[present.tobytes()] = base
        return base

    def _collateral(
        self, model: _Model, codes: np.ndarray, present: np.ndarray, fired: dict[int, float]
    ) -> dict[int, int]:
        """Fired columns that only fire through a fired neighbour.

        For two fired neighbours, each is re-scored with the other masked out: a column whose
        drop vanishes without its neighbour is collateral of the one whose drop survives.
        When both survive, both are broken; when neither does, only their relation broke and
        both stay reported.
        """

        full = present.copy()
        full[:] = True

        def survives(j: int, without: int) -> bool:
            masked = present.copy()
            masked[without] = False
            alone = model.tree.column_scores(codes, masked, only=[j])[:, j]
            ref_mask = full.copy()
            ref_mask[without] = False
            ref = model.tree.column_scores(model.ref_codes.astype(np.int64), ref_mask, only=[j])
            col = model.columns[j]
            return col.threshold.violated(float(np.mean(ref[:, j]) - np.nanmean(alone)), len(codes))

        def moved(j: int) -> float:
            """Total variation between the column's own code shares now and in the reference."""
            hist = model.columns[j].ref_hist
            now = np.bincount(codes[:, j], minlength=len(hist)) / len(codes)
            return 0.5 * float(np.abs(now - hist).sum())

        out: dict[int, int] = {}
        for j in fired:
            for b in model.tree.blanket(j):
                if b not in fired or b in out:
                    continue
                j_alone, b_alone = survives(j, b), survives(b, j)
                if not j_alone and b_alone:
                    out[j] = b
                elif (
                    not j_alone
                    and not b_alone
                    and moved(b) > max(2 * moved(j), moved(j) + _TIE_MARGIN)
                ):
                    # Only their relation broke: the column whose own values moved is the one
                    # that changed (kilometres where miles were), the other merely lost its match.
                    out[j] = b
                if j in out:
                    break
        return out

    def _explain(
        self,
        model: _Model,
        j: int,
        codes: np.ndarray,
        scores: np.ndarray,
        reference: float,
        drop: float,
        scope: str,
        rows: int,
        collateral: list[str],
    ) -> str:
        col = model.columns[j]
        blanket = model.tree.blanket(j)
        neighbours = ", ".join(model.columns[b].name for b in blanket) or "no other column"
        what = "this run" if scope == "run" else f"the last {self.window_s / 86400:g} days"
        text = (
            f"{col.name}: values are {np.exp(drop):.3g}x less likely given {neighbours} than "
            f"in healthy runs (mean log-likelihood {reference - drop:.2f} vs "
            f"{reference:.2f} nats per row over {rows} sampled rows of {what})"
        )
        if blanket and scope == "run":
            b = blanket[0]
            worst = np.argsort(scores[:, j])[: max(1, len(codes) // 10)]
            pairs = codes[worst][:, [j, b]]
            uniq, counts = np.unique(pairs, axis=0, return_counts=True)
            cj, cb = uniq[int(np.argmax(counts))]
            text += (
                f"; most surprising: {col.name} {model.coders[j].labels()[cj]} with "
                f"{model.columns[b].name} {model.coders[b].labels()[cb]}"
            )
        if collateral:
            verb = "scores" if len(collateral) == 1 else "score"
            text += f" ({', '.join(collateral)} {verb} low too, but only through {col.name})"
        return text

    # -- persistence --------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Learned state; the per-model scoring caches are derived and rebuilt on use."""
        self._sync()
        state = {k: v for k, v in self.__dict__.items() if k != "_fast"}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        super().restore(blob)
        self._fast = {}

    def _sync(self) -> None:
        for key, fast in self._fast.items():
            fast.sync(self._models[key])

    # -- feedback -----------------------------------------------------------------------------
    def mark_alert(self, alert_id: str, true_positive: bool) -> dict[str, Any]:
        """A person's verdict: a false positive widens that column's threshold and resolves
        the alert; a true positive tightens it slightly. ``KeyError`` for unknown ids."""
        alert = self._book.mark(alert_id, true_positive)
        model = self._models.get((alert.role, alert.dataset))
        cols = model.columns if model is not None else []
        col = next((c for c in cols if c.name == alert.columns[0]), None)
        if col is not None:
            col.precision.update(bool(true_positive))
            if true_positive:
                col.threshold.narrow()
            else:
                col.threshold.widen(at=alert.value, n=max(alert.rows, 1))
        return {
            "alert": alert.to_json(),
            "precision": round(col.precision.mean, 4) if col is not None else None,
        }

    # -- reporting ----------------------------------------------------------------------------
    def metrics(self) -> Iterable[Metric]:
        self._sync()
        base = self.labels()
        yield Metric(
            "mlobs_likelihood_ready",
            "gauge",
            "1 once a density model is fit for at least one dataset, else 0.",
            base,
            1.0 if self.ready else 0.0,
        )
        for (role, dataset), model in sorted(self._models.items()):
            labels = {**base, "role": role, "dataset": dataset}
            yield Metric(
                "mlobs_likelihood_rows_total",
                "counter",
                "Sampled rows scored by the density model.",
                labels,
                float(model.rows_scored),
            )
            for col in model.columns:
                for window, value in (
                    ("reference", col.ref_mean),
                    ("run", col.last_mean),
                    ("window", col.window_mean),
                ):
                    if np.isfinite(value):
                        yield Metric(
                            "mlobs_column_likelihood",
                            "gauge",
                            "Mean log-likelihood per row of a column given its neighbours "
                            "(nats; reference, latest run, sliding window).",
                            {**labels, "column": col.name, "window": window},
                            value,
                        )
        yield from self._book.metrics(base)

    def query(self, **params: Any) -> dict[str, Any]:
        """Models, per-column scores against their thresholds, and alerts."""
        self._sync()
        out = super().query()
        datasets = []
        for (role, dataset), model in self._models.items():
            cols = []
            for j, col in enumerate(model.columns):
                if params.get("column") not in (None, "", col.name):
                    continue
                cols.append(
                    {
                        "column": col.name,
                        "neighbours": [model.columns[b].name for b in model.tree.blanket(j)],
                        "link_nats": round(col.link, 4),
                        "reference": col.ref_mean,
                        "run": col.last_mean if np.isfinite(col.last_mean) else None,
                        "window": col.window_mean if np.isfinite(col.window_mean) else None,
                        "alert_above_drop": col.threshold.bounds(max(col.last_n, 1))[1],
                        "precision": round(col.precision.mean, 4),
                    }
                )
            datasets.append(
                {
                    "role": role,
                    "dataset": dataset,
                    "runs_scored": model.runs_scored,
                    "columns": cols,
                    "skipped": model.skipped,
                }
            )
        waiting = [
            {"role": r, "dataset": d, "runs": len(ref.samples), "needed": ref.runs}
            for (r, d), ref in self._references.items()
        ]
        out.update(
            ready=self.ready,
            status="scoring"
            if self.ready
            else ("waiting for reference samples; no alerts until then"),
            datasets=datasets,
            waiting=waiting,
            alerts=[a.to_json() for a in self._book.active()],
            recent_alerts=[a.to_json() for a in self._book.recent()[:50]],
            ignored_datasets=self._ignored,
        )
        return out
