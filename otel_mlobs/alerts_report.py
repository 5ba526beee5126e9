"""Which Prometheus alerts fired for each injected incident, and how long after it started.

The alert rules are evaluated over the run's simulated timeline by
:mod:`otel_mlobs.scenarios.alert_replay` (a Prometheus backfilled with the processor's state at
the simulated times it describes). This module holds the result against the scenario's ground
truth:

* **per incident**: the alerts that fired for it, and the minutes of simulated time from the
  incident's first batch (its start day's runs, whose event time is that day's midnight) to
  each alert firing. A day's state lands when the day is over (a nightly batch), so the
  earliest possible alert comes one day plus the rule's ``for:`` after the first batch;
* **missed**: incidents no alert fired for;
* **unexplained**: alerts no incident explains. Those raised while no incident was under way
  are false alarms; the others went off during an incident but about something its ground
  truth does not name (a column it did not change, often one that moves with it).

An alert firing episode is attributed to an incident when it became active between the landing
of the incident's first day's state and a grace period after its last day's state landed
(rolling windows carry a data incident's effect two more days; labels settle up to a week late,
so label and feedback incidents keep theirs a week), and its labels fit the incident's ground
truth:

* an alert naming a ``column`` fits when the incident changes that column;
* a stuck-feedback ``pattern`` and the feedback-overdue class fit feedback incidents;
* the accuracy classes fit incidents that change a model's inputs or labels;
* any other alert naming a ``component`` fits incidents of that component.

When several incidents fit, the most recently started one gets the alert.

>>> from otel_mlobs.scenarios import Incident
>>> from otel_mlobs.scenarios.alert_replay import Firing
>>> truth = Incident("corruption", "2025-12-27", "2025-12-28").truth()
>>> labels = {"class": "corruption", "severity": "critical", "component": "clean",
...           "column": "trip_distance"}
>>> firing = Firing("MlobsJointDistributionBroken", labels, 1766880000, 1766880060, None)
>>> explains(truth, firing)
True
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_mlobs.scenarios.alert_replay import DAY_S, LANDS_AFTER_S, Firing, Replay, as_json
from otel_mlobs.scenarios.incidents import GroundTruth

GRACE_S = {"data": 2 * DAY_S, "labels": 7 * DAY_S, "feedback": 7 * DAY_S}
"""How long after an incident's last state landed an alert may still be its, by effect."""
MODEL_CLASSES = frozenset({"accuracy-drop", "realized-accuracy-drop"})
FEEDBACK_CLASSES = frozenset({"feedback-overdue"})
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def midnight(day: dt.date) -> int:
    """Epoch seconds of ``day``'s start (UTC): the event time of that day's runs."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def explains(truth: GroundTruth, firing: Firing) -> bool:
    """Whether ``firing``'s labels fit what ``truth`` broke (see the module docstring)."""
    labels = firing.labels
    if labels.get("column"):
        return labels["column"] in truth.columns
    if "pattern" in labels or firing.cls in FEEDBACK_CLASSES:
        return truth.effect == "feedback"
    if firing.cls in MODEL_CLASSES:
        return truth.effect in ("data", "labels")
    if labels.get("component"):
        return labels["component"] == truth.component
    return False


@dataclass(frozen=True)
class AlertHit:
    """One alert firing attributed to an incident."""

    firing: Firing
    minutes: float  # simulated minutes from the incident's first batch to firing


@dataclass
class IncidentAlerts:
    """An incident and the alerts that fired for it."""

    truth: GroundTruth
    first_batch: int  # epoch seconds of its first day's runs
    window: tuple[int, int]  # alerts becoming active in [start, end) may be its
    hits: list[AlertHit] = field(default_factory=list)

    @property
    def name(self) -> str:
        end = f":{self.truth.end}" if self.truth.end else ""
        return f"{self.truth.incident}@{self.truth.start}{end}"

    @property
    def detected(self) -> bool:
        return bool(self.hits)

    @property
    def first(self) -> AlertHit | None:
        """The earliest alert (the most severe among simultaneous ones)."""
        if not self.hits:
            return None
        return min(
            self.hits,
            key=lambda h: (
                h.firing.fired_at,
                _SEVERITY_ORDER.get(h.firing.severity, 9),
                h.firing.key(),
            ),
        )

    @property
    def minutes(self) -> float | None:
        first = self.first
        return None if first is None else first.minutes


@dataclass(frozen=True)
class Unexplained:
    """An alert firing no incident explains; ``during`` names incidents it overlapped."""

    firing: Firing
    during: tuple[str, ...]


