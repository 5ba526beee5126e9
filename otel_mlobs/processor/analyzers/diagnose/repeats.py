"""Stale-source detection from row samples: how many rows repeat the previous run exactly.

A feed that serves a cached response, or a job that re-reads yesterday's file, produces rows
that already appeared in the previous run, even when every column's distribution looks healthy.
Healthy data repeats too (frequent riders, coarse values), so the statistic is judged against
its own healthy history like every soft check. Identifier columns (unique within every
reference sample: trip ids, timestamps) are left out of the row key: a stale join keeps today's
ids and yesterday's values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from otel_mlobs.processor.analyzers.diagnose.columns import ColumnSummary
from otel_mlobs.processor.analyzers.diagnose.constraints import (
    MIN_VALUES_SOFT,
    Outcome,
    SoftConstraint,
    _pct,
)


def row_hashes(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """One uint64 per row over ``names`` (missing columns hash as a constant)."""
    n = len(next(iter(columns.values()))) if columns else 0
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in names:
            values = columns.get(name)
            if values is None or len(values) != n:
                col = np.full(n, 0x9E3779B97F4A7C15, dtype=np.uint64)
            elif values.dtype.kind in "fiub":
                x = values.astype(np.float64)
                x = np.where(np.isnan(x), np.nan, x + 0.0)  # one NaN, no negative zero
                col = pd.util.hash_array(x.view(np.uint64))
            else:
                col = pd.util.hash_array(values.astype(str).astype(object))
            h = h * np.uint64(1_000_003) ^ col
    return h


def identifier_columns(samples: Sequence[Mapping[str, np.ndarray]]) -> set[str]:
    """Columns whose values are all distinct within every reference sample."""
    names = set.intersection(*(set(s) for s in samples)) if samples else set()
    ids = set()
    for name in names:
        unique = True
        for s in samples:
            v = np.asarray(s[name])
            if len(v) < 2 or len(pd.unique(v)) < len(v):
                unique = False
                break
        if unique:
            ids.add(name)
    return ids


def overlap(current: np.ndarray, previous: np.ndarray) -> float:
    """Share of ``current`` rows whose hash occurs in ``previous``."""
    if not len(current):
        return float("nan")
    return float(np.isin(current, previous).mean())


class RepeatedRows(SoftConstraint):
    """Freshness: the share of sampled rows that repeat a row of the previous run's sample."""

    check: ClassVar[str] = "repeated_rows"

    def __init__(
        self,
        role: str,
        dataset: str,
        key_columns: Sequence[str],
        *,
        k: float,
        window: int,
        last: np.ndarray | None = None,
    ) -> None:
        super().__init__(role, dataset, ",".join(key_columns), k=k, window=window)
        self.key_columns = tuple(key_columns)
        self._last = last

    def describe(self) -> str:
        return (
            f"rows of ({', '.join(self.key_columns)}) in {self.dataset!r}: about "
            f"{_pct(self.threshold.center)} repeat a row of the previous run"
        )

    def evaluate_sample(self, columns: Mapping[str, np.ndarray]) -> Outcome | None:
        """Judge one run's sample, then remember it as the run to compare the next one with."""
        hashes = row_hashes(columns, self.key_columns)
        last, self._last = self._last, hashes
        if last is None or len(hashes) < MIN_VALUES_SOFT or len(last) < MIN_VALUES_SOFT:
            return None
        if not self.threshold.ready:
            return None
        value, n = overlap(hashes, last), len(hashes)
        low, high = self.threshold.bounds(n)
        fired = self.threshold.violated(value, n)
        text = (
            f"{', '.join(self.key_columns)}: {_pct(value)} of sampled rows of {self.dataset!r} "
            f"repeat a row of the previous run exactly (healthy runs: about "
            f"{_pct(self.threshold.center)}); the source is likely serving stale data"
            if fired
            else ""
        )
        return self._outcome(value, fired, text, n, low, high)

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        """Summaries say nothing here: the check is judged on row samples only."""
        return None
