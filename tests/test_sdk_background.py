"""Summaries and prediction batches finished on the SDK's worker thread (``background=True``).

The worker must change when the work is done, never what is sent: these tests send the same
data with and without it and compare every span, check that data changed by the caller after
the call is summarized as it was, and that ``flush()`` waits for work still pending.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_mlobs as mlobs
from otel_mlobs import semconv as sc
from otel_mlobs.packing import unpack
from otel_mlobs.sdk import _emit, _worker, setup
from otel_mlobs.sdk import run as run_module
from otel_mlobs.sdk._columns import prepare
from otel_mlobs.sdk._sampling import plan
from otel_mlobs.sdk._tabular import as_table
from otel_mlobs.sdk.summarize import summarize_frame

T0 = 1_700_000_000.0


@pytest.fixture()
def provider_for():
    """Configures the SDK on a fresh in-memory provider, in the given mode; yields a factory."""
    made: list[TracerProvider] = []

    def make(background: bool) -> InMemorySpanExporter:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        setup.configure(tracer_provider=provider, pipeline="bg-test", background=background)
        _emit.reset_stats()
        made.append(provider)
        return exporter

    yield make
    assert _worker.drain(10)
    setup.shutdown()
    for provider in made:
        provider.shutdown()


def _frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "fare": np.where(rng.random(n) < 0.05, np.nan, rng.gamma(2.0, 7.0, n)),
            "hour": rng.integers(0, 24, n),
            "flag": rng.random(n) < 0.3,
            "when": pd.date_range("2024-03-01", periods=n, freq="min"),
            "zone": rng.choice(["a", "b", "c", None], n),
            "trip": [f"t{i:06d}" for i in range(n)],
            "kind": pd.Categorical(rng.choice(["x", "y"], n)),
            "text": pd.array(rng.choice(["p", "q", None], n), dtype="string"),
        }
    )


def _pipeline(frame: pd.DataFrame, ids: np.ndarray, scores: np.ndarray) -> None:
    with mlobs.observe("score", run_id="r1", event_time=T0, stage="inference") as run:
        run.log_input("features", frame, sensitive=("trip",))
        run.check("has_rows", len(frame) > 0)
        run.log_output("scores", {"p": scores})
        mlobs.log_predictions(
            "m",
            ids,
            scores=scores,
            labels=(scores > 0.5).astype(np.int8),
            features={"zone": frame["zone"].to_numpy(), "hour": frame["hour"].to_numpy()},
            timestamps=np.full(len(ids), T0),
        )
        mlobs.log_feedback(
            "m", ids[:100], np.ones(100, dtype=np.int8), timestamps=np.full(100, T0 + 60)
        )
    with pytest.raises(ZeroDivisionError), mlobs.observe("broken", run_id="r2", event_time=T0):
        1 / 0  # noqa: B018


def _content(exporter: InMemorySpanExporter) -> list[tuple]:
    """Everything a span carries except ids and times, in a comparable form."""

    def value(v):
        return tuple(v) if isinstance(v, tuple | list) else v

    spans = []
    for span in exporter.get_finished_spans():
        events = [
            (
                e.name,
                sorted(
                    (k, value(v)) for k, v in e.attributes.items() if k != "exception.stacktrace"
                ),
            )
            for e in span.events
        ]
        attrs = sorted((k, value(v)) for k, v in span.attributes.items())
        spans.append((span.name, attrs, events, span.status.status_code, span.parent is not None))
    return sorted(spans, key=repr)


def test_background_sends_exactly_what_the_caller_thread_sends(provider_for) -> None:
    frame = _frame()
    ids = frame["trip"].to_numpy()
    scores = np.random.default_rng(1).uniform(size=len(frame))
    direct = provider_for(False)
    _pipeline(frame, ids, scores)
    assert setup.background() is False
    deferred = provider_for(True)
    assert setup.background() is True
    _pipeline(frame, ids, scores)
    assert mlobs.flush(10)
    assert _content(deferred) == _content(direct)
    assert len(_content(direct)) == 4  # two runs, one predictions and one feedback span
    assert _emit.stats()["errors"] == 0


def test_background_events_keep_the_call_time_and_order(provider_for) -> None:
    exporter = provider_for(True)
    frame = _frame(600)
    with mlobs.observe("c", event_time=T0) as run:
        before = time.time_ns()
        run.log_input("a", frame)
        run.check("first", True)
        run.log_output("b", frame)
        after = time.time_ns()
    assert mlobs.flush(10)
    (span,) = exporter.get_finished_spans()
    names = [
        (e.name, e.attributes.get(sc.DATA_NAME, e.attributes.get(sc.CHECK_NAME)))
        for e in span.events
    ]
    assert names == [
        (sc.EVENT_SUMMARY, "a"),
        (sc.EVENT_SAMPLE, "a"),
        (sc.EVENT_CHECK, "first"),
        (sc.EVENT_SUMMARY, "b"),
        (sc.EVENT_SAMPLE, "b"),
    ]
    assert all(before <= e.timestamp <= after for e in span.events)
    assert span.end_time <= time.time_ns()


def test_data_changed_after_the_call_is_summarized_as_it_was(provider_for) -> None:
    reference = provider_for(False)
    original = _frame()
    scores = np.linspace(0.0, 1.0, len(original))
    ids = np.array([f"id{i}" for i in range(len(original))], dtype=object)
    _pipeline(original, ids, scores)
    expected = _content(reference)

    deferred = provider_for(True)
    frame, live_ids, live_scores = original.copy(), ids.copy(), scores.copy()
    gate = threading.Event()
    _worker.submit(gate.wait)  # hold the worker until the caller has changed everything
    try:
        _pipeline(frame, live_ids, live_scores)
        frame.iloc[:, 0] = -1.0
        frame.loc[:, "zone"] = "changed"
        frame["hour"] += 100
        live_ids[:] = "x"
        live_scores[:] = 2.0
    finally:
        gate.set()
    assert mlobs.flush(10)
    assert _content(deferred) == expected


def test_flush_waits_for_pending_summaries(provider_for, monkeypatch) -> None:
    exporter = provider_for(True)
    real = run_module.summarize_steps
    started = threading.Event()

    def slow(*args, **kwargs):
        started.set()
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "summarize_steps", slow)
    with mlobs.observe("slow") as run:
        ptr = run.log_input("x", _frame(200))
    assert ptr.startswith("sha256:")  # the pointer is known at once
    assert started.wait(5)
    assert exporter.get_finished_spans() == ()  # the run is still being summarized
    assert mlobs.flush(10)
    (span,) = exporter.get_finished_spans()
    assert span.attributes[sc.RUN_INPUTS] == (ptr,)
    assert [e.name for e in span.events] == [sc.EVENT_SUMMARY, sc.EVENT_SAMPLE]


def test_a_failing_background_summary_is_counted_and_the_run_still_ends(
    provider_for, monkeypatch
) -> None:
    exporter = provider_for(True)

    def broken(*args, **kwargs):
        raise RuntimeError("summarizer bug")

    monkeypatch.setattr(run_module, "summarize_steps", broken)
    with mlobs.observe("c") as run:
        ptr = run.log_input("x", _frame(2000))
    assert mlobs.flush(10)
    assert _emit.stats()["errors"] == 1
    (span,) = exporter.get_finished_spans()
    assert span.attributes[sc.RUN_INPUTS] == (ptr,) and not span.events


def test_every_row_summaries_of_large_tables_stay_on_the_caller_thread(
    provider_for, monkeypatch
) -> None:
    exporter = provider_for(True)
    frame = pd.DataFrame({"a": np.arange(20_000.0)})
    submitted = []
    monkeypatch.setattr(_worker, "submit", lambda job, on_error=None: submitted.append(job))
    with mlobs.observe("exact") as run:
        run.log_input("x", frame, sketch_rows=None)  # reads every row: not detached
    assert len(submitted) == 1  # only the span's end was handed over
    submitted[0]()
    (span,) = exporter.get_finished_spans()
    summary = span.events[0].attributes
    assert summary[sc.DATA_ROWS] == 20_000 and unpack(summary[sc.SUMMARY_COUNT]).tolist() == [
        20_000
    ]


def test_worker_runs_jobs_in_order_and_drain_waits() -> None:
    worker = _worker.Worker(max_pending=2)
    done: list[int] = []
    gate = threading.Event()
    worker.submit(gate.wait)
    for i in range(2):
        worker.submit(lambda i=i: done.append(i))
    assert not worker.drain(0.05) and worker.pending() == 3
    blocked = threading.Thread(target=worker.submit, args=(lambda: done.append(2),))
    blocked.start()  # the queue is full: this submit waits for room
    time.sleep(0.05)
    assert blocked.is_alive()
    gate.set()
    blocked.join(5)
    assert worker.drain(5) and done == [0, 1, 2] and worker.pending() == 0
    assert worker.jobs_done() == 4 and worker.cpu_seconds() >= 0


def test_worker_survives_a_failing_job(caplog) -> None:
    worker = _worker.Worker()
    errors: list[BaseException] = []
    worker.submit(lambda: 1 / 0, errors.append)
    worker.submit(lambda: 1 / 0)  # no handler: logged
    ran = []
    worker.submit(lambda: ran.append(True))
    assert worker.drain(5) and ran == [True]
    assert isinstance(errors[0], ZeroDivisionError)
    assert "background SDK job failed" in caplog.text


def test_the_built_provider_drains_the_worker_when_flushed() -> None:
    gate = threading.Event()
    finished = []
    _worker.submit(lambda: (gate.wait(5), finished.append(True)))
    drain = setup.DrainFirst()
    assert not drain.force_flush(50)
    gate.set()
    assert drain.force_flush(5000) and finished == [True]


def test_detached_columns_summarize_like_the_table_and_refuse_other_rows() -> None:
    frame = _frame(5000, seed=3)
    rows = plan(len(frame), 512, 200, None)
    cols = prepare(as_table(frame), rows)
    assert cols.detach(copy_rows=0) and not cols.segments
    plan.cache_clear()  # the summary draws its plan anew: planned rows are then found by value
    got, want = summarize_frame(cols, sample_rows=200), summarize_frame(frame, sample_rows=200)
    assert got.columns == want.columns and got.top_values == want.top_values
    assert got.sketches == want.sketches and got.sample_columns == want.sample_columns
    for field in ("count", "nulls", "mean", "std", "min", "max", "quantiles", "distinct"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    for a, b in zip(got.sample_values, want.sample_values, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(LookupError):
        cols.float_rows(np.array([1, 2, 3]))
    with pytest.raises(LookupError):
        cols.texts[0].take(None)


def test_a_job_that_submits_runs_at_once_instead_of_waiting_for_itself() -> None:
    worker = _worker.Worker(max_pending=1)
    order: list[str] = []

    def outer() -> None:
        worker.submit(lambda: order.append("inner"))  # from the worker thread itself
        order.append("outer")

    worker.submit(outer)
    assert worker.drain(5) and order == ["inner", "outer"]


def test_a_feature_frame_changed_after_the_call_is_sent_as_it_was(provider_for) -> None:
    def send(features: pd.DataFrame) -> None:
        mlobs.log_predictions(
            "m",
            [f"i{i}" for i in range(len(features))],
            scores=np.full(len(features), 0.5),
            features=features,
            timestamps=np.full(len(features), T0),
        )

    frame = _frame(1000)[["zone", "hour", "fare"]]
    reference = provider_for(False)
    send(frame.copy())
    expected = _content(reference)
    deferred = provider_for(True)
    gate = threading.Event()
    _worker.submit(gate.wait)
    try:
        live = frame.copy()
        send(live)
        live.iloc[:, 2] = -1.0  # writes into the frame's float block in place unless shared
        live.loc[:, "hour"] = 99
        del live
        gc.collect()
    finally:
        gate.set()
    assert mlobs.flush(10)
    assert _content(deferred) == expected
