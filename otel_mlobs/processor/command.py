"""``mlobs processor``: run the collector-side service until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from types import FrameType

from otel_mlobs.cli import (
    byte_size,
    env_option,
    log_level,
    non_empty,
    port,
    positive_int,
    positive_seconds,
)
from otel_mlobs.processor import config as cfg
from otel_mlobs.processor.auth import SecurityConfig
from otel_mlobs.processor.cardinality import DEFAULT_MAX_SERIES

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
        "--queue-bytes",
        type=byte_size,
        default=cfg.DEFAULT_QUEUE_BYTES,
        metavar="SIZE",
        help="bytes of export requests held for the analyzers (queued or being applied) "
        "before clients are told to retry; bounds the processor's memory (e.g. 512MiB)",
    )
    env_option(
        parser,
        "--max-series-per-metric",
        type=series_cap,
        default=DEFAULT_MAX_SERIES,
        metavar="N",
        help="series per metric family before the rest fold into an __overflow__ series",
    )
    # Persistence (docs/persistence.md): on by default for the command, off for the library.
    env_option(
        parser,
        "--state-dir",
        type=str,
        default=cfg.DEFAULT_STATE_DIR,
        metavar="DIR",
        help="checkpoints and write-ahead log, relative to the working directory; "
        "'' keeps state in memory only",
    )
    parser.add_argument(
        "--no-persistence",
        action="store_true",
        default=None,
        help="keep state in memory only: lost on restart [env MLOBS_NO_PERSISTENCE]",
    )
    env_option(
        parser,
        "--checkpoint-interval",
        type=positive_seconds,
        default=cfg.DEFAULT_CHECKPOINT_INTERVAL_S,
        metavar="SECONDS",
        help="time between checkpoints (batches since the last one are in the log)",
    )
    env_option(
        parser,
        "--refresh-interval",
        type=positive_seconds,
        default=cfg.ProcessorConfig.refresh_interval_s,
        metavar="SECONDS",
        help="time between the analyzers' periodic heavier work (refits, re-ranking)",
    )
    # Security: bearer tokens and TLS, all off by default (docs/security.md). Not an argument
    # group: env_option reports bad environment values through the parser itself.
    security = parser
    env_option(
        security,
        "--auth-token",
        type=non_empty,
        metavar="TOKEN",
        help="bearer token required on OTLP and the API; prefer the file or the variable, "
        "since command lines are visible to other local users",
    )
    env_option(
        security,
        "--auth-token-file",
        type=non_empty,
        metavar="FILE",
        help="file of bearer tokens (one per line; any is accepted) for OTLP and the API",
    )
    env_option(
        security,
        "--metrics-token-file",
        type=non_empty,
        metavar="FILE",
        help="separate bearer token(s) for /metrics (Prometheus' scrape credentials); "
        "default: the auth token",
    )
    security.add_argument(
        "--metrics-open",
        action="store_true",
        default=None,
        help="serve /metrics without a token even when auth is on [env MLOBS_METRICS_OPEN]",
    )
    env_option(
        security,
        "--tls-cert",
        type=non_empty,
        metavar="PEM",
        help="server certificate (chain): serve every port over TLS",
    )
    env_option(
        security, "--tls-key", type=non_empty, metavar="PEM", help="private key of --tls-cert"
    )
    env_option(
        security,
        "--tls-client-ca",
        type=non_empty,
        metavar="PEM",
        help="CA of client certificates: require mutual TLS on every port",
    )
    env_option(
        security,
        "--id-hash-key-file",
        type=non_empty,
        metavar="FILE",
        help="secret (16+ bytes) keying the digests identifier columns are stored as; "
        "default: a random key per process",
    )
    security.add_argument(
        "--keep-identifiers",
        action="store_true",
        help="store identifier-like columns as sent instead of as keyed digests",
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


def series_cap(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("must be at least 2 (one place is the overflow series)")
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def run(args: argparse.Namespace) -> int:
    from otel_mlobs.processor.service import Processor

    try:
        security = SecurityConfig(
            auth_token=args.auth_token,
            auth_token_file=args.auth_token_file,
            metrics_token_file=args.metrics_token_file,
            metrics_open=bool(args.metrics_open) or _env_flag("MLOBS_METRICS_OPEN"),
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            hash_identifiers=not args.keep_identifiers,
            id_hash_key_file=args.id_hash_key_file,
        )
        config = cfg.ProcessorConfig(
            host=args.host,
            grpc_port=args.grpc_port,
            http_port=args.http_port,
            metrics_port=args.metrics_port,
            max_request_bytes=args.max_request_bytes,
            queue_size=args.queue_size,
            queue_bytes=args.queue_bytes,
            security=security,
            max_series_per_metric=args.max_series_per_metric,
            state_dir=None
            if args.no_persistence or _env_flag("MLOBS_NO_PERSISTENCE")
            else args.state_dir,
            checkpoint_interval_s=args.checkpoint_interval,
            refresh_interval_s=args.refresh_interval,
        )
    except ValueError as exc:
        logger.error("invalid settings: %s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            processor = Processor(config).start()
        except ValueError as exc:  # e.g. a certificate that does not load
            logger.error("invalid settings: %s", exc)
            return 2
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
