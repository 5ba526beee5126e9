"""Accuracy figures of one window from its pane sums: realized, estimated and combined.

* realized: correct / joined over the join's sample, with a Wilson 95% interval.
* estimated: the mean label-free P(correct) of every live prediction; the band adds the live
  sampling variance (sum of p(1-p)) to the reference's uncertainty of each bucket's rate.
* combined: labels arrive unevenly (a neighbourhood's feedback outage, a slow channel), so the
  labelled predictions are no random sample and realized accuracy alone is biased. Bucket by
  bucket, labelled predictions count as they were (correct or not) and the unlabelled ones get
  the estimate corrected by the bucket's residual: how far realized accuracy fell from the
  estimate on that bucket's labelled predictions, shrunk towards the model-wide residual (itself
  shrunk towards zero) by ``prior`` pseudo-labels. A bucket without labels keeps the model-wide
  correction; a bucket with many follows its own labels.

Joined sums describe the join's sample (rate ``r``); they are scaled by ``1/r``
(Horvitz-Thompson) wherever they meet live counts, which cover every prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otel_mlobs.processor.analyzers.detect import layout as L

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Estimate:
    """An accuracy figure with its 95% band."""

    value: float
    lower: float
    upper: float

    @classmethod
    def around(cls, value: float, sd: float) -> Estimate:
        """``value +- 1.96 sd`` clipped to [0, 1]."""
        value = float(np.clip(value, 0.0, 1.0))
        half = Z95 * float(sd)
        return cls(value, max(0.0, value - half), min(1.0, value + half))

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "lower": self.lower, "upper": self.upper}


@dataclass(slots=True)
class WindowFigures:
    """Everything known about one window's accuracy."""

    predictions: float = 0.0
    joined: float = 0.0
    correct: float = 0.0
    sample_rate: float = 1.0
    realized: Estimate | None = None
    estimated: Estimate | None = None
    combined: Estimate | None = None
    by_estimator: dict[str, float] = field(default_factory=dict)
    coverage: float = 0.0  # share of the window's predictions that have an estimate
    reason: str = ""  # why estimates are absent

    def methods(self) -> dict[str, Estimate]:
        """The figures that exist, by method name (the ``method`` metric label)."""
        out = {"realized": self.realized, "estimated": self.estimated, "combined": self.combined}
        return {k: v for k, v in out.items() if v is not None}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "predictions": self.predictions,
            "joined": self.joined,
            "correct": self.correct,
            "sample_rate": self.sample_rate,
            "coverage": self.coverage,
            "by_estimator": dict(self.by_estimator),
        }
        for name in ("realized", "estimated", "combined"):
            est = getattr(self, name)
            out[name] = None if est is None else est.as_dict()
        if self.reason:
            out["reason"] = self.reason
        return out


