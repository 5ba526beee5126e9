"""The SDK against the real processor through the real OTLP exporters, over gRPC and HTTP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _processor import running
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_mlobs.sdk as mlobs

T0 = 1_700_000_000.0
N_COLUMNS = 25  # more than fit one summary chunk of the tests' hand-built spans
N_PRED = 12_000  # more rows than one prediction event carries


def _exporter(transport: str, proc):
    if transport == "grpc":
        return GrpcExporter(endpoint=f"127.0.0.1:{proc.ports.grpc}", insecure=True)
    return HttpExporter(endpoint=f"http://127.0.0.1:{proc.ports.http}/v1/traces")


def _pipeline(rng: np.random.Generator) -> None:
    frame = pd.DataFrame(
        {f"x{i}": rng.normal(i, 1, size=300) for i in range(N_COLUMNS)}
        | {"zone": rng.choice(["a", "b", "c"], size=300)}
    )
    frame.loc[:9, "x0"] = np.nan
    with mlobs.observe("features", stage="features", event_time=T0) as run:
        run.log_input("raw", frame)
        run.log_output("features", frame.dropna())
        run.check("no_empty_frame", bool(len(frame)))
    with pytest.raises(ZeroDivisionError), mlobs.observe("train", stage="train", event_time=T0):
        _ = 1 / 0
    ids = np.array([f"t{i}" for i in range(N_PRED)])
    scores = rng.uniform(size=N_PRED)
    ref_ids = np.array([f"r{i}" for i in range(200)])
    mlobs.log_reference("tip", ref_ids, rng.integers(0, 2, size=200), scores=rng.uniform(size=200))
    mlobs.log_predictions(
        "tip",
        ids,
        scores=scores,
        features={"distance": rng.exponential(size=N_PRED)},
        timestamps=np.full(N_PRED, T0),
    )
    mlobs.log_feedback("tip", ids[:5000], scores[:5000] > 0.5, timestamps=np.full(5000, T0 + 60))


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_spans_arrive_whole_and_become_metrics(transport):
    with running() as proc:
        provider = TracerProvider(resource=Resource.create({"service.name": "taxi"}))
        provider.add_span_processor(BatchSpanProcessor(_exporter(transport, proc)))
        mlobs.configure(pipeline="taxi", tracer_provider=provider)
        try:
            _pipeline(np.random.default_rng(0))
            assert mlobs.flush(30)
        finally:
            mlobs.shutdown()
            provider.shutdown()
        assert proc.wait_idle(10)
        reg = proc.registry
        sample = reg.get_sample_value
        status = proc.status()["counters"]
        assert status["spans_rejected"] == {}, status
        assert status["spans_received"][transport] == status["spans_accepted"]
        runs = {"pipeline": "taxi", "component": "features", "stage": "features", "status": "ok"}
        assert sample("mlobs_component_runs_total", runs) == 1
        failed = {"pipeline": "taxi", "component": "train", "stage": "train", "status": "error"}
        assert sample("mlobs_component_runs_total", failed) == 1
        assert (
            sample(
                "mlobs_component_checks_total",
                {
                    "pipeline": "taxi",
                    "component": "features",
                    "check": "no_empty_frame",
                    "phase": "after",
                    "outcome": "passed",
                },
            )
            == 1
        )
        x0 = {
            "pipeline": "taxi",
            "component": "features",
            "role": "input",
            "dataset": "raw",
            "column": "x0",
        }
        assert sample("mlobs_column_null_ratio", x0) == pytest.approx(10 / 300)
        assert sample("mlobs_column_mean", {**x0, "column": "x7"}) == pytest.approx(7, abs=0.3)
        last = {**x0, "column": f"x{N_COLUMNS - 1}"}
        assert sample("mlobs_column_values_total", last) == 300
        model = {"pipeline": "taxi", "model": "tip"}
        assert sample("mlobs_predictions_total", {**model, "set": "live"}) == N_PRED
        assert sample("mlobs_predictions_total", {**model, "set": "reference"}) == 200
        assert sample("mlobs_feedback_total", model) == 5000
        assert sample("mlobs_prediction_score_count", {**model, "set": "live"}) == N_PRED
