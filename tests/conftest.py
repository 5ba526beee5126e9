"""Shared fixtures. SDK fixtures are prefixed ``sdk_``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def sdk_exporter() -> Iterator[InMemorySpanExporter]:
    """The SDK configured on a fresh in-memory provider; yields the exporter holding its spans."""
    from otel_mlobs.sdk import _emit, setup

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.configure(tracer_provider=provider, pipeline="sdk-test")
    _emit.reset_stats()
    yield exporter
    setup.shutdown()
    provider.shutdown()
