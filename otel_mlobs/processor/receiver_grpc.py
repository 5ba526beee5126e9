"""OTLP/gRPC trace receiver (``TraceService/Export``, port 4317 by default).

Malformed mlobs spans are answered with OTLP partial success (the client must not retry them);
a full ingest queue is answered ``UNAVAILABLE`` with a ``google.rpc.RetryInfo``, which OTLP
exporters treat as "retry after this delay". The RetryInfo rides both in the standard
``grpc-status-details-bin`` trailer (a ``google.rpc.Status``) and in
``google.rpc.retryinfo-bin``, the trailer the Python OTLP exporter reads.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from otel_mlobs.processor.decode import DecodeResult, decode_request
from otel_mlobs.processor.ingest import IngestQueue, admit, redacted, retry_delay
from otel_mlobs.processor.stats import Stats

logger = logging.getLogger(__name__)

TRANSPORT = "grpc"
SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def retry_trailers(message: str, retry_after_s: float) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata that tells an OTLP client to retry after ``retry_after_s``."""
    seconds = math.floor(retry_after_s)
    delay = Duration(seconds=seconds, nanos=int(round((retry_after_s - seconds) * 1e9)))
    retry = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = AnyProto()
    detail.Pack(retry)
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail])
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", retry.SerializeToString()),
    )


class TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    """Decodes on the gRPC thread pool and hands records to the ingest queue."""

    def __init__(
        self,
        queue: IngestQueue,
        stats: Stats,
        retry_after_s: float,
        redact: Callable[[DecodeResult], DecodeResult] | None = None,
    ) -> None:
        self._queue = queue
        self._stats = stats
        self._retry_after_s = retry_after_s
        self._redact = redact

    def export_bytes(
        self, body: bytes, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """``Export`` from the raw message, so a body that does not parse is answered
        ``INVALID_ARGUMENT`` and counted (gRPC's own deserializer would answer an uncounted
        ``INTERNAL``)."""
        try:
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        except DecodeError as exc:
            self._stats.request(TRANSPORT, grpc.StatusCode.INVALID_ARGUMENT.name)
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid protobuf ExportTraceServiceRequest: {exc}",
            )
        return self.Export(request, context, body)

    def Export(  # noqa: N802 - the generated service's method name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
        body: bytes | None = None,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """Decode, queue and answer; ``body`` is the request as received, which the
        write-ahead log may keep instead of encoding the records."""
        received_at = time.monotonic()
        result = redacted(decode_request(request), body, self._redact)
        result.request_bytes = len(body) if body is not None else request.ByteSize()
        if not admit(self._queue, self._stats, TRANSPORT, result, received_at):
            self._stats.request(TRANSPORT, grpc.StatusCode.UNAVAILABLE.name)
            message = "ingest queue full; retry later"
            delay = retry_delay(self._retry_after_s)
            context.set_trailing_metadata(retry_trailers(message, delay))
            context.abort(grpc.StatusCode.UNAVAILABLE, message)
        self._stats.request(TRANSPORT, grpc.StatusCode.OK.name)
        return result.response()


class GrpcReceiver:
    """The gRPC server; ``port`` is the bound port after :meth:`start`."""

    def __init__(
        self,
        servicer: TraceServicer,
        host: str,
        port: int,
        max_message_bytes: int,
        workers: int,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self._servicer = servicer
        self._interceptors = list(interceptors)
        self._credentials = credentials
        self._address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self._max_message_bytes = max_message_bytes
        self._workers = workers
        self._server: grpc.Server | None = None
        self.port = 0

    def start(self) -> int:
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="mlobs-grpc"),
            options=[
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            interceptors=self._interceptors,
        )
        export = grpc.unary_unary_rpc_method_handler(
            self._servicer.export_bytes,
            response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
        )  # no request_deserializer: export_bytes parses, and counts what does not parse
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": export}),)
        )
        try:
            if self._credentials is None:
                port = server.add_insecure_port(self._address)
            else:
                port = server.add_secure_port(self._address, self._credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot bind OTLP/gRPC on {self._address}: {exc}") from exc
        if port == 0:
            raise OSError(f"cannot bind OTLP/gRPC on {self._address}")
        server.start()
        self._server, self.port = server, port
        return port

    def stop(self, grace_s: float = 2.0) -> None:
        if self._server is not None:
            self._server.stop(grace_s).wait()
            self._server = None
