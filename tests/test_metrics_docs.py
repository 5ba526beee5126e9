"""docs/metrics.md lists every metric a processor fed by the taxi scenario exports, and no more."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client.parser import text_string_to_metric_families

import otel_mlobs as mlobs
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor
from otel_mlobs.scenarios import TaxiScenario
from otel_mlobs.scenarios.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
DOCUMENTED = set(re.findall(r"^\| `(mlobs_[a-z0-9_]+)` \|", DOC, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def exported() -> dict[str, str]:
    """Family name (as exposed, counters with ``_total``) -> type, after a short scenario run."""
    with Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0)) as proc:
        provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{proc.ports.grpc}", insecure=True)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        mlobs.configure(tracer_provider=provider)
        scenario = TaxiScenario(
            seed=3, start="2025-12-24", days=8, rows_per_day=600,
            incidents=["corruption@2025-12-30", "feedback_outage@2025-12-29"],
        )  # fmt: skip
        run_pipeline(scenario, n_estimators=20)
        provider.force_flush()
        assert proc.wait_idle(timeout=60)
        url = f"http://127.0.0.1:{proc.ports.metrics}/metrics"
        with urllib.request.urlopen(url) as resp:
            text = resp.read().decode()
        provider.shutdown()
    return {
        fam.name + ("_total" if fam.type == "counter" else ""): fam.type
        for fam in text_string_to_metric_families(text)
    }


def test_every_exported_metric_is_documented(exported: dict[str, str]) -> None:
    assert len(exported) > 40
    assert sorted(set(exported) - DOCUMENTED) == []


def test_documented_types_match(exported: dict[str, str]) -> None:
    rows = dict(re.findall(r"^\| `(mlobs_[a-z0-9_]+)` \| (\w+) \|", DOC, flags=re.MULTILINE))
    wrong = {n: (rows[n], t) for n, t in exported.items() if rows.get(n) != t}
    assert wrong == {}


def test_every_documented_metric_exists(exported: dict[str, str]) -> None:
    """Documented names are exported by the run, or named literally in the code (those that need
    events the short run does not produce, such as KPIs)."""
    source = "\n".join(p.read_text() for p in (ROOT / "otel_mlobs").rglob("*.py"))
    stale = sorted(n for n in DOCUMENTED - set(exported) if f'"{n}"' not in source)
    assert stale == []