@dataclass
class AlertsReport:
    """Alerts per incident, missed incidents and unexplained alerts of one run."""

    incidents: list[IncidentAlerts]
    unexplained: list[Unexplained]
    replay: Replay

    @property
    def missed(self) -> list[str]:
        return [i.name for i in self.incidents if not i.detected]

    @property
    def false_alarms(self) -> list[Unexplained]:
        """Unexplained alerts raised while no incident was under way."""
        return [u for u in self.unexplained if not u.during]

    @property
    def off_target(self) -> list[Unexplained]:
        """Unexplained alerts raised during an incident, about something it did not break."""
        return [u for u in self.unexplained if u.during]

    def lines(self, *, each_unexplained: bool = False) -> list[str]:
        """The report as text, one incident after another; unexplained alerts grouped by name
        (or one line each with ``each_unexplained``)."""
        r = self.replay
        every = r.scrape_interval_s // 60
        out = [
            "Alerts per incident: the shipped rules evaluated over the simulated days in a "
            f"backfilled Prometheus (a scrape every {every} min; took {r.wall_s:.0f} s).",
            "  Minutes run from the incident's first batch; a day's state lands when the day "
            "is over.",
        ]
        if not self.incidents:
            out.append("  no incidents in this run")
        for inc in self.incidents:
            t = inc.truth
            cols = ", ".join(t.columns) or t.effect
            out.append(f"  {inc.name:<34} {t.kind.replace('_', ' '):<13} {t.component}: {cols}")
            first = inc.first
            if first is None:
                out.append("      MISSED: no alert fired for it")
                continue
            out.append(f"      first: {_describe(first.firing)} after {first.minutes:,.0f} min")
            others = _grouped(h for h in inc.hits if h is not first)
            if others:
                out.append("      also:  " + "; ".join(others))
        detected = sum(i.detected for i in self.incidents)
        out.append(
            f"  {detected}/{len(self.incidents)} incidents raised an alert; "
            f"missed: {', '.join(self.missed) or 'none'}"
        )
        out.append(
            f"  alerts no incident explains: {len(self.unexplained)} "
            f"({len(self.false_alarms)} with no incident under way, {len(self.off_target)} "
            "during one but about something it did not change)"
        )
        if each_unexplained:
            for u in self.unexplained:
                during = f"  (during {', '.join(u.during)})" if u.during else ""
                out.append(f"      {_when(u.firing.fired_at)}  {_describe(u.firing)}{during}")
        else:
            out.extend(f"      {line}" for line in self.unexplained_by_alert())
        return out

    def unexplained_by_alert(self) -> list[str]:
        """``Alert xN: columns`` per alert name among the unexplained, most frequent first."""
        by_alert: dict[str, list[Firing]] = {}
        for u in self.unexplained:
            by_alert.setdefault(u.firing.alert, []).append(u.firing)
        out = []
        for name, firings in sorted(by_alert.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            what = sorted({f.labels.get("column") or f.key() for f in firings})
            shown = ", ".join(what[:8]) + (f", +{len(what) - 8} more" if len(what) > 8 else "")
            out.append(f"{name} x{len(firings)}: {shown}")
        return out

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return {
            "incidents": [
                {
                    "incident": i.truth.incident,
                    "kind": i.truth.kind,
                    "start": str(i.truth.start),
                    "end": None if i.truth.end is None else str(i.truth.end),
                    "component": i.truth.component,
                    "columns": list(i.truth.columns),
                    "first_batch": _when(i.first_batch),
                    "detected": i.detected,
                    "window": [_when(i.window[0]), _when(i.window[1])],
                    "first_alert": None if i.first is None else i.first.firing.alert,
                    "minutes_to_first_alert": i.minutes,
                    "alerts": [{**as_json(h.firing), "minutes": h.minutes} for h in i.hits],
                }
                for i in self.incidents
            ],
            "missed": self.missed,
            "false_alarms": len(self.false_alarms),
            "off_target": len(self.off_target),
            "unexplained": [
                {**as_json(u.firing), "during": list(u.during)} for u in self.unexplained
            ],
            "evaluated_alerts": self.replay.evaluated,
            "left_to_live_prometheus": self.replay.skipped,
            "timeline": {"start": _when(self.replay.start), "end": _when(self.replay.end)},
            "scrape_interval_s": self.replay.scrape_interval_s,
            "backfilled_samples": self.replay.samples,
        }


def build_report(truths: Sequence[GroundTruth], replay: Replay, last_day: dt.date) -> AlertsReport:
    """Attribute every firing of ``replay`` to the incident it fits, or to nobody."""
    incidents = []
    for truth in truths:
        last = min(truth.end or last_day, last_day)
        first = midnight(truth.start)
        window = (
            first + LANDS_AFTER_S,
            midnight(last) + LANDS_AFTER_S + GRACE_S.get(truth.effect, GRACE_S["data"]),
        )
        incidents.append(IncidentAlerts(truth, first, window))
    unexplained = []
    for firing in replay.firings:
        during = [i for i in incidents if i.window[0] <= firing.active_at < i.window[1]]
        fitting = [i for i in during if explains(i.truth, firing)]
        if fitting:
            owner = max(fitting, key=lambda i: i.first_batch)
            owner.hits.append(AlertHit(firing, (firing.fired_at - owner.first_batch) / 60))
        else:
            unexplained.append(Unexplained(firing, tuple(i.name for i in during)))
    return AlertsReport(incidents, unexplained, replay)


def _describe(firing: Firing) -> str:
    return f"{firing.key()} ({firing.severity}, {firing.cls})"


def _grouped(hits: Iterable[AlertHit]) -> list[str]:
    """``Alert xN (from M min)`` per alert name, earliest first."""
    by_alert: dict[str, list[AlertHit]] = {}
    for hit in hits:
        by_alert.setdefault(hit.firing.alert, []).append(hit)
    ranked = sorted(by_alert.items(), key=lambda kv: min(h.minutes for h in kv[1]))
    return [
        f"{name}{f' x{len(group)}' if len(group) > 1 else ''} "
        f"({min(h.minutes for h in group):,.0f} min)"
        for name, group in ranked
    ]


def _when(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")
