"""The labelled reference set and the label-free accuracy estimator chosen on it.

Reference batches (``reference=True``: typically the validation split logged at training, with
true labels) are kept up to ``max_rows`` rows (the rows with the smallest id hashes: a uniform,
deterministic subset). Fitting then

1. scores every bucketing candidate (:mod:`.buckets`) on four objectives: space (buckets),
   sparsity (smallest reference support of a bucket), variance of accuracy across buckets, and
   predictiveness (Brier score of the bucket accuracy on held-out reference *time slices*,
   fitted on the others);
2. keeps the candidates within the space budget and minimum support, and among those within one
   standard error of the best held-out Brier score picks the fewest buckets, then the largest
   variance (the one-standard-error rule: the simplest scheme as good as the best);
3. fits the calibrated-score estimator (:mod:`.calibrated`) when scores exist, and chooses the
   blend weight of the two estimators on the same held-out slices.

The importance-weighting estimate of a window is then sum over buckets of (live count x
reference accuracy) / live count: the reference accuracy of each bucket re-weighted to the live
mix of buckets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from otel_mlobs.processor.analyzers.detect.buckets import (
    AccuracyTable,
    Scheme,
    SingleScheme,
    candidates,
    pair_candidates,
)
from otel_mlobs.processor.analyzers.detect.calibrated import CalibratedConfidence
from otel_mlobs.processor.analyzers.detect.hashing import hash_ids
from otel_mlobs.processor.analyzers.detect.refdata import (
    CONFIDENCE,
    RefData,
    as_column,
    batch_columns,
    confidence,
    numeric_kind,
    positive_class,
)
from otel_mlobs.processor.records import PredictionBatch

BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


class ConstantScheme(Scheme):
    """One bucket: the reference accuracy, whatever the live mix (the baseline candidate)."""

    name = "constant"
    columns = ()
    n_buckets = 1

    def fit(self, data: RefData) -> ConstantScheme:
        return self

    def cells(self, features):
        n = next(iter(features.values())).shape[0] if features else 0
        return np.zeros(n, dtype=np.int64), None

    def describe(self):
        return {"kind": "constant"}


class AccuracyModel:
    """A fitted estimator: per live row, its bucket and P(correct) by each method."""

    def __init__(
        self,
        scheme: Scheme,
        table: AccuracyTable,
        calibrator: CalibratedConfidence | None,
        weight: float,
        kinds: dict[str, bool],
        positive: str | None,
        report: dict[str, Any],
    ) -> None:
        self.scheme = scheme
        self.table = table
        self.calibrator = calibrator
        self.weight = weight  # of the bucket estimate in the blend
        self.positive = positive
        need = set(scheme.columns) | ({CONFIDENCE} if calibrator is not None else set())
        self.kinds = {k: v for k, v in kinds.items() if k in need}
        self.report = report

    @property
    def n_buckets(self) -> int:
        return self.scheme.n_buckets

    @property
    def bucket_var(self) -> np.ndarray:
        """Variance of each bucket's reference accuracy (the reference part of the band)."""
        return self.table.var

    def assign(self, batch: PredictionBatch, labels: np.ndarray, rows: np.ndarray):
        """``(bucket, bucket estimate, calibrated estimate or None, blended estimate)``."""
        feats = batch_columns(batch, labels, rows, self.kinds, self.positive)
        n = rows.shape[0]
        if self.scheme.columns:
            cells = np.clip(self.scheme.cells(feats)[0], 0, self.n_buckets - 1)
        else:
            cells = np.zeros(n, dtype=np.int64)
        e_iw = self.table.acc[cells]
        e_cal = None
        e = e_iw
        if self.calibrator is not None:
            e_cal = self.calibrator.predict(feats[CONFIDENCE])
            e_cal = np.where(np.isfinite(e_cal), e_cal, e_iw)
            e = self.weight * e_iw + (1.0 - self.weight) * e_cal
        return cells, e_iw, e_cal, e

    def describe(self) -> dict[str, Any]:
        return {
            "available": True,
            "scheme": self.scheme.name,
            "bucketing": self.scheme.describe(),
            "buckets": self.n_buckets,
            "bucket_accuracy": self.table.acc.round(4).tolist(),
            "bucket_support": self.table.support.astype(int).tolist(),
            "calibrated": None if self.calibrator is None else self.calibrator.describe(),
            "blend_weight_buckets": self.weight,
            **self.report,
        }


