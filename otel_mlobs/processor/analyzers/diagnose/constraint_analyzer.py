"""The constraints analyzer: generated constraint suites per component, judged run by run.

For one (pipeline, component) it waits for ``reference_runs`` healthy runs, generates a
:class:`~.suite.DatasetSuite` for every dataset the component reads and writes, then judges each
later run as its summaries arrive. Hard and soft violations are alerts that say which component,
dataset and column broke, and how; the same column failing in the component's input marks an
output alert as *inherited* (it arrived broken) rather than *introduced* (this component broke
it).

Runs are told apart by ``run_id``. A run is *closed* (missing columns are judged, healthy
statistics are learned) when a record of a later run arrives, or from :meth:`refresh` once no
record of it has arrived for ``close_after_s`` seconds: the only use of arrival time, and it
changes when, not what, the analyzer concludes.

Feedback: :meth:`mark_alert` takes a person's verdict on an alert. A false positive resolves the
alert and widens (soft) or mutes (hard) the constraint that raised it; a true positive tightens
it a little. Each constraint reports its estimated precision.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from otel_mlobs.processor.analyzers.base import Analyzer, BatchFailures, Metric
from otel_mlobs.processor.analyzers.diagnose.alerts import AlertBook, Severity
from otel_mlobs.processor.analyzers.diagnose.columns import (
    ColumnSummary,
    SummaryView,
    columns_of,
    summary_view,
)
from otel_mlobs.processor.analyzers.diagnose.constraints import (
    Constraint,
    HardConstraint,
    Outcome,
)
from otel_mlobs.processor.analyzers.diagnose.plan import Judgement, SuitePlan
from otel_mlobs.processor.analyzers.diagnose.repeats import (
    RepeatedRows,
    identifier_columns,
    overlap,
    row_hashes,
)
from otel_mlobs.processor.analyzers.diagnose.suite import DatasetSuite, build_suite
from otel_mlobs.processor.records import Key, Record, RunRecord, SampleRecord, SummaryRecord

DatasetKey = tuple[str, str]  # (role, dataset)
_CLASSES = ("hard", "soft", "drift")  # SuitePlan.cls_code order
_MAX_SAMPLE_ROWS = 5000


class NewColumn(HardConstraint):
    """A column the reference never had: a schema change someone should confirm."""

    check: ClassVar[str] = "new_column"

    def describe(self) -> str:
        return f"{self.column}: not in the reference schema of {self.dataset!r}"

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        if col is None:
            return None
        return self._outcome(
            1.0,
            True,
            f"{self.column}: new column in {self.role} {self.dataset!r}, absent from every "
            "reference run (mark the alert a false positive to accept it into the schema)",
        )


class NewDataset(HardConstraint):
    """A dataset the reference never had: the component started reading or writing more."""

    check: ClassVar[str] = "new_dataset"

    def describe(self) -> str:
        return f"{self.role} {self.dataset!r}: not in the reference"

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        return None

    def judge(self) -> Outcome:
        """Every run that carries the dataset, until someone accepts it."""
        return self._outcome(
            1.0,
            True,
            f"{self.role} {self.dataset!r}: a dataset the reference never had (mark the alert "
            "a false positive to accept it)",
        )


class DatasetPresent(HardConstraint):
    """A dataset the component read or wrote in every reference run must keep appearing."""

    check: ClassVar[str] = "dataset_present"

    def describe(self) -> str:
        return f"{self.role} {self.dataset!r}: logged in every reference run"

    def evaluate(self, col: ColumnSummary | None, event_time: float) -> Outcome | None:
        return None

    def judge(self, present: bool) -> Outcome:
        """Whether the dataset appeared in the closed run."""
        text = (
            ""
            if present
            else (
                f"{self.role} {self.dataset!r} missing from this run; it appeared in every "
                "reference run (a skipped step or a failed source)"
            )
        )
        return self._outcome(float(not present), not present, text)


@dataclass(eq=False)  # runs are told apart by identity
class _Pending:
    run_id: str
    event_time: float
    seen: dict[DatasetKey, set[str]] = field(default_factory=dict)
    summaries: dict[DatasetKey, dict[str, ColumnSummary]] = field(default_factory=dict)
    samples: dict[DatasetKey, dict[str, np.ndarray]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)  # fired, and checks judged alone
    judged: dict[DatasetKey, list[Judgement]] = field(default_factory=dict)  # compiled checks
    arrived: float = field(default_factory=time.monotonic)
    deferred: list[tuple] = field(default_factory=list)  # within update_many: work to drain
    closing: bool = False  # within update_many: a later run started, close once drained


class ConstraintAnalyzer(Analyzer):
    """Auto-generated, self-tuning data constraints for one (pipeline, component).

    Parameters
    ----------
    key
        The component's routing key.
    reference_runs
        How many healthy runs form the reference (runs that failed are skipped).
    k
        Width of soft bands in robust standard deviations of healthy variability.
    window
        Healthy runs remembered per soft constraint.
    close_after_s
        Idle seconds after which :meth:`refresh` closes the pending run.
    max_datasets
        Datasets tracked per component (bounded memory); further ones are ignored and counted.

    Examples
    --------
    >>> import numpy as np
    >>> from otel_mlobs.processor.analyzers.diagnose.frames import summary_record
    >>> a = ConstraintAnalyzer(Key("taxi", "clean"), reference_runs=3)
    >>> rng = np.random.default_rng(0)
    >>> for day in range(4):
    ...     cols = {"fare": rng.gamma(2.0, 5.0, 500), "zone": rng.choice(["a", "b"], 500)}
    ...     a.update(summary_record(a.key, f"r{day}", day * 86400.0, cols))
    >>> a.ready
    True
    >>> broken = {"fare": np.full(500, np.nan), "zone": rng.choice(["a", "b"], 500)}
    >>> a.update(summary_record(a.key, "r4", 4 * 86400.0, broken))
    >>> [(x.cls, x.columns, x.check) for x in a.alerts()][:1]
    [('hard', ('fare',), 'not_all_null')]
    """

    name: ClassVar[str] = "constraints"
    accepts: ClassVar[tuple[type, ...]] = (SummaryRecord, SampleRecord, RunRecord)

    def __init__(
        self,
        key: Key,
        reference_runs: int = 5,
        k: float = 5.0,
        window: int = 60,
        close_after_s: float = 30.0,
        max_datasets: int = 32,
    ) -> None:
        super().__init__(key)
        if reference_runs < 1:
            raise ValueError("reference_runs must be >= 1")
        if not k > 0 or window < 2 or close_after_s <= 0 or max_datasets < 1:
            raise ValueError("k > 0, window >= 2, close_after_s > 0, max_datasets >= 1 required")
        self.reference_runs = int(reference_runs)
        self.k = float(k)
        self.window = int(window)
        self.close_after_s = float(close_after_s)
        self.max_datasets = int(max_datasets)
        self._reset()

    def _reset(self) -> None:
        self._reference: list[_Pending] = []
        self._suites: dict[DatasetKey, DatasetSuite] = {}
        self._datasets: dict[DatasetKey, DatasetPresent] = {}
        self._repeats: dict[DatasetKey, RepeatedRows] = {}
        self._new_datasets: dict[DatasetKey, NewColumn] = {}
        self._pending: _Pending | None = None
        self._judging: _Pending | None = None  # the run outcomes belong to, when not _pending
        self._batch: list[_Pending] | None = None  # runs touched by the update_many in progress
        self._closed: deque[str] = deque(maxlen=64)
        self._failed: deque[str] = deque(maxlen=64)
        self._book = AlertBook(self.name, self.key.pipeline, self.key.component)
        self._evaluations: Counter[str] = Counter()
        self._ignored_datasets = 0
        self._runs_judged = 0

    # -- properties ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the reference is complete and runs are being judged."""
        return bool(self._suites)

    def alerts(self) -> list:
        """Active alerts, newest first."""
        return self._book.active()

    def constraints(self) -> list[Constraint]:
        """Every constraint of every suite."""
        out: list[Constraint] = []
        for suite in self._suites.values():
            out.extend(suite.all())
        out.extend(self._datasets.values())
        out.extend(self._repeats.values())
        out.extend(self._new_datasets.values())
        return out

    # -- update -------------------------------------------------------------------------------
    def update(self, record: Record) -> None:
        if isinstance(record, RunRecord):
            if not record.ok:
                self._failed.append(record.run_id)
            return
        if record.run_id in self._closed:
            return  # a straggler of a run already judged
        if isinstance(record, SummaryRecord):
            view = summary_view(record)  # a malformed record stops here
            self._start(record.run_id, record.event_time)
            self._on_summary(record, view)
        elif isinstance(record, SampleRecord):
            self._start(record.run_id, record.event_time)
            self._on_sample(record)

    def update_many(self, records: Sequence[Record]) -> None:
        """Consume one ingest batch; the summaries of all its runs are judged together.

        Once the reference is built, each dataset's summaries in the batch are judged in one
        vectorized pass, so every run of the batch is judged against the soft-check bands as
        they stood when the batch arrived (runs in one batch do not tighten or widen the band
        for each other; :meth:`update` judges one run at a time). Everything else keeps arrival
        order: alerts, row-sample checks and run closing happen run by run, after the pass. A
        malformed record is skipped without losing the rest of the batch; the records that
        failed are raised together once the batch is done (:class:`BatchFailures`).
        """
        failures: list[tuple[Record, BaseException]] = []
        batching = self.ready and len(records) > 1
        if batching:
            self._batch = []
        try:
            for record in records:
                try:
                    self.update(record)
                except Exception as exc:  # noqa: BLE001 - reported after the batch
                    failures.append((record, exc))
        finally:
            if batching:
                self._drain()
        if failures:
            raise BatchFailures(failures)

    def _drain(self) -> None:
        """Judge what the batch deferred, then replay each run's work and close it in order."""
        runs, self._batch = self._batch or [], None
        groups: dict[DatasetKey, list[tuple]] = {}
        for run in runs:
            for item in run.deferred:
                if item[0] == "summary" and item[1] in self._suites:
                    groups.setdefault(item[1], []).append(item)
        judged: dict[int, Judgement] = {}
        for key, items in groups.items():
            plan = self._plan(key)
            both = plan.judge(
                [it[3] for it in items], [it[2].event_time for it in items], [it[4] for it in items]
            )
            for r, it in enumerate(items):
                judged[id(it)] = both.run(r)
        for run in runs:
            items, run.deferred = run.deferred, []
            self._judging = run
            try:
                for item in items:
                    if item[0] == "summary":
                        _, _, rec, view, skip, fresh = item
                        self._judge_summary(rec, view, skip, fresh, judged.get(id(item)))
                    else:
                        self._judge_sample(item[1])
            finally:
                self._judging = None
            if run.closing:
                self._close(run)

    def refresh(self) -> None:
        """Close the pending run once nothing new has arrived for ``close_after_s``."""
        if self._pending is not None and time.monotonic() - self._pending.arrived > (
            self.close_after_s
        ):
            self.flush()

    def flush(self) -> None:
        """Close the pending run now (end of a replay, or a test)."""
        if self._pending is not None:
            if self._batch is not None:  # closed once the batch is judged
                self._closed.append(self._pending.run_id)
                self._pending.closing = True
                if self._pending not in self._batch:
                    self._batch.append(self._pending)
            else:
                self._close(self._pending)
            self._pending = None

    def restore(self, blob: bytes) -> None:
        """Restore a snapshot; the pending run's idle clock restarts (monotonic clocks do not
        carry across processes)."""
        super().restore(blob)
        if self._pending is not None:
            self._pending.arrived = time.monotonic()

    def _start(self, run_id: str, event_time: float) -> None:
        if self._pending is not None and self._pending.run_id != run_id:
            self.flush()
        if self._pending is None:
            self._pending = _Pending(run_id, float(event_time))
        self._pending.arrived = time.monotonic()

    def _track(self, key: DatasetKey) -> bool:
        pending = self._pending
        assert pending is not None
        known = (
            key in self._suites
            or key in pending.seen
            or key in self._new_datasets
            or any(key in r.seen for r in self._reference)
        )
        if known:
            return True
        if len(self._suites) + len(self._new_datasets) + len(pending.seen) >= self.max_datasets:
            self._ignored_datasets += 1
            return False
        return True

    def _on_summary(self, rec: SummaryRecord, view: SummaryView) -> None:
        key = (rec.role, rec.dataset)
        pending = self._pending
        assert pending is not None
        if not self._track(key):
            return
        seen = pending.seen.setdefault(key, set())
        skip = np.array([n in seen for n in view.names], dtype=bool) if seen else None
        fresh = [n for n in dict.fromkeys(view.names) if n not in seen]
        seen.update(fresh)
        if not self.ready:
            cols = {c.name: c for c in columns_of(rec)}
            pending.summaries.setdefault(key, {}).update({n: cols[n] for n in fresh})
            return
        if self._batch is not None:
            self._defer(pending, ("summary", key, rec, view, skip, fresh))
            return
        self._judge_summary(rec, view, skip, fresh)

    def _defer(self, run: _Pending, item: tuple) -> None:
        run.deferred.append(item)
        if self._batch is not None and run not in self._batch:
            self._batch.append(run)

    def _plan(self, key: DatasetKey) -> SuitePlan:
        suite = self._suites[key]
        if suite.plan is None:  # a suite restored from before plans: compile it now
            suite.plan = SuitePlan(suite.constraints, window=self.window)
        return suite.plan

    def _judge_summary(
        self,
        rec: SummaryRecord,
        view: SummaryView,
        skip: np.ndarray | None,
        fresh: list[str],
        judged: Judgement | None = None,
    ) -> None:
        """Judge one summary of a known dataset (``judged``: already judged in a batch)."""
        key = (rec.role, rec.dataset)
        run = self._judging or self._pending
        assert run is not None
        suite = self._suites.get(key)
        if suite is None:
            self._judge_new_dataset(key, rec)
            return
        plan = self._plan(key)
        if judged is None:
            judged = plan.judge([view], [rec.event_time], [skip]).run(0)
        run.judged.setdefault(key, []).append(judged)
        for code, n in enumerate(np.bincount(plan.cls_code[judged.applied], minlength=3)):
            if n:
                self._evaluations[_CLASSES[code]] += int(n)
        # Alerts in the order the checks are judged: by column, hard checks first.
        events: list[tuple[int, int, Any]] = []
        touched = judged.fired | (judged.applied & plan.alerting)
        if touched.any():
            where = plan.layout(view.names)
            for slot in np.flatnonzero(touched):
                events.append((int(where[plan.col[slot]]), int(plan.order[slot]), int(slot)))
        alone = [n for n in fresh if n not in plan.column_set]
        for name in alone:
            events.append((view.index[name], -1, name))
        if not events:
            return
        cols = {c.name: c for c in columns_of(rec)}
        for _, _, what in sorted(events, key=lambda e: (e[0], e[1])):
            if isinstance(what, str):
                self._judge_alone(suite, cols[what], rec)
                continue
            check = plan.checks[what]
            if not judged.fired[what]:
                plan.alerting[what] = False
                self._book.resolve(check.id, rec.event_time)
                continue
            plan.alerting[what] = True
            value = float(judged.value[what])
            col = cols[plan.columns[plan.col[what]]]
            outcome = Outcome(
                check,
                value,
                float(judged.low[what]),
                float(judged.high[what]),
                int(judged.n[what]),
                True,
                check.explain(col, value),
            )
            self._raise(check, outcome, rec.run_id, rec.event_time)

    def _judge_alone(self, suite: DatasetSuite, col: ColumnSummary, rec: SummaryRecord) -> None:
        """A column the compiled plan does not cover (new since the reference): its own checks."""
        checks = suite.constraints.get(col.name)
        if checks is None:
            checks = suite.constraints[col.name] = [NewColumn(rec.role, rec.dataset, col.name)]
        # Hard checks first: once a column is broken outright (all null, wrong type), its
        # soft checks would only repeat the news in vaguer words.
        broken = False
        for check in sorted(checks, key=lambda c: c.cls != "hard"):
            if check.muted or (broken and check.cls != "hard"):
                continue
            outcome = check.evaluate(col, rec.event_time)
            self._apply(check, outcome, rec.run_id, rec.event_time)
            broken = broken or bool(outcome and outcome.fired and check.cls == "hard")

    def _on_sample(self, rec: SampleRecord) -> None:
        key = (rec.role, rec.dataset)
        pending = self._pending
        assert pending is not None
        if not rec.columns or key in pending.samples or not self._track(key):
            return
        if not self.ready:
            pending.samples[key] = {
                n: np.asarray(v)[:_MAX_SAMPLE_ROWS] for n, v in rec.columns.items()
            }
            return
        pending.samples[key] = {}
        if self._batch is not None:
            self._defer(pending, ("sample", rec))
        else:
            self._judge_sample(rec)

    def _judge_sample(self, rec: SampleRecord) -> None:
        check = self._repeats.get((rec.role, rec.dataset))
        if check is not None and not check.muted:
            self._apply(check, check.evaluate_sample(rec.columns), rec.run_id, rec.event_time)

    def _judge_new_dataset(self, key: DatasetKey, rec: SummaryRecord) -> None:
        check = self._new_datasets.get(key)
        if check is None:
            check = self._new_datasets[key] = NewDataset(rec.role, rec.dataset, "")
        if not check.muted:
            self._apply(check, check.judge(), rec.run_id, rec.event_time)

    # -- judging ------------------------------------------------------------------------------
    def _apply(
        self, check: Constraint, outcome: Outcome | None, run_id: str, event_time: float
    ) -> None:
        if outcome is None:
            return
        self._evaluations[check.cls] += 1
        run = self._judging or self._pending
        if not outcome.fired:
            if run is not None:
                run.outcomes.append(outcome)
            self._book.resolve(check.id, event_time)
            return
        self._raise(check, outcome, run_id, event_time)

    def _raise(self, check: Constraint, outcome: Outcome, run_id: str, event_time: float) -> None:
        run = self._judging or self._pending
        if run is not None:
            run.outcomes.append(outcome)
        columns = (
            check.key_columns
            if isinstance(check, RepeatedRows)
            else ((check.column,) if check.column else ())
        )
        self._book.fire(
            source=check.id,
            cls=check.cls,
            severity=self._severity(check, outcome),
            role=check.role,
            dataset=check.dataset,
            columns=columns,
            check=check.check,
            explanation=outcome.explanation,
            run_id=run_id,
            event_time=event_time,
            value=outcome.value,
            threshold=outcome.high if outcome.value > outcome.high else outcome.low,
            rows=outcome.n,
            origin="input" if check.role == "input" else "introduced",
        )

    @staticmethod
    def _severity(check: Constraint, outcome: Outcome) -> Severity:
        if check.cls == "drift":
            return "info"
        if check.cls == "hard":
            return "warning" if check.check in ("new_column", "new_dataset") else "critical"
        center = (
            (outcome.low + outcome.high) / 2
            if np.isfinite(outcome.low + outcome.high)
            else (outcome.high if np.isfinite(outcome.high) else outcome.low)
        )
        threshold = outcome.high if outcome.value > outcome.high else outcome.low
        if not np.isfinite(center):
            center = 0.0
        margin = abs(threshold - center) if np.isfinite(threshold) else 0.0
        return "critical" if abs(outcome.value - threshold) > 3 * margin else "warning"

    def _close(self, run: _Pending) -> None:
        judging, self._judging = self._judging, run
        try:
            self._close_run(run)
        finally:
            self._judging = judging

    def _close_run(self, run: _Pending) -> None:
        if not run.closing:
            self._closed.append(run.run_id)
        if run.run_id in self._failed:
            return
        if not self.ready:
            if run.summaries:
                self._reference.append(run)
            if len(self._reference) >= self.reference_runs:
                self._build()
            return
        self._runs_judged += 1
        for key, check in self._datasets.items():
            if not check.muted:
                self._apply(check, check.judge(key in run.seen), run.run_id, run.event_time)
        for key, suite in self._suites.items():
            if key not in run.seen:
                continue
            for name in suite.expected - run.seen[key]:
                for check in suite.constraints.get(name, []):
                    if check.check == "present" and not check.muted:
                        self._apply(
                            check, check.evaluate(None, run.event_time), run.run_id, run.event_time
                        )
        broken = {
            (o.constraint.role, o.constraint.dataset, o.constraint.column)
            for o in run.outcomes
            if o.fired and o.constraint.cls != "drift"
        }
        for o in run.outcomes:
            c = o.constraint
            if not o.fired and (c.role, c.dataset, c.column) not in broken:
                c.learn(o)
        for key, judgements in run.judged.items():
            suite = self._suites.get(key)
            if suite is not None and suite.plan is not None:
                self._learn(suite.plan, key, judgements, broken)
        self._tag_origins(run)

    @staticmethod
    def _learn(
        plan: SuitePlan,
        key: DatasetKey,
        judgements: list[Judgement],
        broken: set[tuple[str, str, str]],
    ) -> None:
        """Fold the run's passing soft statistics into their healthy histories, except on
        columns that broke in this run (a broken column's other statistics are suspect too)."""
        keep = plan.row >= 0
        gone = [plan.column_id(c) for r, d, c in broken if (r, d) == key]
        if gone:
            keep = keep & ~np.isin(plan.col, gone)
        for j in judgements:
            idx = np.flatnonzero(keep & j.applied & ~j.fired)
            plan.bank.observe(plan.row[idx], j.value[idx])

    def _tag_origins(self, run: _Pending) -> None:
        active = [a for a in self._book.active() if a.run_id == run.run_id]
        if not active:
            return
        broken_inputs = {a.columns for a in active if a.role == "input" and a.cls != "drift"}
        broken_columns = {c for cols in broken_inputs for c in cols}
        for alert in active:
            if alert.role == "output":
                inherited = bool(set(alert.columns) & broken_columns)
                alert.origin = "inherited" if inherited else "introduced"

    def _build(self) -> None:
        runs = self._reference
        keys: dict[DatasetKey, None] = {}
        for r in runs:
            keys.update(dict.fromkeys(r.summaries))
        for key in keys:
            reference = [(r.event_time, r.summaries.get(key)) for r in runs]
            suite = build_suite(key[0], key[1], reference, k=self.k, window=self.window)
            self._suites[key] = suite
            if suite.always:
                self._datasets[key] = DatasetPresent(key[0], key[1], "")
            samples = [r.samples[key] for r in runs if key in r.samples]
            check = self._repeat_check(key, samples) if len(samples) >= 2 else None
            if check is not None:
                self._repeats[key] = check
        self._reference = []

    def _repeat_check(
        self, key: DatasetKey, samples: list[dict[str, np.ndarray]]
    ) -> RepeatedRows | None:
        names = sorted(set.intersection(*(set(s) for s in samples)) - identifier_columns(samples))
        check = RepeatedRows(key[0], key[1], names, k=self.k, window=self.window)
        hashes = [row_hashes(s, names) for s in samples]
        check.seed(
            [
                overlap(b, a)
                for a, b in zip(hashes, hashes[1:], strict=False)
                if min(len(a), len(b)) >= 30
            ]
        )
        check._last = np.sort(hashes[-1])
        return check if names else None

    # -- feedback -----------------------------------------------------------------------------
    def mark_alert(self, alert_id: str, true_positive: bool) -> dict[str, Any]:
        """Record a person's verdict on an alert; the constraint behind it adjusts.

        A false positive resolves the alert, counts against the constraint's precision and
        widens its band just enough to accept the value that fired (soft) or mutes it (hard; a
        new column or dataset is accepted into the schema). A true positive counts for its
        precision and tightens a soft band slightly. Raises ``KeyError`` for an unknown alert
        id. Returns the alert and the constraint's new state.
        """
        alert = self._book.mark(alert_id, true_positive)
        check = next((c for c in self.constraints() if c.id == alert.source), None)
        if check is not None:
            check.feedback(bool(true_positive), alert.value, alert.rows)
        if check is not None and check.check == "new_column" and not true_positive:
            suite = self._suites.get((check.role, check.dataset))
            if suite is not None:
                suite.known.add(check.column)
        return {"alert": alert.to_json(), "constraint": check.state() if check else None}

    # -- reporting ----------------------------------------------------------------------------
    def metrics(self) -> Iterable[Metric]:
        labels = self.labels()
        yield Metric(
            "mlobs_constraints_ready",
            "gauge",
            "1 once the reference runs are in and runs are judged, else 0.",
            labels,
            1.0 if self.ready else 0.0,
        )
        yield Metric(
            "mlobs_constraint_reference_runs",
            "gauge",
            "Healthy runs collected for the reference (target: reference_runs).",
            labels,
            float(self.reference_runs if self.ready else len(self._reference)),
        )
        per_class = Counter(c.cls for c in self.constraints() if not c.muted)
        for cls, n in sorted(per_class.items()):
            yield Metric(
                "mlobs_constraints",
                "gauge",
                "Active (unmuted) constraints.",
                {**labels, "class": cls},
                float(n),
            )
        for cls, n in sorted(self._evaluations.items()):
            yield Metric(
                "mlobs_constraint_evaluations_total",
                "counter",
                "Constraint evaluations (denominator of the violation ratio).",
                {**labels, "class": cls},
                float(n),
            )
        violations: Counter[tuple[str, str, str]] = Counter()
        for c in self.constraints():
            if c.violations:
                violations[(c.cls, c.check, c.column)] += c.violations
        for (cls, check, column), n in sorted(violations.items()):
            yield Metric(
                "mlobs_constraint_violations_total",
                "counter",
                "Constraint violations, per class, check and column.",
                {**labels, "class": cls, "check": check, "column": column},
                float(n),
            )
        precision: dict[tuple[str, str, str], float] = {}
        for c in self.constraints():
            if c.violations or c.precision.true_positives or c.precision.false_positives:
                k = (c.cls, c.check, c.column)
                precision[k] = min(precision.get(k, 1.0), c.precision.mean)
        for (cls, check, column), p in sorted(precision.items()):
            yield Metric(
                "mlobs_constraint_precision",
                "gauge",
                "Estimated precision of a constraint's alerts (Beta posterior mean).",
                {**labels, "class": cls, "check": check, "column": column},
                p,
            )
        yield from self._book.metrics(labels)

    def query(self, **params: Any) -> dict[str, Any]:
        """State for the API: readiness, alerts, and (optionally filtered) constraints.

        Parameters: ``column``, ``dataset``, ``check`` filter the constraint list;
        ``constraints=false`` leaves it out.
        """
        out = super().query()
        if self.ready:
            status = f"judging runs against a reference of {self.reference_runs} runs"
        else:
            status = (
                f"waiting for reference: {len(self._reference)} of {self.reference_runs} "
                "healthy runs collected; no alerts until then"
            )
        out.update(
            ready=self.ready,
            status=status,
            runs_judged=self._runs_judged,
            alerts=[a.to_json() for a in self._book.active()],
            recent_alerts=[a.to_json() for a in self._book.recent()[:50]],
            ignored_datasets=self._ignored_datasets,
        )
        if str(params.get("constraints", "true")).lower() not in ("false", "0", "no"):
            chosen = [c.state() for c in self.constraints() if _matches(c, params)]
            out["constraints"] = chosen
            out["notes"] = {
                f"{s.role}/{s.dataset}/{col}": note
                for s in self._suites.values()
                for col, note in s.notes.items()
            }
        return out


def _matches(c: Constraint, params: dict[str, Any]) -> bool:
    return all(params.get(f) in (None, "", getattr(c, f)) for f in ("column", "dataset", "check"))
