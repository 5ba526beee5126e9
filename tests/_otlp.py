"""Hand-built OTLP trace requests in the mlobs wire contract, independent of the SDK.

The decoder and receiver tests build their spans here so they test the contract itself, not
whatever one producer happens to emit.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from otel_mlobs import semconv as sc
from otel_mlobs.packing import pack

T0 = 1_700_000_000.0  # a fixed event time, s since epoch
_ids = itertools.count(1)


def any_value(value: Any) -> AnyValue:
    """Python/numpy value -> AnyValue. numpy arrays become native OTLP arrays."""
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, bool | np.bool_):
        return AnyValue(bool_value=bool(value))
    if isinstance(value, int | np.integer):
        return AnyValue(int_value=int(value))
    if isinstance(value, float | np.floating):
        return AnyValue(double_value=float(value))
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple | np.ndarray):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    raise TypeError(f"cannot encode {type(value).__name__}")


def attributes(values: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items()]


def array(values: Sequence | np.ndarray, packed: bool) -> Any:
    """A column array as the contract allows it: packed bytes or a native list."""
    arr = np.asarray(values)
    return pack(arr) if packed else arr.tolist()


def span(
    role: str,
    attrs: Mapping[str, Any],
    events: Iterable[Span.Event] = (),
    *,
    name: str = "span",
    start: float = T0,
    duration: float = 0.25,
    error: str | None = None,
    links: Sequence[tuple[bytes, bytes]] = (),
    parent: bytes = b"",
) -> Span:
    base = {sc.SCHEMA: sc.SCHEMA_VERSION, sc.SPAN_ROLE: role}
    n = next(_ids)
    return Span(
        trace_id=n.to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=int(start * 1e9),
        end_time_unix_nano=int((start + duration) * 1e9),
        attributes=attributes({**base, **attrs}),
        events=list(events),
        status=Status(code=Status.STATUS_CODE_ERROR, message=error)
        if error is not None
        else Status(code=Status.STATUS_CODE_OK),
        links=[Span.Link(trace_id=t, span_id=s) for t, s in links],
    )


def run_span(
    pipeline: str = "taxi",
    component: str = "features",
    run_id: str = "run-1",
    events: Iterable[Span.Event] = (),
    *,
    role: str = sc.SPAN_ROLE_RUN,
    stage: str = "features",
    event_time: float = T0,
    extra: Mapping[str, Any] | None = None,
    **kw: Any,
) -> Span:
    attrs = {
        sc.PIPELINE: pipeline,
        sc.COMPONENT: component,
        sc.RUN_ID: run_id,
        sc.STAGE: stage,
        sc.RUN_EVENT_TIME: event_time,
        **(extra or {}),
    }
    return span(role, attrs, events, **kw)


def event(name: str, attrs: Mapping[str, Any], time: float = T0) -> Span.Event:
    return Span.Event(name=name, time_unix_nano=int(time * 1e9), attributes=attributes(attrs))


def summary_event(
    n_columns: int = 3,
    *,
    packed: bool = True,
    role: str = "output",
    dataset: str = "trips",
    rows: int = 100,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> Span.Event:
    """A numeric summary of ``n_columns`` columns with the default quantile levels."""
    rng = np.random.default_rng(seed)
    levels = np.array(sc.DEFAULT_QUANTILE_LEVELS)
    mean = rng.normal(size=n_columns)
    quantiles = np.sort(rng.normal(size=(n_columns, levels.size)), axis=1)
    nulls = np.arange(n_columns) % 3
    attrs: dict[str, Any] = {
        sc.DATA_ROLE: role,
        sc.DATA_NAME: dataset,
        sc.DATA_ROWS: rows,
        sc.DATA_POINTER: "sha256:abc",
        sc.SUMMARY_COLUMNS: [f"c{i}" for i in range(n_columns)],
        sc.SUMMARY_KINDS: [sc.KIND_NUMERIC] * n_columns,
        sc.SUMMARY_COUNT: array(rows - nulls, packed),
        sc.SUMMARY_NULLS: array(nulls, packed),
        sc.SUMMARY_MEAN: array(mean, packed),
        sc.SUMMARY_STD: array(np.abs(mean) + 1, packed),
        sc.SUMMARY_MIN: array(quantiles[:, 0] - 1, packed),
        sc.SUMMARY_MAX: array(quantiles[:, -1] + 1, packed),
        sc.SUMMARY_QUANTILE_LEVELS: levels.tolist(),
        sc.SUMMARY_QUANTILES: array(quantiles.reshape(-1), packed),
        sc.SUMMARY_SKETCHES: [b""] * n_columns,
        sc.SUMMARY_DISTINCT: array(np.full(n_columns, 50.0), packed),
        sc.SUMMARY_TOP_VALUES: [""] * n_columns,
    }
    attrs.update(overrides or {})
    return event(sc.EVENT_SUMMARY, {k: v for k, v in attrs.items() if v is not None})


def check_event(name: str = "not_empty", passed: bool = True, phase: str = "after") -> Span.Event:
    return event(
        sc.EVENT_CHECK,
        {
            sc.CHECK_NAME: name,
            sc.CHECK_PHASE: phase,
            sc.CHECK_PASSED: passed,
            sc.CHECK_MESSAGE: "" if passed else "it failed",
        },
    )


def sample_event(n_rows: int = 5, packed: bool = True) -> Span.Event:
    values = [array(np.arange(n_rows, dtype=np.float64), packed), array(["a"] * n_rows, packed)]
    if not packed:  # native nested arrays
        values = [any_value(v) for v in values]
    return event(
        sc.EVENT_SAMPLE,
        {
            sc.DATA_ROLE: "input",
            sc.DATA_NAME: "trips",
            sc.DATA_ROWS: 1000,
            sc.SAMPLE_COLUMNS: ["fare", "zone"],
            sc.SAMPLE_VALUES: values,
        },
    )


def predictions_span(
    n: int = 10,
    *,
    pipeline: str = "taxi",
    model: str = "tip",
    component: str = "serve",
    packed: bool = True,
    reference: bool = False,
    with_labels: bool = False,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> Span:
    rng = np.random.default_rng(seed)
    attrs: dict[str, Any] = {
        sc.PRED_IDS: array([f"id{i}" for i in range(n)], packed),
        sc.PRED_TIMESTAMPS: array(T0 + np.arange(n, dtype=np.float64), packed),
        sc.PRED_SCORES: array(rng.uniform(size=n), packed),
        sc.PRED_FEATURE_NAMES: ["distance"],
        sc.PRED_FEATURES: [array(rng.uniform(0, 10, size=n), packed)],
    }
    if not packed:
        attrs[sc.PRED_FEATURES] = [any_value(a) for a in attrs[sc.PRED_FEATURES]]
    if with_labels:
        attrs[sc.PRED_LABELS] = array(rng.integers(0, 2, size=n), packed)
    if reference:
        attrs[sc.PRED_SET] = sc.PRED_SET_REFERENCE
        attrs[sc.PRED_TRUE_LABELS] = array(rng.integers(0, 2, size=n), packed)
    attrs.update(overrides or {})
    ev = event(sc.EVENT_PREDICTIONS, {k: v for k, v in attrs.items() if v is not None})
    span_attrs = {sc.PIPELINE: pipeline, sc.COMPONENT: component, sc.MODEL: model}
    return span(sc.SPAN_ROLE_PREDICTIONS, span_attrs, [ev])


def feedback_span(
    n: int = 10, *, pipeline: str = "taxi", model: str = "tip", packed: bool = True
) -> Span:
    ev = event(
        sc.EVENT_FEEDBACK,
        {
            sc.FB_IDS: array([f"id{i}" for i in range(n)], packed),
            sc.FB_LABELS: array(np.arange(n) % 2 == 0, packed),
            sc.FB_TIMESTAMPS: array(T0 + 100 + np.arange(n, dtype=np.float64), packed),
        },
    )
    return span(sc.SPAN_ROLE_FEEDBACK, {sc.PIPELINE: pipeline, sc.MODEL: model}, [ev])


def foreign_span(name: str = "GET /") -> Span:
    """A span of some other service: no mlobs attributes at all."""
    n = next(_ids)
    return Span(
        trace_id=n.to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        name=name,
        attributes=attributes({"http.method": "GET"}),
    )


def request(*spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])]
    )


def to_otlp_json(req: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON of ``req``: hex ids, integer enums, int64 as strings (as the spec allows)."""
    from google.protobuf import json_format

    doc = json_format.MessageToDict(req, use_integers_for_enums=True)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in s:
                        s[field] = _b64_to_hex(s[field])
                for link in s.get("links", []):
                    for field in ("traceId", "spanId"):
                        if field in link:
                            link[field] = _b64_to_hex(link[field])
    return json.dumps(doc).encode()


def _b64_to_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()
