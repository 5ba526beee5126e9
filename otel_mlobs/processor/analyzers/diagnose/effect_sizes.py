"""Univariate effect sizes: how far a column moved, never whether a test is "significant".

On a few thousand rows a KS or chi-squared test calls every harmless wobble significant (its
p-value measures sample size as much as change), so diagnose reports sizes instead:

* PSI, the population stability index, over the reference's deciles (numeric) or categories;
  0.1 is the usual "look at it", 0.25 "it moved";
* the Wasserstein-1 distance between the two distributions divided by the reference's standard
  deviation ("the typical value moved by this many standard deviations");
* the Jensen-Shannon distance (base 2, in [0, 1]) over the same bins.

Numeric columns are compared through their KLL sketches (no rows needed), categorical ones through
their top values (values outside both top lists pool into one "other" bin).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from otel_mlobs.processor.analyzers.diagnose import columns as colmod

_EPS = 1e-4
_W_LEVELS = np.linspace(0.005, 0.995, 100)


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index of two probability vectors over the same bins."""
    p = np.clip(np.asarray(ref, float), _EPS, None)
    q = np.clip(np.asarray(cur, float), _EPS, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2), in [0, 1]."""
    p = np.asarray(ref, float)
    q = np.asarray(cur, float)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q))))


def numeric_bins(ref_sketch: bytes) -> np.ndarray:
    """Inner bin edges at the reference's deciles (duplicates removed)."""
    q = colmod.quantiles(ref_sketch, np.linspace(0.1, 0.9, 9))
    return np.unique(q[np.isfinite(q)])


def numeric_shares(sketch: bytes, edges: np.ndarray) -> np.ndarray:
    """Share of a sketch's values in each bin delimited by ``edges`` (len(edges) + 1 bins)."""
    cdf = colmod.cdf(sketch, edges)
    if not np.all(np.isfinite(cdf)):
        return np.full(len(edges) + 1, np.nan)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def wasserstein_normalized(ref_sketch: bytes, cur_sketch: bytes, ref_std: float) -> float:
    """Wasserstein-1 distance from quantile functions, in reference standard deviations."""
    a = colmod.quantiles(ref_sketch, _W_LEVELS)
    b = colmod.quantiles(cur_sketch, _W_LEVELS)
    return _wasserstein(a, b, ref_std)


def _wasserstein(a: np.ndarray, b: np.ndarray, ref_std: float) -> float:
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    w = float(np.mean(np.abs(a - b)))
    if not np.isfinite(ref_std) or ref_std <= 0:
        return 0.0 if w == 0 else float("inf")
    return w / ref_std


def category_shares(
    ref: Mapping[str, float], top: Mapping[str, int], count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned reference and current shares over the union of categories plus "other"."""
    cats = list(dict.fromkeys([*ref, *top]))
    p = np.array([ref.get(c, 0.0) for c in cats] + [0.0])
    q = np.array([top.get(c, 0) for c in cats] + [0], dtype=float) / max(count, 1)
    p[-1], q[-1] = max(0.0, 1 - p[:-1].sum()), max(0.0, 1 - q[:-1].sum())
    return p, q


@dataclass
class NumericReference:
    """What a numeric column's effect sizes need from its reference, computed once: the
    decile edges, the reference's shares of them and its quantile function on the
    Wasserstein grid. Each run then costs one CDF and one quantile query of its own sketch."""

    edges: np.ndarray
    shares: np.ndarray
    grid: np.ndarray  # reference quantiles at _W_LEVELS
    std: float

    @classmethod
    def of(cls, ref_sketch: bytes, ref_std: float) -> NumericReference:
        """The reference material of one merged reference sketch."""
        edges = numeric_bins(ref_sketch)
        return cls(
            edges,
            numeric_shares(ref_sketch, edges),
            colmod.quantiles(ref_sketch, _W_LEVELS),
            float(ref_std),
        )

    def psi(self, cur_sketch: bytes) -> float | None:
        """PSI alone of one run's sketch (``None`` where :meth:`sizes` gives nothing): what
        an alert decision needs, one CDF query, without the quantile function."""
        q = numeric_shares(cur_sketch, self.edges)
        if not (np.all(np.isfinite(self.shares)) and np.all(np.isfinite(q))):
            return None
        return psi(self.shares, q)

    def sizes(self, cur_sketch: bytes) -> dict[str, float]:
        """PSI, normalized Wasserstein and Jensen-Shannon of one run's sketch."""
        p, q = self.shares, numeric_shares(cur_sketch, self.edges)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
            return {}
        return {
            "psi": psi(p, q),
            "wasserstein": _wasserstein(
                self.grid, colmod.quantiles(cur_sketch, _W_LEVELS), self.std
            ),
            "jensen_shannon": jensen_shannon(p, q),
        }


def effect_sizes_numeric(ref_sketch: bytes, ref_std: float, cur_sketch: bytes) -> dict[str, float]:
    """PSI, normalized Wasserstein and Jensen-Shannon of one numeric column."""
    return NumericReference.of(ref_sketch, ref_std).sizes(cur_sketch)


def psi_categorical(
    ref_shares: Mapping[str, float], top: Mapping[str, int], count: int
) -> float | None:
    """PSI alone of one categorical column (``None`` where there is nothing to compare)."""
    if not top or count <= 0:
        return None
    return psi(*category_shares(ref_shares, top, count))


def effect_sizes_categorical(
    ref_shares: Mapping[str, float], top: Mapping[str, int], count: int
) -> dict[str, float]:
    """PSI and Jensen-Shannon of one categorical column (no Wasserstein: no order)."""
    if not top or count <= 0:
        return {}
    p, q = category_shares(ref_shares, top, count)
    return {"psi": psi(p, q), "jensen_shannon": jensen_shannon(p, q)}
