"""Labelled rows as the estimators see them: bucketing features, score confidence, correctness.

Live and reference predictions go through the same conversion, so a bucket or a calibrated score
means the same thing on both sides. Numeric features become float64 (unparseable values NaN),
everything else canonical strings. The model's confidence in a prediction is the score of the
predicted class: ``scores[i, class]`` for (n, k) scores, ``s`` or ``1 - s`` for a binary model's
positive-class score ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from otel_mlobs.processor.records import PredictionBatch

CONFIDENCE = "(confidence)"
"""Pseudo-feature name under which the score confidence joins the bucketing candidates."""


def numeric_kind(arr: np.ndarray) -> bool:
    """Whether a feature column is numeric (bool counts as numeric)."""
    return np.asarray(arr).dtype.kind in "fiub"


def as_column(arr: np.ndarray | None, numeric: bool, n: int) -> np.ndarray:
    """A feature column in its canonical form; a missing column is all-missing."""
    if arr is None:
        return np.full(n, np.nan) if numeric else np.full(n, "", dtype="<U1")
    arr = np.asarray(arr)
    if numeric:
        if arr.dtype.kind in "fiub":
            return arr.astype(np.float64)
        numbers = pd.to_numeric(pd.Series(arr, copy=False), errors="coerce")
        return numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8", errors="replace")
    return arr.astype(str)


def positive_class(scores: np.ndarray, classes: tuple[str, ...], labels: np.ndarray) -> str:
    """The class a binary model's (n,) score is the probability of."""
    if len(classes) == 2:
        return str(classes[1])
    uniq = np.unique(labels)
    if uniq.size == 0:
        return "1"
    means = [float(np.nanmean(scores[labels == u])) for u in uniq]
    return str(uniq[int(np.argmax(means))])


def confidence(
    scores: np.ndarray | None, classes: tuple[str, ...], labels: np.ndarray, positive: str | None
) -> np.ndarray | None:
    """Score of each row's predicted class, or None when the batch has no usable scores."""
    if scores is None:
        return None
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2:
        if not classes or s.shape[1] != len(classes):
            return None
        col = np.searchsorted(np.sort(np.asarray(classes, dtype=str)), labels)
        order = np.argsort(np.asarray(classes, dtype=str))
        col = order[np.clip(col, 0, len(classes) - 1)]
        return s[np.arange(s.shape[0]), col]
    if s.ndim == 1 and positive is not None:
        return np.where(labels == positive, s, 1.0 - s)
    return None


@dataclass(slots=True)
class RefData:
    """Columns of labelled rows (or of live rows, with ``correct`` empty)."""

    features: dict[str, np.ndarray]
    correct: np.ndarray  # bool
    ts: np.ndarray  # float64 event times

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, rows: np.ndarray) -> RefData:
        return RefData(
            {k: v[rows] for k, v in self.features.items()},
            self.correct[rows] if self.correct.size else self.correct,
            self.ts[rows],
        )


def batch_columns(
    batch: PredictionBatch,
    labels: np.ndarray,
    rows: np.ndarray,
    kinds: dict[str, bool],
    positive: str | None,
) -> dict[str, np.ndarray]:
    """The features named in ``kinds`` (name -> numeric?) of a batch's ``rows``."""
    n = rows.shape[0]
    out: dict[str, np.ndarray] = {}
    for name, numeric in kinds.items():
        if name == CONFIDENCE:
            conf = confidence(batch.scores, batch.classes, labels, positive)
            out[name] = np.full(n, np.nan) if conf is None else np.asarray(conf)[rows]
            continue
        col = batch.features.get(name)
        out[name] = as_column(None if col is None else np.asarray(col)[rows], numeric, n)
    return out
