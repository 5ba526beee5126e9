"""OTLP/gRPC receiver: full and partial success, backpressure with RetryInfo, message limits."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from _otlp import (
    event,
    foreign_span,
    request,
    run_span,
    summary_event,
)
from _processor import grpc_export, grpc_stub, running
from google.rpc import error_details_pb2, status_pb2

from otel_mlobs import semconv as sc
from otel_mlobs.packing import pack


def test_valid_request_is_fully_accepted_and_applied():
    with running() as proc:
        response = grpc_export(proc, request(run_span(events=[summary_event(3)]), foreign_span()))
        assert not response.HasField("partial_success")
        assert proc.wait_idle(5)
        reg = proc.registry
        assert reg.get_sample_value("mlobs_processor_spans_accepted_total") == 1
        assert reg.get_sample_value("mlobs_processor_spans_ignored_total") == 1
        assert (
            reg.get_sample_value("mlobs_processor_spans_received_total", {"transport": "grpc"}) == 2
        )
        assert reg.get_sample_value("mlobs_processor_records_total", {"type": "summary"}) == 1
        assert (
            reg.get_sample_value(
                "mlobs_processor_requests_total", {"transport": "grpc", "code": "OK"}
            )
            == 1
        )
        labels = {"pipeline": "taxi", "component": "features", "stage": "features", "status": "ok"}
        assert reg.get_sample_value("mlobs_component_runs_total", labels) == 1


def test_malformed_spans_get_partial_success_and_the_rest_is_kept():
    bad = run_span(run_id="bad", extra={sc.SPAN_ROLE: "nonsense"})
    torn = run_span(
        run_id="torn", events=[summary_event(2, overrides={sc.SUMMARY_MEAN: b"<f8\n1"})]
    )
    with running() as proc:
        response = grpc_export(proc, request(run_span(run_id="ok"), bad, torn, foreign_span()))
        assert response.partial_success.rejected_spans == 2
        assert "unknown_span_role" in response.partial_success.error_message
        assert "bad_packed_array" in response.partial_success.error_message
        assert proc.wait_idle(5)
        reg = proc.registry
        assert reg.get_sample_value("mlobs_processor_spans_accepted_total") == 1
        assert (
            reg.get_sample_value(
                "mlobs_processor_spans_rejected_total", {"reason": "unknown_span_role"}
            )
            == 1
        )
        assert (
            reg.get_sample_value(
                "mlobs_processor_spans_rejected_total", {"reason": "bad_packed_array"}
            )
            == 1
        )
        assert reg.get_sample_value("mlobs_processor_records_total", {"type": "run"}) == 1


def _wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_full_queue_answers_unavailable_with_retry_info():
    with running(queue_size=1, retry_after_s=2.5) as proc, grpc_stub(proc) as stub:
        with proc.lock:  # the worker blocks on its first batch
            stub.Export(request(run_span(run_id="a")), timeout=5)
            _wait_until(lambda: len(proc.queue) == 0)  # "a" taken by the blocked worker
            stub.Export(request(run_span(run_id="b")), timeout=5)  # fills the queue
            with pytest.raises(grpc.RpcError) as info:
                stub.Export(request(run_span(run_id="c"), foreign_span()), timeout=5)
        err = info.value
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(err.trailing_metadata())
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry)
        # retry_after_s is 2.5: the delay is drawn from 2.5 to 5 s so refused clients spread out.
        assert 2.5 <= retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9 < 5.0
        legacy = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
        assert legacy == retry
        assert proc.wait_idle(5)
        reg = proc.registry
        assert reg.get_sample_value("mlobs_processor_queue_full_total", {"transport": "grpc"}) == 1
        assert (
            reg.get_sample_value("mlobs_processor_spans_refused_total", {"transport": "grpc"}) == 2
        )
        assert reg.get_sample_value("mlobs_processor_records_total", {"type": "run"}) == 2
        assert (
            reg.get_sample_value(
                "mlobs_processor_requests_total", {"transport": "grpc", "code": "UNAVAILABLE"}
            )
            == 1
        )


def test_otlp_exporter_retries_after_a_full_queue_and_succeeds():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("run") as s:
        s.set_attributes(
            {
                sc.SCHEMA: sc.SCHEMA_VERSION,
                sc.SPAN_ROLE: sc.SPAN_ROLE_RUN,
                sc.PIPELINE: "p",
                sc.COMPONENT: "c",
                sc.RUN_ID: "r",
            }
        )
    spans = memory.get_finished_spans()
    with running(queue_size=1, retry_after_s=0.2) as proc, grpc_stub(proc) as stub:
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{proc.ports.grpc}", insecure=True)
        results = []
        with proc.lock:
            stub.Export(request(run_span(run_id="a")), timeout=5)
            _wait_until(lambda: len(proc.queue) == 0)
            stub.Export(request(run_span(run_id="b")), timeout=5)
            thread = threading.Thread(target=lambda: results.append(exporter.export(spans)))
            thread.start()
            _wait_until(
                lambda: (
                    proc.registry.get_sample_value(
                        "mlobs_processor_queue_full_total", {"transport": "grpc"}
                    )
                    == 1
                )
            )
        thread.join(10)
        exporter.shutdown()
        assert results == [SpanExportResult.SUCCESS]
        assert proc.wait_idle(5)
        assert proc.registry.get_sample_value("mlobs_processor_records_total", {"type": "run"}) == 3


def test_requests_over_4_mib_are_accepted():
    big = np.random.default_rng(0).normal(size=750_000)  # ~6 MB packed
    ev = event(
        sc.EVENT_SAMPLE,
        {
            sc.DATA_ROLE: "input",
            sc.DATA_NAME: "d",
            sc.SAMPLE_COLUMNS: ["x"],
            sc.SAMPLE_VALUES: [pack(big)],
        },
    )
    req = request(run_span(events=[ev]))
    assert req.ByteSize() > 4 * 1024 * 1024
    with running() as proc:
        assert not grpc_export(proc, req).HasField("partial_success")
        assert proc.wait_idle(5)
        assert (
            proc.registry.get_sample_value("mlobs_processor_records_total", {"type": "sample"}) == 1
        )


def test_requests_over_the_configured_limit_are_refused():
    ev = event(
        sc.EVENT_SAMPLE,
        {
            sc.DATA_ROLE: "input",
            sc.SAMPLE_COLUMNS: ["x"],
            sc.SAMPLE_VALUES: [pack(np.zeros(300_000))],
        },
    )
    with running(max_request_bytes=1024 * 1024) as proc, pytest.raises(grpc.RpcError) as info:
        grpc_export(proc, request(run_span(events=[ev])))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
