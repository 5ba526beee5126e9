"""The scikit-learn instrumentor: an unmodified script observed in process and under the
``opentelemetry-instrument`` launcher, nested calls, restoring, and never breaking user code."""

from __future__ import annotations

import logging
import os
import runpy
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import otel_mlobs as mlobs
from otel_mlobs import semconv as sc
from otel_mlobs.instrumentation.sklearn import SklearnInstrumentor, name_component
from otel_mlobs.packing import unpack
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor

SCRIPT = Path(__file__).parent / "fixtures" / "sklearn_train.py"
RNG = np.random.default_rng(3)
X = RNG.normal(size=(120, 3))
Y = (X[:, 0] + 0.3 * RNG.normal(size=120) > 0).astype(int)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=provider, pipeline="sk")
    yield memory
    instrumentor.uninstrument()
    provider.shutdown()


def runs(memory: InMemorySpanExporter) -> dict[str, list]:
    out: dict[str, list] = {}
    for span in memory.get_finished_spans():
        if span.attributes.get(sc.SPAN_ROLE) == sc.SPAN_ROLE_RUN:
            out.setdefault(span.attributes[sc.COMPONENT], []).append(span)
    return out


def batches(memory: InMemorySpanExporter, model: str) -> list:
    return [
        s
        for s in memory.get_finished_spans()
        if s.attributes.get(sc.SPAN_ROLE) == sc.SPAN_ROLE_PREDICTIONS
        and s.attributes[sc.MODEL] == model
    ]


def column(spans: list, key: str) -> np.ndarray:
    return np.concatenate([unpack(e.attributes[key]) for s in spans for e in s.events])


def text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def summaries(span) -> set[tuple[str, str]]:
    return {
        (e.attributes[sc.DATA_ROLE], e.attributes[sc.DATA_NAME])
        for e in span.events
        if e.name == sc.EVENT_SUMMARY
    }


def test_an_unmodified_script_is_observed(exporter, capsys) -> None:
    runpy.run_path(str(SCRIPT), run_name="__main__")
    assert "forest accuracy" in capsys.readouterr().out
    got = runs(exporter)
    # One run per outermost call: no runs of the pipeline's steps, the forest's trees or the
    # forest's internal predict_proba.
    assert {c: len(s) for c, s in got.items()} == {
        "Pipeline(scale,clf).fit": 1,
        "Pipeline(scale,clf).predict_proba": 1,
        "RandomForestClassifier.fit": 1,
        "RandomForestClassifier.predict": 1,
        "StandardScaler.fit_transform": 1,
    }
    stages = {c: s[0].attributes[sc.STAGE] for c, s in got.items()}
    assert stages == {
        "Pipeline(scale,clf).fit": "train",
        "Pipeline(scale,clf).predict_proba": "inference",
        "RandomForestClassifier.fit": "train",
        "RandomForestClassifier.predict": "inference",
        "StandardScaler.fit_transform": "features",
    }
    assert {s[0].attributes[sc.PIPELINE] for s in got.values()} == {"sk"}
    fit, proba = got["Pipeline(scale,clf).fit"][0], got["Pipeline(scale,clf).predict_proba"][0]
    assert summaries(fit) == {("input", "X"), ("input", "y")}
    assert summaries(proba) == {("input", "X"), ("output", "predictions")}
    assert summaries(got["StandardScaler.fit_transform"][0]) == {("input", "X"), ("output", "Xt")}
    # Lineage: the predict run reads the model its fit run output.
    model_pointer = list(fit.attributes[sc.RUN_OUTPUTS])
    assert len(model_pointer) == 1 and model_pointer[0].startswith("sklearn://sk/Pipeline")
    assert model_pointer[0] in proba.attributes[sc.RUN_INPUTS]
    assert all(s.status.status_code == StatusCode.UNSET for c in got.values() for s in c)


