"""``mlobs processor``: run the collector-side service until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from otel_mlobs.cli import byte_size, env_option, log_level, non_empty, port, positive_int
from otel_mlobs.processor import config as cfg

logger = logging.getLogger("otel_mlobs.processor")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "processor",
        help="receive OTLP traces, run the analyzers, serve /metrics",
        description="Receive OTLP spans (gRPC and HTTP), decode the mlobs contract, run the "
        "analyzers and serve Prometheus /metrics and the JSON API. Port 0 picks a free port.",
    )
    env_option(parser, "--host", type=non_empty, default="127.0.0.1", help="address to bind")
    env_option(
        parser,
        "--grpc-port",
        type=port,
        default=cfg.DEFAULT_GRPC_PORT,
        metavar="PORT",
        help="OTLP/gRPC",
    )
    env_option(
        parser,
        "--http-port",
        type=port,
        default=cfg.DEFAULT_HTTP_PORT,
        metavar="PORT",
        help="OTLP/HTTP",
    )
    env_option(
        parser,
        "--metrics-port",
        type=port,
        default=cfg.DEFAULT_METRICS_PORT,
        metavar="PORT",
        help="/metrics and /api/v1",
    )
    env_option(
        parser,
        "--max-request-bytes",
        type=byte_size,
        default=cfg.DEFAULT_MAX_REQUEST_BYTES,
        metavar="SIZE",
        help="largest export request accepted, compressed or not (e.g. 64MiB)",
    )
    env_option(
        parser,
        "--queue-size",
        type=positive_int,
        default=cfg.DEFAULT_QUEUE_SIZE,
        metavar="N",
        help="export requests waiting for the analyzers before clients are told to retry",
    )
    env_option(
        parser,
        "--log-level",
        type=log_level,
        default="INFO",
        metavar="LEVEL",
        help="DEBUG|INFO|WARNING|ERROR",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from otel_mlobs.processor.service import Processor

    config = cfg.ProcessorConfig(
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        max_request_bytes=args.max_request_bytes,
        queue_size=args.queue_size,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            processor = Processor(config).start()
        except OSError as exc:
            logger.error("cannot start the processor: %s", exc)
            return 1
        try:
            while not stop.wait(0.5):
                pass
        finally:
            processor.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
