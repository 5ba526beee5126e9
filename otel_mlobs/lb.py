"""A small OTLP/gRPC front that shards spans the way ``collector/loadbalanced.yaml`` does.

Production scale-out puts the OpenTelemetry Collector's ``loadbalancing`` exporter in front of
several processors (docs/operations.md, "Scale out"). This module reproduces that routing in a
few lines of Python, so tests, benchmarks and a laptop can run sharded processors without a
Collector binary. It is not a Collector: it has no sending queue and no trace store.

What it reproduces, step by step, from the shipped configuration and the exporter's source
(otelcol-contrib 0.130):

1. ``filter/mlobs_only``: spans without ``mlobs.pipeline`` are not mlobs data; they are counted
   (:attr:`RouteStats.dropped`) and not forwarded.
2. ``groupbyattrs/route`` + the exporter's split per resource: every span is routed by its own
   ``mlobs.pipeline`` and ``mlobs.model.name``, never by a neighbour in the same trace.
3. The routing key: the values of ``routing_attributes`` in order, concatenated, a missing one
   contributing nothing (so a component run keys on its pipeline alone, a prediction or
   feedback batch on pipeline + model).
4. The exporter's consistent hash ring: 100 points per backend at
   ``crc32(endpoint + byte(i)) % 36000`` over the sorted endpoint names (a point already taken
   stays with the earlier endpoint), and a key goes to the first point at or after
   ``crc32(key) % 36000``, wrapping around.

Backends are named as in the Collector's resolver (``mlobs-0:4317``); each name may map to a
different dial address, so a test on free ports routes every key exactly as the shipped
three-shard configuration would.

Forwarding is synchronous: each part goes to its backend with the Collector's
``retry_on_failure`` behaviour (retryable gRPC codes, honouring ``RetryInfo``) until
``timeout_s``; the client gets OK once every part is accepted, the summed partial success of the
backends, or ``UNAVAILABLE`` when a backend kept refusing (parts already delivered are then
delivered again when the client retries: at least once, as with the Collector).

Run one from the shell::

    python -m otel_mlobs.lb --port 4317 \\
        --backend mlobs-0:4317=127.0.0.1:14317 --backend mlobs-1:4317=127.0.0.1:24317
"""

from __future__ import annotations

import argparse
import bisect
import logging
import signal
import threading
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

from otel_mlobs import semconv as sc

logger = logging.getLogger(__name__)

ROUTING_ATTRIBUTES: tuple[str, ...] = (sc.PIPELINE, sc.MODEL)
"""What ``collector/loadbalanced.yaml`` routes on (``routing_attributes`` of the exporter)."""

MAX_POSITIONS = 36_000  # the exporter's ring: 360 degrees with two decimals
POINTS_PER_ENDPOINT = 100
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class HashRing:
    """The loadbalancing exporter's consistent hash ring over backend names."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        if not endpoints:
            raise ValueError("a hash ring needs at least one endpoint")
        taken: dict[int, str] = {}
        for endpoint in sorted(endpoints):  # the static and DNS resolvers sort their list
            for i in range(POINTS_PER_ENDPOINT):
                pos = zlib.crc32(endpoint.encode() + bytes([i])) % MAX_POSITIONS
                taken.setdefault(pos, endpoint)
        self._positions = sorted(taken)
        self._endpoints = [taken[p] for p in self._positions]
        self.endpoints: tuple[str, ...] = tuple(sorted(set(endpoints)))

    def endpoint_for(self, key: str | bytes) -> str:
        """The backend owning ``key``: the first ring point at or after its position."""
        data = key.encode() if isinstance(key, str) else key
        i = bisect.bisect_left(self._positions, zlib.crc32(data) % MAX_POSITIONS)
        return self._endpoints[i % len(self._endpoints)]


def routing_key(attributes: Mapping[str, str], names: Sequence[str] = ROUTING_ATTRIBUTES) -> str:
    """The exporter's key: the named string values concatenated, missing ones left out."""
    return "".join(attributes.get(name, "") for name in names)


@dataclass
class RouteStats:
    """Spans routed per backend name and spans dropped (no ``mlobs.pipeline``)."""

    routed: Counter[str] = field(default_factory=Counter)
    dropped: int = 0


def split_request(
    request: trace_service_pb2.ExportTraceServiceRequest,
    ring: HashRing,
    names: Sequence[str] = ROUTING_ATTRIBUTES,
    stats: RouteStats | None = None,
) -> dict[str, trace_service_pb2.ExportTraceServiceRequest]:
    """One request per backend name, each keeping its spans' resource, scope and order."""
    wanted = frozenset(names)
    out: dict[str, trace_service_pb2.ExportTraceServiceRequest] = {}
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            parts: dict[str, ScopeSpans] = {}
            for span in scope_spans.spans:
                values = {
                    kv.key: kv.value.string_value for kv in span.attributes if kv.key in wanted
                }
                if sc.PIPELINE not in values:
                    if stats is not None:
                        stats.dropped += 1
                    continue
                endpoint = ring.endpoint_for(routing_key(values, names))
                part = parts.get(endpoint)
                if part is None:
                    target = out.setdefault(endpoint, trace_service_pb2.ExportTraceServiceRequest())
                    holder: ResourceSpans = target.resource_spans.add(
                        resource=resource_spans.resource, schema_url=resource_spans.schema_url
                    )
                    part = parts[endpoint] = holder.scope_spans.add(
                        scope=scope_spans.scope, schema_url=scope_spans.schema_url
                    )
                part.spans.append(span)
                if stats is not None:
                    stats.routed[endpoint] += 1
    return out


