"""The processor service: receivers, ingest queue and worker, analyzers, metrics and API.

Programmatic use (the CLI, the demo and the tests all go through this)::

    from otel_mlobs.processor.config import ProcessorConfig
    from otel_mlobs.processor.service import Processor

    with Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0)) as proc:
        print(proc.ports)            # Ports(grpc=..., http=..., metrics=...) as bound
        ...                          # export spans to localhost:proc.ports.grpc
        proc.wait_idle(timeout=10)   # everything received so far is applied
        proc.registry.get_sample_value("mlobs_processor_spans_accepted_total")

Threads: a gRPC pool decodes gRPC requests; one asyncio loop serves OTLP/HTTP and the
metrics/API port, decoding on a small executor; one worker applies records to the analyzers
under :attr:`Processor.lock`, which every reader of analyzer state takes too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from otel_mlobs.processor import tls
from otel_mlobs.processor.analyzers import DEFAULT_ANALYZERS
from otel_mlobs.processor.api import ApiServer
from otel_mlobs.processor.auth import (
    AuthFailures,
    GrpcAuthInterceptor,
    TokenSet,
    exposure_warning,
)
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.ingest import IngestQueue, Worker
from otel_mlobs.processor.metrics import ProcessorCollector, version
from otel_mlobs.processor.persistence import Persistence
from otel_mlobs.processor.privacy import KEY_BYTES, IdHasher, read_key
from otel_mlobs.processor.receiver_grpc import GrpcReceiver, TraceServicer
from otel_mlobs.processor.receiver_http import TRACES_PATH, HttpReceiver
from otel_mlobs.processor.records import Key
from otel_mlobs.processor.router import Router, SnapshotKey
from otel_mlobs.processor.state_metrics import state_metrics
from otel_mlobs.processor.stats import Stats

logger = logging.getLogger("otel_mlobs.processor")


@dataclass(frozen=True, slots=True)
class Ports:
    """The ports actually bound (meaningful after ``start()``; 0 before)."""

    grpc: int
    http: int
    metrics: int


class Processor:
    """The collector-side service. Start it, feed it OTLP, read ``/metrics`` or the registry.

    Parameters
    ----------
    config
        Settings; defaults bind 127.0.0.1 on 4317 / 4318 / 9464.
    registry
        Where the metrics collector registers; a fresh ``CollectorRegistry`` by default, so
        several processors (tests) never share metrics.
    """

    def __init__(
        self, config: ProcessorConfig | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        self.config = config or ProcessorConfig()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.lock = threading.RLock()  # reentrant: a holder may still scrape the registry
        self.stats = Stats()
        analyzers = self.config.analyzers
        self.router = Router(DEFAULT_ANALYZERS if analyzers is None else analyzers)
        self.queue = IngestQueue(self.config.queue_size, self.config.queue_bytes)
        security = self.config.security
        self.auth_failures = AuthFailures()
        otlp_tokens = TokenSet(security.api_tokens)
        self.id_hasher = (
            IdHasher(security.id_hash_key or self._stored_id_key())
            if security.hash_identifiers
            else None
        )
        redact = self.id_hasher.apply if self.id_hasher is not None else None
        # Durable state (docs/persistence.md); None keeps everything in memory.
        self.persistence = (
            Persistence(
                Path(self.config.state_dir),
                self.config.checkpoint_interval_s,
                self.router,
                self.lock,
                applied=lambda: self._worker.applied_seq,
                id_hasher=self.id_hasher,
            )
            if self.config.state_dir
            else None
        )
        self.collector = ProcessorCollector(
            self.router,
            self.lock,
            self.stats,
            self.queue,
            self.registry,
            max_series_per_metric=self.config.max_series_per_metric,
            sources=(self.auth_failures.metrics,)
            + (() if self.persistence is None else (partial(state_metrics, self.persistence),)),
        )
        self.executor = ThreadPoolExecutor(
            max_workers=self.config.http_workers, thread_name_prefix="mlobs-http"
        )
        self._worker = Worker(
            self.queue, self.router, self.lock, self.stats, self.config.refresh_interval_s
        )
        self._grpc = GrpcReceiver(
            TraceServicer(self.queue, self.stats, self.config.retry_after_s, redact),
            self.config.host,
            self.config.grpc_port,
            self.config.max_request_bytes,
            self.config.grpc_workers,
            interceptors=[
                GrpcAuthInterceptor(
                    otlp_tokens,
                    self.auth_failures,
                    lambda: self.stats.request("grpc", "UNAUTHENTICATED"),
                )
            ]
            if otlp_tokens.enabled
            else [],
            credentials=tls.grpc_credentials(security),
        )
        self._http = HttpReceiver(
            self.queue,
            self.stats,
            self.executor,
            self.config.max_request_bytes,
            self.config.retry_after_s,
            tokens=otlp_tokens,
            auth_failures=self.auth_failures,
            redact=redact,
        )
        self._ssl_context = tls.server_context(security)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._receiver_runner: web.AppRunner | None = None
        self._api_runner: web.AppRunner | None = None
        self._ports = Ports(0, 0, 0)
        self._started_at = 0.0
        self._state = "new"

    # --- lifecycle ----------------------------------------------------------------------------

    def _stored_id_key(self) -> bytes | None:
        """With persistence on and no key file, the hash key lives in the state directory:
        digests stored before a restart must match those computed after it."""
        if not self.config.state_dir:
            return None
        path = Path(self.config.state_dir) / "id_hash.key"
        try:
            return read_key(str(path))
        except ValueError:
            if path.exists():
                raise
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(KEY_BYTES).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key[:64]

    def start(self) -> Processor:
        """Bind all ports and start serving; raises ``OSError`` if a port cannot be bound."""
        if self._state != "new":
            raise RuntimeError(f"processor already {self._state}; create a new one")
        self._state = "starting"
        self._started_at = time.time()
        try:
            if self.persistence is not None:  # replayed batches come before any new one
                self._worker.applied_seq = self.persistence.recover().last_seq
                self.queue.journal = self.persistence
                self.persistence.start()
            self._worker.start()
            grpc_port = self._grpc.start()
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(
                target=self._loop.run_forever, name="mlobs-http-loop", daemon=True
            )
            self._loop_thread.start()
            http_port, metrics_port = asyncio.run_coroutine_threadsafe(
                self._start_http(), self._loop
            ).result(timeout=30)
        except BaseException:
            self.stop()
            raise
        self._ports = Ports(grpc_port, http_port, metrics_port)
        self._state = "running"
        host = self.config.host
        scheme = "https" if self._ssl_context is not None else "http"
        logger.info(
            "mlobs processor %s listening: OTLP/gRPC %s:%d, OTLP/HTTP %s://%s:%d%s, "
            "metrics %s://%s:%d/metrics (%r)",
            version(),
            host,
            grpc_port,
            scheme,
            host,
            http_port,
            TRACES_PATH,
            scheme,
            host,
            metrics_port,
            self.config.security,
        )
        warning = exposure_warning(host, self.config.security)
        if warning:
            logger.warning("%s; see docs/security.md", warning)
        return self

    async def _start_http(self) -> tuple[int, int]:
        # auto_decompress=False: the receiver inflates bodies itself, within the size limit.
        self._receiver_runner = web.AppRunner(
            self._http.app(), access_log=None, auto_decompress=False
        )
        self._api_runner = web.AppRunner(ApiServer(self).app(), access_log=None)
        ports = []
        for runner, port, what in (
            (self._receiver_runner, self.config.http_port, "OTLP/HTTP"),
            (self._api_runner, self.config.metrics_port, "metrics"),
        ):
            await runner.setup()
            try:
                await web.TCPSite(
                    runner, self.config.host, port, ssl_context=self._ssl_context
                ).start()
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot bind {what} on {self.config.host}:{port}: {exc.strerror}"
                ) from exc
            ports.append(runner.addresses[0][1])
        return ports[0], ports[1]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving, apply what is already queued (up to ``timeout`` s), then shut down."""
        if self._state in ("stopped", "new"):
            self._state = "stopped"
            self.executor.shutdown(wait=False)
            return
        self._state = "stopping"
        self._grpc.stop(grace_s=min(2.0, timeout))
        self._run_on_loop(self._cleanup(self._receiver_runner))
        if not self.queue.wait_idle(timeout):
            logger.warning("stopping with %d export request(s) not applied", len(self.queue))
        self.queue.close()
        if self._worker.is_alive():
            self._worker.join(timeout)
        if self.persistence is not None:
            self.persistence.close()  # the final checkpoint
        self._run_on_loop(self._cleanup(self._api_runner))
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout)
            self._loop.close()
        self.executor.shutdown(wait=True)
        self._state = "stopped"
        logger.info("mlobs processor stopped")

    def _run_on_loop(self, coro: Any) -> None:
        if self._loop is None or not self._loop.is_running():
            coro.close()
            return
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    @staticmethod
    async def _cleanup(runner: web.AppRunner | None) -> None:
        if runner is not None:
            await runner.cleanup()

    def __enter__(self) -> Processor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state --------------------------------------------------------------------------------

    @property
    def ports(self) -> Ports:
        return self._ports

    @property
    def healthy(self) -> bool:
        """True while both receivers are serving."""
        return self._state == "running"

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every accepted request is applied to the analyzers; False on timeout."""
        return self.queue.wait_idle(timeout)

    def snapshot(self) -> dict[SnapshotKey, bytes]:
        """All analyzer state as ``{(analyzer name, key): bytes}``."""
        with self.lock:
            return self.router.snapshot()

    def restore(self, snapshot: dict[SnapshotKey, bytes]) -> list[SnapshotKey]:
        """Load a :meth:`snapshot`; returns entries skipped (unknown analyzer, bad blob)."""
        with self.lock:
            return self.router.restore(snapshot)

    def keys(self) -> dict[str, list[Key]]:
        """Known keys per analyzer name."""
        with self.lock:
            return self.router.keys()

    def status(self) -> dict[str, Any]:
        """What ``GET /api/v1/status`` returns."""
        stats = self.stats.snapshot()
        keys = self.keys()
        return {
            "version": version(),
            "state": self._state,
            "uptime_s": time.time() - self._started_at if self._started_at else 0.0,
            "ports": asdict(self._ports),
            "counters": stats.as_json(),
            "queue": {
                "depth": len(self.queue),
                "records": self.queue.records,
                "capacity": self.queue.capacity,
                "full_total": sum(stats.queue_full.values()),
            },
            "idle": self.queue.wait_idle(0),  # every accepted request is applied
            "persistence": None if self.persistence is None else self.persistence.status(),
            "analyzers": {name: [k.labels() for k in ks] for name, ks in keys.items()},
        }
