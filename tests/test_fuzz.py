"""Fuzzing the decoder and the receivers: hostile input is answered, counted, never a crash.

Property tests (Hypothesis) feed the decoder spans whose mlobs attributes hold anything an
``AnyValue`` can: every type, NaN and infinities, unicode and empty column names, duplicated
names, huge and malformed packed arrays. Then random and mutated bodies, protobuf and OTLP/JSON,
plain and gzipped, go to a running processor over HTTP and gRPC: every request must get a
definite answer (no 5xx, no hang) and be counted, and every span of a decodable request must be
counted once as accepted, rejected, ignored or refused.

Bounded in time: each property runs a fixed number of examples, each request has a timeout.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from _otlp import (
    T0,
    any_value,
    check_event,
    feedback_span,
    foreign_span,
    predictions_span,
    request,
    run_span,
    sample_event,
    summary_event,
    to_otlp_json,
)
from _processor import running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_mlobs import semconv as sc
from otel_mlobs.packing import PackingError, pack, unpack
from otel_mlobs.processor.analyzers import DEFAULT_ANALYZERS
from otel_mlobs.processor.decode import INTERNAL_ERROR, REASONS, decode_request
from otel_mlobs.processor.records import (
    FeedbackBatch,
    PredictionBatch,
    SampleRecord,
    SummaryRecord,
)
from otel_mlobs.processor.router import Router

FUZZ = settings(
    max_examples=120,
    deadline=None,  # some examples carry 200,000-row arrays; the time bound is max_examples
    database=None,  # no example directory in the checkout; failures print their example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
HUGE = 200_000

# --- values ----------------------------------------------------------------------------------

texts = st.text(max_size=12) | st.sampled_from(["", " ", "é", "列", "\x00", "a" * 300, "\ud7ff"])
finite_or_not = st.floats(allow_nan=True, allow_infinity=True)
numpy_dtypes = st.sampled_from(["<f8", "<f4", "<i8", "<i4", "<u1", "|b1", "<U3", "|S4"])


@st.composite
def packed_arrays(draw: st.DrawFn) -> bytes:
    """Valid packed arrays of every allowed dtype, NaN/inf included, and a huge one now and
    then, or a malformed one: bad header, disallowed dtype, ragged payload."""
    kind = draw(st.sampled_from(["valid", "valid", "huge", "bad_header", "ragged", "random"]))
    if kind == "valid":
        dtype = np.dtype(draw(numpy_dtypes))
        n = draw(st.integers(0, 12))
        if dtype.kind == "f":
            values = draw(st.lists(finite_or_not, min_size=n, max_size=n))
            with np.errstate(over="ignore"):  # 1e300 as float32 is inf: fine, also a case
                return pack(np.array(values, dtype=np.float64).astype(dtype))
        if dtype.kind in "US":
            return pack(np.array(draw(st.lists(texts, min_size=n, max_size=n)), dtype=str))
        return pack(np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype))
    if kind == "huge":
        return draw(st.sampled_from(_HUGE_PACKED))
    if kind == "bad_header":
        header = draw(
            st.sampled_from(
                [
                    b"|O8",
                    b"<V8",
                    b"<M8[ns]",
                    b"",
                    b"<U0",
                    b"{",
                    b"f8" * 9,
                    b"<c16",
                    b"[('a','<f8')]",
                    b">f8",
                ]
            )
        )
        return header + b"\n" + draw(st.binary(max_size=32))
    if kind == "ragged":
        return b"<f8\n" + draw(st.binary(min_size=1, max_size=31)).ljust(9, b"\1")[:9]
    return draw(st.binary(max_size=48))


_HUGE_PACKED = [
    pack(np.zeros(HUGE)),
    pack(np.full(HUGE, np.nan)),
    pack(np.arange(HUGE).astype("<U8")),
    pack(np.ones(HUGE, dtype=bool)),
]


def any_values(max_leaves: int = 8) -> st.SearchStrategy[AnyValue]:
    """Every kind of ``AnyValue``, nested arrays and key-value lists included."""
    scalars = st.one_of(
        texts.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        finite_or_not.map(lambda v: AnyValue(double_value=v)),
        packed_arrays().map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),  # no value set at all
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=6).map(
                lambda vs: AnyValue(array_value=ArrayValue(values=vs))
            ),
            st.lists(st.tuples(texts, children), max_size=3).map(
                lambda kvs: AnyValue(
                    kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])
                )
            ),
        ),
        max_leaves=max_leaves,
    )


column_names = st.lists(texts, min_size=0, max_size=6).map(
    lambda names: AnyValue(array_value=ArrayValue(values=[any_value(n) for n in names]))
)

# --- spans -----------------------------------------------------------------------------------


def _bases() -> list[Span]:
    """One valid span of each role and event kind, the starting points of mutation."""
    return [
        run_span(events=[summary_event(3), sample_event(5), check_event()]),
        run_span(events=[summary_event(2, packed=False), sample_event(4, packed=False)]),
        predictions_span(20, with_labels=True),
        predictions_span(10, reference=True, packed=False),
        feedback_span(10),
        run_span(role=sc.SPAN_ROLE_PART, events=[summary_event(1)]),
    ]


_KEYS = sorted(
    v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str) and v.startswith("mlobs.")
)


@st.composite
def mutated_spans(draw: st.DrawFn) -> Span:
    """A valid span with a few attributes (of the span or of an event) replaced, removed or
    added, or an event renamed."""
    span = Span()
    span.CopyFrom(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 3))):
        targets = [span.attributes] + [e.attributes for e in span.events]
        attrs = draw(st.sampled_from(targets))
        action = draw(
            st.sampled_from(["replace", "numbers", "numbers", "columns", "drop", "add", "rename"])
        )
        if action == "rename" and span.events:
            draw(st.sampled_from(list(span.events))).name = draw(
                st.sampled_from(
                    [
                        sc.EVENT_SUMMARY,
                        sc.EVENT_SAMPLE,
                        sc.EVENT_PREDICTIONS,
                        sc.EVENT_FEEDBACK,
                        sc.EVENT_KPI,
                        sc.EVENT_CHECK,
                        "other",
                    ]
                )
            )
        elif action == "add" or not attrs:
            attrs.append(KeyValue(key=draw(st.sampled_from(_KEYS)), value=draw(any_values())))
        else:
            i = draw(st.integers(0, len(attrs) - 1))
            if action == "drop":
                del attrs[i]
            elif action == "columns":
                attrs[i].value.CopyFrom(draw(column_names))
            elif action == "numbers":  # same length, any doubles: NaN, inf, 1e308, -0.0
                n = _length(attrs[i].value)
                values = draw(st.lists(finite_or_not, min_size=n, max_size=n))
                attrs[i].value.CopyFrom(AnyValue(bytes_value=pack(np.array(values, np.float64))))
            else:
                attrs[i].value.CopyFrom(draw(any_values()))
    return span


_BASES = _bases()


def _length(value: AnyValue) -> int:
    """How many items an array attribute holds (packed or native), 1 for a scalar."""
    if value.HasField("bytes_value"):
        try:
            return len(unpack(value.bytes_value))
        except PackingError:
            return 1
    if value.HasField("array_value"):
        return len(value.array_value.values)
    return 1


@st.composite
def wild_spans(draw: st.DrawFn) -> Span:
    """Spans built from scratch: a role, random mlobs attributes, random events."""
    attrs = {
        sc.SCHEMA: AnyValue(string_value=sc.SCHEMA_VERSION),
        sc.SPAN_ROLE: AnyValue(string_value=draw(st.sampled_from(sc.SPAN_ROLES))),
    }
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=8)):
        attrs[key] = draw(any_values())
    events = [
        Span.Event(
            name=draw(
                st.sampled_from(
                    [
                        sc.EVENT_SUMMARY,
                        sc.EVENT_PREDICTIONS,
                        sc.EVENT_FEEDBACK,
                        sc.EVENT_SAMPLE,
                        sc.EVENT_KPI,
                    ]
                )
            ),
            attributes=[
                KeyValue(key=k, value=draw(any_values(4)))
                for k in draw(st.lists(st.sampled_from(_KEYS), max_size=8))
            ],
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    return Span(
        name="wild",
        attributes=[KeyValue(key=k, value=v) for k, v in attrs.items()],
        events=events,
        start_time_unix_nano=int(T0 * 1e9),
    )


# --- decoder properties ----------------------------------------------------------------------


def _check_records(records: list) -> None:
    """Accepted records keep the shapes analyzers rely on."""
    for rec in records:
        if isinstance(rec, SummaryRecord):
            n = len(rec.columns)
            for arr in (rec.count, rec.nulls, rec.mean, rec.std, rec.min, rec.max, rec.distinct):
                assert arr.shape == (n,)
            assert rec.quantiles.shape == (n, rec.quantile_levels.size)
            assert len(rec.kinds) == len(rec.sketches) == len(rec.top_values) == n
            assert len(set(rec.columns)) == n
        elif isinstance(rec, SampleRecord):
            assert len({len(v) for v in rec.columns.values()}) <= 1
        elif isinstance(rec, PredictionBatch):
            n = len(rec.ids)
            assert rec.timestamps.shape == (n,) and rec.labels.shape == (n,)
            assert all(len(v) == n for v in rec.features.values())
            if rec.scores is not None:
                assert rec.scores.shape[0] == n
        elif isinstance(rec, FeedbackBatch):
            assert len(rec.labels) == len(rec.timestamps) == len(rec.ids)


def _decode_and_apply(spans: list[Span]) -> None:
    result = decode_request(request(*spans))
    assert result.total_spans == len(spans)
    assert sum(result.rejected_by_reason.values()) == result.rejected_spans
    assert set(result.rejected_by_reason) <= set(REASONS)
    assert INTERNAL_ERROR not in result.rejected_by_reason, result.errors
    _check_records(result.records)
    router = Router(DEFAULT_ANALYZERS)
    for rec in result.records:
        router.dispatch(rec)
    router.refresh()
    router.metrics()
    assert dict(router.errors) == {}, result.records


@FUZZ
@given(st.lists(mutated_spans(), min_size=1, max_size=3))
def test_decoder_survives_mutated_contract_spans(spans):
    _decode_and_apply(spans)


@settings(FUZZ, max_examples=80)  # generating these is the slow part
@given(st.lists(wild_spans(), min_size=1, max_size=3))
def test_decoder_survives_spans_built_from_anything(spans):
    _decode_and_apply(spans)


@FUZZ
@given(packed_arrays())
def test_unpack_returns_an_allowed_array_or_a_packing_error(buf):
    try:
        arr = unpack(buf)
    except PackingError:
        return
    assert arr.ndim == 1 and arr.dtype.kind in "fiubUS" and arr.dtype.fields is None


# --- receivers under random and mutated bodies ------------------------------------------------


@pytest.fixture(scope="module")
def proc():
    with running(max_request_bytes=4 * 1024 * 1024) as p:
        yield p


_VALID = request(*_bases(), foreign_span())
_VALID_PB = _VALID.SerializeToString()
_VALID_JSON = to_otlp_json(_VALID)


@st.composite
def mutated_bytes(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with bytes flipped, cut, inserted or duplicated, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 64))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(texts, c, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_json(draw: st.DrawFn) -> bytes:
    """Valid OTLP/JSON with one node replaced by any JSON value, or text mutations of it."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(mutated_bytes(_VALID_JSON))
    if choice == 1:
        return json.dumps(draw(json_values)).encode()
    doc = json.loads(_VALID_JSON)
    node: Any = doc
    for _ in range(draw(st.integers(1, 8))):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()) or not isinstance(node[key], dict | list):
                node[key] = draw(json_values)
                break
            node = node[key]
        elif isinstance(node, list) and node:
            i = draw(st.integers(0, len(node) - 1))
            if draw(st.booleans()) or not isinstance(node[i], dict | list):
                node[i] = draw(json_values)
                break
            node = node[i]
        else:
            break
    return json.dumps(doc).encode()


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, written by hand: the protobuf library refuses to
    build messages as deep as the ones we want to send."""
    size, varint = len(payload), bytearray()
    while True:
        varint.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            break
    return bytes([number << 3 | 2]) + bytes(varint) + payload


def _nested_request(depth: int) -> bytes:
    """An export request whose one span has an attribute nested ``depth`` arrays deep."""
    value = AnyValue(string_value="leaf").SerializeToString()
    for _ in range(depth):  # AnyValue.array_value = 5, ArrayValue.values = 1
        value = _field(5, _field(1, value))
    attribute = _field(1, sc.SAMPLE_COLUMNS.encode()) + _field(2, value)  # KeyValue key, value
    span = Span(name="deep").SerializeToString() + _field(9, attribute)  # Span.attributes = 9
    return _field(1, _field(2, _field(2, span)))  # resource_spans, scope_spans, spans


def _deeply_nested() -> list[tuple[bytes, str]]:
    """Bodies nested deeper than any parser recurses: JSON text, OTLP/JSON values, protobuf."""
    json_attr = (
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"mlobs.x",'
        '"value":' + '{"arrayValue":{"values":[' * 3000 + "]}}" * 3000 + "}]}]}]}]}"
    )
    return [
        (b"[" * 100_000, "application/json"),
        (b'{"resourceSpans":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json"),
        (json_attr.encode(), "application/json"),
        (_nested_request(500), "application/x-protobuf"),
    ]


def _counts(p) -> dict[str, float]:
    """The processor's own request and span counters."""
    snap = p.stats.snapshot()
    return {
        "requests_http": sum(n for (t, _), n in snap.requests.items() if t == "http"),
        "requests_grpc": sum(n for (t, _), n in snap.requests.items() if t == "grpc"),
        "received": sum(snap.spans_received.values()),
        "settled": snap.spans_accepted
        + sum(snap.spans_rejected.values())
        + snap.spans_ignored
        + sum(snap.spans_refused.values()),
        "internal": snap.spans_rejected.get(INTERNAL_ERROR, 0),
    }


