"""Alerts per incident: the rules replayed over simulated time, held against the ground truth.

The pure parts (firing episodes, the OpenMetrics timeline, attribution) are checked without
binaries. With prometheus and promtool on PATH, a hand-built timeline checks the replay's
timing to the minute (``for:``, a series that leaves the exposition, a recording rule), and a
short demo run with two incidents checks the whole path: each incident's alert is found, at the
time the rule's ``for:`` allows after the incident's state landed.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
from _tools import need

from otel_mlobs import demo
from otel_mlobs.alerts_report import build_report, explains, midnight
from otel_mlobs.cli import build_parser
from otel_mlobs.promrun import SHIPPED_CONFIG_DIR
from otel_mlobs.scenarios import Incident
from otel_mlobs.scenarios.alert_replay import (
    DAY_S,
    LANDS_AFTER_S,
    Firing,
    Replay,
    Snapshot,
    episodes,
    inputs_of,
    load_rules,
    parse_duration,
    piecewise_constant,
    replay_alerts,
    replayable,
    write_openmetrics,
)

START = dt.date(2025, 12, 20)
PIPE = {"pipeline": "taxi_tips"}


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def firing(
    alert: str, active_at: int, cls: str, for_s: int = 60, severity: str = "warning", **labels: str
) -> Firing:
    labels = {**PIPE, **labels, "class": cls, "severity": severity}
    return Firing(alert, labels, active_at, active_at + for_s, None)


def replay_of(*firings: Firing) -> Replay:
    return Replay(list(firings), [], [], 0, 0, 0, 900)


# --- pure parts -----------------------------------------------------------------------------


def test_episodes_apply_for_and_reset_on_a_gap():
    m = 60
    steps = np.array([0, 1, 2, 3, 5, 6, 10, 11, 12, 13, 14]) * m
    # 0..3: fires at 2 (for 2m), resolves at 4; 5..6 leaves before its for; 10..14 fires at 12
    # and is still firing at the end of the timeline.
    assert episodes(steps, step_s=m, for_s=2 * m, end=15 * m) == [
        (0, 2 * m, 4 * m),
        (10 * m, 12 * m, None),
    ]
    assert episodes(steps, step_s=m, for_s=0, end=15 * m)[1] == (5 * m, 5 * m, 7 * m)
    # A for: that is not a whole number of steps waits for the next step.
    assert episodes(steps[:4], step_s=m, for_s=90, end=15 * m) == [(0, 2 * m, 4 * m)]
    assert episodes(np.array([], dtype=np.int64), step_s=m, for_s=0, end=m) == []


def test_durations_parse_as_prometheus_writes_them():
    assert parse_duration("15m") == 900
    assert parse_duration("1h30m") == 5400
    assert parse_duration(None) == 0 and parse_duration("0") == 0
    with pytest.raises(ValueError, match="bad Prometheus duration"):
        parse_duration("15 minutes")


def test_the_shipped_rules_split_into_replayed_and_live_only():
    alerts, records = load_rules(SHIPPED_CONFIG_DIR / "rules")
    replayed = replayable(alerts)
    live = {a.name for a in alerts} - {a.name for a in replayed}
    assert live and all(a.cls.startswith("processor-") for a in alerts if a.name in live)
    assert "MlobsHardConstraintFailed" in {a.name for a in replayed}
    needed, raw = inputs_of(replayed, records)
    assert "pipeline_model:mlobs_model_accuracy_baseline:ratio" in {r.record for r in needed}
    assert {"mlobs_alerts_active", "mlobs_model_accuracy"} <= raw
    assert not any(n.startswith("mlobs_processor_") for n in raw)
    # Instant-only expressions may be judged once per scrape; windows and time() may not.
    assert piecewise_constant('sum by (column) (mlobs_alerts_active{class="drift"}) > 0')
    assert not piecewise_constant("increase(x[1d]) > 0")
    assert not piecewise_constant("time() - max(y) > 3600")


def test_openmetrics_timeline_holds_each_state_until_the_next(tmp_path: Path):
    gauge = "mlobs_alerts_active"
    snaps = [
        Snapshot.after_day(day(0), midnight(day(0)), {gauge: [({"column": "a"}, 1.0)]}),
        Snapshot.after_day(day(1), midnight(day(1)), {gauge: [({"column": 'b"c'}, math.nan)]}),
    ]
    path = tmp_path / "series.om"
    n = write_openmetrics(snaps, path, {gauge}, interval_s=6 * 3600, scrape_labels={"job": "mlobs"})
    lines = path.read_text().splitlines()
    assert n == 8 and lines[-1] == "# EOF"
    first = midnight(day(1))  # day 0's state lands when day 0 is over
    assert lines[0] == f'{gauge}{{column="a",job="mlobs"}} 1.0 {first}'
    assert lines[3] == f'{gauge}{{column="a",job="mlobs"}} 1.0 {first + 18 * 3600}'
    assert lines[4] == f'{gauge}{{column="b\\"c",job="mlobs"}} NaN {first + DAY_S}'
    assert len(lines) == 9  # the last state is held one more day
    with pytest.raises(ValueError, match="off the"):
        write_openmetrics(snaps, path, {gauge}, interval_s=7 * 3600)
    with pytest.raises(ValueError, match="no snapshots"):
        write_openmetrics([], path, {gauge})


def test_attribution_fits_labels_and_time_to_the_ground_truth():
    corruption = Incident("corruption", day(4), day(5)).truth()
    outage = Incident("feedback_outage", day(6), day(6)).truth()
    landed = midnight(day(4)) + LANDS_AFTER_S
    hit = firing("MlobsJointDistributionBroken", landed, "corruption", severity="critical",
                 component="clean", column="trip_distance")  # fmt: skip
    other_column = firing("MlobsDataDrift", landed, "drift", component="clean", column="extra")
    too_early = firing("MlobsDataDrift", landed - DAY_S, "drift", component="clean",
                       column="trip_distance")  # fmt: skip
    quiet_day = firing("MlobsDataDrift", midnight(day(2)), "drift", component="clean", column="x")
    stuck = firing("MlobsFeedbackStuckSegment", midnight(day(12)), "feedback-overdue", 300,
                   model="m", pattern="pickup_zone = East Village")  # fmt: skip
    assert explains(corruption, hit) and not explains(corruption, other_column)
    assert explains(outage, stuck) and not explains(corruption, stuck)
    report = build_report(
        [corruption, outage],
        replay_of(quiet_day, too_early, hit, other_column, stuck),
        last_day=day(20),
    )
    inc, out = report.incidents
    assert [h.firing for h in inc.hits] == [hit]
    assert inc.minutes == 24 * 60 + 1  # lands after its day, then for: 1m
    # Labels settle late: a stuck segment six days after the outage's last day is still its.
    assert [h.firing for h in out.hits] == [stuck]
    assert report.missed == []
    assert [u.firing for u in report.false_alarms] == [quiet_day, too_early]
    assert [(u.firing, u.during) for u in report.off_target] == [(other_column, (inc.name,))]
    text = "\n".join(report.lines())
    assert "first: MlobsJointDistributionBroken{column=trip_distance" in text
    assert "MlobsDataDrift x3" in text
    missed = build_report([corruption], replay_of(quiet_day), last_day=day(20))
    assert missed.missed == [missed.incidents[0].name]
    assert "MISSED" in "\n".join(missed.lines())
    assert missed.as_dict()["incidents"][0]["minutes_to_first_alert"] is None


# --- with Prometheus ------------------------------------------------------------------------


def _snapshot(i: int, *, drift: bool, estimate: float) -> Snapshot:
    t = midnight(day(i))
    model = {**PIPE, "model": "m"}
    samples = {
        "mlobs_component_last_run_event_time_seconds": [({**PIPE, "component": "clean"}, t)],
        "mlobs_model_accuracy": [({**model, "method": "combined", "window": "7d"}, 0.8)],
        "mlobs_model_accuracy_upper": [
            ({**model, "method": "estimated", "window": "1d"}, estimate)
        ],
    }
    if drift:
        labels = {**PIPE, "component": "clean", "method": "drift", "class": "drift",
                  "severity": "info", "column": "trip_distance"}  # fmt: skip
        samples["mlobs_alerts_active"] = [(labels, 1.0)]
    return Snapshot.after_day(day(i), t, samples)


@pytest.mark.prometheus
def test_replay_times_alerts_to_the_minute_of_simulated_time():
    need("prometheus")
    need("promtool")
    snaps = [_snapshot(i, drift=i in (2, 3), estimate=0.7 if i == 5 else 0.81) for i in range(7)]
    replay = replay_alerts(snaps)
    got = {(f.alert, f.labels.get("column", "")): f for f in replay.firings}
    assert set(got) == {("MlobsDataDrift", "trip_distance"), ("MlobsModelAccuracyDrop", "")}
    drift = got[("MlobsDataDrift", "trip_distance")]
    # Pending when day 2's state lands, firing a minute later (for: 1m), gone the moment day
    # 4's state (without it) lands: the replay keeps no stale sample alive.
    assert drift.active_at == snaps[2].visible_at
    assert drift.fired_at == snaps[2].visible_at + 60
    assert drift.resolved_at == snaps[4].visible_at
    assert drift.labels["severity"] == "warning" and drift.labels["class"] == "drift"
    # The accuracy alert reads a recording rule (the 7-day baseline) and waits its for: 15m.
    drop = got[("MlobsModelAccuracyDrop", "")]
    assert drop.fired_at == snaps[5].visible_at + 15 * 60
    assert drop.resolved_at == snaps[6].visible_at
    assert replay.start == snaps[0].visible_at and replay.end == snaps[-1].visible_at + DAY_S
    assert "MlobsProcessorDown" in replay.skipped


@pytest.mark.prometheus
def test_demo_reports_the_alerts_of_each_injected_incident():
    need("prometheus")
    need("promtool")
    incidents = "corruption@2025-12-25:2025-12-26,missing_values@2025-12-27"
    args = build_parser().parse_args(
        ["demo", "--once", "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
         "--days", "8", "--train-days", "4", "--rows-per-day", "500", "--start", "2025-12-20",
         "--incidents", incidents]
    )  # fmt: skip
    out = io.StringIO()
    result = demo.run_demo(args, out)
    text = out.getvalue()
    report = result.alerts
    assert report is not None, text
    assert [i.truth.incident for i in report.incidents] == ["corruption", "missing_values"]
    assert report.missed == []
    corruption, missing = report.incidents
    assert any(
        h.firing.labels.get("column") == "trip_distance"
        and h.firing.labels.get("component") == "clean"
        for h in corruption.hits
    )
    assert any(
        h.firing.alert == "MlobsHardConstraintFailed"
        and h.firing.labels.get("column") in missing.truth.columns
        for h in missing.hits
    )
    fors = {a.name: a.for_s for a in load_rules(SHIPPED_CONFIG_DIR / "rules")[0]}
    for inc in report.incidents:
        for hit in inc.hits:
            f = hit.firing
            assert explains(inc.truth, f)
            # Fired a whole number of days after its state could land, plus the rule's for:.
            assert hit.minutes * 60 >= LANDS_AFTER_S
            assert (f.fired_at - f.active_at) == math.ceil(fors[f.alert] / 60) * 60
    # A column alert goes pending the moment a day's state lands.
    assert (corruption.first.firing.active_at - midnight(day(0))) % DAY_S == 0
    for u in report.unexplained:
        assert not any(
            explains(i.truth, u.firing) and i.window[0] <= u.firing.active_at < i.window[1]
            for i in report.incidents
        )
    assert "Alerts per incident" in text and "corruption@2025-12-25:2025-12-26" in text
    first = re.search(r"first: (\w+)\{[^}]*\} \([^)]*\) after ([\d,]+) min", text)
    assert first, text[text.index("Alerts per incident") :]
    assert first.group(1) == corruption.first.firing.alert
    assert int(first.group(2).replace(",", "")) == round(corruption.minutes)
