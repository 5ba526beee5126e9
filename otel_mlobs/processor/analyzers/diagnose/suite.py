"""Generate a constraint suite for one dataset of one component from its reference runs.

Every constraint is derived from what the reference runs show, never from a hand-written rule:
a column present in every reference run must stay present, a column that always had values must
not arrive all-null, a categorical column with a closed set of values must keep to it, and so on.
Soft checks start their healthy history with the reference runs' own statistics, each measured
against a reference built *without* that run (leave-one-out), so the first band already reflects
honest run-to-run variability rather than a run compared with itself.

Once built, a suite is compiled into a :class:`~.plan.SuitePlan` that judges all its checks on
a run's summary in one vectorized pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from otel_mlobs import semconv
from otel_mlobs.processor.analyzers.diagnose import columns as colmod
from otel_mlobs.processor.analyzers.diagnose.columns import ColumnSummary
from otel_mlobs.processor.analyzers.diagnose.constraints import (
    MIN_VALUES_SOFT,
    AboveRange,
    BelowRange,
    CategoryMix,
    Constraint,
    Duplicates,
    HasValues,
    KindMatches,
    NotFrozen,
    NotRepeated,
    NullShare,
    Present,
    Shape,
    SoftConstraint,
    TimeLag,
    TrueShare,
    UnseenCategories,
)
from otel_mlobs.processor.analyzers.diagnose.plan import SuitePlan

_BAND = (0.005, 0.995)
_CLOSED_DOMAIN_COVERAGE = 0.999  # top values must cover this share of a run to enumerate it
_MIN_DISTINCT_VARYING = 3
_UNIQUE_RATIO = 0.95
_TRENDING_OVERLAP = 0.3
_EXACT_MERGE = 50_000
"""References of up to this many sketched values keep every value (deterministic, no
compaction error): five runs' 512-row samples are ~2,500."""