def _post(p, body: bytes, content_type: str, encoding: str | None = None) -> int:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    response = requests.post(
        f"http://127.0.0.1:{p.ports.http}/v1/traces", data=body, headers=headers, timeout=10
    )  # a hang fails the test
    return response.status_code


def test_http_answers_every_mutated_body_and_counts_it(proc):
    before = _counts(proc)
    statuses: Counter[int] = Counter()
    bodies = st.one_of(
        mutated_bytes(_VALID_PB).map(lambda b: (b, "application/x-protobuf", None)),
        mutated_json().map(lambda b: (b, "application/json", None)),
        mutated_bytes(gzip.compress(_VALID_PB)).map(
            lambda b: (b, "application/x-protobuf", "gzip")
        ),
        st.binary(max_size=64).map(lambda b: (b, "application/json", "deflate")),
    )

    @settings(FUZZ, max_examples=250)
    @given(bodies)
    def post(case):
        status = _post(proc, *case)
        assert status in (200, 400, 413), case
        statuses[status] += 1

    post()
    for body, content_type in _deeply_nested():
        assert _post(proc, body, content_type) == 400  # refused, not a 500
        statuses[400] += 1
    assert proc.wait_idle(timeout=30)
    after = _counts(proc)
    assert after["requests_http"] - before["requests_http"] == statuses.total()
    assert after["received"] - before["received"] == after["settled"] - before["settled"]
    assert after["internal"] == before["internal"]
    assert statuses[200] and statuses[400]  # both kinds of body were produced
    assert proc.healthy