def wilson(correct: float, n: float) -> Estimate:
    """Wilson score interval of a proportion."""
    p = correct / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Estimate(float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def figures(
    live: np.ndarray,
    joined: np.ndarray,
    *,
    level: int,
    bucket_var: np.ndarray,
    noest: int,
    reason: str = "",
) -> WindowFigures:
    """Figures of a window from its summed ``live[bucket, stat]`` and ``joined[band, bucket,
    stat]`` tables (see :mod:`.layout`)."""
    r = 2.0**-level
    jb = joined[level:].sum(axis=0)  # (buckets, stats): the bands still in the sample
    out = WindowFigures(
        predictions=float(live[:, L.L_N].sum()),
        joined=float(jb[:, L.J_J].sum()),
        correct=float(jb[:, L.J_C].sum()),
        sample_rate=r,
        reason=reason,
    )
    if out.joined > 0:
        out.realized = wilson(out.correct, out.joined)
    est_rows = live[:, L.L_NEST]
    n_est = float(est_rows.sum())
    if out.predictions > 0:
        out.coverage = n_est / out.predictions
    if n_est <= 0:
        if not out.reason:
            out.reason = "no prediction in this window has an estimate yet"
        return out
    out.reason = ""
    s = live[:, L.L_S]
    var_live = float(live[:, L.L_Q].sum())
    var_ref = float((est_rows * est_rows * bucket_var).sum())
    out.estimated = Estimate.around(float(s.sum()) / n_est, np.sqrt(var_live + var_ref) / n_est)
    out.by_estimator["importance_weighting"] = float(live[:, L.L_S_IW].sum()) / n_est
    n_cal = float(live[:, L.L_NCAL].sum())
    if n_cal > 0:
        out.by_estimator["calibrated"] = float(live[:, L.L_S_CAL].sum()) / n_cal
    out.combined = _combine(live, jb, r, bucket_var, noest)
    return out


def _combine(
    live: np.ndarray, jb: np.ndarray, r: float, bucket_var: np.ndarray, noest: int
) -> Estimate | None:
    """Labelled predictions as they were, unlabelled ones estimated with a residual correction."""
    idx = np.arange(live.shape[0]) != noest
    n = live[idx, L.L_N]
    s = live[idx, L.L_S]
    j = jb[idx, L.J_NEST]  # joined pairs with an estimate (sample counts)
    c = jb[idx, L.J_C] * (j > 0)
    e = jb[idx, L.J_E]
    total = float(n.sum())
    if total <= 0:
        return None
    d_b, var_d = residuals(j, c, e)
    lab = np.minimum(j / r, n)  # labelled predictions (Horvitz-Thompson)
    unl = n - lab
    unl_est = np.clip(s - e / r, 0.0, None)
    per_bucket = np.clip(c / r + unl_est + unl * d_b, 0.0, n)
    value = float(per_bucket.sum()) / total
    p_unl = np.where(unl > 0, np.clip(unl_est / np.maximum(unl, 1e-12), 0, 1), 0.0)
    labelled_share = np.where(n > 0, lab / np.maximum(n, 1e-12), 0.0)
    var = (
        unl * p_unl * (1 - p_unl)  # outcomes of the unlabelled predictions
        + unl * unl * var_d  # the residual correction's noise
        + unl * unl * bucket_var[idx] * (1 - labelled_share) ** 2  # reference error left over
        + (1 - r) / (r * r) * c  # the sample standing for all labelled predictions
    )
    return Estimate.around(value, np.sqrt(float(var.sum())) / total)


def residuals(j: np.ndarray, c: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bucket residual (realized minus estimated accuracy) and its variance, empirical Bayes.

    The model-wide residual is shrunk towards zero by its own signal-to-noise ratio
    (``d^2 / (d^2 + se^2)``), so label noise on a calm day does not move the figure while a real
    shift (many standard errors) passes whole. Each bucket's residual is shrunk towards the
    model-wide one by ``tau^2 / (tau^2 + se_b^2)``, ``tau^2`` being the spread of the bucket
    residuals beyond their noise (method of moments): buckets only part ways when the labels
    show that they truly do. Buckets without labels take the model-wide residual.
    """
    total = float(j.sum())
    if total <= 0:
        return np.zeros_like(j), np.zeros_like(j)
    p = (float(c.sum()) + 1.0) / (total + 2.0)
    raw = (float(c.sum()) - float(e.sum())) / total
    se2 = p * (1 - p) / total
    shrink = raw * raw / (raw * raw + se2)
    d_all = shrink * raw
    var_all = shrink * se2
    has = j > 0
    jj = np.where(has, j, 1.0)
    raw_b = np.where(has, (c - e) / jj, d_all)
    p_b = (c + 1.0) / (jj + 2.0)
    se2_b = p_b * (1 - p_b) / jj
    w = j / total
    spread = float((w * (raw_b - d_all) ** 2).sum()) - float((w * np.where(has, se2_b, 0)).sum())
    tau2 = max(spread, 0.0)
    s_b = np.where(has, tau2 / (tau2 + se2_b), 0.0)
    d_b = d_all + s_b * (raw_b - d_all)
    var_b = np.where(has, s_b * se2_b, 0.0) + (1 - s_b) * var_all
    return d_b, var_b
