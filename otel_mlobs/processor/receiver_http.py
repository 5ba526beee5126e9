"""OTLP/HTTP trace receiver: ``POST /v1/traces`` (port 4318 by default).

Accepts ``application/x-protobuf`` and ``application/json`` (OTLP/JSON), optionally
``Content-Encoding: gzip`` or ``deflate``, and answers in the request's content type, as the
OTLP spec asks. Status codes follow the spec: 200 (possibly with ``partial_success``), 400 for a
body that does not decode (never retried), 401 with ``WWW-Authenticate: Bearer`` when auth is
on and the token is missing or wrong (checked before the body is read), 413 over the size
limit, 415 for other content types or encodings, 503 with ``Retry-After`` when the ingest queue
is full (retried).

The size limit holds for the body as sent and as decompressed: decompression is incremental
and stops one byte past the limit, so a small gzip bomb costs at most the limit in memory.
Reading stays on the event loop; decompression and decoding run on an executor.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Executor

from aiohttp import web
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_mlobs.processor.auth import AuthFailures, TokenSet, challenge
from otel_mlobs.processor.decode import DecodeResult, decode_request
from otel_mlobs.processor.ingest import IngestQueue, admit, redacted, retry_delay
from otel_mlobs.processor.otlp_json import OtlpJsonError, parse_trace_request, to_json
from otel_mlobs.processor.stats import Stats

logger = logging.getLogger(__name__)

TRANSPORT = "http"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACES_PATH = "/v1/traces"
_READ_CHUNK = 1 << 16
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _Refusal(Exception):
    """A request that gets an error status instead of decoding."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_GRPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    500: code_pb2.INTERNAL,
    503: code_pb2.UNAVAILABLE,
}


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate ``body`` (gzip, possibly multi-member, or zlib), refusing output over ``limit``."""
    wbits = _WBITS[encoding]
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    data = body
    try:
        while True:
            chunk = inflater.decompress(data, limit + 1 - len(out))
            out += chunk
            if len(out) > limit:
                raise _Refusal(413, f"decompressed body exceeds the limit of {limit} bytes")
            data = inflater.unconsumed_tail
            if inflater.eof:
                rest = inflater.unused_data
                if encoding == "gzip" and rest.strip(b"\0"):
                    inflater, data = zlib.decompressobj(wbits), rest
                    continue
                return bytes(out)
            if not data and not chunk:
                raise _Refusal(400, f"truncated {encoding} body")
    except zlib.error as exc:
        raise _Refusal(400, f"invalid {encoding} body: {exc}") from None


def parse_body(
    body: bytes,
    content_type: str,
    encoding: str,
    limit: int,
    redact: Callable[[DecodeResult], DecodeResult] | None = None,
) -> DecodeResult:
    """Decompress, parse and decode one request body (runs on the executor)."""
    if encoding in _WBITS:
        body = decompress(body, encoding, limit)
    wire = None  # a protobuf body may stand for its records in the write-ahead log
    if content_type == PROTOBUF:
        try:
            request = ExportTraceServiceRequest.FromString(body)
        except DecodeError as exc:
            raise _Refusal(400, f"invalid protobuf ExportTraceServiceRequest: {exc}") from None
        wire = body
    else:
        try:
            request = parse_trace_request(body)
        except OtlpJsonError as exc:
            raise _Refusal(400, f"invalid OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    result = redacted(decode_request(request), wire, redact)
    result.request_bytes = len(body)
    return result


class HttpReceiver:
    """The aiohttp handler for ``POST /v1/traces``."""

    def __init__(
        self,
        queue: IngestQueue,
        stats: Stats,
        executor: Executor,
        max_request_bytes: int,
        retry_after_s: float,
        tokens: TokenSet | None = None,
        auth_failures: AuthFailures | None = None,
        redact: Callable[[DecodeResult], DecodeResult] | None = None,
    ) -> None:
        self._redact = redact
        self._tokens = tokens or TokenSet(())
        self._auth_failures = auth_failures or AuthFailures()
        self._queue = queue
        self._stats = stats
        self._executor = executor
        self._limit = max_request_bytes
        self._retry_after_s = retry_after_s

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(TRACES_PATH, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        received_at = time.monotonic()
        content_type = request.content_type.lower()
        reply_type = PROTOBUF if content_type == PROTOBUF else JSON
        reason = self._tokens.check(request.headers.get("Authorization"))
        if reason is not None:  # before reading the body: strangers cost no decoding
            self._auth_failures.add("otlp_http", reason)
            return self._error(
                reply_type,
                401,
                "missing or invalid bearer token",
                {"WWW-Authenticate": challenge(reason)},
            )
        try:
            result = await self._decode(request, content_type)
        except _Refusal as exc:
            return self._error(reply_type, exc.status, exc.message)
        except Exception as exc:  # a bug, not the client's fault: answer (and count) a 500
            logger.exception("cannot handle an OTLP/HTTP request")
            return self._error(reply_type, 500, f"internal error: {type(exc).__name__}")
        # On the executor: with persistence on, admission waits for the batch to reach disk.
        loop = asyncio.get_running_loop()
        admitted = loop.run_in_executor(
            self._executor, admit, self._queue, self._stats, TRANSPORT, result, received_at
        )
        if not await admitted:
            return self._error(
                reply_type,
                503,
                "ingest queue full; retry later",
                {"Retry-After": str(max(1, math.ceil(retry_delay(self._retry_after_s))))},
            )
        return self._reply(reply_type, 200, result.response())

    async def _decode(self, request: web.Request, content_type: str) -> DecodeResult:
        if content_type not in (PROTOBUF, JSON):
            raise _Refusal(
                415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}"
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity", *_WBITS):
            raise _Refusal(415, f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
        length = request.content_length
        if length is not None and length > self._limit:
            raise _Refusal(413, f"body of {length} bytes exceeds the limit of {self._limit}")
        body = await self._read(request)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, parse_body, body, content_type, encoding, self._limit, self._redact
        )

    async def _read(self, request: web.Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > self._limit:
                raise _Refusal(413, f"body exceeds the limit of {self._limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _error(
        self, reply_type: str, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = status_pb2.Status(code=_GRPC_CODES.get(status, code_pb2.UNKNOWN), message=message)
        return self._reply(reply_type, status, body, headers)

    def _reply(
        self,
        reply_type: str,
        status: int,
        message: Message,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        self._stats.request(TRANSPORT, str(status))
        body = message.SerializeToString() if reply_type == PROTOBUF else to_json(message)
        return web.Response(status=status, body=body, content_type=reply_type, headers=headers)