def test_grpc_answers_every_mutated_message_and_counts_it(proc):
    before = _counts(proc)
    codes: Counter[grpc.StatusCode] = Counter()
    with grpc.insecure_channel(f"127.0.0.1:{proc.ports.grpc}") as channel:
        raw = channel.unary_unary(EXPORT)  # bytes in, bytes out: no client-side parsing

        @settings(FUZZ, max_examples=250)
        @given(mutated_bytes(_VALID_PB))
        def export(body):
            try:
                raw(body, timeout=10)
                codes[grpc.StatusCode.OK] += 1
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
                codes[err.code()] += 1

        export()
        with pytest.raises(grpc.RpcError) as err:  # deeper than the parser recurses
            raw(_nested_request(500), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        codes[err.value.code()] += 1
    assert proc.wait_idle(timeout=30)
    after = _counts(proc)
    assert after["requests_grpc"] - before["requests_grpc"] == codes.total()
    assert after["received"] - before["received"] == after["settled"] - before["settled"]
    assert after["internal"] == before["internal"]
    assert codes[grpc.StatusCode.OK] and codes[grpc.StatusCode.INVALID_ARGUMENT]
    assert proc.healthy


def test_decodable_requests_settle_every_span_in_the_exposition(proc):
    """The invariant as Prometheus sees it, after everything above."""
    from _processor import scrape, value

    assert proc.wait_idle(timeout=30)
    families = scrape(proc)
    received = sum(s.value for s in families["mlobs_processor_spans_received"].samples)
    settled = (
        (value(families, "mlobs_processor_spans_accepted_total") or 0)
        + sum(s.value for s in families["mlobs_processor_spans_rejected"].samples)
        + (value(families, "mlobs_processor_spans_ignored_total") or 0)
        + sum(s.value for s in families["mlobs_processor_spans_refused"].samples)
    )
    assert received == settled
    assert received > 0
