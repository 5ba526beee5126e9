"""Scalar estimates of a column's distribution per run, and how much fresh data moves them.

Each estimate is a function ``SummaryRecord -> (n_columns,) float`` (NaN where it does not
apply) named in :data:`ESTIMATORS`. Beside it, :data:`NOISE` may hold its *sampling noise*: the
standard deviation the estimate would have over fresh samples of the same size and spread
(``std / sqrt(count)`` for a mean, the binomial ``sqrt(p (1 - p) / count)`` for a share).

The noise is what separates a frozen column from one that is merely steady: two fresh days of a
near-constant flag (``is_airport``, 2% ones) differ by about the binomial noise, however small
that is against the flag's history, while a table that stopped refreshing repeats its summary
exactly. It is a lower bound whenever a summary comes from a row sample or rows are correlated,
which only makes the staleness score more cautious.

The corruption and staleness scores look at the estimates named in their parameters; another
source (a density model's log-likelihood, say) plugs in with :func:`register_estimator`, or per
run through ``RootCauseAnalyzer.observe_estimate``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np
from scipy import special

from otel_mlobs import semconv
from otel_mlobs.processor.records import SummaryRecord

Estimator = Callable[[SummaryRecord], np.ndarray]
Noise = Callable[[Mapping[str, np.ndarray]], np.ndarray]
"""Sampling noise of an estimate from the stored estimates of the same runs (any shape)."""

NOVEL = "novel_share"  # share of a categorical's rows whose value the baseline never saw
COUNT = "count"  # non-null values of the column in the run

KIND_CODES: dict[str, int] = {k: i for i, k in enumerate(semconv.COLUMN_KINDS)}


@lru_cache(maxsize=512)
def _kinds(kinds: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(numeric-or-boolean mask, categorical mask, kind codes, any categorical) of a summary."""
    k = np.asarray(kinds, dtype=object)
    numeric = (k == semconv.KIND_NUMERIC) | (k == semconv.KIND_BOOLEAN)
    categorical = k == semconv.KIND_CATEGORICAL
    codes = np.asarray([KIND_CODES.get(x, -1) for x in kinds], dtype=np.int8)
    for a in (numeric, categorical, codes):
        a.setflags(write=False)
    return numeric, categorical, codes, bool(categorical.any())


