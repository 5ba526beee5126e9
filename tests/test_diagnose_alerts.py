"""The alert book: lifecycle, verdicts and the metrics it exports."""

from __future__ import annotations

import json

import pytest

from otel_mlobs.processor.analyzers.diagnose.alerts import AlertBook, alert_id


def _fire(book: AlertBook, source="out/trips/fare/range_high", run="r1", t=1.0, **kw):
    args = dict(
        source=source,
        cls="soft",
        severity="warning",
        role="output",
        dataset="trips",
        columns=("fare",),
        check="range_high",
        explanation="fare: 41% lie above 18.2",
        run_id=run,
        event_time=t,
        value=0.41,
        threshold=0.05,
        rows=500,
    )
    args.update(kw)
    return book.fire(**args)


def test_alert_stays_one_alert_while_it_keeps_failing_and_resolves_when_it_passes():
    book = AlertBook("constraints", "taxi", "clean")
    first = _fire(book)
    again = _fire(book, run="r2", t=2.0, value=0.5)
    assert again is first and first.runs == 2 and first.value == 0.5
    assert first.first_event_time == 1.0 and first.last_event_time == 2.0
    assert book.resolve(first.source, 3.0) is first
    assert not first.active and first.resolved_event_time == 3.0
    assert book.active() == [] and book.recent() == [first]
    assert book.resolve(first.source, 4.0) is None


def test_ids_are_stable_and_short():
    assert alert_id("a", "b") == alert_id("a", "b") != alert_id("a", "c")
    assert len(alert_id("x")) == 12


def test_verdicts_are_recorded_and_a_false_positive_resolves():
    book = AlertBook("constraints", "taxi", "clean")
    alert = _fire(book)
    assert book.mark(alert.id, False).verdict is False
    assert book.active() == []
    other = _fire(book, source="s2", run="r3")
    book.mark(other.id, True)
    assert other.active and other.verdict is True
    with pytest.raises(KeyError, match="no alert 'zzz'"):
        book.mark("zzz", True)


def test_metrics_count_active_alerts_per_column_and_totals():
    book = AlertBook("constraints", "taxi", "clean")
    _fire(book, columns=("fare", "tip"))
    _fire(book, source="s2", cls="hard", severity="critical", columns=("fare",))
    book.mark(_fire(book, source="s3").id, False)
    samples = {
        (m.name, tuple(sorted(m.labels.items()))): m.value
        for m in book.metrics({"pipeline": "taxi", "component": "clean"})
    }
    base = (("component", "clean"), ("method", "constraints"), ("pipeline", "taxi"))

    def key(name, **labels):
        return name, tuple(sorted((*base, *labels.items())))

    assert (
        samples[
            key("mlobs_alerts_active", **{"class": "soft", "severity": "warning", "column": "tip"})
        ]
        == 1
    )
    assert (
        samples[
            key(
                "mlobs_alerts_active", **{"class": "hard", "severity": "critical", "column": "fare"}
            )
        ]
        == 1
    )
    assert samples[key("mlobs_alerts_total", **{"class": "soft", "severity": "warning"})] == 2
    assert (
        samples[key("mlobs_alert_feedback_total", **{"class": "soft", "verdict": "false_positive"})]
        == 1
    )


def test_json_form_is_serializable():
    book = AlertBook("likelihood", "taxi", "clean")
    out = _fire(book, value=float("nan")).to_json()
    assert out["class"] == "soft" and out["value"] is None and out["columns"] == ["fare"]
    json.dumps(out)
