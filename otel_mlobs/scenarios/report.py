"""The demo's per-day report: what the processor's ``/metrics`` say about each simulated day.

Reads the exposition as Prometheus would (no private API), and turns it into a few lines: rows,
realized accuracy of the labels that arrived (differences of ``mlobs_model_correct_total`` and
``mlobs_model_joined_total``), the label-free estimate, the columns whose latest-run means or
null ratios moved most against the first days (``mlobs_column_*`` gauges), columns frozen since
yesterday, and the processor's own strongest root-cause suspect and stuck-feedback pattern.
"""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from otel_mlobs.scenarios.pipeline import DayResult

# Calendar, clock and id columns move every day by construction; ranking them would drown out
# the columns that matter.
_SKIP_COLUMNS = frozenset(
    {
        "trip_id",
        "rider_id",
        "tpep_pickup_datetime",
        "tpep_dropoff_datetime",
        "label_time",
        "hour",
        "pickup_dow",
    }
)
_MOVE_THRESHOLD = 4.0  # report a column when it moved more than this many baseline spreads
_NULL_UNIT = 0.02  # a 2-point change of the null ratio counts as one spread
_LIVE_BASELINE_DAYS = 2  # baseline length of columns first seen after training
MAX_MOVES = 3
# The processor's findings are shown when they are this strong (root-cause path score; lift and
# coverage of the top stuck-feedback pattern), so the report stays quiet on ordinary days.
_SUSPECT_MIN = 1.0
_STUCK_MIN_LIFT = 2.0
_STUCK_MIN_COVERAGE = 0.1


# --- reading /metrics -------------------------------------------------------------------------

Sample = tuple[dict[str, str], float]


def scrape(url: str, timeout_s: float = 10.0) -> dict[str, list[Sample]]:
    """GET a Prometheus text exposition and index its samples by metric name."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        text = resp.read().decode("utf-8")
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def total(samples: dict[str, list[Sample]], name: str, **match: str) -> float | None:
    """Sum of the samples of ``name`` whose labels include ``match``; None when there are none."""
    values = [
        v
        for labels, v in samples.get(name, ())
        if all(labels.get(k) == w for k, w in match.items())
    ]
    return math.fsum(values) if values else None


ColumnKey = tuple[str, str, str, str]  # (component, role, dataset, column)


@dataclass
class _Profile:
    """A column's latest-run summary as the gauges show it."""

    mean: float
    std: float
    null_ratio: float
    values_total: float = math.nan  # values seen over all runs (counter), to size each day


def column_profiles(samples: dict[str, list[Sample]], pipeline: str) -> dict[ColumnKey, _Profile]:
    """Latest-run mean, std and null ratio of every numeric column the processor tracks."""

    def index(name: str) -> dict[ColumnKey, float]:
        return {
            (lb.get("component", ""), lb.get("role", ""), lb.get("dataset", ""), lb["column"]): v
            for lb, v in samples.get(name, ())
            if lb.get("pipeline") == pipeline and "column" in lb
        }

    means, stds, nulls, values = (
        index("mlobs_column_mean"),
        index("mlobs_column_std"),
        index("mlobs_column_null_ratio"),
        index("mlobs_column_values_total"),
    )
    keys = set(nulls) | set(means)
    return {
        k: _Profile(
            means.get(k, math.nan),
            stds.get(k, math.nan),
            nulls.get(k, 0.0),
            values.get(k, math.nan),
        )
        for k in keys
        if k[3] not in _SKIP_COLUMNS
    }


@dataclass
class _Baseline:
    days: int  # observations wanted
    seen: list[_Profile] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Whether enough days were seen to compare against."""
        return len(self.seen) >= self.days

    @property
    def varied(self) -> bool:
        """Whether the column changed at all from day to day during the baseline."""
        return any(not _same(a, b) for a, b in zip(self.seen, self.seen[1:], strict=False))

    def reference(self) -> tuple[float, float, float, float]:
        """(mean, between, within, null ratio) of the baseline days.

        ``between`` is how far a day's mean wandered from day to day, ``within`` the column's
        own standard deviation; :func:`_move` combines them into the spread a move is scored in.
        """
        means = [p.mean for p in self.seen if not math.isnan(p.mean)]
        stds = [p.std for p in self.seen if not math.isnan(p.std)]
        mean = math.fsum(means) / len(means) if means else math.nan
        # Sample (ddof=1) standard deviation: a short baseline must not look steadier than it is.
        squares = math.fsum((m - mean) ** 2 for m in means)
        between = math.sqrt(squares / (len(means) - 1)) if len(means) > 1 else 0.0
        within = math.fsum(stds) / len(stds) if stds else 0.0
        nulls = math.fsum(p.null_ratio for p in self.seen) / len(self.seen)
        return mean, between, within, nulls


@dataclass(frozen=True)
class Move:
    """One column's move against its baseline, in baseline spreads."""

    key: ColumnKey
    score: float
    detail: str  # e.g. "mean 2.7->4.4 (+10.4 sd)" or "nulls 0%->100%"


