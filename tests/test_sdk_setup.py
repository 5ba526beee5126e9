"""configure(): exporter choice from arguments and OTEL_* variables, adopting an installed
provider, and size-capped export requests."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from otel_mlobs.sdk import setup


def _run_isolated(code: str, **env: str) -> dict:
    """Global tracer providers can be set once per process: check them in a fresh one."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLOBS_"))}
    clean.update(env)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_configure_adopts_an_installed_provider_and_otherwise_installs_its_own() -> None:
    result = _run_isolated("""
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        import otel_mlobs as mlobs
        mine = TracerProvider()
        trace.set_tracer_provider(mine)
        got = mlobs.configure(pipeline="p")
        again = mlobs.configure()
        print(json.dumps({"adopted": got is mine, "again": again is mine,
                          "processors": len(mine._active_span_processor._span_processors)}))
    """)
    assert result == {"adopted": True, "again": True, "processors": 0}
    result = _run_isolated("""
        import json
        from opentelemetry import trace
        import otel_mlobs as mlobs
        from otel_mlobs.sdk.setup import DrainFirst, SizeCappedExporter, background
        got = mlobs.configure(pipeline="p", endpoint="http://127.0.0.1:9", protocol="http/json")
        (drain, bsp) = got._active_span_processor._span_processors
        exporter = bsp._batch_processor._exporter
        result = {"global": trace.get_tracer_provider() is got,
                  "drain_first": isinstance(drain, DrainFirst), "background": background(),
                  "capped": isinstance(exporter, SizeCappedExporter),
                  "inner": type(exporter.inner).__module__,
                  "endpoint": exporter.inner._endpoint,
                  "service": got.resource.attributes["service.name"],
                  "same": mlobs.configure() is got,
                  "flushed": mlobs.flush(1)}
        mlobs.shutdown()  # configure() after shutdown() builds a new, working provider
        fresh = mlobs.configure(pipeline="p", endpoint="http://127.0.0.1:9",
                                protocol="http/protobuf")
        result["fresh"] = fresh is not got
        print(json.dumps(result))
    """)
    assert result == {
        "global": True,
        "drain_first": True,
        "background": False,
        "capped": True,
        "inner": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "endpoint": "http://127.0.0.1:9/v1/traces",
        "service": "p",
        "same": True,
        "flushed": True,
        "fresh": True,
    }


def test_pipeline_name_precedence(monkeypatch) -> None:
    monkeypatch.setattr(setup._state, "pipeline", None)
    monkeypatch.delenv("MLOBS_PIPELINE", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert setup.pipeline_name() == "default"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    assert setup.pipeline_name() == "svc"
    monkeypatch.setenv("MLOBS_PIPELINE", "env-pipe")
    assert setup.pipeline_name() == "env-pipe"
    monkeypatch.setattr(setup._state, "pipeline", "configured")
    assert setup.pipeline_name() == "configured"
    assert setup.pipeline_name("explicit") == "explicit"


def test_protocol_from_arguments_and_environment(monkeypatch, caplog) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    assert isinstance(setup.make_exporter(endpoint="localhost:4317"), GrpcExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    http = setup.make_exporter()
    assert isinstance(http, HttpExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    assert setup.resolve_protocol() == "grpc"
    assert setup.resolve_protocol("http/protobuf") == "http/protobuf"
    with caplog.at_level(logging.WARNING):
        assert setup.resolve_protocol("http/json") == "http/protobuf"
    assert "http/json" in caplog.text
    with pytest.raises(ValueError, match="unknown OTLP protocol"):
        setup.resolve_protocol("carrier-pigeon")
    assert setup.parse_headers("a=1, b = x=y") == {"a": "1", "b": "x=y"}


class _Recorder(SpanExporter):
    def __init__(self) -> None:
        self.batches: list[int] = []

    def export(self, spans):
        self.batches.append(len(spans))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_export_requests_are_split_by_size() -> None:
    provider = TracerProvider()
    collected = []

    class _Keep(SpanExporter):
        def export(self, spans):
            collected.extend(spans)
            return SpanExportResult.SUCCESS

    provider.add_span_processor(SimpleSpanProcessor(_Keep()))
    tracer = provider.get_tracer("t")
    for _ in range(10):
        with tracer.start_as_current_span("s") as span:
            span.add_event("e", {"blob": b"x" * 400_000})
    recorder = _Recorder()
    capped = setup.SizeCappedExporter(recorder, max_bytes=1_000_000)
    assert capped.export(collected) is SpanExportResult.SUCCESS
    assert sum(recorder.batches) == 10 and max(recorder.batches) == 2