@dataclass
class DatasetSuite:
    """All constraints of one (role, dataset), plus its reference schema."""

    role: str
    dataset: str
    expected: set[str]  # columns present in every reference run
    known: set[str]  # columns present in any reference run (or accepted later)
    always: bool  # the dataset appeared in every reference run
    constraints: dict[str, list[Constraint]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # column -> why a check was skipped
    plan: SuitePlan | None = None  # the compiled form the analyzer judges runs with

    def all(self) -> list[Constraint]:
        """Every constraint of the suite."""
        return [c for cs in self.constraints.values() for c in cs]


Build = Callable[[Sequence[ColumnSummary]], SoftConstraint | None]


def _seeded(
    build: Build, runs: Sequence[ColumnSummary], times: Sequence[float]
) -> SoftConstraint | None:
    """Build on all runs; seed its history with each run measured against the others."""
    final = build(runs)
    if final is None:
        return None
    if len(runs) == 1:
        measured = [final.statistic(runs[0], times[0])]
    else:
        measured = []
        for i in range(len(runs)):
            others = [r for j, r in enumerate(runs) if j != i]
            loo = build(others)
            if loo is not None and runs[i].count >= MIN_VALUES_SOFT:
                measured.append(loo.statistic(runs[i], times[i]))
    final.seed([m[0] for m in measured if m is not None and np.isfinite(m[0])])
    return final


def _domain(runs: Sequence[ColumnSummary]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for r in runs:
        total.update(r.top)
    n = sum(r.count for r in runs)
    return {v: c / n for v, c in total.most_common()} if n else {}


def _is_closed_domain(runs: Sequence[ColumnSummary]) -> bool:
    """Whether the top values enumerate the column (a code, a zone), not sample an id space."""
    for r in runs:
        if r.count == 0:
            continue
        # Top values may be sample counts scaled to the column, so allow their rounding.
        if not r.top or sum(r.top.values()) < _CLOSED_DOMAIN_COVERAGE * r.count - len(r.top):
            return False
        if np.isfinite(r.distinct) and r.distinct > 0.5 * r.count:
            return False
    return True


def is_trending(runs: Sequence[ColumnSummary]) -> bool:
    """Whether each run occupies its own slice of the axis (an id or a clock), so a range
    learned from the reference says nothing about the next run."""
    if len(runs) < 2:
        return False
    iqr = []
    for r in runs:
        q = (
            colmod.quantiles(r.sketch, [0.25, 0.75])
            if r.sketch
            else np.interp([0.25, 0.75], r.levels, r.quantiles)
        )
        iqr.append(q)
    overlaps = []
    for (a0, a1), (b0, b1) in zip(iqr, iqr[1:], strict=False):
        inter = max(0.0, min(a1, b1) - max(a0, b0))
        union = max(a1, b1) - min(a0, b0)
        if np.isfinite(union):
            overlaps.append(1.0 if union == 0 else inter / union)
    return bool(overlaps) and float(np.median(overlaps)) < _TRENDING_OVERLAP


def column_constraints(
    role: str,
    dataset: str,
    name: str,
    runs: Sequence[ColumnSummary],
    times: Sequence[float],
    n_reference: int,
    *,
    k: float,
    window: int,
) -> tuple[list[Constraint], str]:
    """Constraints of one column from its reference runs, and a note on skipped checks."""
    kind = Counter(r.kind for r in runs).most_common(1)[0][0]
    runs = [r for r in runs if r.kind == kind]
    times = [t for r, t in zip(runs, times, strict=False) if r.kind == kind]
    out: list[Constraint] = [KindMatches(role, dataset, name, kind)]
    note = ""
    if len(runs) == n_reference:
        out.append(Present(role, dataset, name))
    soft = {"k": k, "window": window}
    nulls = [r.null_fraction for r in runs if r.total]
    with_values = [r for r in runs if r.count > 0]
    if nulls and all(r.count > 0 for r in runs if r.total):
        out.append(HasValues(role, dataset, name, max(nulls)))
    completeness = NullShare(role, dataset, name, **soft)
    completeness.seed([x for r, x in zip(runs, nulls, strict=False) if r.total >= MIN_VALUES_SOFT])
    out.append(completeness)
    if not with_values:
        return out, "no values in the reference: only schema and completeness are checked"

    distinct_min = (
        min(r.distinct for r in with_values if np.isfinite(r.distinct))
        if any(np.isfinite(r.distinct) for r in with_values)
        else np.nan
    )
    if (
        np.isfinite(distinct_min)
        and distinct_min >= _MIN_DISTINCT_VARYING
        and kind != (semconv.KIND_BOOLEAN)
    ):
        out.append(NotFrozen(role, dataset, name, distinct_min))
    fingerprints = [r.fingerprint() for r in runs]
    if (
        len(runs) >= 2
        and all(r.has_content() for r in runs)
        and all(a != b for a, b in zip(fingerprints, fingerprints[1:], strict=False))
    ):
        out.append(NotRepeated(role, dataset, name, fingerprints[-1]))
    ratios = [r.distinct / r.count for r in with_values if r.count >= 20]
    # Only categorical columns are keys: timestamps and floats are unique by chance, and
    # collide more as volume grows (the birthday effect), which is not a broken key.
    if (
        kind == semconv.KIND_CATEGORICAL
        and ratios
        and len(ratios) == len(with_values)
        and min(ratios) >= _UNIQUE_RATIO
    ):
        dup = Duplicates(role, dataset, name, **soft)
        dup.seed([max(0.0, 1.0 - x) for x in ratios])
        out.append(dup)

    if kind == semconv.KIND_NUMERIC:
        if is_trending(with_values):
            return out, "each run covers a new range (an id or a clock): range and shape skipped"
        numeric, note = _numeric(role, dataset, name, with_values, times, soft)
        out.extend(numeric)
    elif kind == semconv.KIND_DATETIME:
        spans = [r.quantiles[-1] - r.quantiles[0] for r in with_values if r.quantiles.size]
        span = float(np.nanmedian(spans)) if spans else 0.0
        lag = _seeded(
            lambda rs: TimeLag(role, dataset, name, span_s=span, **soft), with_values, times
        )
        if lag is not None:
            out.append(lag)
    elif kind == semconv.KIND_BOOLEAN:
        share = TrueShare(role, dataset, name, **soft)
        share.seed([r.mean for r in with_values if r.count >= MIN_VALUES_SOFT])
        out.append(share)
    elif kind == semconv.KIND_CATEGORICAL:
        if _is_closed_domain(with_values):
            for cls in (UnseenCategories, CategoryMix):
                built = _seeded(
                    lambda rs, c=cls: c(role, dataset, name, domain=_domain(rs), **soft),
                    with_values,
                    times,
                )
                if built is not None:
                    out.append(built)
        else:
            note = "open set of values (ids or free text): domain and shape skipped"
    return out, note


def _numeric(
    role: str,
    dataset: str,
    name: str,
    runs: Sequence[ColumnSummary],
    times: Sequence[float],
    soft: dict,
) -> tuple[list[Constraint], str]:
    if not any(r.sketch for r in runs):
        return [], "no quantile sketch sent: range and shape skipped"

    # The leave-one-out seeding asks for the same subsets of runs once per check: merge each
    # subset once, so the range and shape checks also share one reference.
    merges: dict[tuple[int, ...], bytes] = {}

    def merge(rs: Sequence[ColumnSummary]) -> bytes:
        key = tuple(id(r) for r in rs)
        if key not in merges:
            merges[key] = colmod.merge_sketches([r.sketch for r in rs], exact_up_to=_EXACT_MERGE)
        return merges[key]

    bands: dict[bytes, tuple[float, float] | None] = {}

    def band(rs: Sequence[ColumnSummary]) -> tuple[float, float] | None:
        merged = merge(rs)
        if merged not in bands:
            lo, hi = colmod.quantiles(merged, _BAND) if merged else (np.nan, np.nan)
            bands[merged] = (float(lo), float(hi)) if merged else None
        return bands[merged]

    def above(rs: Sequence[ColumnSummary]) -> AboveRange | None:
        b = band(rs)
        return None if b is None else AboveRange(role, dataset, name, lo=b[0], hi=b[1], **soft)

    def below(rs: Sequence[ColumnSummary]) -> BelowRange | None:
        b = band(rs)
        return None if b is None else BelowRange(role, dataset, name, lo=b[0], hi=b[1], **soft)

    def shape(rs: Sequence[ColumnSummary]) -> Shape | None:
        merged = merge(rs)
        if not merged:
            return None
        median = float(colmod.quantiles(merged, [0.5])[0])
        return Shape(role, dataset, name, ref_sketch=merged, ref_median=median, **soft)

    whole = band(runs)
    builders: tuple = (above, below, shape)
    note = ""
    if whole is not None and not whole[1] > whole[0]:
        # 99% of the reference is one value (a dry week's precipitation): any other value
        # would be "out of range", which says nothing. The shape check still watches it.
        builders = (shape,)
        note = f"99% of reference values equal {whole[0]:.4g}: range skipped"
    built = [c for c in (_seeded(f, runs, times) for f in builders) if c is not None]
    return built, note


def build_suite(
    role: str,
    dataset: str,
    reference: Sequence[tuple[float, dict[str, ColumnSummary] | None]],
    *,
    k: float,
    window: int,
) -> DatasetSuite:
    """The suite of one (role, dataset) from ``reference``: one (event time, columns or None)
    per reference run, ``None`` when the dataset was absent from that run."""
    present = [(t, cols) for t, cols in reference if cols is not None]
    names: dict[str, None] = {}
    for _, cols in present:
        names.update(dict.fromkeys(cols))
    expected = {n for n in names if all(n in cols for _, cols in present)}
    suite = DatasetSuite(
        role, dataset, expected=expected, known=set(names), always=len(present) == len(reference)
    )
    for name in names:
        runs = [cols[name] for _, cols in present if name in cols]
        times = [t for t, cols in present if name in cols]
        built, note = column_constraints(
            role, dataset, name, runs, times, len(present), k=k, window=window
        )
        suite.constraints[name] = built
        if note:
            suite.notes[name] = note
    suite.plan = SuitePlan(suite.constraints, window=window)
    return suite
