"""What Prometheus sees: the SDK exports over real OTLP, a real Prometheus scrapes the processor."""

from __future__ import annotations

import subprocess
import urllib.request

import numpy as np
import pandas as pd
import pytest
from _tools import need
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import otel_mlobs as mlobs
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor
from otel_mlobs.promrun import PrometheusServer

pytestmark = pytest.mark.prometheus


@pytest.fixture(scope="module")
def fed_processor():
    """A processor that has received one observed run and a joined prediction batch."""
    with Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0)) as proc:
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{proc.ports.grpc}", insecure=True)
            )
        )
        mlobs.configure(pipeline="live", tracer_provider=provider)
        rng = np.random.default_rng(7)
        frame = pd.DataFrame(
            {"trip_distance": rng.gamma(2.0, 1.5, 500), "zone": rng.choice(["a", "b"], 500)}
        )
        with mlobs.observe("features", pipeline="live", stage="features") as run:
            run.log_output("features", frame)
        ids = [f"p{i}" for i in range(200)]
        scores = rng.random(200)
        mlobs.log_predictions("tip", ids, scores=scores, pipeline="live")
        mlobs.log_feedback("tip", ids, (scores > 0.5).astype(int), pipeline="live")
        provider.force_flush()
        assert proc.wait_idle(timeout=20)
        yield proc
        provider.shutdown()


def _scrape(proc: Processor) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.ports.metrics}/metrics") as resp:
        return resp.read().decode()


def test_promtool_accepts_the_exposition(fed_processor: Processor) -> None:
    promtool = need("promtool")
    text = _scrape(fed_processor)
    assert "mlobs_column_mean" in text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    # promtool exits 1 on lint warnings too; only hard errors count as failures here.
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "error" in line.lower()
    ]
    assert not problems, problems


def test_prometheus_scrapes_mlobs_metrics(fed_processor: Processor) -> None:
    need("prometheus")
    target = f"127.0.0.1:{fed_processor.ports.metrics}"
    with PrometheusServer(target, scrape_interval="1s") as prom:
        up = prom.wait_for('up{job="mlobs"} == 1', timeout_s=30)
        assert up, f"target never came up:\n{prom.log_tail()}"
        mean = prom.wait_for(
            'mlobs_column_mean{pipeline="live",component="features",column="trip_distance"}',
            timeout_s=30,
        )
        assert len(mean) == 1
        assert float(mean[0]["value"][1]) == pytest.approx(3.0, rel=0.2)
        joined = prom.wait_for('mlobs_model_joined_total{pipeline="live",model="tip"}')
        assert float(joined[0]["value"][1]) == 200
        correct = prom.query('mlobs_model_correct_total{pipeline="live",model="tip"}')
        assert float(correct[0]["value"][1]) == 200
