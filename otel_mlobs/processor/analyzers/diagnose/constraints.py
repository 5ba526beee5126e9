"""Constraints: one check on one column of one dataset, learned from reference runs.

Each constraint knows what the reference said (``describe``), measures one statistic on a run's
column summary, decides with a :class:`~.tuning.RobustThreshold` (soft checks) or a rule (hard
checks), and explains a violation in words a person can act on. Hard checks catch breakage that
is never a matter of degree (a column vanished, changed type, arrived all-null, froze); soft
checks catch distributional breakage (nulls creeping in, values beyond the reference range,
unseen categories, duplicates, a shape unlike any healthy run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from otel_mlobs.processor.analyzers.diagnose import columns as colmod
from otel_mlobs.processor.analyzers.diagnose.columns import ColumnSummary
from otel_mlobs.processor.analyzers.diagnose.tuning import Precision, RobustThreshold

ConstraintClass = Literal["hard", "soft", "drift"]

MIN_VALUES_SOFT = 30
"""Soft (distributional) checks skip columns with fewer values: a share measured on a handful of
rows is noise, and the hard checks still guard a tiny run."""

_SHAPE_LEVELS = np.linspace(0.05, 0.95, 19)
_SHAPE_LEVEL_LIST = [round(float(x), 4) for x in _SHAPE_LEVELS]


@dataclass(slots=True)
class Outcome:
    """The result of one constraint on one run."""

    constraint: Constraint
    value: float
    low: float
    high: float
    n: int
    fired: bool
    explanation: str


def _pct(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    if x == 0:
        return "0%"
    if abs(x) < 0.001:
        return "<0.1%"
    return f"{100 * x:.1f}%" if abs(x) < 0.1 else f"{100 * x:.0f}%"


def _num(x: float) -> str:
    if not np.isfinite(x):
        return str(x)
    return f"{x:.4g}"


class Ledger:
    """Evaluation and violation counts and mute flags of many constraints, as arrays.

    A compiled suite judges all its constraints in one vectorized pass and counts in bulk; each
    constraint reads its own slot, so ``evaluations``, ``violations`` and ``muted`` look the same
    whether a constraint is judged alone or with its suite.
    """

    def __init__(self, size: int = 0) -> None:
        self.evaluations = np.zeros(size, dtype=np.int64)
        self.violations = np.zeros(size, dtype=np.int64)
        self.muted = np.zeros(size, dtype=bool)

    def __len__(self) -> int:
        return len(self.muted)

    @classmethod
    def of(cls, constraints: Sequence[Constraint]) -> Ledger:
        """One ledger for ``constraints`` (slot i is constraint i), their counts moved in."""
        ledger = cls(len(constraints))
        for slot, c in enumerate(constraints):
            ledger.evaluations[slot] = c.evaluations
            ledger.violations[slot] = c.violations
            ledger.muted[slot] = c.muted
            c.ledger, c.slot = ledger, slot
        return ledger


class Constraint:
    """Base class: identity, feedback and muting shared by all checks."""

    check: ClassVar[str]
    cls: ClassVar[ConstraintClass]
    prior: ClassVar[tuple[float, float]] = (2.0, 2.0)

    def __init__(self, role: str, dataset: str, column: str) -> None:
        self.role = role
        self.dataset = dataset
        self.column = column
        self.precision = Precision(*self.prior)
        self.ledger: Ledger | None = None  # shared once a compiled suite holds this check
        self.slot = 0
        self._own = [0, 0, False]  # evaluations, violations, muted until then
        self.id = f"{role}/{dataset}/{column}/{self.check}"  # role/dataset/column/check

    @property
    def evaluations(self) -> int:
        """Runs this constraint judged."""
        if self.ledger is None:
            return int(self._own[0])
        return int(self.ledger.evaluations[self.slot])

    @property
    def violations(self) -> int:
        """Runs in which it fired."""
        if self.ledger is None:
            return int(self._own[1])
        return int(self.ledger.violations[self.slot])

    @property
    def muted(self) -> bool:
        """Whether a person's false-positive verdict switched it off."""
        if self.ledger is None:
            return bool(self._own[2])
        return bool(self.ledger.muted[self.slot])

    @muted.setter
    def muted(self, value: bool) -> None:
        if self.ledger is None:
            self._own[2] = bool(value)
        else:
            self.ledger.muted[self.slot] = bool(value)

    def describe(self) -> str:
        """What the reference established, in words."""
        raise NotImplementedError

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        """Judge one run's column; ``None`` when the check does not apply to this run."""
        raise NotImplementedError

    def explain(self, col: ColumnSummary, value: float) -> str:
        """Why ``value`` measured on ``col`` is a violation, in words a person can act on."""
        raise NotImplementedError

    def learn(self, outcome: Outcome) -> None:  # noqa: B027 - hard checks learn nothing
        """A run passed this check: fold its statistic into the healthy history."""

    def feedback(self, true_positive: bool, value: float, rows: int = 1) -> None:
        """A person judged one of this constraint's alerts (``value`` on ``rows`` values)."""
        self.precision.update(true_positive)

    def _outcome(
        self,
        value: float,
        fired: bool,
        text: str,
        n: int = 0,
        low: float = np.nan,
        high: float = np.nan,
    ) -> Outcome:
        if self.ledger is None:
            self._own[0] += 1
            self._own[1] += int(fired)
        else:
            self.ledger.evaluations[self.slot] += 1
            self.ledger.violations[self.slot] += int(fired)
        return Outcome(self, float(value), float(low), float(high), int(n), bool(fired), text)

    def state(self) -> dict:
        """JSON-able description for the API."""
        return {
            "id": self.id,
            "check": self.check,
            "class": self.cls,
            "role": self.role,
            "dataset": self.dataset,
            "column": self.column,
            "description": self.describe(),
            "precision": round(self.precision.mean, 4),
            "true_positives": self.precision.true_positives,
            "false_positives": self.precision.false_positives,
            "muted": self.muted,
            "evaluations": self.evaluations,
            "violations": self.violations,
        }


