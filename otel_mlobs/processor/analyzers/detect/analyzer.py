"""``ModelAccuracyAnalyzer``: how accurate a deployed model is now, with or without labels.

One instance per (pipeline, model): :meth:`key_for` drops the component so that predictions
(logged inside an inference run) and feedback (logged anywhere) meet here. It

* joins predictions with feedback under a memory budget (:mod:`.join`) and keeps realized accuracy
  per event-time pane (:mod:`.panes`) over sliding 1h / 1d / 7d windows and daily history;
* learns from labelled reference batches a label-free estimator (:mod:`.estimate`) and applies it
  to every live prediction;
* combines both, bucket by bucket, where only some labels arrived (:mod:`.combined`);
* tracks feedback delay and the predictions now overdue (:mod:`.delays`);
* correlates business KPIs (``mlobs.kpi`` events) with accuracy pane by pane (:mod:`.kpi`).

Usage::

    a = ModelAccuracyAnalyzer(Key("taxi", "", "tip_model"), max_pending=100_000)
    a.update(prediction_batch); a.update(feedback_batch)
    a.query(window="1d")["realized"]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from otel_mlobs.processor.analyzers.base import Analyzer, Histogram, Metric
from otel_mlobs.processor.analyzers.detect import layout as L
from otel_mlobs.processor.analyzers.detect.combined import WindowFigures, figures
from otel_mlobs.processor.analyzers.detect.delays import DelayTracker
from otel_mlobs.processor.analyzers.detect.estimate import AccuracyModel, ReferenceSet
from otel_mlobs.processor.analyzers.detect.hashing import hash_ids
from otel_mlobs.processor.analyzers.detect.join import (
    DROP_REASONS,
    UNJOINED_REASONS,
    Joined,
    PredictionJoin,
)
from otel_mlobs.processor.analyzers.detect.kpi import KPI_WINDOWS, KpiTracker, correlation
from otel_mlobs.processor.analyzers.detect.labels import ClassTable
from otel_mlobs.processor.analyzers.detect.panes import PaneRing
from otel_mlobs.processor.records import (
    FeedbackBatch,
    Key,
    KpiRecord,
    PredictionBatch,
    Record,
)


class ModelAccuracyAnalyzer(Analyzer):
    """Realized, estimated and combined accuracy of one model over event-time windows.

    Parameters
    ----------
    max_pending
        Memory budget of the join: predictions waiting for feedback. Exact below it, a uniform
        hash sample of ids above it.
    max_buckets
        Most buckets a bucketing scheme of the estimator may use.
    history_days
        Daily panes kept for :meth:`query`'s daily series.
    orphan_capacity, orphan_ttl_s
        Feedback held while its prediction may still arrive: at most this many rows, this long.
    pending_ttl_s
        A prediction unanswered this long after its event time stops waiting.
    n_levels
        Deepest sampling level: the smallest inclusion probability is ``2**-n_levels``.
    """

    name: ClassVar[str] = "model_accuracy"
    accepts: ClassVar[tuple[type, ...]] = (PredictionBatch, FeedbackBatch, KpiRecord)

    def __init__(
        self,
        key: Key,
        *,
        max_pending: int = 100_000,
        max_buckets: int = 24,
        history_days: int = 30,
        orphan_capacity: int = 10_000,
        orphan_ttl_s: float = 3600.0,
        pending_ttl_s: float = 7 * 86400.0,
        n_levels: int = 12,
        reference_rows: int = 50_000,
    ) -> None:
        super().__init__(key)
        if max_buckets < 2:
            raise ValueError(f"max_buckets must be >= 2, got {max_buckets}")
        if history_days < 1:
            raise ValueError(f"history_days must be >= 1, got {history_days}")
        self.max_pending = max_pending
        self.max_buckets = max_buckets
        self.history_days = history_days
        self.n_levels = n_levels
        self._join = PredictionJoin(
            max_pending,
            n_levels=n_levels,
            orphan_capacity=orphan_capacity,
            orphan_ttl_s=orphan_ttl_s,
            pending_ttl_s=pending_ttl_s,
            payload={"bucket": np.int16, "est": np.float64},
        )
        self._n_buckets = 2 * max_buckets + 1  # two generations of buckets + "no estimate"
        self._noest = self._n_buckets - 1
        slots = (13, 169, history_days + 1)
        self._rings = [
            PaneRing(w, s, self._n_buckets, L.N_LIVE, n_levels + 1, L.N_JOINED)
            for w, s in zip(L.RING_WIDTHS, slots, strict=True)
        ]
        self._classes = ClassTable()
        self._delays = DelayTracker()
        self._kpi = KpiTracker(history_days)
        self._reference = ReferenceSet(max_rows=reference_rows)
        self._model: AccuracyModel | None = None
        self._generation = 0
        self._bucket_var = np.zeros(self._n_buckets)  # reference variance of each bucket's rate
        self._now = -np.inf  # latest live prediction time
        self._joined = 0
        self._correct = 0
        self._rejected = 0  # prediction rows with a bad timestamp
        self._cache: dict[str, WindowFigures] | None = None
        self._kpi_cache: dict[str, dict[str, tuple[float | None, int]]] | None = None

    @classmethod
    def key_for(cls, record: Record) -> Key:
        """Model-level key: predictions and feedback of a model meet whatever the component."""
        return Key(record.key.pipeline, "", record.key.model)

    # ---- ingestion ---------------------------------------------------------------------------
    def update(self, record: Record) -> None:
        """Consume a prediction batch (live or reference) or a feedback batch."""
        if isinstance(record, PredictionBatch):
            if record.reference:
                self._update_reference(record)
            else:
                self._update_predictions(record)
        elif isinstance(record, FeedbackBatch):
            self._update_feedback(record)
        elif isinstance(record, KpiRecord):
            self._kpi.add(record.name, float(record.value), float(record.event_time))
        else:
            raise TypeError(f"{self.name} does not accept {type(record).__name__}")
        self._cache = None
        self._kpi_cache = None

    def _predicted_labels(self, b: PredictionBatch) -> np.ndarray:
        if b.labels is not None:
            return np.asarray(b.labels)
        if b.scores is not None and b.classes:
            scores = np.asarray(b.scores, dtype=np.float64)
            classes = np.asarray(b.classes, dtype=str)
            if scores.ndim == 2 and scores.shape[1] == classes.size:
                return classes[np.argmax(scores, axis=1)]
            if scores.ndim == 1 and classes.size == 2:
                return classes[(scores >= 0.5).astype(np.int64)]
        raise ValueError(
            f"prediction batch of model {b.key.model!r} has no predicted labels and no scores "
            "with classes to derive them from"
        )

    @staticmethod
    def _check_lengths(kind: str, n: int, **arrays: np.ndarray | None) -> None:
        for name, arr in arrays.items():
            if arr is not None and len(arr) != n:
                raise ValueError(f"{kind}: {name} has {len(arr)} rows, ids have {n}")

    def _update_reference(self, b: PredictionBatch) -> None:
        labels = self._predicted_labels(b)
        n = len(b.ids)
        if b.true_labels is None:
            raise ValueError("reference prediction batch carries no true_labels")
        self._check_lengths("reference batch", n, labels=labels, true_labels=b.true_labels)
        self._classes.declare(b.classes)
        self._classes.observe(self._classes.encode(labels))
        self._classes.observe(self._classes.encode(b.true_labels))
        self._reference.add(b, labels)

    def _update_predictions(self, b: PredictionBatch) -> None:
        labels = self._predicted_labels(b)
        n = len(b.ids)
        ts = np.asarray(b.timestamps, dtype=np.float64)
        self._check_lengths("prediction batch", n, labels=labels, timestamps=ts)
        self._maybe_fit()
        good = np.isfinite(ts)
        if not good.all():
            self._rejected += int((~good).sum())
        rows = np.flatnonzero(good)
        if rows.size == 0:
            return
        self._classes.declare(b.classes)
        codes = self._classes.encode(labels[rows])
        self._classes.observe(codes)
        keys = hash_ids(np.asarray(b.ids)[rows])
        ts = ts[rows]
        bucket, est, stats = self._estimate(b, labels, rows)
        for ring in self._rings:
            ring.add_live(ts, bucket, stats)
        self._now = max(self._now, float(ts.max()))
        self._join.advance(float(ts.max()))
        level = self._join.level
        joined = self._join.add_predictions(keys, ts, codes, {"bucket": bucket, "est": est})
        self._drop_bands(level)
        self._on_joined(joined)

    def _update_feedback(self, b: FeedbackBatch) -> None:
        n = len(b.ids)
        ts = np.asarray(b.timestamps, dtype=np.float64)
        self._check_lengths("feedback batch", n, labels=b.labels, timestamps=ts)
        if n == 0:
            return
        codes = self._classes.encode(np.asarray(b.labels), learn=not self._classes.known)
        good = self._classes.is_valid(codes) & np.isfinite(ts)
        self._join.dropped["invalid_label"] += int((~good).sum())
        rows = np.flatnonzero(good)
        if rows.size == 0:
            return
        self._join.advance(float(ts[rows].max()))
        joined = self._join.add_feedback(hash_ids(np.asarray(b.ids)[rows]), codes[rows], ts[rows])
        self._on_joined(joined)

    def _drop_bands(self, old_level: int) -> None:
        """The join sampled deeper: drop the same bands from every pane."""
        for band in range(old_level, self._join.level):
            for ring in self._rings:
                ring.drop_band(band)

    def _on_joined(self, j: Joined) -> None:
        if len(j) == 0:
            return
        valid = self._classes.is_valid(j.true)  # feedback held before any class was known
        if not valid.all():
            self._join.dropped["invalid_label"] += int((~valid).sum())
            j = Joined(
                j.pred_ts[valid], j.feedback_ts[valid], j.predicted[valid], j.true[valid],
                j.band[valid], {k: v[valid] for k, v in j.payload.items()},
            )  # fmt: skip
        correct = j.correct
        est = j.payload["est"]
        has_est = np.isfinite(est)
        stats = np.empty((len(j), L.N_JOINED))
        stats[:, L.J_J] = 1.0
        stats[:, L.J_C] = correct
        stats[:, L.J_E] = np.where(has_est, est, 0.0)
        stats[:, L.J_NEST] = has_est
        bucket = j.payload["bucket"].astype(np.int64)
        for ring in self._rings:
            ring.add_joined(j.pred_ts, j.band, bucket, stats)
        self._joined += len(j)
        self._correct += int(correct.sum())
        self._delays.add(j.feedback_ts - j.pred_ts)

    # ---- estimation --------------------------------------------------------------------------
    def _estimate(self, b: PredictionBatch, labels: np.ndarray, rows: np.ndarray):
        """Bucket, blended estimate and live pane stats of each live row."""
        n = rows.size
        stats = np.zeros((n, L.N_LIVE))
        stats[:, L.L_N] = 1.0
        model = self._model
        if model is None:
            return np.full(n, self._noest, dtype=np.int64), np.full(n, np.nan), stats
        local, e_iw, e_cal, e = model.assign(b, labels, rows)
        bucket = local.astype(np.int64) + self._bucket_offset()
        stats[:, L.L_NEST] = 1.0
        stats[:, L.L_S] = e
        stats[:, L.L_Q] = e * (1.0 - e)
        stats[:, L.L_S_IW] = e_iw
        if e_cal is not None:
            stats[:, L.L_S_CAL] = e_cal
            stats[:, L.L_NCAL] = 1.0
        return bucket, e, stats

    def _bucket_offset(self) -> int:
        return (self._generation % 2) * self.max_buckets

    def _maybe_fit(self) -> None:
        """Refit the estimator when the reference changed (bounded: once per reference change)."""
        if not self._reference.dirty:
            return
        model = self._reference.fit(max_buckets=self.max_buckets)
        if model is None:
            return
        self._install(model)

    def _install(self, model: AccuracyModel) -> None:
        """Start a new generation of buckets, recycling the half used two generations ago."""
        self._generation += 1
        off = self._bucket_offset()
        half = slice(off, off + self.max_buckets)
        for ring in self._rings:
            ring.clear_buckets(half)
        bucket = self._join.payload["bucket"]
        stale = (bucket >= off) & (bucket < off + self.max_buckets)
        bucket[stale] = self._noest
        self._join.payload["est"][stale] = np.nan
        self._bucket_var[half] = 0.0
        self._bucket_var[off : off + model.n_buckets] = model.bucket_var
        self._model = model

    def refresh(self) -> None:
        """Fit the estimator off the receiving path if a new reference is waiting."""
        self._maybe_fit()
        self._cache = None
        self._kpi_cache = None

    # ---- results -----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> float:
        """Inclusion probability of the join's sample."""
        return self._join.sample_rate

    def window(self, name: str) -> WindowFigures:
        """Realized, estimated and combined accuracy over a named window ending now."""
        if name not in L.WINDOWS:
            raise ValueError(f"Invalid window {name!r}. Valid values are: {sorted(L.WINDOWS)}")
        if self._cache is None:
            self._cache = {}
        if name not in self._cache:
            ring_i, n_panes = L.WINDOWS[name]
            ring = self._rings[ring_i]
            if np.isfinite(self._now):
                live, joined = ring.window(int(ring.pane_of(np.array([self._now]))[0]), n_panes)
            else:
                live, joined = ring.live[0] * 0, ring.joined[0] * 0
            self._cache[name] = self._figures(live, joined)
        return self._cache[name]

    def _figures(self, live: np.ndarray, joined: np.ndarray) -> WindowFigures:
        return figures(
            live,
            joined,
            level=self._join.level,
            bucket_var=self._bucket_var,
            noest=self._noest,
            reason=self._reference.reason if self._model is None else "",
        )

    def daily(self) -> list[dict[str, Any]]:
        """Per-day figures (UTC days by prediction event time), oldest first."""
        ring = self._rings[L.DAILY_RING]
        out = []
        for pane, live, joined in ring.panes():
            f = self._figures(live, joined)
            out.append({"day_start": pane * ring.width_s, **f.as_dict()})
        return out

    def _pane_accuracy(self, ring_i: int, panes: np.ndarray) -> np.ndarray:
        """Combined accuracy of each pane (realized where no estimate exists), NaN if neither."""
        ring = self._rings[ring_i]
        out = np.full(panes.shape[0], np.nan)
        for i, pane in enumerate(panes.tolist()):
            tables = ring.get(pane)
            if tables is None:
                continue
            f = self._figures(*tables)
            best = f.combined or f.realized
            if best is not None:
                out[i] = best.value
        return out

    def kpi_correlations(self) -> dict[str, dict[str, tuple[float | None, int]]]:
        """Per KPI and window: (Pearson correlation of pane KPI mean and accuracy, panes used)."""
        if self._kpi_cache is not None:
            return self._kpi_cache
        out: dict[str, dict[str, tuple[float | None, int]]] = {}
        if self._kpi.names and np.isfinite(self._now):
            for window, (kpi_ring, n_panes) in KPI_WINDOWS.items():
                ring_i = 1 if kpi_ring == 0 else L.DAILY_RING
                ring = self._rings[ring_i]
                end = int(ring.pane_of(np.array([self._now]))[0])
                panes = np.arange(end - n_panes + 1, end + 1)
                acc = self._pane_accuracy(ring_i, panes)
                for name in self._kpi.names:
                    kpi = self._kpi.means(name, kpi_ring, panes)
                    out.setdefault(name, {})[window] = correlation(kpi, acc)
        self._kpi_cache = out
        return out

    def metrics(self) -> Iterable[Metric]:
        """Counters, windowed gauges and the join's health."""
        yield from self._join_metrics()
        for name in L.WINDOWS:
            yield from self._window_metrics(name, self.window(name))
        yield from self._delay_metrics()
        for kpi, windows in self.kpi_correlations().items():
            for window, (r, n) in windows.items():
                yield self._m("mlobs_model_kpi_correlation_panes", "gauge",
                              "Panes with both a KPI value and an accuracy figure.", float(n),
                              kpi=kpi, window=window)  # fmt: skip
                if r is not None:
                    yield self._m("mlobs_model_kpi_accuracy_correlation", "gauge",
                                  "Pearson correlation of a business KPI with accuracy across "
                                  "event-time panes (hours for 7d, days for 30d).", r,
                                  kpi=kpi, window=window)  # fmt: skip

    def _m(self, name: str, kind: str, help: str, value: float, **labels: str) -> Metric:
        return Metric(name, kind, help, self.labels(**labels), value)  # type: ignore[arg-type]

    def _join_metrics(self) -> Iterable[Metric]:
        j = self._join
        yield self._m("mlobs_model_joined_total", "counter",
                      "Predictions joined with their feedback (in the join's sample).",
                      float(self._joined))  # fmt: skip
        yield self._m("mlobs_model_correct_total", "counter",
                      "Joined predictions that were correct.", float(self._correct))  # fmt: skip
        yield self._m("mlobs_model_join_sample_rate", "gauge",
                      "Inclusion probability of an id in the join's sample (1 = exact).",
                      j.sample_rate)  # fmt: skip
        yield self._m(
            "mlobs_model_pending_predictions",
            "gauge",
            "Predictions in the sample waiting for feedback.",
            float(j.pending),
        )
        yield self._m("mlobs_model_held_feedback", "gauge",
                      "Feedback rows held while their prediction may still arrive.",
                      float(j.held))  # fmt: skip
        yield self._m("mlobs_model_duplicate_predictions_total", "counter",
                      "Prediction ids seen again while pending; the later one wins.",
                      float(j.duplicates))  # fmt: skip
        yield self._m("mlobs_model_rejected_predictions_total", "counter",
                      "Prediction rows rejected for a missing or non-finite timestamp.",
                      float(self._rejected))  # fmt: skip
        for reason in DROP_REASONS:
            yield self._m("mlobs_model_feedback_dropped_total", "counter",
                          "Feedback rows that joined nothing, by reason.",
                          float(j.dropped[reason]), reason=reason)  # fmt: skip
        for reason in UNJOINED_REASONS:
            yield self._m("mlobs_model_unjoined_predictions_total", "counter",
                          "Predictions that left the join without feedback, by reason.",
                          float(j.unjoined[reason]), reason=reason)  # fmt: skip

    def _window_metrics(self, window: str, f: WindowFigures) -> Iterable[Metric]:
        yield self._m(
            "mlobs_model_window_joined",
            "gauge",
            "Joined predictions made in the window (sample).",
            f.joined,
            window=window,
        )
        yield self._m("mlobs_model_window_correct", "gauge",
                      "Correct joined predictions made in the window (sample).", f.correct,
                      window=window)  # fmt: skip
        yield self._m(
            "mlobs_model_window_predictions",
            "gauge",
            "Live predictions made in the window.",
            f.predictions,
            window=window,
        )
        if f.realized is not None:
            yield self._m("mlobs_model_realized_accuracy", "gauge",
                          "Accuracy of the joined predictions made in the window.",
                          f.realized.value, window=window)  # fmt: skip
        for method, est in f.methods().items():
            yield self._m("mlobs_model_accuracy", "gauge",
                          "Accuracy of the window's predictions, by method.", est.value,
                          method=method, window=window)  # fmt: skip
            yield self._m("mlobs_model_accuracy_lower", "gauge",
                          "Lower bound (95%) of mlobs_model_accuracy.", est.lower,
                          method=method, window=window)  # fmt: skip
            yield self._m("mlobs_model_accuracy_upper", "gauge",
                          "Upper bound (95%) of mlobs_model_accuracy.", est.upper,
                          method=method, window=window)  # fmt: skip

    def _delay_metrics(self) -> Iterable[Metric]:
        buckets, total = self._delays.histogram()
        yield self._m("mlobs_model_feedback_delay_seconds", "histogram",
                      "Feedback event time minus prediction event time of joined pairs.",
                      Histogram(buckets, total))  # fmt: skip
        used, ts = self._join.pending_view()
        overdue = self._delays.overdue(used, ts, self._now)
        if overdue is not None:
            yield self._m(
                "mlobs_model_overdue_predictions",
                "gauge",
                "Pending predictions older than the historical p95 feedback delay "
                "(denominator: mlobs_model_pending_predictions).",
                float(overdue),
            )
            yield self._m("mlobs_model_feedback_delay_p95_seconds", "gauge",
                          "Historical p95 feedback delay that defines overdue.",
                          float(self._delays.quantile_value() or 0.0))  # fmt: skip

    def query(self, **params: Any) -> dict[str, Any]:
        """State for the API: ``window=`` one of 1h/1d/7d (all when absent), ``daily=True``."""
        out = super().query()
        windows = [params["window"]] if params.get("window") else list(L.WINDOWS)
        out["windows"] = {w: self.window(w).as_dict() for w in windows}
        j = self._join
        out["join"] = {
            "sample_rate": j.sample_rate,
            "pending": j.pending,
            "held_feedback": j.held,
            "joined_total": self._joined,
            "correct_total": self._correct,
            "duplicates": j.duplicates,
            "dropped": dict(j.dropped),
            "unjoined": dict(j.unjoined),
        }
        out["feedback_delay_p95_s"] = self._delays.quantile_value()
        out["estimator"] = (
            self._model.describe() if self._model is not None
            else {"available": False, "reason": self._reference.reason}
        )  # fmt: skip
        out["kpi"] = {
            kpi: {w: {"correlation": r, "panes": n} for w, (r, n) in windows.items()}
            for kpi, windows in self.kpi_correlations().items()
        }
        out["kpi_rejected"] = self._kpi.rejected
        if params.get("daily"):
            out["daily"] = self.daily()
        return out