def kind_masks(rec: SummaryRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Cached per distinct tuple of kinds, so a stream of alike summaries pays for it once."""
    return _kinds(tuple(rec.kinds))


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _numeric_only(rec: SummaryRecord, values: np.ndarray) -> np.ndarray:
    # datetimes trend by design; categoricals have no mean
    return np.where(kind_masks(rec)[0], values, np.nan)


def _est_mean(rec: SummaryRecord) -> np.ndarray:
    return _numeric_only(rec, rec.mean)


def _est_std(rec: SummaryRecord) -> np.ndarray:
    return _numeric_only(rec, rec.std)


def _est_count(rec: SummaryRecord) -> np.ndarray:
    return _f64(rec.count)


def _est_null_ratio(rec: SummaryRecord) -> np.ndarray:
    total = rec.count + rec.nulls
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, rec.nulls / np.maximum(total, 1), np.nan)


def _est_top_share(rec: SummaryRecord) -> np.ndarray:
    _, categorical, _, any_cat = kind_masks(rec)
    if not any_cat:
        return np.full(len(rec.columns), np.nan)
    top = np.array(
        [
            max(t.values()) if t and c else np.nan
            for t, c in zip(rec.top_values, categorical, strict=True)
        ],
        dtype=np.float64,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rec.count > 0, top / rec.count, np.nan)


def _est_second_share(rec: SummaryRecord) -> np.ndarray:
    """Share of a categorical's second most frequent value (0 for a single value).

    Staleness evidence beside the top share: a frozen table repeats every value's count, while
    two fresh samples that happen to give the top value the same count rarely do it for the
    runner-up too.
    """
    _, categorical, _, any_cat = kind_masks(rec)
    if not any_cat:
        return np.full(len(rec.columns), np.nan)
    second = np.array(
        [
            sorted(t.values())[-2] if len(t) > 1 else 0.0 if t else np.nan if c else np.nan
            for t, c in zip(rec.top_values, categorical, strict=True)
        ],
        dtype=np.float64,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rec.count > 0, second / rec.count, np.nan)


def _quantile_at(rec: SummaryRecord, level: float) -> np.ndarray:
    levels = _f64(rec.quantile_levels)
    q = _f64(rec.quantiles).reshape(len(rec.columns), -1)
    if len(levels) == 0 or q.shape[1] != len(levels):
        return np.full(len(rec.columns), np.nan)
    j = int(np.searchsorted(levels, level))
    if j < len(levels) and levels[j] == level:
        return q[:, j].copy()
    # interpolate between the neighbouring levels (clamped at the ends), every row at once
    j = int(np.clip(j, 1, len(levels) - 1))
    lo, hi = levels[j - 1], levels[j]
    w = float(np.clip((level - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else 0.0
    return q[:, j - 1] + w * (q[:, j] - q[:, j - 1])


def _quantile(level: float) -> Estimator:
    def est(rec: SummaryRecord) -> np.ndarray:
        return _numeric_only(rec, _quantile_at(rec, level))

    return est


def _binomial(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.sqrt(np.clip(p * (1.0 - p), 0.0, None) / n), np.nan)


def _noise_mean(e: Mapping[str, np.ndarray]) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(e[COUNT] > 0, e["std"] / np.sqrt(e[COUNT]), np.nan)


def _noise_std(e: Mapping[str, np.ndarray]) -> np.ndarray:
    # the normal-theory standard error; skewed columns vary more, which only adds caution
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(e[COUNT] > 1, e["std"] / np.sqrt(2.0 * (e[COUNT] - 1.0)), np.nan)


def _noise_count(e: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.sqrt(np.maximum(e[COUNT], 0.0))  # Poisson


def _noise_null_ratio(e: Mapping[str, np.ndarray]) -> np.ndarray:
    r = e["null_ratio"]
    with np.errstate(invalid="ignore", divide="ignore"):
        total = e[COUNT] / (1.0 - r)
    return _binomial(r, total)


def _noise_top_share(e: Mapping[str, np.ndarray]) -> np.ndarray:
    return _binomial(e["top_share"], e[COUNT])


def _noise_second_share(e: Mapping[str, np.ndarray]) -> np.ndarray:
    return _binomial(e["second_share"], e[COUNT])


def _noise_quantile(level: float) -> Noise:
    # sd of a sample quantile: sqrt(p (1 - p) / n) / density, the density taken from the
    # interquartile range as if normal (zero for a spike, where a quantile cannot move)
    dens = float(np.exp(-0.5 * special.ndtri(level) ** 2) / np.sqrt(2 * np.pi))

    def noise(e: Mapping[str, np.ndarray]) -> np.ndarray:
        sigma = (e["q75"] - e["q25"]) / 1.349
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                e[COUNT] > 0, np.sqrt(level * (1 - level) / e[COUNT]) * sigma / dens, np.nan
            )

    return noise


ESTIMATORS: dict[str, Estimator] = {
    "mean": _est_mean,
    "std": _est_std,
    "q25": _quantile(0.25),
    "q50": _quantile(0.5),
    "q75": _quantile(0.75),
    "null_ratio": _est_null_ratio,
    "top_share": _est_top_share,
    "second_share": _est_second_share,
    COUNT: _est_count,
}
"""Named scalar estimates of a column's distribution; :func:`register_estimator` adds more."""

NOISE: dict[str, tuple[tuple[str, ...], Noise]] = {
    "mean": (("std", COUNT), _noise_mean),
    "std": (("std", COUNT), _noise_std),
    "q25": (("q25", "q75", COUNT), _noise_quantile(0.25)),
    "q50": (("q25", "q75", COUNT), _noise_quantile(0.5)),
    "q75": (("q25", "q75", COUNT), _noise_quantile(0.75)),
    "null_ratio": (("null_ratio", COUNT), _noise_null_ratio),
    "top_share": (("top_share", COUNT), _noise_top_share),
    "second_share": (("second_share", COUNT), _noise_second_share),
    COUNT: ((COUNT,), _noise_count),
}
"""Sampling noise of the estimates that have a model of it, with the estimates it is computed
from; the others are judged against their own history."""

# A floor under the baseline's standard deviation, per estimate: (absolute, relative to |mean|).
# Without it a column that never varied would turn any change, however small, into infinity.
STD_FLOORS: dict[str, tuple[float, float]] = {
    "null_ratio": (0.005, 0.0),
    "top_share": (0.005, 0.0),
    NOVEL: (0.005, 0.0),
    COUNT: (0.5, 0.0),
}
DEFAULT_FLOOR = (1e-12, 1e-3)


def register_estimator(
    name: str, fn: Estimator, noise: Noise | None = None, noise_needs: tuple[str, ...] = ()
) -> None:
    """Make ``fn`` available as estimate ``name``, with its sampling noise when known.

    ``noise`` receives the stored estimates named in ``noise_needs`` (arrays of one shape) and
    returns the estimate's sampling standard deviation in that shape. Without it the staleness
    score judges the estimate's recent changes against its own history alone. Module-level, so
    snapshots stay picklable.
    """
    if not name or not callable(fn) or name == NOVEL or (noise is not None and not callable(noise)):
        raise ValueError(
            "an estimator needs a non-empty name (not 'novel_share') and a "
            "callable; noise, when given, a callable too"
        )
    unknown = [n for n in noise_needs if n not in ESTIMATORS and n != name]
    if unknown:
        raise ValueError(f"noise_needs names unknown estimates {unknown}")
    ESTIMATORS[name] = fn
    if noise is None:
        NOISE.pop(name, None)
    else:
        NOISE[name] = (tuple(noise_needs), noise)
