"""Run the taxi scenario through the SDK and the decoder in one process, day by day.

The benchmarks and the end-to-end tests of the react analyzers need the records a real
processor would see, per simulated day, without sockets or timing: spans go to an in-memory
exporter, are encoded to OTLP protobuf exactly as an exporter would send them, and decoded by
the processor's own decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mlobs.processor.decode import decode_request
from otel_mlobs.processor.records import Record


def replay(
    scenario: Any,
    on_day: Callable[[Any, list[Record]], None],
    **pipeline_kw: Any,
) -> Any:
    """Drive ``run_pipeline(scenario)``; after each day call ``on_day(day_result, records)``."""
    import otel_mlobs
    from otel_mlobs.scenarios.pipeline import run_pipeline

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_mlobs.configure(tracer_provider=provider)

    def progress(day: Any) -> None:
        spans = exporter.get_finished_spans()
        exporter.clear()
        on_day(day, list(_decode(spans)))

    try:
        return run_pipeline(scenario, progress=progress, **pipeline_kw)
    finally:
        provider.shutdown()


def _decode(spans: Any) -> Iterator[Record]:
    if not spans:
        return
    result = decode_request(encode_spans(spans))
    if result.rejected_spans:
        raise ValueError(f"scenario spans rejected by the decoder: {result.error_message()}")
    yield from result.records