def test_classifier_predictions_are_logged_with_ids(exporter) -> None:
    runpy.run_path(str(SCRIPT), run_name="__main__")
    fit_run = runs(exporter)["Pipeline(scale,clf).fit"][0]
    pipeline_batches = batches(exporter, "Pipeline(scale,clf)")
    assert pipeline_batches
    # The frame's own index names the rows; a binary predict_proba sends P(class 1).
    ids = text(column(pipeline_batches, sc.PRED_IDS))
    assert ids[:2] == ["trip-400", "trip-401"] and len(ids) == 200
    scores = column(pipeline_batches, sc.PRED_SCORES)
    assert scores.shape == (200,) and ((scores >= 0) & (scores <= 1)).all()
    version = pipeline_batches[0].attributes[sc.MODEL_VERSION]
    assert version == fit_run.attributes[sc.RUN_ID][:12]
    # A bare array has no ids: generated from the run id, one per row.
    forest = batches(exporter, "RandomForestClassifier")
    run_id = runs(exporter)["RandomForestClassifier.predict"][0].attributes[sc.RUN_ID]
    generated = text(column(forest, sc.PRED_IDS))
    assert generated[:2] == [f"{run_id}-0", f"{run_id}-1"]
    assert len(set(generated)) == 200
    assert set(text(column(forest, sc.PRED_LABELS))) <= {"0", "1"}


def test_regressors_get_summaries_but_no_prediction_batch(exporter) -> None:
    model = LinearRegression().fit(X, X[:, 0] * 2.0)
    model.predict(X)
    got = runs(exporter)
    assert set(got) == {"LinearRegression.fit", "LinearRegression.predict"}
    assert summaries(got["LinearRegression.predict"][0]) == {
        ("input", "X"),
        ("output", "predictions"),
    }
    assert batches(exporter, "LinearRegression") == []


def test_grid_search_is_one_run_and_named_components_keep_their_name(exporter) -> None:
    search = GridSearchCV(
        DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2]}, cv=2, n_jobs=2
    )
    name_component(search, "tip_model")
    search.fit(X, Y)
    search.predict_proba(pd.DataFrame(X, index=[f"r{i}" for i in range(len(X))]))
    got = runs(exporter)
    assert {c: len(s) for c, s in got.items()} == {"tip_model.fit": 1, "tip_model.predict_proba": 1}
    assert text(column(batches(exporter, "tip_model"), sc.PRED_IDS))[0] == "r0"


def test_a_users_own_run_is_left_alone(exporter) -> None:
    with mlobs.observe("train", stage="train") as run:
        run.log_input("X", X)
        LogisticRegression().fit(X, Y)
    assert set(runs(exporter)) == {"train"}


def test_the_libraries_own_error_is_recorded_and_reraised_unchanged(exporter) -> None:
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN") as caught:
        LogisticRegression().fit(bad, Y)
    original = caught.value
    span = runs(exporter)["LogisticRegression.fit"][0]
    assert span.status.status_code == StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in span.events if e.name == "exception"] == [
        "ValueError"
    ]
    assert type(original) is ValueError and "NaN" in str(original)
    # The traceback ends in scikit-learn, not in the instrumentation.
    frames = []
    tb = original.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    assert "sklearn" in frames[-1] and not any("instrumentation" in f for f in frames[-3:])


def test_instrumentation_failures_never_reach_user_code(exporter, monkeypatch, caplog) -> None:
    from otel_mlobs.sdk.run import Run

    def broken(*args, **kwargs):
        raise RuntimeError("summarizer exploded")

    monkeypatch.setattr(Run, "log_input", broken)
    monkeypatch.setattr(mlobs, "log_predictions", broken)
    with caplog.at_level(logging.WARNING):
        model = LogisticRegression().fit(X, Y)
        labels = model.predict(X)
    assert labels.shape == (len(X),)
    assert "summarizer exploded" in caplog.text
    assert set(runs(exporter)) == {"LogisticRegression.fit", "LogisticRegression.predict"}
    # Data the SDK cannot summarize (a sparse matrix) is skipped, the call still works.
    from scipy import sparse

    monkeypatch.undo()
    LogisticRegression().fit(sparse.csr_matrix(X), Y)
    assert summaries(runs(exporter)["LogisticRegression.fit"][-1]) == {("input", "y")}


