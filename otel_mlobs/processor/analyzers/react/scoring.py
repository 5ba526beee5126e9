"""The corruption and staleness scores of a block of runs, as array operations.

A :class:`Block` is what one scoring pass reads: the stored estimates of a stretch of runs
(rows, by event time) for a set of columns, which runs to score and each one's windows. Window
bounds are per target and either shared by all columns (one component's runs) or per column
(several components side by side, each with its own history, scored as one matrix: the usual
refresh, where every component has one new run, then costs one pass instead of one per
component).

Both scores are documented on :class:`~.column_scores.ComponentSeries`; this module only
computes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from otel_mlobs.processor.analyzers.react.estimates import NOISE
from otel_mlobs.processor.analyzers.react.window_stats import rows_at, window_mins, window_sums

SCORE_CAP = 1_000.0
STALE_TERM_CAP = 6.0  # orders of magnitude one near-zero change can contribute


@dataclass(slots=True)
class Block:
    """Runs to score and the history they are scored against.

    ``target``, ``lo``, ``hi`` and ``lo_long`` are ``(targets, b)`` row indices with ``b`` 1
    (shared by every column) or the number of columns: the target's row, its baseline window
    ``[lo, hi)`` (``hi`` is the first row at the target's time) and the start of the longer
    horizon the spread is learnt over.
    """

    est: np.ndarray  # (planes, rows, columns)
    target: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    lo_long: np.ndarray

    def part(self, start: int) -> Block:
        """The same block with only the targets from ``start`` on."""
        return Block(
            self.est, self.target[start:], self.lo[start:], self.hi[start:], self.lo_long[start:]
        )


@dataclass(frozen=True, slots=True)
class Planes:
    """Which planes of ``Block.est`` hold what (shared by every component of an analyzer)."""

    names: tuple[str, ...]
    corruption: tuple[int, ...]
    staleness: tuple[int, ...]
    floors: np.ndarray  # (len(corruption), 2, 1, 1): absolute and relative spread floors

    @property
    def index(self) -> Mapping[str, int]:
        return {n: i for i, n in enumerate(self.names)}


def predictive_z(
    x: np.ndarray, mean: np.ndarray, sd: np.ndarray, n: np.ndarray, n_mean: np.ndarray | None = None
) -> np.ndarray:
    """Distance of ``x`` from a baseline of ``n`` points, in normal-equivalent standard deviations.

    Seven daily points estimate a spread poorly, and a plain z-score over them fires on noise
    (|t| > 4 happens 1% of the time with 6 degrees of freedom). The distance is therefore
    judged with the Student-t predictive distribution of a new point, ``t = |x - mean| /
    (sd · sqrt(1 + 1/n))`` with ``n - 1`` degrees of freedom, and its tail probability is
    expressed back as the normal quantile: 4 means as unlikely as 4 sd of a normal. ``n`` sets
    the degrees of freedom of the spread, ``n_mean`` (default ``n``) the points in the mean.
    """
    n_mean = n if n_mean is None else n_mean
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(x - mean) / (sd * np.sqrt(1.0 + 1.0 / np.maximum(n_mean, 1)))
    t, n = np.broadcast_arrays(t, n)
    z = np.full(t.shape, np.nan)
    ok = ~np.isnan(t)  # the tail is costly: only where there is a distance to judge
    df = np.maximum(n[ok] - 1, 1).astype(np.float64)
    tail = special.stdtr(df, -t[ok])  # one-sided tail of the t distribution
    z[ok] = np.clip(-special.ndtri(np.maximum(tail, 1e-300)), 0.0, SCORE_CAP)
    return z


@dataclass(slots=True)
class _Series:
    """The (estimate, column) pairs of some planes that hold any value, as columns of 2-D arrays.

    A numeric column has no top-value share, a categorical no mean: a third or more of the
    (estimate, column) pairs are empty, and every operation skips them.
    """

    plane: np.ndarray  # (series,) index into the planes given
    column: np.ndarray  # (series,) column
    x: np.ndarray  # (rows, series)
    shape: tuple[int, int]  # (planes, columns)

    @classmethod
    def of(cls, est: np.ndarray, planes: Sequence[int]) -> _Series:
        stack = est[list(planes)]
        live = ~np.isnan(stack).all(axis=1)
        pe, pc = np.nonzero(live)
        return cls(
            pe, pc, np.ascontiguousarray(stack[pe, :, pc].T), (stack.shape[0], stack.shape[2])
        )

    def subset(self, keep: np.ndarray) -> _Series:
        return _Series(self.plane[keep], self.column[keep], self.x[:, keep], self.shape)

    def bounds(self, b: np.ndarray) -> np.ndarray:
        """Per-target bounds for every series: (targets, 1) stays, (targets, columns) spreads."""
        return b if b.shape[1] == 1 else b[:, self.column]

    def max_by_column(self, values: np.ndarray) -> np.ndarray:
        """(targets, series) back to (targets, columns): the largest over planes, empty 0."""
        out = np.zeros((values.shape[0], *self.shape))
        out[:, self.plane, self.column] = values
        return out.max(axis=1)


def corruption(block: Block, clean: np.ndarray, planes: Planes, min_history: int) -> np.ndarray:
    """Corruption of every target: (targets, columns); ``clean`` marks usable history rows."""
    sr = _Series.of(block.est, planes.corruption)
    x = sr.x
    target, lo, hi = sr.bounds(block.target), sr.bounds(block.lo), sr.bounds(block.hi)
    ok = clean[:, sr.column] & ~np.isnan(x)
    xt = rows_at(x, target)
    ref = np.nan_to_num(xt[:1])  # shift: sums of squares stay precise
    dev = np.where(ok, x - ref, 0.0)
    step_ok = np.zeros_like(ok)
    step_ok[1:] = ok[1:] & ok[:-1]
    step = np.zeros_like(x)
    step[1:] = np.where(step_ok[1:], x[1:] - np.where(ok[:-1], x[:-1], 0.0), 0.0)
    # Five window sums from one pass; step i (joining rows i - 1 and i) sits on row i, so
    # "both rows in [lo_long, hi)" is rows [lo_long + 1, hi) of the step planes.
    cnt, s1, s2 = window_sums(np.stack([ok, dev, dev * dev]), lo, hi)
    n_steps, ss = window_sums(
        np.stack([step_ok, step * step]), np.minimum(sr.bounds(block.lo_long) + 1, hi), hi
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_dev = s1 / cnt
        var = np.maximum(s2 - cnt * mean_dev * mean_dev, 0.0) / np.maximum(cnt - 1, 1)
        step_sd = np.sqrt(ss / (2 * n_steps))
    mean = mean_dev + ref
    use_steps = n_steps > cnt
    sd = np.where(use_steps, step_sd, np.sqrt(var))
    dof_n = np.where(use_steps, n_steps + 1, cnt)
    f = planes.floors[sr.plane, :, 0, 0]
    sd = np.maximum(np.nan_to_num(sd), np.maximum(f[:, 0], f[:, 1] * np.abs(mean)))
    z = predictive_z(xt, mean, sd, dof_n, cnt)
    z = np.where((cnt >= min_history) & ~np.isnan(z), z, 0.0)
    return sr.max_by_column(z)


def noise_at(
    est: np.ndarray, planes: Planes, sr: _Series, rows: np.ndarray | None = None
) -> np.ndarray:
    """Sampling noise of the staleness series: (rows, series) in every row, or (targets, series)
    at ``rows`` (targets, b) as :func:`rows_at` takes them; NaN when unknown."""
    index = planes.index
    shape = sr.x.shape if rows is None else (rows.shape[0], sr.x.shape[1])
    out = np.full(shape, np.nan)
    for j, plane in enumerate(planes.staleness):
        mine = np.flatnonzero(sr.plane == j)
        model = NOISE.get(planes.names[plane])
        if len(mine) == 0 or model is None or any(need not in index for need in model[0]):
            continue  # no model of its noise: judged against history alone
        cols = sr.column[mine]
        at = rows if rows is None or rows.shape[1] == 1 else rows[:, mine]
        needed = {
            need: est[index[need]][:, cols]
            if at is None
            else rows_at(est[index[need]][:, cols], at)
            for need in model[0]
        }
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, mine] = model[1](needed)
    return out


def _collapsed(change: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Changes fresh data could not make: ten times below sampling noise, or, where the noise is
    unknown, exact repeats."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(noise), change == 0, change < 0.1 * noise)


def staleness(
    block: Block, bad: np.ndarray, planes: Planes, stale_runs: int, min_history: int
) -> np.ndarray:
    """Staleness of every target: (targets, columns); ``bad`` marks corrupted history rows."""
    k = stale_runs - 1
    out = np.zeros((block.target.shape[0], block.est.shape[2]))
    sr = _Series.of(block.est, planes.staleness)
    r = sr.x.shape[0]
    if sr.x.shape[1] == 0 or r < min_history + k + 1:
        return out
    # Only a column whose latest change some estimate could not have made from fresh data can
    # be stale: the rest are settled from their target rows alone.
    own = np.abs(
        rows_at(sr.x, sr.bounds(block.target))
        - rows_at(sr.x, np.maximum(sr.bounds(block.hi) - 1, 0))
    )
    own_noise = np.hypot(
        noise_at(block.est, planes, sr, sr.bounds(block.target)),
        noise_at(block.est, planes, sr, np.maximum(sr.bounds(block.hi) - 1, 0)),
    )
    # a series that never changed (a fixed batch size) has no history of change to compare with
    varied = np.nanmax(sr.x, axis=0) > np.nanmin(sr.x, axis=0)
    candidate = np.zeros(sr.shape[1], dtype=bool)
    candidate[sr.column[(_collapsed(own, own_noise).any(axis=0)) & varied]] = True
    sr = sr.subset(candidate[sr.column])
    if sr.x.shape[1] == 0:
        return out
    x = sr.x
    target, hi = sr.bounds(block.target), sr.bounds(block.hi)
    # change i joins rows i - 1 and i and sits on row i
    d = np.full(x.shape, np.nan)
    d[1:] = np.abs(x[1:] - x[:-1])
    noise = noise_at(block.est, planes, sr)
    dn = np.full(x.shape, np.nan)
    dn[1:] = np.hypot(noise[1:], noise[:-1])
    # A freeze in progress is the trailing run of changes fresh data could not make. It stays
    # out of the history it is judged against, so a feed that stays frozen stays flagged.
    collapsed = _collapsed(d, dn)
    idx = np.arange(r)[:, None]
    streak = idx - np.maximum.accumulate(np.where(collapsed, 0, idx), axis=0)
    prev = np.maximum(hi - 1, 0)
    xt, xp = rows_at(x, target), rows_at(x, prev)
    recent = [np.abs(xt - xp)]
    ref_noise = [np.hypot(rows_at(noise, target), rows_at(noise, prev))]
    for j in range(1, k):  # the change on row hi - j joins rows hi - j - 1 and hi - j
        i = np.maximum(hi - j, 0)
        recent.append(rows_at(d, i))
        ref_noise.append(rows_at(dn, i))
    rd, rn = np.stack(recent), np.stack(ref_noise)  # (k, targets, series)
    hist_ok = ~np.isnan(d)
    hist_ok[1:] &= ~(bad[1:] | bad[:-1])[:, sr.column]
    pos = hist_ok & (d > 0)
    logs = np.zeros(d.shape)
    np.log10(d, out=logs, where=pos)
    # history: changes on rows [lo_long + 1, end), end before the recent changes and any
    # freeze already running when they started
    start = np.minimum(sr.bounds(block.lo_long) + 1, hi)
    end = np.maximum(np.minimum(hi - np.maximum(k - 1, rows_at(streak, prev)), hi), start)
    start = np.broadcast_to(start, end.shape)
    n_h, n_pos, log_sum = window_sums(np.stack([hist_ok, pos, logs]), start, end)
    low = window_mins(np.where(hist_ok, d, np.inf)[None], start, end)[0]
    usual = 10.0 ** (log_sum / np.maximum(n_pos, 1))
    ref = np.fmin(usual[None], rn)
    scale = np.fmax(np.abs(xt), np.abs(xp))
    usable = (
        (n_h >= min_history)
        & (low > 1e-9 * np.nan_to_num(scale))
        & ~np.isnan(rd).any(axis=0)
        & (ref > 0).all(axis=0)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = -np.log10(rd / np.where(ref > 0, ref, 1.0))
    terms = np.clip(np.nan_to_num(terms, nan=0.0, posinf=STALE_TERM_CAP), 0.0, STALE_TERM_CAP)
    # frozen: every recent change is one fresh data could not make, and below all of history's
    frozen = _collapsed(rd, rn).all(axis=0) & (rd < low[None]).all(axis=0)
    score = np.where(usable & frozen, k * terms.min(axis=0), 0.0)
    total = np.zeros((score.shape[0], *sr.shape))
    used = np.zeros_like(total)
    total[:, sr.plane, sr.column] = score
    used[:, sr.plane, sr.column] = usable
    total, used = total.sum(axis=1), used.sum(axis=1)
    return np.where(used > 0, total / np.maximum(used, 1), out)


def floors_of(
    names: Sequence[str],
    corruption_planes: Sequence[int],
    floors: Mapping[str, tuple[float, float]],
    default: tuple[float, float],
) -> np.ndarray:
    """(absolute, relative) floor of each corruption estimate's spread: (planes, 2, 1, 1)."""
    return np.array(
        [floors.get(names[i], default) for i in corruption_planes], dtype=np.float64
    ).reshape(len(corruption_planes), 2, 1, 1)
