"""Where the SDK's spans go: one OTel ``TracerProvider`` with a batch processor and OTLP exporter.

Usage::

    import otel_mlobs as mlobs
    mlobs.configure(pipeline="taxi")           # OTLP/gRPC to localhost:4317 unless told otherwise

Configuration (arguments win over environment variables):

* ``protocol`` / ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``:
  ``grpc`` (default), ``http/protobuf``; ``http/json`` falls back to ``http/protobuf`` with a
  warning because the Python HTTP exporter only speaks protobuf.
* ``endpoint``, ``headers``: passed to the exporter; left ``None``, the exporter reads
  ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` / ``_HEADERS`` / ``_TIMEOUT`` / ``_COMPRESSION`` itself.
  A processor with auth on wants ``headers={"authorization": "Bearer <token>"}`` or
  ``OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>``; TLS comes from an ``https://``
  endpoint and ``OTEL_EXPORTER_OTLP_CERTIFICATE`` (plus ``_CLIENT_CERTIFICATE`` and
  ``_CLIENT_KEY`` for mutual TLS), which the exporters read themselves.
  An HTTP ``endpoint`` given without a path gets ``/v1/traces`` appended.
* ``pipeline``: default pipeline name of runs and batches: the argument, else ``MLOBS_PIPELINE``,
  else ``OTEL_SERVICE_NAME``, else ``"default"``.
* ``service_name``: the resource's ``service.name`` (else ``OTEL_SERVICE_NAME``, else the
  pipeline); ``OTEL_RESOURCE_ATTRIBUTES`` is honoured.
* ``OTEL_BSP_*``: batch processor settings. The queue defaults to 16,384 spans instead of OTel's
  2,048 because prediction batches produce many spans; ``OTEL_BSP_MAX_QUEUE_SIZE`` overrides.
* ``background`` / ``MLOBS_SDK_BACKGROUND`` (``true``/``false``, default off): whether summaries,
  samples and prediction batches are finished on the SDK's worker thread
  (:mod:`otel_mlobs.sdk._worker`) after a snapshot of the data is taken on the caller's thread.
  Off by default because it only moves work: the caller's own steps get cheaper, but the process
  does more in all (the snapshot plus the hand-off) and the worker competes with the caller for
  the interpreter lock and the cores, so calls made back to back on a busy machine get slower
  (benchmarks/sdk_overhead.py, docs/performance.md). Turn it on for a service whose calls leave
  idle time between them and whose latency matters. With it on, :func:`flush` and
  :func:`shutdown` wait for pending work first; so does the built provider's own
  ``force_flush`` / ``shutdown``. Call :func:`flush` rather than the provider's ``force_flush``
  when the provider was passed in.

If an SDK ``TracerProvider`` is already installed globally, :func:`configure` uses it as it is and
returns it (its exporters are the user's business). A ``tracer_provider`` argument is used as given
and never installed globally, which is how tests inject an in-memory exporter.

Batches handed to the exporter are split so that no export request carries more than about
3.5 MiB of payload: OTel's batch processor counts spans, not bytes, and a Collector with default
settings rejects gRPC messages over 4 MiB.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_mlobs.sdk import _worker
from otel_mlobs.sdk._emit import attributes_bytes

_LOG = logging.getLogger(__name__)
DEFAULT_MAX_QUEUE_SIZE = 16_384
MAX_REQUEST_BYTES = 3_670_016  # 3.5 MiB
INSTRUMENTATION_NAME = "otel_mlobs"
PROTOCOLS = ("grpc", "http/protobuf", "http/json")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.provider: TracerProvider | None = None
        self.owned = False  # created by configure(), so shutdown() may shut it down
        self.pipeline: str | None = None
        self.tracers: dict[int, trace.Tracer] = {}
        self.retired: set[int] = set()  # ids of providers shutdown() shut down
        self.background = False


_state = _State()


def configure(
    *,
    pipeline: str | None = None,
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | str | None = None,
    tracer_provider: TracerProvider | None = None,
    background: bool | None = None,
) -> TracerProvider:
    """Set up (or adopt) the tracer provider the SDK emits to; returns it."""
    wanted = _background_setting(background)
    with _state.lock:
        if pipeline is not None:
            _state.pipeline = pipeline
        if tracer_provider is not None:
            _state.provider, _state.owned = tracer_provider, False
            _state.background = bool(wanted)
            _state.tracers.clear()
            return tracer_provider
        installed = trace.get_tracer_provider()
        ours_retired = id(installed) in _state.retired
        if isinstance(installed, TracerProvider) and not ours_retired:
            if installed is not _state.provider:
                _LOG.info("using the TracerProvider already installed; not adding an exporter")
                _state.provider, _state.owned = installed, False
                _state.tracers.clear()
            _state.background = bool(wanted)
            return installed
        if _state.provider is not None and _state.owned:
            if wanted is not None:
                _state.background = wanted
            return _state.provider
        provider = _build_provider(pipeline_name(), service_name, endpoint, protocol, headers)
        _state.provider, _state.owned = provider, True
        _state.background = bool(wanted)
        _state.tracers.clear()
    if not ours_retired:  # OTel lets the global be set once; a second provider stays local
        trace.set_tracer_provider(provider)
    return provider


def _background_setting(explicit: bool | None) -> bool | None:
    if explicit is not None:
        return bool(explicit)
    raw = os.environ.get("MLOBS_SDK_BACKGROUND", "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    if raw:
        _LOG.warning("MLOBS_SDK_BACKGROUND=%r is not true or false; ignored", raw)
    return None


def background() -> bool:
    """Whether logging calls finish their work on the SDK's worker (see the module docs)."""
    return _state.background and _state.provider is not None


