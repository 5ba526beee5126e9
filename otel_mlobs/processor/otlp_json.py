"""OTLP/JSON to protobuf.

OTLP/JSON is protobuf's JSON mapping with one twist: trace and span ids are hex strings, not
base64. Enums as integers, int64 as strings, base64 ``bytesValue`` and both camelCase and
snake_case field names are already what ``json_format.ParseDict`` accepts; unknown fields must be
ignored. So the only work is rewriting the ids in place before parsing.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_SPAN_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
_LINK_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id")


class OtlpJsonError(ValueError):
    """The body is not an OTLP/JSON trace request; the message says where."""


def parse_trace_request(body: bytes | str) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OtlpJsonError(f"invalid JSON: {exc}") from None
    except RecursionError:  # "[[[[..." a hundred thousand deep
        raise OtlpJsonError("invalid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise OtlpJsonError(f"expected a JSON object, got {type(doc).__name__}")
    for r, resource_spans in enumerate(_list(doc, "resourceSpans", "resource_spans", "")):
        where_r = f"resourceSpans[{r}]"
        for s, scope_spans in enumerate(
            _list(resource_spans, "scopeSpans", "scope_spans", where_r)
        ):
            where_s = f"{where_r}.scopeSpans[{s}]"
            for i, span in enumerate(_list(scope_spans, "spans", "spans", where_s)):
                where = f"{where_s}.spans[{i}]"
                _hex_to_base64(span, _SPAN_ID_FIELDS, where)
                for j, link in enumerate(_list(span, "links", "links", where)):
                    _hex_to_base64(link, _LINK_ID_FIELDS, f"{where}.links[{j}]")
    try:
        return json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpJsonError(str(exc)) from None
    except RecursionError:  # nested array or kvlist values deeper than the parser recurses
        raise OtlpJsonError("attribute values nested too deeply") from None


def to_json(message: Message) -> bytes:
    """Serialize an OTLP response message as JSON (camelCase names, int64 as strings)."""
    return json_format.MessageToJson(message, indent=None).encode()


def _list(obj: Any, camel: str, snake: str, where: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise OtlpJsonError(f"{where or 'request'} must be an object")
    value = obj.get(camel, obj.get(snake))
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpJsonError(f"{where}.{camel} must be a list".lstrip("."))
    return value


def _hex_to_base64(obj: Any, names: tuple[str, ...], where: str) -> None:
    if not isinstance(obj, dict):
        raise OtlpJsonError(f"{where} must be an object")
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise OtlpJsonError(f"{where}.{name} must be a hex string")
        try:
            obj[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
        except (ValueError, binascii.Error):
            raise OtlpJsonError(f"{where}.{name}={value!r} is not a hex id") from None