# --- hard checks ----------------------------------------------------------------------------


class HardConstraint(Constraint):
    """A rule with no threshold. A false positive mutes it until the reference is rebuilt."""

    cls: ClassVar[ConstraintClass] = "hard"
    prior: ClassVar[tuple[float, float]] = (4.0, 1.0)

    def feedback(self, true_positive: bool, value: float, rows: int = 1) -> None:
        super().feedback(true_positive, value, rows)
        if not true_positive:
            self.muted = True


class Present(HardConstraint):
    """The column exists in every run (it did in every reference run)."""

    check: ClassVar[str] = "present"

    def describe(self) -> str:
        return f"{self.column}: present in every reference run of {self.dataset} ({self.role})"

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        fired = col is None
        text = (
            f"{self.column}: column missing from {self.role} {self.dataset!r}; it was present "
            "in every reference run (renamed, dropped, or its source failed)"
            if fired
            else ""
        )
        return self._outcome(float(fired), fired, text)


class KindMatches(HardConstraint):
    """The column keeps its reference type."""

    check: ClassVar[str] = "type"

    def __init__(self, role: str, dataset: str, column: str, kind: str) -> None:
        super().__init__(role, dataset, column)
        self.kind = kind

    def describe(self) -> str:
        return f"{self.column}: type {self.kind}"

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        if col is None:
            return None
        fired = col.kind != self.kind
        return self._outcome(float(fired), fired, self.explain(col, 1.0) if fired else "")

    def explain(self, col: ColumnSummary, value: float) -> str:
        return f"{self.column}: type changed from {self.kind} to {col.kind} in {self.dataset!r}"


class HasValues(HardConstraint):
    """A column that always carried values must not arrive all-null (a failed source)."""

    check: ClassVar[str] = "not_all_null"

    def __init__(self, role: str, dataset: str, column: str, ref_null_max: float) -> None:
        super().__init__(role, dataset, column)
        self.ref_null_max = ref_null_max

    def describe(self) -> str:
        return (
            f"{self.column}: has values in every run (at most {_pct(self.ref_null_max)} "
            "null in the reference)"
        )

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        if col is None or col.total == 0:
            return None
        fired = col.count == 0
        text = self.explain(col, 1.0) if fired else ""
        return self._outcome(float(fired), fired, text, n=col.total)

    def explain(self, col: ColumnSummary, value: float) -> str:
        return (
            f"{self.column}: all {col.total} values are null in {self.dataset!r}; the reference "
            f"had at most {_pct(self.ref_null_max)} null, so its source has likely failed"
        )