def pipeline_name(explicit: str | None = None) -> str:
    """Pipeline of a run or batch: explicit, configured, ``MLOBS_PIPELINE``, service, "default"."""
    return (
        explicit
        or _state.pipeline
        or os.environ.get("MLOBS_PIPELINE")
        or os.environ.get("OTEL_SERVICE_NAME")
        or "default"
    )


def get_tracer() -> trace.Tracer:
    """The SDK's tracer on the configured provider, else on the global one (no-op if none)."""
    provider = _state.provider or trace.get_tracer_provider()
    key = id(provider)
    tracer = _state.tracers.get(key)
    if tracer is None:
        tracer = provider.get_tracer(INSTRUMENTATION_NAME, _version())
        _state.tracers[key] = tracer
    return tracer


def _version() -> str:
    try:
        return importlib.metadata.version("otel-mlobs")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def flush(timeout_s: float = 30) -> bool:
    """Finish pending background work, then export everything buffered; False when the timeout
    ran out first."""
    deadline = time.monotonic() + timeout_s
    if not _worker.drain(timeout_s):
        return False
    provider = _state.provider or trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return True
    left = max(deadline - time.monotonic(), 0.001)
    return bool(force_flush(int(left * 1000)))


def shutdown() -> None:
    """Flush and shut down the provider set up here, then forget it (configure() may run again).

    A provider adopted from the global or passed in belongs to the caller and is only flushed.
    """
    with _state.lock:
        provider, owned = _state.provider, _state.owned
        _state.provider, _state.owned = None, False
        _state.tracers.clear()
        _state.pipeline = None
        _state.background = False
    _worker.drain(30.0)  # work already handed over still reaches the provider
    if provider is None:
        return
    if owned:
        _state.retired.add(id(provider))
        provider.shutdown()
    else:
        provider.force_flush()


def _build_provider(
    pipeline: str,
    service_name: str | None,
    endpoint: str | None,
    protocol: str | None,
    headers: Mapping[str, str] | str | None,
) -> TracerProvider:
    attrs: dict[str, Any] = {}
    if service_name:
        attrs["service.name"] = service_name
    elif not os.environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = pipeline
    provider = TracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(DrainFirst())  # before the exporter's processor: runs first
    exporter = make_exporter(endpoint=endpoint, protocol=protocol, headers=headers)
    queue = None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else DEFAULT_MAX_QUEUE_SIZE
    provider.add_span_processor(
        BatchSpanProcessor(SizeCappedExporter(exporter), max_queue_size=queue)
    )
    return provider


def resolve_protocol(protocol: str | None = None) -> str:
    """The OTLP protocol to use: argument, then the standard variables, then ``grpc``."""
    chosen = (
        (
            protocol
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        )
        .strip()
        .lower()
    )
    if chosen not in PROTOCOLS:
        raise ValueError(f"unknown OTLP protocol {chosen!r}; expected one of {PROTOCOLS}")
    if chosen == "http/json":
        _LOG.warning("the Python OTLP exporter has no http/json; using http/protobuf")
        chosen = "http/protobuf"
    return chosen


def make_exporter(
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | str | None = None,
) -> SpanExporter:
    """An OTLP span exporter for ``protocol``; None arguments are left to the exporter's env."""
    chosen = resolve_protocol(protocol)
    header_map = parse_headers(headers) if headers is not None else None
    if chosen == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, headers=header_map)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    if endpoint is not None and urlparse(endpoint).path in ("", "/"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HTTPSpanExporter(endpoint=endpoint, headers=header_map)


def parse_headers(headers: Mapping[str, str] | str) -> dict[str, str]:
    """``{"k": "v"}`` or the OTel env form ``"k1=v1,k2=v2"`` (values URL-encoded) as a dict.

    Names are lower-cased: gRPC refuses metadata keys with capitals, so
    ``{"Authorization": "Bearer ..."}`` would otherwise fail every export over gRPC.
    """
    if isinstance(headers, Mapping):
        return {str(k).lower(): str(v) for k, v in headers.items()}
    out: dict[str, str] = {}
    for item in headers.split(","):
        if "=" in item:
            key, value = item.split("=", 1)
            out[unquote(key.strip()).lower()] = unquote(value.strip())
    return out


class DrainFirst(SpanProcessor):
    """Makes the provider's own ``force_flush`` and ``shutdown`` (OTel's exit hook included)
    wait for the SDK's background work before the exporting processor after it flushes."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        _worker.drain(30.0)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return _worker.drain(timeout_millis / 1000)


class SizeCappedExporter(SpanExporter):
    """Forwards span batches to ``inner`` in requests of at most ``max_bytes`` of payload."""

    def __init__(self, inner: SpanExporter, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.inner = inner
        self.max_bytes = max_bytes

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = SpanExportResult.SUCCESS
        batch: list[ReadableSpan] = []
        size = 0
        for span in spans:
            span_size = span_bytes(span)
            if batch and size + span_size > self.max_bytes:
                if self.inner.export(batch) is not SpanExportResult.SUCCESS:
                    result = SpanExportResult.FAILURE
                batch, size = [], 0
            batch.append(span)
            size += span_size
        if batch and self.inner.export(batch) is not SpanExportResult.SUCCESS:
            result = SpanExportResult.FAILURE
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def span_bytes(span: ReadableSpan) -> int:
    """Rough encoded size of a finished span."""
    size = 120 + len(span.name) + attributes_bytes(span.attributes or {})
    for event in span.events:
        size += 20 + len(event.name) + attributes_bytes(event.attributes or {})
    return size
