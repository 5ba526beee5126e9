"""Thresholds learned from healthy history, and precision learned from people's verdicts.

A constraint's statistic (a null fraction, a share of values outside a band, a distance between
distributions) wobbles from run to run even when nothing is wrong. A fixed margin either fires
every other day on a noisy column or sleeps through a real break on a steady one, so each
constraint keeps a rolling window of the statistic over runs it judged healthy and sets its band
at ``median ± k * spread``: the spread is the MAD of that history (scaled to a standard
deviation) combined with the sampling noise expected at the run's size, so a 30-row run is
allowed more slack than a 30,000-row run. The band never shrinks below a small practical floor:
a statistic that was identical for ten runs would otherwise alarm at the first harmless wobble.

People close the loop: marking an alert a false positive widens that constraint's band (and
counts against its precision); a true positive narrows it a little. Precision is the mean of a
Beta posterior over those verdicts.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Literal

import numpy as np

Side = Literal["upper", "lower", "both"]
Noise = Literal["share", "distance", "mean", "none"]

_MAD_TO_SD = 1.4826
_VALID_SIDES = ("upper", "lower", "both")
_VALID_NOISE = ("share", "distance", "mean", "none")


class RobustThreshold:
    """A band around the healthy median of one statistic, re-estimated as healthy runs pass.

    Parameters
    ----------
    side
        Which excursions are violations: ``"upper"`` (e.g. a null fraction), ``"lower"`` (e.g.
        a distinct ratio), or ``"both"``.
    floor
        The smallest margin the band may have, in the statistic's units.
    k
        How many (robust) standard deviations of healthy variability the band spans.
    window
        How many healthy values are kept; older ones fall out, so the band follows slow change.
    noise
        The sampling-noise model added to the history's spread at a run's size ``n``:
        ``"share"`` (binomial, ``sqrt(p(1-p)/n)``), ``"distance"`` (a distance between
        distributions in rank units, ``0.5/sqrt(n)``, the binomial sd of a share near one
        half), ``"mean"`` (a mean of ``n`` values of standard deviation ``unit_sd``,
        ``unit_sd/sqrt(n)``) or ``"none"``.
    unit_sd
        Per-value standard deviation for ``noise="mean"``.

    Examples
    --------
    >>> t = RobustThreshold("upper", floor=0.01, noise="none")
    >>> for v in (0.010, 0.012, 0.011, 0.009, 0.010):
    ...     t.observe(v)
    >>> t.violated(0.011, n=1000), t.violated(0.2, n=1000)
    (False, True)
    """

    def __init__(
        self,
        side: Side,
        floor: float,
        k: float = 5.0,
        window: int = 60,
        noise: Noise = "share",
        unit_sd: float = 0.0,
    ) -> None:
        if side not in _VALID_SIDES:
            raise ValueError(f"Invalid 'side'. Valid values are: {_VALID_SIDES}")
        if noise not in _VALID_NOISE:
            raise ValueError(f"Invalid 'noise'. Valid values are: {_VALID_NOISE}")
        if not floor >= 0 or not k > 0 or window < 1:
            raise ValueError("floor must be >= 0, k > 0 and window >= 1")
        self.side = side
        self.floor = float(floor)
        self.k = float(k)
        self.window = int(window)
        self.noise = noise
        self.unit_sd = float(unit_sd)
        self._history: deque[float] = deque(maxlen=self.window)
        self._sorted: list[float] = []  # the same values, kept sorted for the median
        self._scale = 1.0
        self._cache: tuple[float, float] | None = None  # (center, spread), until history moves

    # -- learning -------------------------------------------------------------------------
    def observe(self, value: float) -> None:
        """Add the statistic of a run judged healthy."""
        if np.isfinite(value):
            value = float(value)
            if len(self._history) == self._history.maxlen:
                del self._sorted[bisect.bisect_left(self._sorted, self._history[0])]
            self._history.append(value)
            bisect.insort(self._sorted, value)
            self._cache = None

    def widen(self, at: float | None = None, n: int = 1, factor: float = 1.25) -> None:
        """A false positive: widen the band by ``factor``, and at least far enough that ``at``
        (the value that fired, measured on ``n`` values) would have passed; never beyond 20
        times the learned width. ``at`` also joins the healthy history."""
        if at is not None and np.isfinite(at) and self.ready:
            base = self.margin(n) / self._scale
            needed = abs(at - self.center) / base * 1.05 if base > 0 else self._scale
            self._scale = max(self._scale * factor, needed)
        else:
            self._scale *= factor
        self._scale = float(min(self._scale, 20.0))
        if at is not None:
            self.observe(at)

    def narrow(self, factor: float = 0.95) -> None:
        """A confirmed true positive: tighten the band a little (never below the floor)."""
        self._scale = float(max(self._scale * factor, 0.5))

    # -- reading --------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether there is any healthy history to centre the band on."""
        return len(self._history) > 0

    def _robust(self) -> tuple[float, float]:
        # Plain sorted lists: for a few dozen values this is ~20x cheaper than numpy's median,
        # and thresholds are read on every evaluation.
        if self._cache is None:
            h = self._sorted
            if not h:
                self._cache = (float("nan"), 0.0)
            else:
                center = _median(h)
                spread = (
                    _MAD_TO_SD * _median(sorted(abs(x - center) for x in h)) if len(h) > 1 else 0.0
                )
                self._cache = (center, spread)
        return self._cache

    @property
    def center(self) -> float:
        """Median of the healthy history (NaN when empty)."""
        return self._robust()[0]

    @property
    def spread(self) -> float:
        """MAD of the healthy history, scaled to a standard deviation."""
        return self._robust()[1]

    @property
    def sensitivity(self) -> float:
        """1 at start; above 1 after false positives widened the band."""
        return self._scale

    def margin(self, n: int) -> float:
        """Half-width of the band for a run with ``n`` values."""
        center = self.center
        if self.noise == "share":
            p = min(max(abs(center), 1.0 / max(n, 1)), 0.5)
            sampling = math.sqrt(p * (1 - p) / max(n, 1))
        elif self.noise == "distance":
            sampling = 0.5 / math.sqrt(max(n, 1))
        elif self.noise == "mean":
            sampling = self.unit_sd / math.sqrt(max(n, 1))
        else:
            sampling = 0.0
        spread = math.hypot(self.spread, sampling)
        return float(self._scale * max(self.floor, self.k * spread))

    def bounds(self, n: int) -> tuple[float, float]:
        """(low, high): values outside are violations (one side is infinite when one-sided)."""
        center, margin = self.center, self.margin(n)
        low = center - margin if self.side in ("lower", "both") else -np.inf
        high = center + margin if self.side in ("upper", "both") else np.inf
        return float(low), float(high)

    def violated(self, value: float, n: int) -> bool:
        """Whether ``value`` (measured on ``n`` values) falls outside the band."""
        if not self.ready or not np.isfinite(value):
            return False
        low, high = self.bounds(n)
        return bool(value < low or value > high)


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else 0.5 * (sorted_values[mid - 1] + sorted_values[mid])


class Precision:
    """Beta-Bernoulli estimate of how often a constraint's alerts are real.

    The prior encodes how much a class of constraint is trusted before anyone gives feedback:
    ``Beta(4, 1)`` (0.8) for hard checks, ``Beta(2, 2)`` (0.5) for distributional ones.

    >>> p = Precision(2, 2)
    >>> p.update(True); p.update(False); p.update(False)
    >>> round(p.mean, 3)
    0.429
    """

    def __init__(self, alpha: float = 2.0, beta: float = 2.0) -> None:
        if not (alpha > 0 and beta > 0):
            raise ValueError("alpha and beta must be > 0")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.true_positives = 0
        self.false_positives = 0

    def update(self, true_positive: bool) -> None:
        """Count one verdict."""
        if true_positive:
            self.true_positives += 1
        else:
            self.false_positives += 1

    @property
    def mean(self) -> float:
        """Posterior mean precision."""
        a = self.alpha + self.true_positives
        return a / (a + self.beta + self.false_positives)