class NotFrozen(HardConstraint):
    """A column that varied in every reference run must not collapse to one value."""

    check: ClassVar[str] = "not_constant"
    _MIN_VALUES = 20

    def __init__(self, role: str, dataset: str, column: str, ref_distinct_min: float) -> None:
        super().__init__(role, dataset, column)
        self.ref_distinct_min = ref_distinct_min

    def describe(self) -> str:
        return (
            f"{self.column}: varies within a run (at least {self.ref_distinct_min:.0f} "
            "distinct values in every reference run)"
        )

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        if col is None or col.count < self._MIN_VALUES or not np.isfinite(col.distinct):
            return None
        constant = col.distinct <= 1 or (
            np.isfinite(col.std) and col.std == 0 and col.kind in colmod.NUMERIC_KINDS
        )
        text = self.explain(col, 1.0) if constant else ""
        return self._outcome(float(constant), bool(constant), text, n=col.count)

    def explain(self, col: ColumnSummary, value: float) -> str:
        return (
            f"{self.column}: all {col.count} values are identical ({_num(col.min)}) in "
            f"{self.dataset!r}; every reference run had at least {self.ref_distinct_min:.0f} "
            "distinct values, so the column looks stuck or defaulted"
        )


class NotRepeated(HardConstraint):
    """A column whose summary changed between every pair of reference runs must not repeat
    the previous run's summary bit for bit: that is a stale cache or a re-delivered file."""

    check: ClassVar[str] = "fresh"

    def __init__(self, role: str, dataset: str, column: str, last: tuple | None) -> None:
        super().__init__(role, dataset, column)
        self._last = last

    def describe(self) -> str:
        return f"{self.column}: its summary differs between runs (it did across the reference)"

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        if col is None or col.count < 2 or not col.has_content():
            return None
        fp = col.fingerprint()
        fired = fp == self._last
        self._last = fp
        text = self.explain(col, 1.0) if fired else ""
        return self._outcome(float(fired), fired, text, n=col.count)

    def explain(self, col: ColumnSummary, value: float) -> str:
        return (
            f"{self.column}: the summary of {self.dataset!r} is identical to the previous run's "
            "(same count, nulls, mean, spread and extremes); its source is "
            "likely serving stale data"
        )


# --- soft checks ----------------------------------------------------------------------------


class SoftConstraint(Constraint):
    """A statistic judged against a band learned from healthy runs."""

    cls: ClassVar[ConstraintClass] = "soft"
    side: ClassVar[str] = "upper"
    noise: ClassVar[str] = "share"
    floor: ClassVar[float] = 0.01

    def __init__(self, role: str, dataset: str, column: str, *, k: float, window: int) -> None:
        super().__init__(role, dataset, column)
        self.threshold = RobustThreshold(
            self.side, self.floor, k=k, window=window, noise=self.noise
        )  # type: ignore[arg-type]

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        """(value, n) for this run, or ``None`` when it cannot be measured."""
        raise NotImplementedError

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        if col is None or col.count < MIN_VALUES_SOFT:
            return None
        measured = self.statistic(col, event_time)
        if measured is None or not np.isfinite(measured[0]) or not self.threshold.ready:
            return None
        value, n = measured
        low, high = self.threshold.bounds(n)
        fired = bool(value < low or value > high)
        return self._outcome(value, fired, self.explain(col, value) if fired else "", n, low, high)

    def learn(self, outcome: Outcome) -> None:
        self.threshold.observe(outcome.value)

    def feedback(self, true_positive: bool, value: float, rows: int = 1) -> None:
        super().feedback(true_positive, value, rows)
        if true_positive:
            self.threshold.narrow()
        else:
            self.threshold.widen(at=value, n=max(rows, 1))

    def seed(self, values: list[float]) -> None:
        """Start the healthy history with the reference runs' own statistics."""
        for v in values:
            self.threshold.observe(v)

    def state(self) -> dict:
        out = super().state()
        t = self.threshold
        out.update(
            center=_json(t.center),
            spread=_json(t.spread),
            sensitivity=round(t.sensitivity, 4),
            history=t.size,
        )
        return out


