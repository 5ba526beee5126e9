"""Build summary and sample records from in-memory columns.

The diagnose analyzers consume only :class:`SummaryRecord` and :class:`SampleRecord`. This module
makes the same records from a dict of numpy arrays, so the analyzers can be replayed offline on
a saved table (a notebook, a backfill, a benchmark) without an OTLP round trip. It follows the
wire contract's definitions (population std of finite values, nulls are NaN/None, booleans report
their true ratio as the mean, datetimes in seconds since epoch).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from datasketches import kll_doubles_sketch

from otel_mlobs import semconv
from otel_mlobs.processor.records import Key, SampleRecord, SummaryRecord

_TOP_K = 32
_KLL_K = 200


def column_kind(values: np.ndarray) -> str:
    """The wire kind of a column from its numpy dtype."""
    kind = values.dtype.kind
    if kind == "b":
        return semconv.KIND_BOOLEAN
    if kind in "iuf":
        return semconv.KIND_NUMERIC
    if kind == "M":
        return semconv.KIND_DATETIME
    return semconv.KIND_CATEGORICAL


def _as_float(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "M":
        out = values.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
        out[np.isnat(values)] = np.nan
        return out
    return values.astype(np.float64)


def _null_mask(values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    if kind == "f":
        return np.isnan(values)
    if kind == "M":
        return np.isnat(values)
    if kind == "O":
        return np.array([v is None or (isinstance(v, float) and v != v) for v in values], bool)
    return np.zeros(len(values), dtype=bool)


def summary_record(
    key: Key,
    run_id: str,
    event_time: float,
    columns: Mapping[str, np.ndarray],
    *,
    role: str = "output",
    dataset: str = "data",
    quantile_levels: tuple[float, ...] = semconv.DEFAULT_QUANTILE_LEVELS,
) -> SummaryRecord:
    """One :class:`SummaryRecord` describing ``columns`` (equal-length arrays)."""
    names = list(columns)
    n_cols = len(names)
    rows = len(next(iter(columns.values()))) if columns else 0
    levels = np.asarray(quantile_levels, dtype=np.float64)
    count = np.zeros(n_cols, np.int64)
    nulls = np.zeros(n_cols, np.int64)
    stats = np.full((5, n_cols), np.nan)  # mean, std, min, max, distinct
    quantiles = np.full((n_cols, len(levels)), np.nan)
    sketches: list[bytes] = [b""] * n_cols
    tops: list[dict[str, int]] = [{} for _ in range(n_cols)]
    kinds: list[str] = []
    for i, name in enumerate(names):
        raw = np.asarray(columns[name])
        kind = column_kind(raw)
        kinds.append(kind)
        null = _null_mask(raw)
        present = raw[~null]
        count[i], nulls[i] = len(present), int(null.sum())
        if kind == semconv.KIND_CATEGORICAL:
            values, counts = np.unique(present.astype(str), return_counts=True)
            order = np.argsort(-counts, kind="stable")[:_TOP_K]
            tops[i] = {str(values[j]): int(counts[j]) for j in order}
            stats[4, i] = len(values)
            continue
        x = _as_float(present)
        finite = x[np.isfinite(x)]
        stats[4, i] = len(np.unique(x))
        if kind == semconv.KIND_BOOLEAN:
            stats[0, i] = float(x.mean()) if len(x) else np.nan
            tops[i] = {"true": int(x.sum()), "false": int(len(x) - x.sum())} if len(x) else {}
            continue
        if len(finite):
            stats[0:4, i] = finite.mean(), finite.std(), finite.min(), finite.max()
            quantiles[i] = np.quantile(finite, levels)
        if len(x):
            sketch = kll_doubles_sketch(_KLL_K)
            sketch.update(x)
            sketches[i] = sketch.serialize()
    return SummaryRecord(
        key=key,
        run_id=run_id,
        event_time=float(event_time),
        role=role,
        dataset=dataset,
        rows=rows,
        pointer=f"{dataset}@{run_id}",
        columns=names,
        kinds=kinds,
        count=count,
        nulls=nulls,
        mean=stats[0],
        std=stats[1],
        min=stats[2],
        max=stats[3],
        quantile_levels=levels,
        quantiles=quantiles,
        sketches=sketches,
        distinct=stats[4],
        top_values=tops,
    )


def sample_record(
    key: Key,
    run_id: str,
    event_time: float,
    columns: Mapping[str, np.ndarray],
    *,
    role: str = "output",
    dataset: str = "data",
    size: int = 1000,
    seed: int = 0,
) -> SampleRecord:
    """A uniform sample of at most ``size`` rows of ``columns``, as the SDK would send it."""
    rows = len(next(iter(columns.values()))) if columns else 0
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(rows, size=min(size, rows), replace=False)) if rows else []
    sample = {}
    for name, values in columns.items():
        arr = np.asarray(values)[take]
        if arr.dtype.kind == "O":
            arr = np.array(["" if v is None else str(v) for v in arr])
        elif arr.dtype.kind == "M":
            arr = _as_float(arr)
        sample[name] = arr
    return SampleRecord(
        key=key,
        run_id=run_id,
        event_time=float(event_time),
        role=role,
        dataset=dataset,
        rows=rows,
        columns=sample,
    )
