"""Component runs: how often each component runs, how long, whether it fails, and its checks.

The raw material for "which component broke, and when": run counters by outcome, a duration
histogram, the event time of the latest run (staleness alerts compare it with ``time()``), and
the outcome of the user's before/after checks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from otel_mlobs.processor.analyzers.base import Analyzer, Metric
from otel_mlobs.processor.analyzers.histogram import FixedHistogram
from otel_mlobs.processor.records import CheckRecord, Key, Record, RunRecord

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
OTHER_CHECK = "_other"


class RunsAnalyzer(Analyzer):
    """Run and check counters of one (pipeline, component).

    Parameters
    ----------
    key
        The (pipeline, component) this instance watches.
    duration_buckets
        Upper bounds (seconds) of the run duration histogram.
    max_checks
        Distinct check names tracked; further names are counted under ``check="_other"`` so a
        check named after data (a bug in the user's code) cannot blow up the series count.
    recent
        How many latest runs ``query()`` returns.
    """

    name: ClassVar[str] = "runs"
    accepts: ClassVar[tuple[type, ...]] = (RunRecord, CheckRecord)

    def __init__(
        self,
        key: Key,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        max_checks: int = 50,
        recent: int = 20,
    ) -> None:
        super().__init__(key)
        if max_checks < 1:
            raise ValueError(f"Invalid 'max_checks': {max_checks}; expected >= 1")
        if recent < 0:
            raise ValueError(f"Invalid 'recent': {recent}; expected >= 0")
        self.duration_buckets = tuple(duration_buckets)
        self.max_checks = max_checks
        self.recent = recent
        self._durations = FixedHistogram(self.duration_buckets)
        self._runs: dict[tuple[str, str], int] = {}  # (stage, status) -> count
        self._checks: dict[tuple[str, str, str], int] = {}  # (check, phase, outcome) -> count
        self._check_names: set[str] = set()
        self._last_event_time: float | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)

    def update(self, record: Record) -> None:
        if isinstance(record, RunRecord):
            self._update_run(record)
        elif isinstance(record, CheckRecord):
            self._update_check(record)

    def _update_run(self, run: RunRecord) -> None:
        status = "ok" if run.ok else "error"
        self._runs[run.stage, status] = self._runs.get((run.stage, status), 0) + 1
        self._durations.observe(run.duration_s)
        if self._last_event_time is None or run.event_time > self._last_event_time:
            self._last_event_time = run.event_time
        self._recent.append(
            {
                "run_id": run.run_id,
                "stage": run.stage,
                "event_time": run.event_time,
                "duration_s": run.duration_s,
                "ok": run.ok,
                "error": run.error,
                "trace_id": run.trace_id,
                "span_id": run.span_id,
            }
        )

    def _update_check(self, check: CheckRecord) -> None:
        name = check.name
        if name not in self._check_names:
            if len(self._check_names) >= self.max_checks:
                name = OTHER_CHECK
            else:
                self._check_names.add(name)
        key = (name, check.phase, "passed" if check.passed else "failed")
        self._checks[key] = self._checks.get(key, 0) + 1

    @property
    def runs(self) -> int:
        """Runs seen so far."""
        return sum(self._runs.values())

    @property
    def last_event_time(self) -> float | None:
        """Event time of the latest run (by event time, not arrival)."""
        return self._last_event_time

    def metrics(self) -> Iterable[Metric]:
        for (stage, status), n in self._runs.items():
            yield Metric(
                "mlobs_component_runs_total",
                "counter",
                "Component runs by stage and outcome (status=ok|error).",
                self.labels(stage=stage, status=status),
                float(n),
            )
        if self._durations.count:
            yield Metric(
                "mlobs_component_run_duration_seconds",
                "histogram",
                "Wall-clock duration of component runs.",
                self.labels(),
                self._durations.value(),
                unit="seconds",
            )
        if self._last_event_time is not None:
            yield Metric(
                "mlobs_component_last_run_event_time_seconds",
                "gauge",
                "Event time (logical time, s since epoch) of the component's latest run.",
                self.labels(),
                self._last_event_time,
                unit="seconds",
            )
        for (check, phase, outcome), n in self._checks.items():
            yield Metric(
                "mlobs_component_checks_total",
                "counter",
                "User checks run before/after components, by outcome (passed|failed).",
                self.labels(check=check, phase=phase, outcome=outcome),
                float(n),
            )

    def query(self, **params: Any) -> dict[str, Any]:
        return {
            **super().query(**params),
            "runs": self.runs,
            "by_stage_status": [
                {"stage": s, "status": st, "count": n} for (s, st), n in self._runs.items()
            ],
            "last_event_time": self._last_event_time,
            "recent": list(self._recent),
            "checks": [
                {"check": c, "phase": p, "outcome": o, "count": n}
                for (c, p, o), n in self._checks.items()
            ],
        }
