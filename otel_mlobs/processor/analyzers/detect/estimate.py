"""The labelled reference set and the label-free accuracy estimator fitted on it."""

from __future__ import annotations

from typing import Any

import numpy as np

from otel_mlobs.processor.records import PredictionBatch


class AccuracyModel:
    """Per-row P(correct) for live predictions (filled in by :meth:`ReferenceSet.fit`)."""

    n_buckets: int
    bucket_var: np.ndarray

    def assign(self, batch: PredictionBatch, rows: np.ndarray):
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"available": True}


class ReferenceSet:
    """Bounded store of labelled reference rows; says why no estimator exists yet."""

    def __init__(self, max_rows: int = 50_000) -> None:
        self.max_rows = max_rows
        self.dirty = False
        self.reason = "no reference prediction set received yet"

    def add(self, batch: PredictionBatch, labels: np.ndarray) -> None:
        self.dirty = True

    def fit(self, max_buckets: int) -> AccuracyModel | None:
        self.dirty = False
        self.reason = "label-free estimator not built yet"
        return None