def _retry_delay(error: grpc.RpcError, attempt: int) -> float:
    """RetryInfo's delay when the backend sent one, else exponential backoff from 50 ms."""
    for key, value in error.trailing_metadata() or ():
        if key == "google.rpc.retryinfo-bin":
            info = error_details_pb2.RetryInfo.FromString(value)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return min(0.05 * 2**attempt, 5.0)


class LoadBalancer(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC ``TraceService`` that splits each request and forwards the parts.

    Parameters
    ----------
    backends
        Backend name (what the ring hashes, as in the Collector's resolver list) -> address to
        dial (``host:port``).
    host, port
        Where to listen; port 0 binds a free port (see :attr:`port` after :meth:`start`).
    timeout_s
        How long one part may be retried before the client is told ``UNAVAILABLE``.
    """

    def __init__(
        self,
        backends: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_s: float = 30.0,
        workers: int = 4,
        names: Sequence[str] = ROUTING_ATTRIBUTES,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"Invalid 'timeout_s': {timeout_s}; expected > 0")
        self.ring = HashRing(list(backends))
        self.backends = dict(backends)
        self.names = tuple(names)
        self.timeout_s = timeout_s
        self.stats = RouteStats()
        self._host, self._port, self._workers = host, port, workers
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, trace_service_pb2_grpc.TraceServiceStub] = {}
        self._server: grpc.Server | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> LoadBalancer:
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        for name, address in self.backends.items():
            channel = grpc.insecure_channel(address, options=options)
            self._channels[name] = channel
            self._stubs[name] = trace_service_pb2_grpc.TraceServiceStub(channel)
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="mlobs-lb"),
            options=[*options, ("grpc.so_reuseport", 0)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, server)
        address = f"{self._host}:{self._port}"
        port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot bind the load-balancing front on {address}")
        server.start()
        self._server, self.port = server, port
        return self

    def stop(self, grace_s: float = 2.0) -> None:
        if self._server is not None:
            self._server.stop(grace_s).wait()
            self._server = None
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._stubs.clear()

    def __enter__(self) -> LoadBalancer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the service ------------------------------------------------------------------------

    def Export(  # noqa: N802 - the generated service's method name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        stats = RouteStats()
        parts = split_request(request, self.ring, self.names, stats)
        with self._lock:
            self.stats.routed.update(stats.routed)
            self.stats.dropped += stats.dropped
        response = trace_service_pb2.ExportTraceServiceResponse()
        messages = []
        for name, part in parts.items():
            try:
                answer = self._forward(name, part)
            except grpc.RpcError as exc:
                logger.warning(
                    "backend %s (%s) refused a part: %s", name, self.backends[name], exc.code()
                )
                context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"backend {name} unavailable: {exc.details()}"
                )
            if answer.partial_success.rejected_spans:
                response.partial_success.rejected_spans += answer.partial_success.rejected_spans
                messages.append(f"{name}: {answer.partial_success.error_message}")
        if messages:
            response.partial_success.error_message = "; ".join(messages)
        return response

    def _forward(
        self, name: str, part: trace_service_pb2.ExportTraceServiceRequest
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """Send one part, retrying retryable refusals until the deadline (then re-raise)."""
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                return self._stubs[name].Export(part, timeout=max(remaining, 0.001))
            except grpc.RpcError as exc:
                delay = _retry_delay(exc, attempt)
                if exc.code() not in _RETRYABLE or delay >= deadline - time.monotonic():
                    raise
                time.sleep(delay)
                attempt += 1


def _backend(text: str) -> tuple[str, str]:
    name, _, address = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME[=HOST:PORT]")
    return name, address or name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m otel_mlobs.lb",
        description="OTLP/gRPC front routing mlobs spans to processor shards by "
        "(mlobs.pipeline, mlobs.model.name), as collector/loadbalanced.yaml does.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4317)
    parser.add_argument(
        "--backend",
        type=_backend,
        action="append",
        required=True,
        metavar="NAME[=HOST:PORT]",
        help="a shard: its name on the ring (as in the Collector's resolver) and where to dial",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="retry budget per part (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    front = LoadBalancer(
        dict(args.backend), host=args.host, port=args.port, timeout_s=args.timeout
    ).start()
    logger.info("routing OTLP/gRPC on %s:%d to %s", args.host, front.port, front.backends)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    front.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
