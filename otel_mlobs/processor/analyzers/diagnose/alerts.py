"""Alerts: what a diagnose analyzer tells a person, with the evidence to act on.

An alert names its class (``hard``: a rule broke, ``soft``: a distribution broke, ``drift``:
the data moved but nothing is broken), a severity, the component, the dataset and columns, and an
explanation in plain words. An alert stays active while its check keeps failing and resolves at
the first run that passes, so ``mlobs_alerts_active`` shows what is wrong *now* and
``mlobs_alerts_total`` counts how often something went wrong.

People answer alerts through :meth:`AlertBook.mark`: a false positive resolves the alert and is
handed back to the analyzer so the check that raised it can adjust.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from otel_mlobs.processor.analyzers.base import Metric

AlertClass = Literal["hard", "soft", "drift"]
Severity = Literal["critical", "warning", "info"]
CLASSES: tuple[AlertClass, ...] = ("hard", "soft", "drift")
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")


@dataclass
class Alert:
    """One alert. ``source`` identifies the check that raised it (stable across runs)."""

    id: str
    method: str
    cls: AlertClass
    severity: Severity
    pipeline: str
    component: str
    role: str
    dataset: str
    columns: tuple[str, ...]
    check: str
    source: str
    explanation: str
    run_id: str
    first_event_time: float
    last_event_time: float
    value: float
    threshold: float
    rows: int = 0  # values the statistic was measured on
    origin: str = ""  # "input" | "introduced" | "inherited" (see ConstraintAnalyzer)
    runs: int = 1
    active: bool = True
    resolved_event_time: float | None = None
    verdict: bool | None = None  # True: confirmed, False: false positive, None: unanswered

    def to_json(self) -> dict:
        """JSON-able form for the API (``class`` instead of the Python-safe ``cls``)."""
        out = asdict(self)
        out["class"] = out.pop("cls")
        out["columns"] = list(self.columns)
        for name in ("value", "threshold"):
            out[name] = float(out[name]) if np.isfinite(out[name]) else None
        return out


def alert_id(*parts: str) -> str:
    """A short stable id: the same check failing from the same run always gets the same id."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=6).hexdigest()


class AlertBook:
    """Active alerts of one analyzer instance plus a bounded memory of resolved ones."""

    def __init__(self, method: str, pipeline: str, component: str, history: int = 256) -> None:
        self.method = method
        self.pipeline = pipeline
        self.component = component
        self._active: dict[str, Alert] = {}  # source -> alert
        self._resolved: deque[Alert] = deque(maxlen=history)
        self._totals: Counter[tuple[str, str]] = Counter()
        self._feedback: Counter[tuple[str, str]] = Counter()

    def fire(
        self,
        *,
        source: str,
        cls: AlertClass,
        severity: Severity,
        role: str,
        dataset: str,
        columns: Iterable[str],
        check: str,
        explanation: str,
        run_id: str,
        event_time: float,
        value: float = float("nan"),
        threshold: float = float("nan"),
        rows: int = 0,
        origin: str = "",
    ) -> Alert:
        """Raise (or refresh, when already active) the alert of ``source``."""
        alert = self._active.get(source)
        if alert is not None:
            if alert.run_id != run_id:
                alert.runs += 1
            alert.run_id = run_id
            alert.last_event_time = max(alert.last_event_time, event_time)
            alert.explanation, alert.value, alert.threshold = explanation, value, threshold
            alert.rows = rows
            alert.severity, alert.columns = severity, tuple(columns)
            return alert
        alert = Alert(
            id=alert_id(self.method, self.pipeline, self.component, source, run_id),
            method=self.method,
            cls=cls,
            severity=severity,
            pipeline=self.pipeline,
            component=self.component,
            role=role,
            dataset=dataset,
            columns=tuple(columns),
            check=check,
            source=source,
            explanation=explanation,
            run_id=run_id,
            first_event_time=event_time,
            last_event_time=event_time,
            value=value,
            threshold=threshold,
            rows=rows,
            origin=origin,
        )
        self._active[source] = alert
        self._totals[(cls, severity)] += 1
        return alert

    def resolve(self, source: str, event_time: float) -> Alert | None:
        """The check passed: close its alert, if any."""
        alert = self._active.pop(source, None)
        if alert is not None:
            alert.active = False
            alert.resolved_event_time = event_time
            self._resolved.append(alert)
        return alert

    def get(self, alert_id_: str) -> Alert:
        """The alert with this id, active or recently resolved; ``KeyError`` otherwise."""
        for alert in self:
            if alert.id == alert_id_:
                return alert
        raise KeyError(
            f"no alert {alert_id_!r} for {self.pipeline}/{self.component} ({self.method}); "
            "it may be unknown or too old"
        )

    def mark(self, alert_id_: str, true_positive: bool) -> Alert:
        """Record a person's verdict; a false positive is resolved on the spot."""
        alert = self.get(alert_id_)
        alert.verdict = bool(true_positive)
        verdict = "true_positive" if true_positive else "false_positive"
        self._feedback[(alert.cls, verdict)] += 1
        if not true_positive and alert.active:
            self.resolve(alert.source, alert.last_event_time)
        return alert

    def active(self) -> list[Alert]:
        """Alerts currently firing, newest first."""
        return sorted(self._active.values(), key=lambda a: -a.last_event_time)

    def recent(self) -> list[Alert]:
        """Resolved alerts still remembered, newest first."""
        return sorted(self._resolved, key=lambda a: -(a.resolved_event_time or 0.0))

    def __iter__(self) -> Iterator[Alert]:
        yield from self._active.values()
        yield from self._resolved

    def active_for(self, source: str) -> Alert | None:
        """The active alert of one check, if it is firing."""
        return self._active.get(source)

    def metrics(self, labels: dict[str, str]) -> Iterator[Metric]:
        """``mlobs_alerts_active``, ``mlobs_alerts_total`` and ``mlobs_alert_feedback_total``."""
        active: Counter[tuple[str, str, str]] = Counter()
        for alert in self._active.values():
            for column in alert.columns or ("",):
                active[(alert.cls, alert.severity, column)] += 1
        base = {**labels, "method": self.method}
        for (cls, severity, column), n in sorted(active.items()):
            yield Metric(
                "mlobs_alerts_active",
                "gauge",
                "Alerts currently firing, per class, severity and column.",
                {**base, "class": cls, "severity": severity, "column": column},
                float(n),
            )
        for cls in CLASSES:
            for severity in SEVERITIES:
                n = self._totals.get((cls, severity), 0)
                if n:
                    yield Metric(
                        "mlobs_alerts_total",
                        "counter",
                        "Alerts raised since start.",
                        {**base, "class": cls, "severity": severity},
                        float(n),
                    )
        for (cls, verdict), n in sorted(self._feedback.items()):
            yield Metric(
                "mlobs_alert_feedback_total",
                "counter",
                "Verdicts people gave on alerts (true or false positive).",
                {**base, "class": cls, "verdict": verdict},
                float(n),
            )
