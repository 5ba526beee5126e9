"""The calibrated-score estimator: P(correct) from the model's own confidence.

Like NannyML's CBPE, the confidence of each prediction (the score of the class it predicted) is
calibrated on the labelled reference with isotonic regression, and used only if calibration
lowers the held-out error against raw scores. The estimate of a window is the mean calibrated
confidence. It holds under covariate shift as long as P(correct | confidence) holds, and cannot
see concept shift, which is why the analyzer also buckets features and combines with labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression


class CalibratedConfidence:
    """``predict(confidence) -> P(correct)`` by isotonic regression (or the identity)."""

    def __init__(self) -> None:
        self.x = np.array([0.0, 1.0])
        self.y = np.array([0.0, 1.0])
        self.isotonic = False

    def fit(self, conf: np.ndarray, correct: np.ndarray, *, isotonic: bool = True):
        """Fit on finite confidences; ``isotonic=False`` keeps the raw confidence."""
        ok = np.isfinite(conf)
        self.isotonic = bool(isotonic and ok.sum() >= 20)
        if self.isotonic:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(conf[ok], correct[ok].astype(np.float64))
            self.x = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.y = np.asarray(iso.y_thresholds_, dtype=np.float64)
        return self

    def predict(self, conf: np.ndarray) -> np.ndarray:
        """Calibrated P(correct); NaN where the confidence is missing."""
        c = np.asarray(conf, dtype=np.float64)
        if not self.isotonic:
            return np.clip(c, 0.0, 1.0)
        return np.where(np.isfinite(c), np.interp(c, self.x, self.y), np.nan)

    def describe(self) -> dict[str, Any]:
        return {"isotonic": self.isotonic, "knots": int(self.x.size)}