_COMPONENT_ORDER = {"clean": 0, "features": 1, "train": 2, "inference": 3, "feedback": 4}


def _upstream(key: ColumnKey) -> tuple[int, int, str, str]:
    """Sort key putting the earliest place in the pipeline first (inputs before outputs)."""
    component, role, dataset, column = key
    return (_COMPONENT_ORDER.get(component, 99), 0 if role == "input" else 1, dataset, column)


class MovementTracker:
    """Compares each day's column profiles with the column's first days.

    Columns present from the first day are compared with their first ``baseline_days`` days
    (the training period); columns that appear later (inference, feedback) with their first
    two days. A column whose mean and std are exactly yesterday's, while they varied during the
    baseline, is reported as frozen: the signature of a feed that stopped refreshing.
    """

    def __init__(self, baseline_days: int, threshold: float = _MOVE_THRESHOLD) -> None:
        self.baseline_days = baseline_days
        self.threshold = threshold
        self._base: dict[ColumnKey, _Baseline] = {}
        self._previous: dict[ColumnKey, _Profile] = {}
        self._observations = 0

    def update(self, profiles: dict[ColumnKey, _Profile]) -> tuple[list[Move], list[ColumnKey]]:
        """Record one day; return (moved columns largest first, frozen columns)."""
        first_day = self._observations == 0
        self._observations += 1
        moves: list[Move] = []
        frozen: list[ColumnKey] = []
        for key, profile in profiles.items():
            base = self._base.get(key)
            if base is None:
                days = self.baseline_days if first_day else _LIVE_BASELINE_DAYS
                base = self._base[key] = _Baseline(days)
            previous = self._previous.get(key)
            self._previous[key] = profile
            if not base.ready:
                base.seen.append(profile)
                continue
            before = previous.values_total if previous else 0.0
            rows = profile.values_total - (0.0 if math.isnan(before) else before)
            move = _move(key, profile, *base.reference(), rows, self.threshold)
            if move is not None:
                moves.append(move)
            elif previous is not None and _same(profile, previous) and base.varied:
                frozen.append(key)
        return sorted(moves, key=lambda m: -m.score), sorted(frozen, key=_upstream)


def _same(a: _Profile, b: _Profile) -> bool:
    """Identical summaries of a column that has spread (a constant column proves nothing)."""
    return a.std > 0 and a.mean == b.mean and a.std == b.std and a.null_ratio == b.null_ratio


def _move(
    key: ColumnKey,
    p: _Profile,
    mean: float,
    between: float,
    within: float,
    nulls: float,
    rows: float,
    threshold: float,
) -> Move | None:
    """Score today's profile against the baseline, or None when it stayed within threshold.

    The spread is the largest of: the baseline's day-to-day wander of the mean; twice the
    sampling error of today's mean (small days wobble more); a twentieth of the column's own
    standard deviation (so a few nearly equal baseline days cannot make every wobble look huge).
    """
    null_score = abs(p.null_ratio - nulls) / _NULL_UNIT
    mean_score = 0.0
    if not (math.isnan(p.mean) or math.isnan(mean)):
        sampling = 2 * within / math.sqrt(rows) if rows >= 1 else 0.0
        floor = 1e-3 * max(abs(mean), 1.0)
        mean_score = abs(p.mean - mean) / max(between, sampling, within / 20, floor)
    score = max(null_score, mean_score)
    if score < threshold:
        return None
    if null_score >= mean_score:
        return Move(key, score, f"nulls {nulls:.0%}->{p.null_ratio:.0%}")
    sign = "+" if p.mean >= mean else "-"
    return Move(key, score, f"mean {_num(mean)}->{_num(p.mean)} ({sign}{mean_score:.1f} sd)")


def summarize_moves(moves: list[Move], limit: int = MAX_MOVES) -> list[str]:
    """One phrase per moved column, placed where it first shows in the pipeline.

    A bad column flows downstream (raw trips -> clean trips -> features), so the same move is
    reported once, at its most upstream dataset, with a count of the places it reached.
    """
    by_column: dict[str, list[Move]] = {}
    for move in moves:
        by_column.setdefault(move.key[3], []).append(move)
    ranked = sorted(by_column.items(), key=lambda kv: -max(m.score for m in kv[1]))
    out = []
    for column, group in ranked[:limit]:
        first = min(group, key=lambda m: _upstream(m.key))
        component, _, dataset, _ = first.key
        more = f", +{len(group) - 1} downstream" if len(group) > 1 else ""
        out.append(f"{column} {first.detail} [{component}/{dataset}{more}]")
    return out


def summarize_frozen(frozen: list[ColumnKey]) -> list[str]:
    """Frozen columns grouped by dataset, upstream first."""
    by_dataset: dict[tuple[str, str], list[str]] = {}
    for component, _, dataset, column in frozen:
        by_dataset.setdefault((component, dataset), []).append(column)
    return [f"{c}/{d} ({', '.join(cols)})" for (c, d), cols in by_dataset.items()]


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