def _json(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class NullShare(SoftConstraint):
    """Completeness: the share of nulls stays within healthy variability."""

    check: ClassVar[str] = "completeness"
    floor: ClassVar[float] = 0.02

    def describe(self) -> str:
        return f"{self.column}: {_pct(self.threshold.center)} null in a typical healthy run"

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        if col is None or col.total < MIN_VALUES_SOFT or not self.threshold.ready:
            return None
        value, n = col.null_fraction, col.total
        low, high = self.threshold.bounds(n)
        fired = bool(value < low or value > high)
        return self._outcome(value, fired, self.explain(col, value) if fired else "", n, low, high)

    def explain(self, col: ColumnSummary, value: float) -> str:
        high = self.threshold.bounds(col.total)[1]
        return (
            f"{self.column}: {_pct(value)} of values are null in this run; healthy runs have "
            f"about {_pct(self.threshold.center)} (alert above {_pct(high)})"
        )

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        return col.null_fraction, col.total


class _BandConstraint(SoftConstraint):
    """Shared by the range checks: a reference band [lo, hi] holding 99% of values.

    The floor is wide (10 points of share) on purpose: range checks are for gross breakage (a
    sign flip, a sentinel, a scale off by orders of magnitude). A busier tail is how natural
    shifts look too (an evening rush of long trips, a wet day after a dry week), and the drift
    checks report those.
    """

    floor: ClassVar[float] = 0.10

    def __init__(
        self, role: str, dataset: str, column: str, *, lo: float, hi: float, k: float, window: int
    ) -> None:
        super().__init__(role, dataset, column, k=k, window=window)
        self.lo, self.hi = float(lo), float(hi)

    def describe(self) -> str:
        return f"{self.column}: 99% of reference values lie in [{_num(self.lo)}, {_num(self.hi)}]"


class AboveRange(_BandConstraint):
    """Range, upper side: the share of values above the reference's 99.5th percentile."""

    check: ClassVar[str] = "range_high"

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        share = colmod.share_above(col.sketch, self.hi)
        if not np.isfinite(share):
            share = 1.0 - float(
                colmod.cdf_from_quantiles(col.levels, col.quantiles, np.array([self.hi]))[0]
            )
        return share, col.measured

    def explain(self, col: ColumnSummary, value: float) -> str:
        return (
            f"{self.column}: 99% of reference values lie in [{_num(self.lo)}, "
            f"{_num(self.hi)}]; in this run {_pct(value)} lie above {_num(self.hi)} "
            f"(healthy runs: about {_pct(self.threshold.center)})"
        )


class BelowRange(_BandConstraint):
    """Range, lower side: the share of values below the reference's 0.5th percentile."""

    check: ClassVar[str] = "range_low"

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        share = colmod.share_below(col.sketch, self.lo)
        if not np.isfinite(share):
            share = float(
                colmod.cdf_from_quantiles(col.levels, col.quantiles, np.array([self.lo]))[0]
            )
        return share, col.measured

    def explain(self, col: ColumnSummary, value: float) -> str:
        return (
            f"{self.column}: 99% of reference values lie in [{_num(self.lo)}, "
            f"{_num(self.hi)}]; in this run {_pct(value)} lie below {_num(self.lo)} "
            f"(healthy runs: about {_pct(self.threshold.center)})"
        )


def quantile_displacement(ref_sketch: bytes, col: ColumnSummary) -> tuple[float, float, float]:
    """How far the run's deciles sit from where they sit in the reference.

    Returns (median displacement, the level it is largest at, the reference rank there). The
    median over levels, not the maximum, is the statistic: a pipeline fault (a unit change, an
    offset, a clipped feed) moves every quantile, while a new sub-population mixed into healthy
    traffic moves only the quantiles on its side.
    """
    if col.sketch and colmod.sketch_size(col.sketch) > 0:
        run_q = colmod.quantiles(col.sketch, _SHAPE_LEVEL_LIST).tolist()
    else:
        run_q = np.interp(_SHAPE_LEVELS, col.levels, col.quantiles).tolist()
    if not all(math.isfinite(q) for q in run_q):
        return float("nan"), float("nan"), float("nan")
    values = colmod.exact_values(ref_sketch)
    if values is not None:
        # The reference's rank interval at each run quantile: ties (a discrete column) span
        # an interval, and a level inside it is no displacement at all.
        q = np.asarray(run_q)
        below = (np.searchsorted(values, q, "left") / len(values)).tolist()
        upto = (np.searchsorted(values, q, "right") / len(values)).tolist()
    else:
        sketch = colmod.load_sketch(ref_sketch)
        if sketch is None:
            return float("nan"), float("nan"), float("nan")
        split = sorted(set(run_q))  # split points must be unique
        below_at = dict(zip(split, sketch.get_cdf(split, inclusive=False), strict=False))
        upto_at = dict(zip(split, sketch.get_cdf(split, inclusive=True), strict=False))
        below, upto = [below_at[x] for x in run_q], [upto_at[x] for x in run_q]
    gap, ranks = [], []
    for level, lo, hi in zip(_SHAPE_LEVEL_LIST, below, upto, strict=True):
        rank = min(max(level, lo), hi)
        ranks.append(rank)
        gap.append(abs(rank - level))
    worst = max(range(len(gap)), key=gap.__getitem__)
    return float(sorted(gap)[len(gap) // 2]), _SHAPE_LEVEL_LIST[worst], float(ranks[worst])


class Shape(SoftConstraint):
    """Distribution shape: the run's quantiles keep their place in the reference distribution."""

    check: ClassVar[str] = "shape"
    cls: ClassVar[ConstraintClass] = "drift"
    noise: ClassVar[str] = "distance"
    floor: ClassVar[float] = 0.05

    def __init__(
        self,
        role: str,
        dataset: str,
        column: str,
        *,
        ref_sketch: bytes,
        ref_median: float,
        k: float,
        window: int,
    ) -> None:
        super().__init__(role, dataset, column, k=k, window=window)
        self.ref_sketch = ref_sketch
        self.ref_median = float(ref_median)

    def describe(self) -> str:
        return (
            f"{self.column}: each decile of a run sits near the same decile of the reference "
            f"(reference median {_num(self.ref_median)})"
        )

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        return quantile_displacement(self.ref_sketch, col)[0], col.measured

    def explain(self, col: ColumnSummary, value: float) -> str:
        _, level, rank = quantile_displacement(self.ref_sketch, col)
        run_q = float(colmod.quantiles(col.sketch, [level])[0]) if col.sketch else float("nan")
        return (
            f"{self.column}: the whole distribution moved; this run's {100 * level:.0f}th "
            f"percentile ({_num(run_q)}) sits at the reference's {100 * rank:.0f}th, and "
            f"its deciles are displaced by {_pct(value)} of rank on median (healthy runs: "
            f"about {_pct(self.threshold.center)})"
        )


class UnseenCategories(SoftConstraint):
    """Categorical domain: the share of values outside the reference's categories."""

    check: ClassVar[str] = "domain"

    def __init__(
        self,
        role: str,
        dataset: str,
        column: str,
        *,
        domain: dict[str, float],
        k: float,
        window: int,
    ) -> None:
        super().__init__(role, dataset, column, k=k, window=window)
        self.domain = domain  # category -> reference share

    def describe(self) -> str:
        top = ", ".join(f"{c!r}" for c in list(self.domain)[:5])
        more = f" and {len(self.domain) - 5} more" if len(self.domain) > 5 else ""
        return f"{self.column}: values come from the reference categories ({top}{more})"

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        if not col.top:
            return None
        unseen = sum(c for v, c in col.top.items() if v not in self.domain)
        return unseen / max(col.count, 1), col.measured

    def explain(self, col: ColumnSummary, value: float) -> str:
        new = sorted(((c, v) for v, c in col.top.items() if v not in self.domain), reverse=True)
        named = ", ".join(f"{v!r} ({_pct(c / max(col.count, 1))})" for c, v in new[:3])
        gone = [v for v, share in self.domain.items() if share >= 0.01 and v not in col.top]
        tail = (
            f"; reference categories now absent: {', '.join(map(repr, gone[:3]))}" if gone else ""
        )
        return (
            f"{self.column}: {_pct(value)} of values are categories never seen in the "
            f"reference: {named}{tail}"
        )


class CategoryMix(SoftConstraint):
    """Categorical shape: total variation distance of category shares from the reference."""

    check: ClassVar[str] = "shape"
    cls: ClassVar[ConstraintClass] = "drift"
    noise: ClassVar[str] = "distance"
    floor: ClassVar[float] = 0.05

    def __init__(
        self,
        role: str,
        dataset: str,
        column: str,
        *,
        domain: dict[str, float],
        k: float,
        window: int,
    ) -> None:
        super().__init__(role, dataset, column, k=k, window=window)
        self.domain = domain

    def describe(self) -> str:
        top = ", ".join(f"{c!r} {_pct(s)}" for c, s in list(self.domain.items())[:4])
        return f"{self.column}: category shares near the reference ({top})"

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        if not col.top:
            return None
        return category_tvd(self.domain, col.top, col.count)[0], col.measured

    def explain(self, col: ColumnSummary, value: float) -> str:
        _, worst, ref, run = category_tvd(self.domain, col.top, col.count)
        return (
            f"{self.column}: category shares moved by {_pct(value)} (total variation); "
            f"{worst!r} is {_pct(run)} of this run against {_pct(ref)} in the reference"
        )


def category_tvd(
    domain: dict[str, float], top: dict[str, int], count: int
) -> tuple[float, str, float, float]:
    """Total variation distance between reference shares and a run's top values, and the
    category that moved most (values beyond both lists are pooled as one "other")."""
    cats = list(dict.fromkeys([*domain, *top]))
    ref = np.array([domain.get(c, 0.0) for c in cats])
    run = np.array([top.get(c, 0) for c in cats], dtype=np.float64) / max(count, 1)
    ref_other, run_other = max(0.0, 1 - ref.sum()), max(0.0, 1 - run.sum())
    diff = np.abs(ref - run)
    tvd = 0.5 * (diff.sum() + abs(ref_other - run_other))
    worst = int(np.argmax(diff)) if len(diff) else 0
    if not len(cats):
        return float(tvd), "", 0.0, 0.0
    return float(tvd), cats[worst], float(ref[worst]), float(run[worst])


class Duplicates(SoftConstraint):
    """Uniqueness: a column unique in the reference stays (nearly) duplicate-free."""

    check: ClassVar[str] = "uniqueness"
    floor: ClassVar[float] = 0.02

    def describe(self) -> str:
        return f"{self.column}: unique (about {_pct(self.threshold.center)} duplicates)"

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        if not np.isfinite(col.distinct):
            return None
        return max(0.0, 1.0 - col.distinct / max(col.count, 1)), col.measured

    def explain(self, col: ColumnSummary, value: float) -> str:
        return (
            f"{self.column}: about {_pct(value)} of values are duplicates "
            f"({col.distinct:.0f} distinct of {col.count}); the reference was unique"
        )


class TrueShare(SoftConstraint):
    """Boolean shape: the share of true values."""

    check: ClassVar[str] = "true_share"
    cls: ClassVar[ConstraintClass] = "drift"
    side: ClassVar[str] = "both"
    floor: ClassVar[float] = 0.05

    def describe(self) -> str:
        return f"{self.column}: about {_pct(self.threshold.center)} true"

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        return col.mean, col.count

    def explain(self, col: ColumnSummary, value: float) -> str:
        return (
            f"{self.column}: {_pct(value)} true in this run; healthy runs have about "
            f"{_pct(self.threshold.center)}"
        )


class TimeLag(SoftConstraint):
    """Timestamps: the median timestamp keeps its offset from the run's own event time."""

    check: ClassVar[str] = "time_offset"
    side: ClassVar[str] = "both"
    noise: ClassVar[str] = "none"

    def __init__(
        self, role: str, dataset: str, column: str, *, span_s: float, k: float, window: int
    ) -> None:
        super().__init__(role, dataset, column, k=k, window=window)
        # A quarter of a run's own time span: a late evening rush is not a broken clock, a
        # feed re-delivering yesterday or shifted by a time zone is.
        self.threshold.floor = max(60.0, 0.25 * float(span_s))
        self.span_s = float(span_s)

    def describe(self) -> str:
        return (
            f"{self.column}: median timestamp about {_hours(self.threshold.center)} from "
            "the run's event time"
        )

    def statistic(self, col: ColumnSummary, event_time: float) -> tuple[float, int] | None:
        mid = colmod.quantiles(col.sketch, [0.5])[0] if col.sketch else np.nan
        if not np.isfinite(mid):
            mid = float(np.interp(0.5, col.levels, col.quantiles))
        return float(mid - event_time), col.count

    def explain(self, col: ColumnSummary, value: float) -> str:
        return (
            f"{self.column}: median timestamp is {_hours(value)} from the run's event time; "
            f"healthy runs: {_hours(self.threshold.center)}"
        )


def _hours(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "n/a"
    return f"{seconds / 3600:+.1f} h"
