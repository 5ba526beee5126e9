"""Processor settings, validated once: a bad value fails at start-up, naming the setting."""

from __future__ import annotations

from dataclasses import dataclass, field

from otel_mlobs.processor.analyzers.base import Analyzer
from otel_mlobs.processor.auth import SecurityConfig
from otel_mlobs.processor.cardinality import DEFAULT_MAX_SERIES

DEFAULT_GRPC_PORT = 4317
DEFAULT_HTTP_PORT = 4318
DEFAULT_METRICS_PORT = 9464
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024  # the OTLP spec's recommended minimum to accept
DEFAULT_QUEUE_SIZE = 1000  # export requests waiting for the worker, like the Collector's queue
DEFAULT_QUEUE_BYTES = 1024 * 1024 * 1024  # their bytes as received: what bounds memory
DEFAULT_CHECKPOINT_INTERVAL_S = 30.0
DEFAULT_STATE_DIR = "mlobs-state"  # the CLI's default, relative to the working directory


@dataclass
class ProcessorConfig:
    """Everything :class:`~otel_mlobs.processor.service.Processor` needs to run.

    Port 0 binds a free port; the bound ports are on ``Processor.ports`` after ``start()``.
    ``queue_size`` counts export requests (one gRPC call or HTTP POST each) waiting for the
    worker, ``queue_bytes`` their size as received (held until the worker has applied them);
    a request larger than the whole byte budget is still admitted when the queue is empty.
    ``analyzers`` defaults to :data:`otel_mlobs.processor.analyzers.DEFAULT_ANALYZERS`.
    ``security`` (tokens, TLS) is off by default; see docs/security.md.
    ``max_series_per_metric`` caps every exported metric family (see ``cardinality.py``).
    ``state_dir`` turns persistence on (checkpoints plus a write-ahead log, see
    docs/persistence.md); ``None`` or ``""`` keeps state in memory only, the programmatic
    default (tests, the demo). ``mlobs processor`` persists by default.
    """

    host: str = "127.0.0.1"
    grpc_port: int = DEFAULT_GRPC_PORT
    http_port: int = DEFAULT_HTTP_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    queue_size: int = DEFAULT_QUEUE_SIZE
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    grpc_workers: int = 4
    http_workers: int = 2
    retry_after_s: float = 1.0
    refresh_interval_s: float = 5.0
    analyzers: list[type[Analyzer]] | None = field(default=None)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    max_series_per_metric: int = DEFAULT_MAX_SERIES
    state_dir: str | None = None
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S

    def __post_init__(self) -> None:
        for name in ("grpc_port", "http_port", "metrics_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ValueError(f"Invalid {name!r}: {port!r}; expected an integer in 0..65535")
        for name in (
            "max_request_bytes",
            "queue_size",
            "queue_bytes",
            "grpc_workers",
            "http_workers",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name!r}: {value!r}; expected a positive integer")
        for name in ("retry_after_s", "refresh_interval_s", "checkpoint_interval_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Invalid {name!r}: {value!r}; expected a positive number")
        if not isinstance(self.max_series_per_metric, int) or self.max_series_per_metric < 2:
            raise ValueError(
                f"Invalid 'max_series_per_metric': {self.max_series_per_metric!r}; "
                "expected an integer >= 2"
            )
        if not isinstance(self.security, SecurityConfig):
            raise ValueError(f"Invalid 'security': {self.security!r}; expected SecurityConfig")
        if not self.host:
            raise ValueError("Invalid 'host': empty")
        if self.state_dir is not None and not isinstance(self.state_dir, str):
            raise ValueError(f"Invalid 'state_dir': {self.state_dir!r}; expected a path string")
        if self.analyzers is not None:
            bad = [
                a for a in self.analyzers if not (isinstance(a, type) and issubclass(a, Analyzer))
            ]
            if bad:
                raise ValueError(f"Invalid 'analyzers': {bad!r} are not Analyzer subclasses")
