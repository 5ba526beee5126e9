"""A processor on free ports, and small clients for its three ports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor


@contextmanager
def running(**config: Any) -> Iterator[Processor]:
    settings = {"grpc_port": 0, "http_port": 0, "metrics_port": 0, **config}
    with Processor(ProcessorConfig(**settings)) as proc:
        yield proc


@contextmanager
def grpc_stub(proc: Processor) -> Iterator[trace_service_pb2_grpc.TraceServiceStub]:
    channel = grpc.insecure_channel(
        f"127.0.0.1:{proc.ports.grpc}",
        options=[("grpc.max_send_message_length", 128 * 1024 * 1024)],
    )
    try:
        yield trace_service_pb2_grpc.TraceServiceStub(channel)
    finally:
        channel.close()


def grpc_export(
    proc: Processor, req: trace_service_pb2.ExportTraceServiceRequest
) -> trace_service_pb2.ExportTraceServiceResponse:
    with grpc_stub(proc) as stub:
        return stub.Export(req, timeout=10)


def post_traces(
    proc: Processor,
    body: bytes,
    content_type: str = "application/x-protobuf",
    encoding: str | None = None,
) -> requests.Response:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    return requests.post(
        f"http://127.0.0.1:{proc.ports.http}/v1/traces", data=body, headers=headers, timeout=10
    )


def api(proc: Processor, path: str, method: str = "GET", **kw: Any) -> requests.Response:
    return requests.request(
        method, f"http://127.0.0.1:{proc.ports.metrics}{path}", timeout=10, **kw
    )


def scrape(proc: Processor) -> dict[str, Any]:
    """``/metrics`` parsed by prometheus_client's own parser: {family name: family}."""
    response = api(proc, "/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float | None:
    """The value of one sample in scraped families, None when absent."""
    for family in families.values():
        for s in family.samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None
