"""Accuracy figures of one window from its pane sums: realized, estimated and combined.

* realized: correct / joined over the join's sample, with a Wilson 95% interval.
* estimated: the mean label-free P(correct) of every live prediction; the band adds the live
  sampling variance (sum of p(1-p)) to the reference's uncertainty of each bucket's rate.
* combined: labels arrive unevenly (a neighbourhood's feedback outage, a slow channel), so the
  labelled predictions are no random sample and realized accuracy alone is biased; the
  label-free estimate, for its part, cannot see concept shift. Bucket by bucket, labelled
  predictions count as they were (correct or not) and the unlabelled ones get the bucket's
  posterior accuracy: a Beta prior centred on the label-free estimate corrected by one logit
  shift learned from the window's labels (:func:`logit_shift`), worth ``kappa`` pseudo-labels
  chosen by empirical Bayes from how well that corrected estimate fits the buckets
  (:func:`prior_strength`), updated with the bucket's own labels. A bucket without labels keeps
  the corrected estimate; a bucket whose labels disagree with it follows its labels.

Joined sums describe the join's sample (rate ``r``); they are scaled by ``1/r``
(Horvitz-Thompson) wherever they meet live counts, which cover every prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otel_mlobs.processor.analyzers.detect import layout as L

Z95 = 1.959963984540054
NO_SHIFT = 0.5  # prior probability that a window's labels show no shift from the estimate
SLAB_SD = 1.0  # prior spread of a shift on the logit scale, when there is one


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
    """Labelled predictions as they were, unlabelled ones from their bucket's posterior."""
    idx = np.arange(live.shape[0]) != noest
    n = live[idx, L.L_N]
    total = float(n.sum())
    if total <= 0:
        return None
    s = live[idx, L.L_S]
    j = jb[idx, L.J_NEST]  # joined pairs with an estimate (sample counts)
    c = jb[idx, L.J_C] * (j > 0)
    e = jb[idx, L.J_E]
    lab = np.minimum(j / r, n)  # labelled predictions (Horvitz-Thompson)
    unl = n - lab
    est_all = _mean(s, n, 0.5)
    est_lab = _mean(e, j, est_all)  # mean estimate of the bucket's labelled predictions
    est_unl = _mean(np.clip(s - e / r, 0.0, None), unl, est_all)
    x_lab, x_unl = _logit(est_lab), _logit(est_unl)
    shift, shift_var = logit_shift(j, c, x_lab)
    prior = _expit(x_lab + shift)  # what the corrected estimate says of the labelled rows
    kappa = prior_strength(j, c, prior)
    w = np.where(j > 0, j / (j + kappa), 0.0) if np.isfinite(kappa) else np.zeros_like(j)
    acc_lab = _mean(c, j, 0.0)
    post_lab = w * acc_lab + (1 - w) * prior
    # unlabelled rows of a bucket differ from its labelled rows only by their estimates
    gap = _expit(x_unl + shift) - prior
    post_unl = np.clip(post_lab + gap, 0.0, 1.0)
    value = float((c / r + unl * post_unl).sum()) / total
    slope = prior * (1 - prior)  # d prior / d shift
    var = (
        unl * post_unl * (1 - post_unl)  # outcomes of the unlabelled predictions
        + unl * unl * w * w * _mean(c * (j - c), j * j * j, 0.0)  # the bucket's own labels
        + unl * unl * (1 - w) ** 2 * bucket_var[idx] * (j <= 0)  # reference error, no labels
        + (1 - r) / (r * r) * c  # the sample standing for all labelled predictions
    )
    common = float((unl * (1 - w) * slope).sum()) ** 2 * shift_var  # one shift, every bucket
    return Estimate.around(value, np.sqrt(float(var.sum()) + common) / total)


def _mean(num: np.ndarray, den: np.ndarray, default: np.ndarray | float) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1e-12), default)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit_shift(j: np.ndarray, c: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """One correction of the estimate from the window's labels, shrunk by its own evidence.

    Concept shift moves accuracy by different amounts at different confidence (a bucket right
    99.9% of the time barely moves; a 70% bucket falls far), which a shift on the logit scale
    follows and a shift of the probability does not. The maximum-likelihood shift ``delta``
    makes the labelled predictions' corrected estimates sum to their correct count (Newton's
    method, steps capped). It is then shrunk towards zero (:func:`_shrink`): label noise on a
    calm day barely moves it, a real shift many standard errors wide passes whole. Returns the
    shift and its variance.
    """
    if float(j.sum()) <= 0:
        return 0.0, 0.0
    delta = 0.0
    target = float(c.sum())
    for _ in range(50):
        p = _expit(x + delta)
        info = float((j * p * (1 - p)).sum())
        if info <= 1e-9:
            break
        step = float(np.clip((float((j * p).sum()) - target) / info, -1.0, 1.0))
        delta -= step
        if abs(step) < 1e-7:
            break
    delta = float(np.clip(delta, -10.0, 10.0))
    p = _expit(x + delta)
    var = 1.0 / max(float((j * p * (1 - p)).sum()), 1e-9)
    return _shrink(delta, var)


def _shrink(delta: float, var: float) -> tuple[float, float]:
    """Posterior mean and variance of the shift, under a spike-and-slab prior.

    A window either has no shift (probability ``NO_SHIFT``) or one drawn from N(0, SLAB_SD^2):
    the posterior weight of "shifted" given the estimate, times the normal shrinkage of the
    slab. A shift one standard error wide is mostly taken for noise, one three or more wide
    passes almost whole, so the correction is neither noisy on calm days nor biased towards
    the stale estimate under a real shift.
    """
    if var <= 0:
        return delta, 0.0
    slab = SLAB_SD * SLAB_SD
    z = -0.5 * delta * delta * (1.0 / (var + slab) - 1.0 / var)  # log likelihood ratio
    ratio = np.sqrt(var / (var + slab)) * np.exp(min(z, 700.0))
    shifted = (1 - NO_SHIFT) * ratio / ((1 - NO_SHIFT) * ratio + NO_SHIFT)
    mean = slab / (slab + var) * delta  # if shifted
    spread = slab * var / (slab + var)
    return float(shifted * mean), float(shifted * (spread + mean * mean) - (shifted * mean) ** 2)


def prior_strength(j: np.ndarray, c: np.ndarray, prior: np.ndarray) -> float:
    """Pseudo-labels ``kappa`` the corrected estimate is worth in each bucket (empirical Bayes).

    Each bucket's accuracy is taken as Beta(kappa m, kappa (1 - m)) around the corrected
    estimate ``m``; ``kappa`` follows from how far bucket accuracies stray from ``m`` beyond
    their binomial noise (method of moments: ``m(1-m) / tau^2 - 1``). Where the corrected
    estimate fits every bucket, ``kappa`` is infinite and the posterior is the estimate (the
    labels still set the shift); where it fits badly (a schema change that leaves the model
    confident and wrong), ``kappa`` falls and each bucket follows its own labels.
    """
    has = j > 0
    if int(has.sum()) < 2:
        return float("inf")
    jj, m = j[has], prior[has]
    wt = jj / jj.sum()
    spread = float((wt * (c[has] / jj - m) ** 2).sum()) - float((wt * m * (1 - m) / jj).sum())
    if spread <= 0:
        return float("inf")
    return max(float((wt * m * (1 - m)).sum()) / spread - 1.0, 0.0)
