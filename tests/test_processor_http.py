"""OTLP/HTTP receiver: protobuf and JSON, compression, status codes, backpressure."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest
import requests
from _otlp import T0, foreign_span, request, run_span, summary_event, to_otlp_json
from _processor import api, post_traces, running
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_mlobs import semconv as sc

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@pytest.fixture(scope="module")
def proc():
    with running(max_request_bytes=1024 * 1024) as p:
        yield p


def _runs(proc, status="ok"):
    proc.wait_idle(5)
    labels = {"pipeline": "taxi", "component": "features", "stage": "features", "status": status}
    return proc.registry.get_sample_value("mlobs_component_runs_total", labels) or 0


def _recent_trace_ids(proc):
    query = api(proc, "/api/v1/analyzers/runs?pipeline=taxi&component=features").json()
    return {r["trace_id"] for r in query["recent"]}


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate"])
def test_protobuf_request_answers_protobuf(proc, encoding):
    s = run_span(events=[summary_event(2)])
    body = request(s, foreign_span()).SerializeToString()
    body = {None: lambda b: b, "gzip": gzip.compress, "deflate": zlib.compress}[encoding](body)
    before = _runs(proc)
    response = post_traces(proc, body, PROTOBUF, encoding)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(PROTOBUF)
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert not parsed.HasField("partial_success")
    assert _runs(proc) == before + 1
    assert s.trace_id.hex() in _recent_trace_ids(proc)


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_json_request_answers_json_with_hex_ids(proc, encoding):
    s = run_span(events=[summary_event(2, packed=False)])
    body = to_otlp_json(request(s))
    assert s.trace_id.hex() in body.decode()  # the spec's hex ids, not base64
    if encoding:
        body = gzip.compress(body)
    before = _runs(proc)
    response = post_traces(proc, body, JSON, encoding)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith(JSON)
    assert response.json() == {}
    assert _runs(proc) == before + 1
    assert s.trace_id.hex() in _recent_trace_ids(proc)


def test_json_accepts_string_int64_integer_enums_and_unknown_fields(proc):
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [], "futureField": {"x": 1}},
                "scopeSpans": [
                    {
                        "scope": {"name": "hand-written"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "",
                                "name": "features",
                                "kind": 1,
                                "startTimeUnixNano": str(int(T0 * 1e9)),
                                "endTimeUnixNano": str(int((T0 + 2) * 1e9)),
                                "attributes": [
                                    {"key": sc.SCHEMA, "value": {"stringValue": sc.SCHEMA_VERSION}},
                                    {"key": sc.SPAN_ROLE, "value": {"stringValue": "run"}},
                                    {"key": sc.PIPELINE, "value": {"stringValue": "taxi"}},
                                    {"key": sc.COMPONENT, "value": {"stringValue": "features"}},
                                    {"key": sc.RUN_ID, "value": {"stringValue": "json-1"}},
                                    {"key": sc.STAGE, "value": {"stringValue": "features"}},
                                    {"key": sc.SDK_SHED, "value": {"intValue": "3"}},
                                ],
                                "status": {"code": 2, "message": "failed on purpose"},
                                "links": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "b7ad6b7169203331",
                                    }
                                ],
                                "someNewField": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    before = _runs(proc, "error")
    response = post_traces(proc, json.dumps(doc).encode(), JSON)
    assert response.status_code == 200, response.text
    assert _runs(proc, "error") == before + 1
    assert "5b8efff798038103d269b633813fc60c" in _recent_trace_ids(proc)


def test_malformed_spans_give_partial_success_in_json(proc):
    bad = run_span(extra={sc.SCHEMA: "7.1"})
    before = _runs(proc)
    response = post_traces(proc, to_otlp_json(request(run_span(), bad)), JSON)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert "unknown_schema_version" in partial["errorMessage"]
    assert _runs(proc) == before + 1


def test_malformed_spans_give_partial_success_in_protobuf(proc):
    response = post_traces(proc, request(run_span(extra={sc.PIPELINE: 3})).SerializeToString())
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert response.status_code == 200 and parsed.partial_success.rejected_spans == 1


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "fragment"),
    [
        (b"\x0a\xff\xff\xff\x0f", PROTOBUF, None, "invalid protobuf"),
        (b"{not json", JSON, None, "invalid JSON"),
        (b"[1, 2]", JSON, None, "expected a JSON object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
            JSON,
            None,
            "spans[0].traceId='xyz' is not a hex id",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}',
            JSON,
            None,
            "invalid OTLP/JSON",
        ),
        (b"plain text, not gzip", PROTOBUF, "gzip", "invalid gzip"),
        (gzip.compress(b"x" * 1000)[:-30], PROTOBUF, "gzip", "truncated gzip"),
    ],
    ids=["protobuf", "json", "json-array", "hex-id", "json-type", "gzip", "gzip-truncated"],
)
def test_undecodable_bodies_are_400_in_the_request_content_type(
    proc, body, content_type, encoding, fragment
):
    response = post_traces(proc, body, content_type, encoding)
    assert response.status_code == 400
    if content_type == JSON:
        message = response.json()["message"]
    else:
        message = status_pb2.Status.FromString(response.content).message
    assert fragment in message


def test_body_over_the_limit_is_413(proc):
    response = post_traces(proc, b"\0" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert "exceeds the limit" in status_pb2.Status.FromString(response.content).message


def test_chunked_body_over_the_limit_is_413(proc):
    def chunks():
        for _ in range(40):
            yield b"\0" * 65536  # 2.5 MiB, no Content-Length

    response = requests.post(
        f"http://127.0.0.1:{proc.ports.http}/v1/traces",
        data=chunks(),
        headers={"Content-Type": PROTOBUF},
        timeout=10,
    )
    assert response.status_code == 413


def test_gzip_bomb_is_413_without_inflating_it(proc):
    bomb = gzip.compress(b"\0" * (32 * 1024 * 1024), compresslevel=9)  # 32 MiB in ~32 KB
    assert len(bomb) < 1024 * 1024
    start = time.perf_counter()
    response = post_traces(proc, bomb, PROTOBUF, "gzip")
    assert response.status_code == 413
    assert "decompressed body exceeds" in status_pb2.Status.FromString(response.content).message
    assert time.perf_counter() - start < 5  # stopped at the limit, not after inflating it all


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [("text/plain", None), ("application/grpc", None), (PROTOBUF, "br")],
)
def test_unsupported_media_is_415(proc, content_type, encoding):
    response = post_traces(proc, request(run_span()).SerializeToString(), content_type, encoding)
    assert response.status_code == 415


def test_other_methods_are_405(proc):
    response = requests.get(f"http://127.0.0.1:{proc.ports.http}/v1/traces", timeout=5)
    assert response.status_code == 405


def test_status_codes_are_counted(proc):
    post_traces(proc, b"junk", "text/plain")
    proc.wait_idle(5)
    reg = proc.registry
    assert reg.get_sample_value(
        "mlobs_processor_requests_total", {"transport": "http", "code": "415"}
    )
    assert reg.get_sample_value(
        "mlobs_processor_requests_total", {"transport": "http", "code": "200"}
    )


def test_full_queue_answers_503_with_retry_after():
    with running(queue_size=1, retry_after_s=2.5) as proc:
        body = request(run_span()).SerializeToString()
        with proc.lock:
            assert post_traces(proc, body).status_code == 200
            deadline = time.monotonic() + 5
            while len(proc.queue) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert post_traces(proc, body).status_code == 200
            refused = post_traces(proc, to_otlp_json(request(run_span(), run_span())), JSON)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] in {"3", "4", "5"}  # 2.5 to 5 s, whole seconds
        assert "queue full" in refused.json()["message"]
        assert proc.wait_idle(5)
        reg = proc.registry
        assert reg.get_sample_value("mlobs_processor_queue_full_total", {"transport": "http"}) == 1
        assert (
            reg.get_sample_value("mlobs_processor_spans_refused_total", {"transport": "http"}) == 2
        )
        assert reg.get_sample_value("mlobs_processor_records_total", {"type": "run"}) == 2


def test_a_decoder_crash_is_a_counted_500(proc, monkeypatch):
    from otel_mlobs.processor import receiver_http

    def crash(*args):
        raise RuntimeError("bug")

    monkeypatch.setattr(receiver_http, "parse_body", crash)
    response = post_traces(proc, request(run_span()).SerializeToString())
    assert response.status_code == 500
    assert "internal error: RuntimeError" in status_pb2.Status.FromString(response.content).message
    labels = {"transport": "http", "code": "500"}
    assert proc.registry.get_sample_value("mlobs_processor_requests_total", labels) == 1