def _folds(ts: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Fold of each row: consecutive time slices, or hash order when times do not vary."""
    order = np.argsort(ts, kind="stable") if np.ptp(ts) > 0 else np.argsort(keys)
    fold = np.empty(ts.shape[0], dtype=np.int64)
    fold[order] = np.arange(ts.shape[0]) * k // ts.shape[0]
    return fold


def _brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


class ReferenceSet:
    """Bounded store of labelled reference rows; fits the estimator and says why it cannot."""

    def __init__(
        self,
        max_rows: int = 50_000,
        min_rows: int = 200,
        min_support: int = 30,
        n_folds: int = 4,
        tolerance: float = 0.0,
    ) -> None:
        if max_rows < min_rows:
            raise ValueError(f"max_rows ({max_rows}) must be >= min_rows ({min_rows})")
        self.max_rows = max_rows
        self.min_rows = min_rows
        self.min_support = min_support
        self.n_folds = n_folds
        self.tolerance = tolerance
        self.dirty = False
        self.reason = "no reference prediction set received yet"
        self._reset("")

    def _reset(self, version: str) -> None:
        self._version = version
        self._kinds: dict[str, bool] | None = None
        self._positive: str | None = None
        self._cols: dict[str, np.ndarray] = {}
        self._correct = np.zeros(0, dtype=bool)
        self._ts = np.zeros(0)
        self._keys = np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return int(self._ts.shape[0])

    def add(self, batch: PredictionBatch, labels: np.ndarray) -> None:
        """Keep a reference batch's rows (a new model version starts a new reference)."""
        if batch.model_version != self._version and len(self):
            self._reset(batch.model_version)
        self._version = batch.model_version
        n = len(batch.ids)
        labels = np.asarray(labels).astype(str)
        if self._kinds is None:
            self._kinds = {k: numeric_kind(v) for k, v in batch.features.items()}
            scores = None if batch.scores is None else np.asarray(batch.scores, dtype=float)
            if scores is not None and scores.ndim == 1:
                self._positive = positive_class(scores, batch.classes, labels)
            conf = confidence(batch.scores, batch.classes, labels, self._positive)
            if conf is not None:
                self._kinds[CONFIDENCE] = True
        rows = np.arange(n)
        cols = batch_columns(batch, labels, rows, self._kinds, self._positive)
        correct = labels == np.asarray(batch.true_labels).astype(str)
        ts = np.asarray(batch.timestamps, dtype=np.float64)
        ts = np.where(np.isfinite(ts), ts, 0.0) if ts.shape[0] == n else np.zeros(n)
        keys = hash_ids(np.asarray(batch.ids))
        self._cols = {k: np.concatenate([self._cols[k], v]) if k in self._cols else v
                      for k, v in cols.items()}  # fmt: skip
        self._correct = np.concatenate([self._correct, correct])
        self._ts = np.concatenate([self._ts, ts])
        self._keys = np.concatenate([self._keys, keys])
        if len(self) > self.max_rows:
            keep = np.sort(np.argpartition(self._keys, self.max_rows - 1)[: self.max_rows])
            self._cols = {k: v[keep] for k, v in self._cols.items()}
            self._correct, self._ts, self._keys = (
                self._correct[keep], self._ts[keep], self._keys[keep]
            )  # fmt: skip
        self.dirty = True

    def data(self) -> RefData:
        return RefData(dict(self._cols), self._correct, self._ts)

    # ---- fitting -----------------------------------------------------------------------------
    def fit(self, max_buckets: int) -> AccuracyModel | None:
        """Choose and fit the estimator; None (with :attr:`reason`) when it cannot."""
        self.dirty = False
        if len(self) < self.min_rows:
            self.reason = (
                f"reference prediction set has {len(self)} labelled rows; "
                f"the estimator needs at least {self.min_rows}"
            )
            return None
        assert self._kinds is not None
        data = self.data()
        y = data.correct.astype(np.float64)
        fold = _folds(data.ts, self._keys, self.n_folds)
        kinds = {k: v for k, v in self._kinds.items() if k in data.features}
        rows_per_fold = len(data) * (self.n_folds - 1) // self.n_folds
        pool = [ConstantScheme(), *candidates(kinds, max_buckets, self.min_support, rows_per_fold)]
        scored = [self._score(s, data, y, fold) for s in pool]
        singles = [r for r in scored if isinstance(r["scheme"], SingleScheme)]
        best_per_col: dict[str, float] = {}
        for r in singles:
            col = r["scheme"].columns[0]
            best_per_col[col] = min(best_per_col.get(col, np.inf), r["brier"])
        ranked = sorted(best_per_col, key=best_per_col.get)
        for s in pair_candidates([(c, kinds[c]) for c in ranked], max_buckets, self.min_support):
            scored.append(self._score(s, data, y, fold))
        chosen = self._choose(scored, max_buckets)
        calibrator, cal_pred, cal_report = self._calibrate(data, y, fold)
        weight, blend_report = 1.0, {}
        if calibrator is not None:
            weight, blend_report = self._blend(chosen["heldout"], cal_pred, y, fold)
        scheme = chosen["scheme"].fit(data)
        table = AccuracyTable.fit(scheme, data)
        report = {
            "reference_rows": len(self),
            "reference_accuracy": float(y.mean()),
            "candidates": [
                {k: v for k, v in r.items() if k not in ("scheme", "heldout")} for r in scored
            ],
            "calibration": cal_report,
            **blend_report,
        }
        self.reason = ""
        return AccuracyModel(scheme, table, calibrator, weight, kinds, self._positive, report)

    def _score(self, scheme: Scheme, data: RefData, y: np.ndarray, fold: np.ndarray) -> dict:
        """Held-out predictions and the four objectives of one candidate."""
        heldout = np.empty(len(data))
        slice_err = []
        for f in range(self.n_folds):
            test = fold == f
            train = data.take(np.flatnonzero(~test))
            fitted = scheme.fit(train)
            table = AccuracyTable.fit(fitted, train)
            cells = self._cells(fitted, data.take(np.flatnonzero(test)))
            heldout[test] = table.acc[np.clip(cells, 0, fitted.n_buckets - 1)]
            slice_err.append(abs(heldout[test].mean() - y[test].mean()))
        full = scheme.fit(data)
        table = AccuracyTable.fit(full, data)
        seen = table.support > 0
        w = table.support[seen]
        mean = float((table.acc[seen] * w).sum() / max(w.sum(), 1))
        per_fold = [_brier(heldout[fold == f], y[fold == f]) for f in range(self.n_folds)]
        return {
            "scheme": full,
            "heldout": heldout,
            "name": scheme.name,
            "buckets": full.n_buckets,
            "min_support": int(w.min()) if w.size else 0,
            "variance": float(((table.acc[seen] - mean) ** 2 * w).sum() / max(w.sum(), 1)),
            "brier": float(np.mean(per_fold)),
            "brier_se": float(np.std(per_fold) / np.sqrt(self.n_folds)),
            "slice_mae": float(np.mean(slice_err)),
        }

    @staticmethod
    def _cells(scheme: Scheme, data: RefData) -> np.ndarray:
        if not scheme.columns:
            return np.zeros(len(data), dtype=np.int64)
        return scheme.cells(data.features)[0]

    def _choose(self, scored: list[dict], max_buckets: int) -> dict:
        ok = [
            r for r in scored
            if r["buckets"] <= max_buckets
            and (r["min_support"] >= self.min_support or r["name"] == "constant")
        ]  # fmt: skip
        best = min(ok, key=lambda r: r["brier"])
        close = [r for r in ok if r["brier"] <= best["brier"] + self.tolerance * best["brier_se"]]
        chosen = min(close, key=lambda r: (r["buckets"], -r["variance"]))
        for r in scored:
            r["feasible"] = r in ok
            r["chosen"] = r is chosen
        return chosen

    def _calibrate(self, data: RefData, y: np.ndarray, fold: np.ndarray):
        """Isotonic calibration of the confidence if it beats raw scores on held-out slices."""
        conf = data.features.get(CONFIDENCE)
        if conf is None or not np.isfinite(conf).any():
            return None, None, {"available": False, "reason": "predictions carry no scores"}
        raw = np.clip(np.where(np.isfinite(conf), conf, np.nanmean(conf)), 0, 1)
        iso = np.empty(len(data))
        for f in range(self.n_folds):
            test = fold == f
            cal = CalibratedConfidence().fit(conf[~test], y[~test])
            iso[test] = cal.predict(raw[test])
        b_raw, b_iso = _brier(raw, y), _brier(iso, y)
        use_iso = b_iso < b_raw
        calibrator = CalibratedConfidence().fit(conf, y, isotonic=use_iso)
        report = {
            "available": True,
            "isotonic": use_iso,
            "brier_raw": b_raw,
            "brier_isotonic": b_iso,
        }
        return calibrator, (iso if use_iso else raw), report

    def _blend(self, e_iw: np.ndarray, e_cal: np.ndarray, y: np.ndarray, fold: np.ndarray):
        """Weight of the bucket estimate that minimizes the held-out Brier score."""
        errors = {}
        slice_mae = {}
        for w in BLEND_WEIGHTS:
            p = w * e_iw + (1 - w) * e_cal
            errors[w] = _brier(p, y)
            slice_mae[w] = float(np.mean([
                abs(p[fold == f].mean() - y[fold == f].mean()) for f in range(self.n_folds)
            ]))  # fmt: skip
        weight = min(errors, key=errors.get)
        return weight, {
            "blend_heldout_brier": {str(k): v for k, v in errors.items()},
            "blend_heldout_slice_mae": {str(k): v for k, v in slice_mae.items()},
        }


__all__ = ["AccuracyModel", "ReferenceSet", "as_column"]
