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
from collections.abc import Sequence
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
        self._scale = _widened(self, at, n, factor)
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
        # The history is kept sorted, so the median is an index and the MAD a selection in two
        # sorted runs (deviations below and above the median): O(log n) per read, no sorting.
        if self._cache is None:
            h = self._sorted
            if not h:
                self._cache = (float("nan"), 0.0)
            else:
                center = _median(h)
                self._cache = (center, _MAD_TO_SD * _mad(h, center) if len(h) > 1 else 0.0)
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

    @property
    def size(self) -> int:
        """Healthy values in the history."""
        return len(self._history)

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


def _widened(
    t: RobustThreshold | BankedThreshold, at: float | None, n: int, factor: float
) -> float:
    """The scale after a false positive at ``at`` (see :meth:`RobustThreshold.widen`)."""
    scale = t.sensitivity
    if at is not None and np.isfinite(at) and t.ready:
        base = t.margin(n) / scale
        needed = abs(at - t.center) / base * 1.05 if base > 0 else scale
        scale = max(scale * factor, needed)
    else:
        scale *= factor
    return float(min(scale, 20.0))


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else 0.5 * (sorted_values[mid - 1] + sorted_values[mid])


def _mad(h: list[float], center: float) -> float:
    """Median absolute deviation from ``center`` of the sorted list ``h``."""
    n = len(h)
    split = bisect.bisect_left(h, center)
    if n % 2:
        return _kth_deviation(h, center, split, n // 2)
    return 0.5 * (
        _kth_deviation(h, center, split, n // 2 - 1) + _kth_deviation(h, center, split, n // 2)
    )


def _kth_deviation(h: list[float], center: float, split: int, k: int) -> float:
    """The ``k``-th smallest (0-based) of ``|x - center|`` over sorted ``h``.

    Deviations of ``h[:split]`` read backwards and of ``h[split:]`` read forwards are two
    ascending runs; binary search how many of the smallest ``k + 1`` come from the first.
    """
    na, nb = split, len(h) - split

    def a(i: int) -> float:  # i-th smallest deviation below the center
        return center - h[split - 1 - i]

    def b(j: int) -> float:  # j-th smallest deviation above the center
        return h[split + j] - center

    lo, hi = max(0, k + 1 - nb), min(k + 1, na)
    while lo < hi:
        i = (lo + hi) // 2
        j = k + 1 - i
        if j > 0 and b(j - 1) > a(i):
            lo = i + 1
        else:
            hi = i
    i, j = lo, k + 1 - lo
    return max(a(i - 1) if i > 0 else -math.inf, b(j - 1) if j > 0 else -math.inf)


_NOISE_CODES = {name: i for i, name in enumerate(_VALID_NOISE)}


class ThresholdBank:
    """Many :class:`RobustThreshold` bands in arrays, read and judged in one vectorized pass.

    A dataset's soft checks all learn from the same runs, so their histories live in one
    ``(checks, window)`` ring buffer; the medians and MADs of every changed row are refreshed in
    two row-wise sorts when a band is next read. The arithmetic is the same as
    :class:`RobustThreshold`'s, value for value. :meth:`adopt` moves a built threshold in and
    returns a :class:`BankedThreshold` that reads and writes its row with the same API.

    Examples
    --------
    >>> bank = ThresholdBank(window=60)
    >>> rows = [bank.adopt(RobustThreshold("upper", 0.01, noise="none")).row for _ in range(2)]
    >>> for v in (0.010, 0.012, 0.011):
    ...     bank.observe(np.array(rows), np.array([v, 10 * v]))
    >>> bank.violated(np.array(rows), np.array([0.011, 0.5]), np.array([1000, 1000])).tolist()
    [False, True]
    """

    def __init__(self, window: int = 60) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = int(window)
        self._values = np.full((0, self.window), np.nan)
        self._next = np.zeros(0, dtype=np.int64)
        self._size = np.zeros(0, dtype=np.int64)
        self._lower = np.zeros(0, dtype=bool)
        self._upper = np.zeros(0, dtype=bool)
        self._floor = np.zeros(0)
        self._k = np.zeros(0)
        self._noise = np.zeros(0, dtype=np.int64)
        self._unit_sd = np.zeros(0)
        self._scale = np.zeros(0)
        self._center = np.zeros(0)
        self._spread = np.zeros(0)
        self._stale = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self._size)

    def adopt(self, t: RobustThreshold) -> BankedThreshold:
        """Append ``t`` (parameters, scale and history) as a new row."""
        return self.adopt_many([t])[0]

    def adopt_many(self, thresholds: Sequence[RobustThreshold]) -> list[BankedThreshold]:
        """Append each of ``thresholds`` as a new row, in order."""
        m, base = len(thresholds), len(self)
        values = np.full((m, self.window), np.nan)
        size = np.zeros(m, dtype=np.int64)
        for i, t in enumerate(thresholds):
            history = list(t._history)[-self.window :]
            values[i, : len(history)] = history
            size[i] = len(history)
        sides = [t.side for t in thresholds]

        def grow(old: np.ndarray, new: Sequence | np.ndarray) -> np.ndarray:
            return np.concatenate([old, np.asarray(new, dtype=old.dtype)])

        self._values = np.concatenate([self._values, values])
        self._next = grow(self._next, size % self.window)
        self._size = grow(self._size, size)
        self._lower = grow(self._lower, [side in ("lower", "both") for side in sides])
        self._upper = grow(self._upper, [side in ("upper", "both") for side in sides])
        self._floor = grow(self._floor, [t.floor for t in thresholds])
        self._k = grow(self._k, [t.k for t in thresholds])
        self._noise = grow(self._noise, [_NOISE_CODES[t.noise] for t in thresholds])
        self._unit_sd = grow(self._unit_sd, [t.unit_sd for t in thresholds])
        self._scale = grow(self._scale, [t.sensitivity for t in thresholds])
        self._center = grow(self._center, np.full(m, np.nan))
        self._spread = grow(self._spread, np.zeros(m))
        self._stale = grow(self._stale, np.ones(m, dtype=bool))
        return [BankedThreshold(self, base + i, t.side, t.noise) for i, t in enumerate(thresholds)]

    # -- learning -------------------------------------------------------------------------
    def observe(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Add one healthy value to each of ``rows`` (distinct rows; NaN values are skipped)."""
        ok = np.isfinite(values)
        rows, values = rows[ok], values[ok]
        if not len(rows):
            return
        self._values[rows, self._next[rows]] = values
        self._next[rows] = (self._next[rows] + 1) % self.window
        self._size[rows] = np.minimum(self._size[rows] + 1, self.window)
        self._stale[rows] = True

    def _refresh(self) -> None:
        rows = np.flatnonzero(self._stale)
        if not len(rows):
            return
        m = self._size[rows]
        lo, hi = (np.maximum(m, 1) - 1) // 2, m // 2
        srt = np.sort(self._values[rows], axis=1)  # NaN (empty slots) sort last
        r = np.arange(len(rows))
        center = 0.5 * (srt[r, lo] + srt[r, hi])
        center = np.where(lo == hi, srt[r, lo], center)
        dev = np.sort(np.abs(srt - center[:, None]), axis=1)
        mad = np.where(lo == hi, dev[r, lo], 0.5 * (dev[r, lo] + dev[r, hi]))
        self._center[rows] = np.where(m > 0, center, np.nan)
        self._spread[rows] = np.where(m > 1, _MAD_TO_SD * mad, 0.0)
        self._stale[rows] = False

    # -- reading --------------------------------------------------------------------------
    def ready(self, rows: np.ndarray) -> np.ndarray:
        """Whether each row has any healthy history."""
        return self._size[rows] > 0

    def center(self, rows: np.ndarray) -> np.ndarray:
        """Medians of the rows' histories (NaN when empty)."""
        self._refresh()
        return self._center[rows]

    def spread(self, rows: np.ndarray) -> np.ndarray:
        """MADs of the rows' histories, scaled to a standard deviation."""
        self._refresh()
        return self._spread[rows]

    def margin(self, rows: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Half-widths of the rows' bands for runs of ``n`` values."""
        self._refresh()
        nn = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
        center = self._center[rows]
        p = np.minimum(np.maximum(np.abs(center), 1.0 / nn), 0.5)
        # share: binomial sd; distance: 0.5/sqrt(n); mean: unit_sd/sqrt(n); none: 0
        coef = np.where(self._noise == _NOISE_CODES["distance"], 0.5, self._unit_sd)
        coef[self._noise == _NOISE_CODES["none"]] = 0.0
        with np.errstate(invalid="ignore"):
            sampling = np.where(
                self._noise[rows] == _NOISE_CODES["share"],
                np.sqrt(p * (1 - p) / nn),
                coef[rows] / np.sqrt(nn),
            )
        spread = np.hypot(self._spread[rows], sampling)
        return self._scale[rows] * np.maximum(self._floor[rows], self._k[rows] * spread)

    def bounds(self, rows: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) per row: values outside are violations."""
        margin = self.margin(rows, n)
        center = self._center[rows]
        low = np.where(self._lower[rows], center - margin, -np.inf)
        high = np.where(self._upper[rows], center + margin, np.inf)
        return low, high

    def violated(self, rows: np.ndarray, values: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Whether each value falls outside its row's band (never without history or value)."""
        low, high = self.bounds(rows, n)
        with np.errstate(invalid="ignore"):
            out = (values < low) | (values > high)
        return out & self.ready(rows) & np.isfinite(values)


class BankedThreshold:
    """One row of a :class:`ThresholdBank`, with the reading and feedback API of
    :class:`RobustThreshold` (what explanations, feedback and the API use)."""

    def __init__(self, bank: ThresholdBank, row: int, side: Side, noise: Noise) -> None:
        self.bank = bank
        self.row = row
        self.side = side
        self.noise = noise
        self._rows = np.array([row])

    @property
    def window(self) -> int:
        return self.bank.window

    @property
    def k(self) -> float:
        return float(self.bank._k[self.row])

    @property
    def unit_sd(self) -> float:
        return float(self.bank._unit_sd[self.row])

    @property
    def floor(self) -> float:
        return float(self.bank._floor[self.row])

    @floor.setter
    def floor(self, value: float) -> None:
        self.bank._floor[self.row] = float(value)

    def observe(self, value: float) -> None:
        """Add the statistic of a run judged healthy."""
        self.bank.observe(self._rows, np.array([value], dtype=np.float64))

    def widen(self, at: float | None = None, n: int = 1, factor: float = 1.25) -> None:
        """See :meth:`RobustThreshold.widen`."""
        self.bank._scale[self.row] = _widened(self, at, n, factor)
        if at is not None:
            self.observe(at)

    def narrow(self, factor: float = 0.95) -> None:
        """See :meth:`RobustThreshold.narrow`."""
        self.bank._scale[self.row] = float(max(self.bank._scale[self.row] * factor, 0.5))

    @property
    def ready(self) -> bool:
        return bool(self.bank._size[self.row] > 0)

    @property
    def size(self) -> int:
        """Healthy values in the history."""
        return int(self.bank._size[self.row])

    @property
    def center(self) -> float:
        return float(self.bank.center(self._rows)[0])

    @property
    def spread(self) -> float:
        return float(self.bank.spread(self._rows)[0])

    @property
    def sensitivity(self) -> float:
        return float(self.bank._scale[self.row])

    def margin(self, n: int) -> float:
        return float(self.bank.margin(self._rows, np.array([n]))[0])

    def bounds(self, n: int) -> tuple[float, float]:
        low, high = self.bank.bounds(self._rows, np.array([n]))
        return float(low[0]), float(high[0])

    def violated(self, value: float, n: int) -> bool:
        return bool(self.bank.violated(self._rows, np.array([value], dtype=np.float64),
                                       np.array([n]))[0])  # fmt: skip


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
