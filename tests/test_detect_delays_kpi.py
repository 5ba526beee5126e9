"""Feedback delay, overdue predictions, and KPI correlation with accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from otel_mlobs.processor.analyzers.detect import ModelAccuracyAnalyzer
from otel_mlobs.processor.analyzers.detect.delays import DelayTracker
from otel_mlobs.processor.analyzers.detect.synthetic import draw, feedback_batch, prediction_batch
from otel_mlobs.processor.records import Key, KpiRecord

T0 = 1_700_000_000.0
KEY = Key("p", "", "m")


def test_delay_histogram_and_p95():
    rng = np.random.default_rng(0)
    d = rng.exponential(3600, 20_000)
    t = DelayTracker()
    t.add(d[:10_000])
    t.add(d[10_000:])
    buckets, total = t.histogram()
    assert buckets[-1] == (float("inf"), 20_000.0)
    assert total == pytest.approx(d.sum())
    le_hour = dict(buckets)[3600.0]
    assert le_hour == (d <= 3600).sum()
    assert t.quantile_value() == pytest.approx(np.quantile(d, 0.95), rel=0.06)
    assert DelayTracker().quantile_value() is None


def test_overdue_predictions_are_those_waiting_past_p95():
    rng = np.random.default_rng(1)
    a = ModelAccuracyAnalyzer(KEY)
    first = draw(rng, 2000, T0, 3600)
    a.update(prediction_batch(first))
    a.update(feedback_batch(first, rng.uniform(0, 1000, 2000)))  # p95 ~ 950 s
    waiting = draw(rng, 1000, T0 + 3600, 3600, prefix="w")
    a.update(prediction_batch(waiting))
    got = {m.name: m.value for m in a.metrics() if not m.labels.get("reason")}
    p95 = got["mlobs_model_feedback_delay_p95_seconds"]
    assert 850 < p95 < 1050
    expect = int((waiting.ts < waiting.ts.max() - p95).sum())
    assert got["mlobs_model_overdue_predictions"] == expect
    assert got["mlobs_model_pending_predictions"] == 1000
    hist = got["mlobs_model_feedback_delay_seconds"]
    assert hist.buckets[-1][1] == 2000


def test_kpi_correlates_with_daily_accuracy():
    rng = np.random.default_rng(2)
    a = ModelAccuracyAnalyzer(KEY)
    for day in range(12):
        live = draw(rng, 3000, T0 + day * 86400, 86400, covariate=(day % 4) / 3, prefix=f"d{day}")
        a.update(prediction_batch(live))
        a.update(feedback_batch(live, 60.0))
        acc = live.correct.mean()
        for k in range(4):
            t = T0 + day * 86400 + k * 20_000
            a.update(KpiRecord(KEY, "revenue", 10 + 50 * acc + rng.normal(0, 0.1), t))
            a.update(KpiRecord(KEY, "noise", rng.normal(), t))
    q = a.query()["kpi"]
    assert q["revenue"]["30d"]["panes"] >= 12  # 12 days of events touch 13 UTC days
    assert q["revenue"]["30d"]["correlation"] > 0.9
    assert abs(q["noise"]["30d"]["correlation"]) < 0.8
    names = {(m.labels["kpi"], m.labels["window"]) for m in a.metrics()
             if m.name == "mlobs_model_kpi_accuracy_correlation"}  # fmt: skip
    assert ("revenue", "30d") in names


def test_kpi_names_are_capped_and_bad_values_rejected():
    a = ModelAccuracyAnalyzer(KEY)
    for i in range(12):
        a.update(KpiRecord(KEY, f"k{i}", 1.0, T0))
    a.update(KpiRecord(KEY, "k0", float("nan"), T0))
    a.update(prediction_batch(draw(np.random.default_rng(0), 10, T0, 10)))
    q = a.query()
    assert len(q["kpi"]) == 8 and q["kpi_rejected"] == 5