# --- the per-day report -----------------------------------------------------------------------


class DayReporter:
    """Turns each day's scrape into a few lines of text.

    Realized accuracy is the share of correct predictions among the labels that arrived since
    the previous day (differences of ``mlobs_model_correct_total`` / ``_joined_total``); the
    estimate is the processor's label-free ``mlobs_model_accuracy{method="estimated"}`` over
    the last day of predictions. Either shows "n/a" when the processor does not export it.
    """

    def __init__(
        self, metrics_url: str, pipeline: str, model: str, baseline_days: int, out: TextIO
    ) -> None:
        self.metrics_url = metrics_url
        self.pipeline = pipeline
        self.model = model
        self.out = out
        self.tracker = MovementTracker(baseline_days)
        self._joined = 0.0
        self._correct = 0.0
        self.last: dict[str, list[Sample]] = {}
        self.lines: list[str] = []

    def report(self, day: DayResult) -> None:
        samples = self.last = scrape(self.metrics_url)
        lines = [
            f"{day.date} {day.date:%a}  trips {day.rows:>6,}  clean {day.clean_rows:>6,}  "
            f"predicted {day.predictions:>6,}  labels in {day.feedback:>6,}  "
            f"[{'serving ' + day.model_version if day.model_version else 'training'}]"
            + (f"  <- {', '.join(day.incidents)}" if day.incidents else ""),
        ]
        if day.model_version:
            lines.append(
                f"    accuracy: realized {self._realized(samples)}; "
                f"estimated (1d) {self._estimated(samples)}"
            )
        if day.trained:
            lines.append(f"    trained {day.trained}")
        moves, frozen = self.tracker.update(self._today(samples, day.event_time))
        if moves:
            lines.append("    moved: " + "; ".join(summarize_moves(moves)))
        if frozen:
            lines.append("    unchanged since yesterday: " + "; ".join(summarize_frozen(frozen)))
        findings = self._processor_findings(samples)
        if findings:
            lines.append("    processor: " + "; ".join(findings))
        for line in lines:
            print(line, file=self.out, flush=True)
        self.lines.extend(lines)

    def _realized(self, samples: dict[str, list[Sample]]) -> str:
        m = {"pipeline": self.pipeline, "model": self.model}
        joined = total(samples, "mlobs_model_joined_total", **m)
        correct = total(samples, "mlobs_model_correct_total", **m)
        if joined is None or correct is None:
            return "n/a"
        new_joined, new_correct = joined - self._joined, correct - self._correct
        self._joined, self._correct = joined, correct
        if new_joined <= 0:
            return "n/a (no labels yet)"
        return f"{new_correct / new_joined:.3f} on {new_joined:,.0f} labels"

    def _estimated(self, samples: dict[str, list[Sample]]) -> str:
        value = total(
            samples,
            "mlobs_model_accuracy",
            pipeline=self.pipeline,
            model=self.model,
            method="estimated",
            window="1d",
        )
        return "n/a" if value is None else f"{value:.3f}"

    def _processor_findings(self, samples: dict[str, list[Sample]]) -> list[str]:
        """The processor's own top root-cause suspect and stuck-feedback pattern, when strong."""
        out = []
        for labels, phi in samples.get("mlobs_root_cause_score", ()):
            top = labels.get("pipeline") == self.pipeline and labels.get("rank") == "1"
            if top and phi >= _SUSPECT_MIN:
                where = f"{labels.get('component')}/{labels.get('group')}"
                out.append(f"suspect {where} (phi {phi:.1f})")
        coverage = {
            lb.get("pattern"): v
            for lb, v in samples.get("mlobs_stuck_feedback_pattern_coverage", ())
            if lb.get("pipeline") == self.pipeline and lb.get("model") == self.model
        }
        for labels, lift in samples.get("mlobs_stuck_feedback_pattern_lift", ()):
            if labels.get("model") != self.model or labels.get("rank") != "1":
                continue
            cover = coverage.get(labels.get("pattern"), 0.0)
            if lift >= _STUCK_MIN_LIFT and cover >= _STUCK_MIN_COVERAGE:
                out.append(
                    f"feedback stuck for {labels.get('pattern')} "
                    f"({cover:.0%} of overdue labels, {lift:.1f}x)"
                )
        return out

    def _today(self, samples: dict[str, list[Sample]], event_time: float) -> dict:
        """Profiles of the components that ran today (gauges keep older runs' values)."""
        ran = {
            lb.get("component", "")
            for lb, v in samples.get("mlobs_component_last_run_event_time_seconds", ())
            if lb.get("pipeline") == self.pipeline and v >= event_time
        }
        profiles = column_profiles(samples, self.pipeline)
        return {k: p for k, p in profiles.items() if k[0] in ran}
