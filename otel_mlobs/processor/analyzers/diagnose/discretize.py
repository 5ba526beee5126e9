"""Turn the columns of a row sample into small integer codes, learned from reference rows.

The density model and the drift classifier both reason over discretized columns: it makes one
model cover numbers, categories and flags alike, makes every parameter readable (a count in a
table), and keeps unseen values meaningful (their own code, not an extrapolation).

Codes per column: ``0`` null; ``1`` below the reference minimum; ``2`` above the reference
maximum; ``3..`` the reference bins (numeric quantile bins, or one code per frequent value and
one for "any other value"). Clock columns (epoch seconds that move on with every run) are coded
by their offset from the run's event time, so "08:00 on the day of the run" means the same thing
every day; identifier-like columns (a new range every run even after that) and run-level columns
(one value per run, a new one each run: a date, a day of week) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NULL, LOW, HIGH, FIRST = 0, 1, 2, 3
_TRENDING_OVERLAP = 0.3


@dataclass
class ColumnCoder:
    """How one column becomes codes."""

    name: str
    kind: str  # "numeric" | "offset" | "categorical"
    edges: np.ndarray  # numeric/offset: inner bin edges; categorical: unused
    values: np.ndarray  # numeric with few values: the exact values; categorical: vocabulary
    lo: float
    hi: float

    @property
    def n_codes(self) -> int:
        """Number of codes this column can take."""
        if self.kind == "categorical":
            return FIRST + len(self.values) + 1
        if len(self.values):
            return FIRST + len(self.values)
        return FIRST + len(self.edges) + 1

    def labels(self) -> list[str]:
        """Human names of the codes, for explanations."""
        out = ["null", f"< {self.lo:.4g}", f"> {self.hi:.4g}"]
        if self.kind == "categorical":
            return out + [str(v) for v in self.values] + ["other"]
        if len(self.values):
            return out + [f"{v:.4g}" for v in self.values]
        bounds = [self.lo, *self.edges.tolist(), self.hi]
        return out + [f"[{a:.4g}, {b:.4g}]" for a, b in zip(bounds, bounds[1:], strict=False)]

    def encode(self, values: np.ndarray, event_time: float) -> np.ndarray:
        """Codes of ``values`` (vectorized)."""
        values = np.asarray(values)
        if self.kind == "categorical":
            text = values.astype(str)
            null = (text == "") | (text == "nan") | (text == "None")
            idx = np.searchsorted(self.values, text)
            idx = np.clip(idx, 0, max(len(self.values) - 1, 0))
            hit = self.values[idx] == text if len(self.values) else np.zeros(len(text), bool)
            codes = np.where(hit, FIRST + idx, FIRST + len(self.values))
            return np.where(null, NULL, codes).astype(np.int64)
        x = _as_float(values)
        if self.kind == "offset":
            x = x - event_time
        null = ~np.isfinite(x)
        if len(self.values):
            idx = np.clip(np.searchsorted(self.values, x), 0, len(self.values) - 1)
            # an unseen value between known ones takes the nearest known code
            left = np.clip(idx - 1, 0, len(self.values) - 1)
            nearer_left = np.abs(x - self.values[left]) < np.abs(x - self.values[idx])
            codes = FIRST + np.where(nearer_left, left, idx)
        else:
            codes = FIRST + np.searchsorted(self.edges, x, side="right")
        codes = np.where(x < self.lo, LOW, np.where(x > self.hi, HIGH, codes))
        return np.where(null, NULL, codes).astype(np.int64)


def _as_float(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]").astype(np.int64) / 1e9
    return np.full(len(values), np.nan)


def _is_numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "fiuM"


def _run_constant(per_run: Sequence[np.ndarray]) -> bool:
    """Whether the column holds one value per run that changes between runs (a date, a day of
    week, a batch id): it names the run, so any new run looks new."""
    if len(per_run) < 2:
        return False
    firsts = []
    for values in per_run:
        v = np.asarray(values)
        if not len(v):
            continue
        _, counts = np.unique(v.astype(str), return_counts=True)
        if counts.max() < 0.99 * len(v):
            return False
        firsts.append(str(v[0]))
    return len(set(firsts)) > 1


def _trending(per_run: Sequence[np.ndarray]) -> bool:
    """Whether each run's values occupy their own slice of the axis."""
    boxes = []
    for x in per_run:
        x = x[np.isfinite(x)]
        if len(x) >= 4:
            boxes.append(np.quantile(x, [0.25, 0.75]))
    if len(boxes) < 2:
        return False
    overlaps = []
    for (a0, a1), (b0, b1) in zip(boxes, boxes[1:], strict=False):
        union = max(a1, b1) - min(a0, b0)
        overlaps.append(1.0 if union == 0 else max(0.0, min(a1, b1) - max(a0, b0)) / union)
    return float(np.median(overlaps)) < _TRENDING_OVERLAP


def fit_coder(
    name: str,
    per_run: Sequence[np.ndarray],
    event_times: Sequence[float],
    *,
    bins: int = 10,
    top: int = 24,
) -> ColumnCoder | None:
    """Learn one column's coding from its reference values, one array per run; ``None`` for
    identifier-like columns that no coding makes comparable across runs."""
    sample = np.concatenate([np.asarray(v) for v in per_run]) if per_run else np.empty(0)
    if not len(sample):
        return None
    if _run_constant(per_run):
        return None
    if not _is_numeric(sample):
        text = sample.astype(str)
        text = text[(text != "") & (text != "nan") & (text != "None")]
        vals, counts = np.unique(text, return_counts=True)
        if len(vals) and len(vals) > 0.5 * len(text) and len(vals) > top:
            return None  # an id or free text: every value is new
        keep = np.sort(vals[np.argsort(-counts, kind="stable")[:top]])
        return ColumnCoder(name, "categorical", np.empty(0), keep, np.nan, np.nan)
    runs = [_as_float(np.asarray(v)) for v in per_run]
    kind = "numeric"
    if _trending(runs):
        offsets = [x - t for x, t in zip(runs, event_times, strict=True)]
        if _trending(offsets):
            return None
        runs, kind = offsets, "offset"
    x = np.concatenate(runs)
    x = x[np.isfinite(x)]
    if not len(x):
        return ColumnCoder(name, kind, np.empty(0), np.array([0.0]), 0.0, 0.0)
    lo, hi = float(x.min()), float(x.max())
    distinct = np.unique(x)
    if len(distinct) <= bins:
        return ColumnCoder(name, kind, np.empty(0), distinct, lo, hi)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    return ColumnCoder(name, kind, edges, np.empty(0), lo, hi)


def encode_rows(
    coders: Sequence[ColumnCoder], columns: Mapping[str, np.ndarray], event_time: float
) -> tuple[np.ndarray, np.ndarray]:
    """Codes matrix (rows, coders) and a mask of the coders whose column is present."""
    n = len(next(iter(columns.values()))) if columns else 0
    codes = np.zeros((n, len(coders)), dtype=np.int64)
    present = np.zeros(len(coders), dtype=bool)
    for j, coder in enumerate(coders):
        values = columns.get(coder.name)
        if values is not None and len(values) == n:
            codes[:, j] = coder.encode(values, event_time)
            present[j] = True
    return codes, present
