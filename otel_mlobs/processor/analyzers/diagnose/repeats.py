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

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MISSING = np.uint64(0x9E3779B97F4A7C15)
_rng = np.random.default_rng(0x5EED)
_POSITION = _rng.integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)  # odd
_SALT = _rng.integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)  # odd


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _text_hashes(texts: list[np.ndarray], n: int) -> np.ndarray:
    """A uint64 per string of each of ``texts`` (``(len(texts), n)``): its code points read as
    64-bit words (two per word), each word's high bits folded down and weighted by an odd
    constant of its position, summed (wrapping).

    Padding code points are zero and add nothing, so a string hashes the same whatever width
    its array has. Columns are stacked at a common width and hashed in one pass.
    """
    width = max(t.dtype.itemsize // 4 for t in texts)
    width += width % 2  # whole 64-bit words: pad with a zero code point
    if width == 0:
        return np.zeros((len(texts), n), dtype=np.uint64)
    if width // 2 > len(_POSITION):
        raise ValueError(f"sampled text longer than {2 * len(_POSITION)} characters")
    stacked = np.array(texts, dtype=f"<U{width}")  # one copy at the common width
    words = stacked.view(np.uint64).reshape(len(texts), n, width // 2)
    return (words ^ (words >> np.uint64(29))) @ _POSITION[: width // 2]


def row_hashes(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """One uint64 per row over ``names`` (missing columns hash as a constant).

    Numbers hash by their float64 bits (one NaN, no negative zero, so equal values agree
    whatever their dtype), text by its code points. Each column's values have their high bits
    folded down and are weighted by an odd constant of the column's position, the row sums
    them (uint64 arithmetic wraps, silently for arrays) and the sum is mixed: moving a value
    to another column changes the hash.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    if not names:
        return np.zeros(n, dtype=np.uint64)
    if len(names) > len(_SALT):
        raise ValueError(f"at most {len(_SALT)} key columns")
    numeric: list[int] = []
    text: list[int] = []
    missing: list[int] = []
    for j, name in enumerate(names):
        values = columns.get(name)
        if values is None or len(values) != n:
            missing.append(j)
        elif values.dtype.kind in "fiub":
            numeric.append(j)
        else:
            text.append(j)
    parts = []
    if numeric:
        x = np.array([columns[names[j]] for j in numeric], dtype=np.float64)
        x += 0.0  # no negative zero
        x[np.isnan(x)] = np.nan  # one NaN
        parts.append(x.view(np.uint64))
    if text:
        texts = [columns[names[j]] for j in text]
        parts.append(_text_hashes([t if t.dtype.kind == "U" else t.astype(str) for t in texts], n))
    if missing:
        parts.append(np.full((len(missing), n), _MISSING, dtype=np.uint64))
    # Rows grouped by how they hash; each keeps the salt of its column's position.
    per_column = np.concatenate(parts) if len(parts) > 1 else parts[0]
    salt = _SALT[np.array(numeric + text + missing)]
    per_column = per_column ^ (per_column >> np.uint64(29))
    per_column *= salt[:, None]
    return _mix(per_column.sum(axis=0, dtype=np.uint64))


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
    return _share_in(current, np.sort(previous))


def _share_in(current: np.ndarray, known: np.ndarray) -> float:
    """Share of ``current`` found in the sorted array ``known``."""
    if not len(current):
        return float("nan")
    if not len(known):
        return 0.0
    at = np.minimum(np.searchsorted(known, current), len(known) - 1)
    return float(np.count_nonzero(known[at] == current) / len(current))


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
        last, self._last = self._last, np.sort(hashes)  # kept sorted for the next lookup
        if last is None or len(hashes) < MIN_VALUES_SOFT or len(last) < MIN_VALUES_SOFT:
            return None
        if not self.threshold.ready:
            return None
        value, n = _share_in(hashes, last), len(hashes)
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