def test_uninstrument_restores_the_originals() -> None:
    originals = {
        (cls, name): vars(cls)[name]
        for cls, name in [
            (Pipeline, "fit"),
            (Pipeline, "predict_proba"),
            (LogisticRegression, "fit"),
            (StandardScaler, "transform"),
        ]
    }
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument()
    try:
        patched = {k: vars(k[0])[k[1]] for k in originals}
        assert all(patched[k] is not v for k, v in originals.items())
        assert all(patched[k].__wrapped__ is v for k, v in originals.items())
        # available_if keeps working: no predict_proba without a final step that has one.
        assert not hasattr(Pipeline([("s", StandardScaler())]), "predict_proba")
        assert hasattr(Pipeline([("m", LogisticRegression())]), "predict_proba")
    finally:
        instrumentor.uninstrument()
    assert all(vars(cls)[name] is v for (cls, name), v in originals.items())
    assert instrumentor.patched == []


def test_instrumenting_twice_warns_and_does_nothing(exporter, caplog) -> None:
    before = len(SklearnInstrumentor().patched)
    with caplog.at_level(logging.WARNING):
        SklearnInstrumentor().instrument()
    assert "already instrumented" in caplog.text
    assert len(SklearnInstrumentor().patched) == before
    LogisticRegression().fit(X, Y)
    assert len(runs(exporter)["LogisticRegression.fit"]) == 1


def test_options_come_from_arguments_then_environment(monkeypatch) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setenv("MLOBS_SKLEARN_METHODS", "predict")
    monkeypatch.setenv("MLOBS_SKLEARN_LOG_PREDICTIONS", "false")
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=provider, pipeline="env")
    try:
        LogisticRegression().fit(X, Y).predict(X)
    finally:
        instrumentor.uninstrument()
    assert set(runs(memory)) == {"LogisticRegression.predict"}
    assert batches(memory, "LogisticRegression") == []
    with pytest.raises(ValueError, match="methods"):
        SklearnInstrumentor().instrument(methods="fit,not a name")
    SklearnInstrumentor().uninstrument()


def test_the_opentelemetry_instrument_launcher_observes_the_script() -> None:
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.fail("opentelemetry-instrument missing: pip install -e '.[dev]'")
    with Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0)) as proc:
        env = {
            **os.environ,
            "OTEL_SERVICE_NAME": "sk_script",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{proc.ports.grpc}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        env.pop("MLOBS_PIPELINE", None)
        result = subprocess.run(
            [str(launcher), sys.executable, str(SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "pipeline accuracy" in result.stdout
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            proc.wait_idle(timeout=5)
            runs_seen = proc.registry.get_sample_value("mlobs_processor_spans_accepted_total")
            if runs_seen and runs_seen >= 7:
                break
            time.sleep(0.2)

        def value(name: str, **labels: str) -> float | None:
            return proc.registry.get_sample_value(name, labels)

        for component, stage in [
            ("Pipeline(scale,clf).fit", "train"),
            ("Pipeline(scale,clf).predict_proba", "inference"),
            ("RandomForestClassifier.predict", "inference"),
            ("StandardScaler.fit_transform", "features"),
        ]:
            assert (
                value(
                    "mlobs_component_runs_total",
                    pipeline="sk_script",
                    component=component,
                    stage=stage,
                    status="ok",
                )
                == 1.0
            ), component
        assert (
            value(
                "mlobs_predictions_total",
                pipeline="sk_script",
                model="Pipeline(scale,clf)",
                set="live",
            )
            == 200.0
        )
        assert (
            value(
                "mlobs_dataset_rows_total",
                pipeline="sk_script",
                component="Pipeline(scale,clf).fit",
                role="input",
                dataset="X",
            )
            == 400.0
        )
