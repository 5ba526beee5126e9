"""Behaviour of the first analyzers: runs, columns, traffic, and the fixed histogram."""

from __future__ import annotations

import math

import _records
import numpy as np
import pytest

from otel_mlobs.processor.analyzers.base import Histogram
from otel_mlobs.processor.analyzers.columns import ColumnsAnalyzer
from otel_mlobs.processor.analyzers.histogram import FixedHistogram
from otel_mlobs.processor.analyzers.runs import OTHER_CHECK, RunsAnalyzer
from otel_mlobs.processor.analyzers.traffic import TrafficAnalyzer
from otel_mlobs.processor.records import Key


def samples(analyzer, name):
    """{frozenset(labels): value} of one metric name."""
    return {frozenset(m.labels.items()): m.value for m in analyzer.metrics() if m.name == name}


def one(analyzer, name, **labels):
    found = [
        m.value
        for m in analyzer.metrics()
        if m.name == name and all(m.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# --- histogram ----------------------------------------------------------------------------------


def test_fixed_histogram_matches_numpy_counts():
    values = np.random.default_rng(1).exponential(2.0, size=1000)
    bounds = [0.5, 1, 2, 4, 8]
    h = FixedHistogram(bounds)
    h.observe(values[:400])
    h.observe(values[400:])
    cumulative = [c for _, c in h.value().buckets]
    expected = [(values <= b).sum() for b in bounds] + [values.size]
    assert cumulative == expected
    assert h.value().sum == pytest.approx(values.sum())


@pytest.mark.parametrize("bounds", [[], [2, 1], [1, 1], [1, math.inf]])
def test_fixed_histogram_rejects_bad_bounds(bounds):
    with pytest.raises(ValueError, match="bounds"):
        FixedHistogram(bounds)


# --- runs ---------------------------------------------------------------------------------------


def test_runs_count_outcomes_durations_and_latest_event_time():
    a = RunsAnalyzer(_records.RUN_KEY)
    for day, ok in [(2, True), (1, False), (3, True)]:
        a.update(_records.run(day, ok=ok))
    assert one(a, "mlobs_component_runs_total", status="ok", stage="features") == 2
    assert one(a, "mlobs_component_runs_total", status="error") == 1
    hist = one(a, "mlobs_component_run_duration_seconds")
    assert isinstance(hist, Histogram)
    assert hist.buckets[-1][1] == 3 and hist.sum == pytest.approx(3.5 + 2.5 + 4.5)
    # the latest by event time, although day 1 arrived after day 2
    assert one(a, "mlobs_component_last_run_event_time_seconds") == _records.T0 + 3 * _records.DAY
    assert a.runs == 3
    assert [r["run_id"] for r in a.query()["recent"]] == ["run-2", "run-1", "run-3"]


def test_checks_are_counted_by_outcome_and_names_are_capped():
    a = RunsAnalyzer(_records.RUN_KEY, max_checks=2)
    for day, passed in [(1, True), (2, False), (3, False)]:
        a.update(_records.check(day, passed))
    assert one(a, "mlobs_component_checks_total", check="fare_positive", outcome="failed") == 2
    assert one(a, "mlobs_component_checks_total", check="fare_positive", outcome="passed") == 1
    for name in ("a", "b", "c"):
        rec = _records.check(4, True)
        rec.name = name
        a.update(rec)
    checks = {dict(k)["check"] for k in samples(a, "mlobs_component_checks_total")}
    assert checks == {"fare_positive", "a", OTHER_CHECK}


@pytest.mark.parametrize(("param", "value"), [("max_checks", 0), ("recent", -1)])
def test_runs_validate_parameters(param, value):
    with pytest.raises(ValueError, match=param):
        RunsAnalyzer(_records.RUN_KEY, **{param: value})


# --- columns ------------------------------------------------------------------------------------


def test_columns_report_the_latest_run_and_accumulate_counters():
    a = ColumnsAnalyzer(_records.RUN_KEY)
    day2 = _records.summary(2, shift=3.0)
    a.update(day2)
    a.update(_records.summary(1))  # arrives late: counted, but does not replace day 2's gauges
    fare = {"role": "output", "dataset": "trips", "column": "fare"}
    assert one(a, "mlobs_column_mean", **fare) == pytest.approx(day2.mean[0])
    assert one(a, "mlobs_column_null_ratio", **fare) == pytest.approx(5 / 500)
    assert one(a, "mlobs_column_values_total", **fare) == 1000
    assert one(a, "mlobs_column_nulls_total", **fare) == 10
    assert one(a, "mlobs_column_quantile", quantile="0.5", **fare) == pytest.approx(
        day2.quantiles[0, 2]
    )
    assert one(a, "mlobs_dataset_rows_total", role="output", dataset="trips") == 1000
    zone = {"role": "output", "dataset": "trips", "column": "zone"}
    mean_columns = {dict(labels)["column"] for labels in samples(a, "mlobs_column_mean")}
    assert mean_columns == {"fare", "distance", "cash"}  # no NaN gauge for the categorical
    assert one(a, "mlobs_column_distinct", **zone) == 12


def test_rows_are_counted_once_per_run_across_column_chunks():
    a = ColumnsAnalyzer(_records.RUN_KEY)
    whole = _records.summary(1)
    for part in (slice(0, 2), slice(2, 4)):
        chunk = _records.summary(1)
        chunk.columns = whole.columns[part]
        for field in ("kinds", "sketches", "top_values"):
            setattr(chunk, field, getattr(whole, field)[part])
        for field in ("count", "nulls", "mean", "std", "min", "max", "distinct", "quantiles"):
            setattr(chunk, field, getattr(whole, field)[part])
        a.update(chunk)
    assert one(a, "mlobs_dataset_rows_total") == 500
    assert len(a.columns) == 4


def test_columns_beyond_the_cap_are_counted_not_kept():
    a = ColumnsAnalyzer(_records.RUN_KEY, max_columns=3)
    a.update(_records.summary(1))
    assert len(a.columns) == 3
    assert one(a, "mlobs_column_untracked_total") == 1
    with pytest.raises(ValueError, match="max_columns"):
        ColumnsAnalyzer(_records.RUN_KEY, max_columns=0)


def test_columns_query_filters_by_column():
    a = ColumnsAnalyzer(_records.RUN_KEY)
    a.update(_records.summary(1))
    result = a.query(column="fare")
    assert [c["column"] for c in result["columns"]] == ["fare"]
    assert result["rows"] == [{"role": "output", "dataset": "trips", "rows": 500}]


# --- traffic ------------------------------------------------------------------------------------


def test_traffic_counts_predictions_by_set_and_feedback():
    key = TrafficAnalyzer.key_for(_records.predictions(0, 1, 0.0))
    assert key == Key("taxi", "", "tip")
    a = TrafficAnalyzer(key)
    ref = _records.predictions(0, 40, _records.T0, reference=True)
    live = _records.predictions(100, 60, _records.T0 + 10)
    a.update(ref)
    a.update(live)
    a.update(_records.feedback(live, 0.5, 3600.0))
    assert one(a, "mlobs_predictions_total", set="live") == 60
    assert one(a, "mlobs_predictions_total", set="reference") == 40
    assert one(a, "mlobs_feedback_total") == 30
    hist = one(a, "mlobs_prediction_score", set="live")
    assert hist.buckets[-1][1] == 60
    below_half = dict(hist.buckets)[0.5]
    assert below_half == (live.scores <= 0.5).sum()
    assert one(a, "mlobs_predictions_last_event_time_seconds") == _records.T0 + 10 + 59
    assert one(a, "mlobs_feedback_last_event_time_seconds") == _records.T0 + 10 + 29 + 3600


def test_multiclass_scores_histogram_the_top_class_score():
    a = TrafficAnalyzer(Key("taxi", "", "tip"))
    batch = _records.predictions(0, 3, _records.T0)
    batch.scores = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    a.update(batch)
    assert one(a, "mlobs_prediction_score").sum == pytest.approx(0.8 + 0.6 + 0.5)
