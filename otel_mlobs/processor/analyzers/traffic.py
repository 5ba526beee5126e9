"""Prediction and feedback traffic of one model: volumes, score distribution, latest event times.

Volumes answer "is the model serving, and are labels coming back?"; the score histogram is the
first label-free signal that the model's inputs moved; the latest event times show where
feedback is stuck.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from otel_mlobs import semconv as sc
from otel_mlobs.processor.analyzers.base import Analyzer, Metric
from otel_mlobs.processor.analyzers.histogram import FixedHistogram
from otel_mlobs.processor.records import FeedbackBatch, Key, PredictionBatch, Record

SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 .. 1.0


class TrafficAnalyzer(Analyzer):
    """Prediction and feedback counters and the score histogram of one (pipeline, model).

    Parameters
    ----------
    key
        ``Key(pipeline, "", model)``: predictions (logged inside some component) and feedback
        (logged elsewhere) of one model meet here.
    score_buckets
        Upper bounds of the score histogram. Scores are the positive-class score for binary
        models and the top class score for multi-class ones, so 0-1 buckets fit both.
    """

    name: ClassVar[str] = "traffic"
    accepts: ClassVar[tuple[type, ...]] = (PredictionBatch, FeedbackBatch)

    def __init__(self, key: Key, score_buckets: Sequence[float] = SCORE_BUCKETS) -> None:
        super().__init__(key)
        self.score_buckets = tuple(score_buckets)
        self._scores = {s: FixedHistogram(self.score_buckets) for s in sc.PRED_SETS}
        self._predictions = dict.fromkeys(sc.PRED_SETS, 0)
        self._feedback = 0
        self._last_prediction: float | None = None
        self._last_feedback: float | None = None

    @classmethod
    def key_for(cls, record: Record) -> Key:
        return Key(record.key.pipeline, "", record.key.model)

    def update(self, record: Record) -> None:
        if isinstance(record, PredictionBatch):
            pred_set = sc.PRED_SET_REFERENCE if record.reference else sc.PRED_SET_LIVE
            self._predictions[pred_set] += len(record)
            if record.scores is not None and record.scores.size:
                scores = record.scores if record.scores.ndim == 1 else record.scores.max(axis=1)
                self._scores[pred_set].observe(scores)
            self._last_prediction = _latest(self._last_prediction, record.timestamps)
        elif isinstance(record, FeedbackBatch):
            self._feedback += len(record)
            self._last_feedback = _latest(self._last_feedback, record.timestamps)

    @property
    def predictions(self) -> int:
        """Predictions seen, live and reference."""
        return sum(self._predictions.values())

    @property
    def feedback(self) -> int:
        """Feedback labels seen."""
        return self._feedback

    def metrics(self) -> Iterable[Metric]:
        base = self.labels()
        for pred_set, n in self._predictions.items():
            if n:
                yield Metric(
                    "mlobs_predictions_total",
                    "counter",
                    "Predictions logged, by set (live traffic or labelled reference).",
                    {**base, "set": pred_set},
                    float(n),
                )
        if self._feedback:
            yield Metric(
                "mlobs_feedback_total",
                "counter",
                "Ground-truth labels received for the model's predictions.",
                base,
                float(self._feedback),
            )
        for pred_set, hist in self._scores.items():
            if hist.count:
                yield Metric(
                    "mlobs_prediction_score",
                    "histogram",
                    "Prediction scores (positive-class, or top class for multi-class models).",
                    {**base, "set": pred_set},
                    hist.value(),
                )
        for name, value, help_text in (
            ("predictions", self._last_prediction, "the latest prediction"),
            ("feedback", self._last_feedback, "the latest feedback label"),
        ):
            if value is not None:
                yield Metric(
                    f"mlobs_{name}_last_event_time_seconds",
                    "gauge",
                    f"Event time (s since epoch) of {help_text}.",
                    base,
                    value,
                    unit="seconds",
                )

    def query(self, **params: Any) -> dict[str, Any]:
        return {
            **super().query(**params),
            "predictions": dict(self._predictions),
            "feedback": self._feedback,
            "last_prediction_event_time": self._last_prediction,
            "last_feedback_event_time": self._last_feedback,
        }


def _latest(current: float | None, timestamps: np.ndarray) -> float | None:
    finite = timestamps[np.isfinite(timestamps)]
    if not finite.size:
        return current
    newest = float(finite.max())
    return newest if current is None else max(current, newest)
