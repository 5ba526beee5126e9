"""The taxi pipeline emits five chained components through the SDK (in-memory exporter)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_mlobs
from otel_mlobs import semconv
from otel_mlobs.packing import unpack
from otel_mlobs.scenarios import LABEL, TaxiScenario
from otel_mlobs.scenarios.pipeline import MODEL, PIPELINE, run_pipeline

DAYS, TRAIN_DAYS = 5, 2


@pytest.fixture(scope="module")
def emitted():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_mlobs.configure(pipeline=PIPELINE, tracer_provider=provider)
    scenario = TaxiScenario(
        seed=7, start="2026-03-02", days=DAYS, rows_per_day=400, train_days=TRAIN_DAYS
    )
    seen = []
    try:
        result = run_pipeline(scenario, progress=seen.append, n_estimators=10)
    finally:
        otel_mlobs.shutdown()
        provider.shutdown()
    return scenario, result, seen, exporter.get_finished_spans()


def runs_by_component(spans) -> dict[str, list]:
    out = defaultdict(list)
    for span in spans:
        if span.attributes.get(semconv.SPAN_ROLE) == semconv.SPAN_ROLE_RUN:
            out[span.attributes[semconv.COMPONENT]].append(span)
    for runs in out.values():
        runs.sort(key=lambda s: s.attributes[semconv.RUN_EVENT_TIME])
    return out


def test_five_components_with_stages_and_event_times(emitted):
    scenario, result, seen, spans = emitted
    runs = runs_by_component(spans)
    live = DAYS - TRAIN_DAYS
    assert {c: len(r) for c, r in runs.items()} == {
        "clean": DAYS,
        "features": DAYS,
        "train": 1,
        "inference": live,
        "feedback": live,
    }
    stages = {c: {s.attributes[semconv.STAGE] for s in r} for c, r in runs.items()}
    assert stages == {
        "clean": {"etl"},
        "features": {"features"},
        "train": {"train"},
        "inference": {"inference"},
        "feedback": {"feedback"},
    }
    days = [d.event_time for d in scenario]
    assert [s.attributes[semconv.RUN_EVENT_TIME] for s in runs["clean"]] == days
    assert [s.attributes[semconv.RUN_EVENT_TIME] for s in runs["inference"]] == days[TRAIN_DAYS:]
    assert runs["train"][0].attributes[semconv.RUN_EVENT_TIME] == days[TRAIN_DAYS - 1]
    assert all(s.attributes[semconv.PIPELINE] == PIPELINE for r in runs.values() for s in r)
    assert [d.date for d in seen] == scenario.dates  # progress once per day, in order
    assert result.days == seen


def test_pointers_chain_the_components(emitted):
    _, result, _, spans = emitted
    runs = runs_by_component(spans)

    def io(span):
        return set(span.attributes[semconv.RUN_INPUTS]), set(span.attributes[semconv.RUN_OUTPUTS])

    clean = [io(s) for s in runs["clean"]]
    features = [io(s) for s in runs["features"]]
    for (_, clean_out), (feat_in, _) in zip(clean, features, strict=True):
        assert clean_out and clean_out <= feat_in
    train_in, train_out = io(runs["train"][0])
    assert set().union(*(out for _, out in features[:TRAIN_DAYS])) <= train_in
    for day, span in zip(result.days[TRAIN_DAYS:], runs["inference"], strict=True):
        inf_in, inf_out = io(span)
        assert features[day.index][1] <= inf_in and train_out <= inf_in
        assert inf_out == {day.pointers["inference"]}
    predicted = set().union(*(io(s)[1] for s in runs["inference"]))
    for span in runs["feedback"]:
        fb_in, _ = io(span)
        # The feedback run points at the prediction batches whose labels it releases.
        assert fb_in & predicted
    for day in result.days:
        assert day.pointers["clean"] in clean[day.index][1]


def test_reference_predictions_and_feedback_batches(emitted):
    scenario, result, _, spans = emitted
    batches = [s for s in spans if s.attributes.get(semconv.SPAN_ROLE) == "predictions"]
    events = [(s, e) for s in batches for e in s.events if e.name == semconv.EVENT_PREDICTIONS]
    reference = [e for _, e in events if e.attributes[semconv.PRED_SET] == "reference"]
    live = [e for _, e in events if e.attributes[semconv.PRED_SET] == "live"]
    assert len(reference) == 1
    ref = reference[0].attributes
    assert set(ref[semconv.PRED_FEATURE_NAMES]) >= {"pickup_zone", "payment_type_name"}
    assert len(unpack(ref[semconv.PRED_TRUE_LABELS])) == len(unpack(ref[semconv.PRED_IDS]))
    assert all(s.attributes[semconv.MODEL] == MODEL for s in batches)

    live_ids = np.concatenate([unpack(e.attributes[semconv.PRED_IDS]) for e in live])
    assert len(live_ids) == sum(d.predictions for d in result.days) > 0
    live_ts = np.concatenate([unpack(e.attributes[semconv.PRED_TIMESTAMPS]) for e in live])
    first_live = scenario.day(TRAIN_DAYS).event_time
    assert live_ts.min() >= first_live and live_ts.max() < first_live + (DAYS - TRAIN_DAYS) * 86400

    feedback = [
        e.attributes
        for s in spans
        if s.attributes.get(semconv.SPAN_ROLE) == "feedback"
        for e in s.events
        if e.name == semconv.EVENT_FEEDBACK
    ]
    fb_ids = np.concatenate([unpack(a[semconv.FB_IDS]) for a in feedback])
    assert len(fb_ids) == sum(d.feedback for d in result.days) > 0
    assert set(fb_ids.astype(str)) <= set(live_ids.astype(str))
    # Labels are released on the day they settle, never before the trip was predicted.
    truth = {}
    for day in scenario:
        truth.update(zip(day.feedback["trip_id"], day.feedback[LABEL], strict=True))
    labels = np.concatenate([unpack(a[semconv.FB_LABELS]) for a in feedback])
    expected = np.array([str(truth[i]) for i in fb_ids.astype(str)])
    assert (labels.astype(str) == expected).all()
    assert 0.6 < next(iter(result.validation_accuracy.values())) <= 1.0


def test_bad_retrain_setting_is_refused():
    scenario = TaxiScenario(days=3, rows_per_day=50)
    with pytest.raises(ValueError, match="retrain_every"):
        run_pipeline(scenario, retrain_every=0)


def test_weekly_retrain_refits_on_recent_days():
    scenario = TaxiScenario(seed=23, days=6, rows_per_day=150, train_days=2)
    result = run_pipeline(scenario, retrain_every=2, n_estimators=5)
    trained = [d.trained for d in result.days]
    assert trained == [
        "",
        "tip_classifier-20251221",
        "",
        "tip_classifier-20251223",
        "",
        "tip_classifier-20251225",
    ]
    serving = [d.model_version for d in result.days]
    assert serving[2:] == [
        "tip_classifier-20251221",
        "tip_classifier-20251221",
        "tip_classifier-20251223",
        "tip_classifier-20251223",
    ]
    assert set(result.validation_accuracy) == {t for t in trained if t}
