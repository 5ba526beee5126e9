"""Backpressure, end to end: a 10x burst through the real OTLP exporters loses nothing.

Counted the way the OpenTelemetry Collector's load tests count (items sent by the load generator
against items the backend received): every span and every prediction the exporters report as
exported must be in the processor's counters exactly once, after a burst ten times larger than
the processor's ingest queue that forces it to refuse requests (gRPC ``UNAVAILABLE`` with
``RetryInfo``, HTTP 503 with ``Retry-After``) until the exporters' own retries get them in.

The processor runs as ``mlobs processor`` in a child process, as deployed (persistence on, in a
temporary state directory), so its resident memory can be read from ``/proc``. The stream is
heavy on purpose: each request carries two component runs with 20-column summaries and row
samples, whose analysis takes the worker far longer than decoding takes a receiver, so the
queue fills on every wave of the burst whatever the machine.

Why the burst is shaped as it is: both exporters retry a refused request at most six times, at
exactly the delay the processor asks for (1 s). Refused producers therefore come back together,
one wave a second, and each wave places about ``queue size + 1`` requests while the producers
admitted last time come back last. Five producers of one transport against a queue of two keep
that rotation fair: a request is refused two or three times, never six. (Mixing transports in
one wave is not fair: HTTP bodies wait for the decoding executor while gRPC requests decode on
their own threads, so the same HTTP producers would lose wave after wave.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import otel_mlobs.sdk as mlobs
from otel_mlobs import semconv as sc

QUEUE_SIZE = 2
PRODUCERS = 5
REQUESTS_PER_PRODUCER = 4  # 20 export requests in all: ten times the queue
RUNS_PER_REQUEST = 2
PREDICTIONS_PER_REQUEST = 20_000
T0 = 1_750_000_000.0
# Peak resident memory may exceed the idle processor's by at most this much: the queue (two
# requests of about 3 MiB decoded), requests being decoded (four gRPC or two HTTP threads),
# their protobuf copies, the write-ahead log's encoding buffer, and analyzer state that grows
# with the predictions waiting for feedback. Measured peak growth is about 130 MiB.
RSS_BUDGET_BYTES = 300 * 1024 * 1024
_PORTS = re.compile(
    r"OTLP/gRPC \S+:(\d+), OTLP/HTTP \w+://\S+?:(\d+)\S*, metrics \w+://\S+?:(\d+)/metrics"
)


@dataclass
class Child:
    """The processor child process; its ports are known once :meth:`wait_ready` returns."""

    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)
    grpc: int = 0
    http: int = 0
    metrics: int = 0

    def wait_ready(self, timeout_s: float = 60) -> Child:
        """Read the start-up log until the listening line names the bound ports."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        ports = None
        while ports is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            ports = _PORTS.search(line)
        if ports is None:
            raise AssertionError("processor did not report its ports:\n" + "".join(self.log))
        # Keep draining stderr so the child never blocks on a full pipe.
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
        self.grpc, self.http, self.metrics = (int(p) for p in ports.groups())
        return self

    def rss(self, field: str = "VmRSS") -> int:
        """A memory figure of /proc/PID/status in bytes (VmRSS now, VmHWM the peak)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def metrics_text(self) -> str:
        response = requests.get(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10)
        assert response.status_code == 200
        return response.text


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Child]:
    """``mlobs processor`` starting in the background (its imports overlap the test's set-up)."""
    cmd = [
        sys.executable, "-m", "otel_mlobs.cli", "processor",
        "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
        "--queue-size", str(QUEUE_SIZE), "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOBS_")}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        yield Child(proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _requests() -> list[list[ReadableSpan]]:
    """The span batches of every export request, produced once through the SDK."""
    rng = np.random.default_rng(3)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    mlobs.configure(pipeline="burst", tracer_provider=provider)
    batches = []
    try:
        for r in range(2 * PRODUCERS * REQUESTS_PER_PRODUCER + 1):  # warm-up, gRPC, HTTP
            when = T0 + 3600.0 * r
            for k in range(RUNS_PER_REQUEST):
                frame = pd.DataFrame(
                    {f"x{i:02d}": rng.normal(i, 1.0, size=1_000) for i in range(15)}
                    | {f"c{j}": rng.choice(["a", "b", "c"], size=1_000) for j in range(5)}
                )
                with mlobs.observe(f"step{k}", stage="features", event_time=when) as run:
                    run.log_input("frame", frame)
            ids = np.char.add(f"r{r}-", np.arange(PREDICTIONS_PER_REQUEST).astype(str))
            mlobs.log_predictions(
                "tip",
                ids,
                scores=rng.uniform(size=PREDICTIONS_PER_REQUEST),
                timestamps=np.full(PREDICTIONS_PER_REQUEST, when),
            )
            half = ids[: PREDICTIONS_PER_REQUEST // 2]
            mlobs.log_feedback(
                "tip",
                half,
                rng.integers(0, 2, size=len(half)),
                timestamps=np.full(len(half), when + 60),
            )
            batches.append(list(memory.get_finished_spans()))
            memory.clear()
    finally:
        mlobs.shutdown()
        provider.shutdown()
    return batches


def _count(batches: list[list[ReadableSpan]]) -> dict[str, int]:
    """Items in ``batches``: spans, and the rows and summaries their events carry."""
    out = {"spans": 0, "predictions": 0, "feedback": 0, "summaries": 0}
    for batch in batches:
        out["spans"] += len(batch)
        for span in batch:
            for event in span.events:
                attrs = event.attributes or {}
                if event.name == sc.EVENT_PREDICTIONS:
                    out["predictions"] += _rows(attrs[sc.PRED_IDS])
                elif event.name == sc.EVENT_FEEDBACK:
                    out["feedback"] += _rows(attrs[sc.FB_IDS])
                elif event.name == sc.EVENT_SUMMARY:
                    out["summaries"] += 1
    return out


def _rows(ids: object) -> int:
    from otel_mlobs.packing import unpack

    return len(unpack(ids)) if isinstance(ids, bytes) else len(ids)  # type: ignore[arg-type]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _total(samples: dict, name: str, **labels: str) -> float:
    return sum(
        v for (n, lbl), v in samples.items() if n == name and labels.items() <= dict(lbl).items()
    )


def _exporter(transport: str, child: Child):
    if transport == "grpc":
        return GrpcExporter(endpoint=f"127.0.0.1:{child.grpc}", insecure=True, timeout=60)
    return HttpExporter(endpoint=f"http://127.0.0.1:{child.http}/v1/traces", timeout=60)


def _wait_for(child: Child, name: str, expected: float, timeout_s: float) -> dict:
    """Samples once ``name`` reaches ``expected`` and the queue is empty (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = _samples(child.metrics_text())
        done = _total(samples, name) >= expected
        idle = _total(samples, "mlobs_processor_queue_depth") == 0
        if (done and idle) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def _burst(child: Child, transport: str, burst: list[list[ReadableSpan]]) -> float:
    """Every producer exports its share at once; returns how long until all were accepted."""
    results: list[list[SpanExportResult]] = [[] for _ in range(PRODUCERS)]
    start = threading.Barrier(PRODUCERS)

    def produce(i: int) -> None:
        exporter = _exporter(transport, child)
        mine = burst[i * REQUESTS_PER_PRODUCER : (i + 1) * REQUESTS_PER_PRODUCER]
        start.wait()
        try:
            results[i] = [exporter.export(batch) for batch in mine]
        finally:
            exporter.shutdown()

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(PRODUCERS)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    took = time.monotonic() - began
    assert all(r == [SpanExportResult.SUCCESS] * REQUESTS_PER_PRODUCER for r in results), (
        f"{transport} exports failed after {took:.1f} s: {results}\n" + "".join(child.log[-20:])
    )
    return took


def test_bursts_ten_times_the_queue_arrive_whole(child):
    batches = _requests()
    child.wait_ready()
    n = PRODUCERS * REQUESTS_PER_PRODUCER
    warmup, phases = batches[0], {"grpc": batches[1 : n + 1], "http": batches[n + 1 :]}
    assert all(len(burst) == n for burst in phases.values())

    # Warm up (imports, first analyzer instances), then take the idle footprint.
    exporter = GrpcExporter(endpoint=f"127.0.0.1:{child.grpc}", insecure=True, timeout=60)
    assert exporter.export(warmup) is SpanExportResult.SUCCESS
    exporter.shutdown()
    _wait_for(child, "mlobs_predictions_total", _count([warmup])["predictions"], 60)
    idle_rss = child.rss()

    sent = [warmup]
    report = []
    for transport, burst in phases.items():
        took = _burst(child, transport, burst)
        sent += burst
        got = _wait_for(child, "mlobs_predictions_total", _count(sent)["predictions"], 60)
        refused = _total(got, "mlobs_processor_queue_full_total", transport=transport)
        # Refused, then retried: the queue filled and the producers were told to come back.
        assert refused > 0, f"the {transport} burst never filled the queue"
        assert _total(got, "mlobs_processor_spans_refused_total", transport=transport) > 0
        report.append(f"{transport}: {n} requests in {took:.1f} s, {refused:.0f} refusals")
    peak_rss = child.rss("VmHWM")

    total = _count(sent)
    # Every span that arrived is counted once as refused or accepted, never lost in between.
    assert _total(got, "mlobs_processor_spans_received_total") == (
        _total(got, "mlobs_processor_spans_accepted_total")
        + _total(got, "mlobs_processor_spans_refused_total")
    )
    # Items sent == items received, span for span and prediction for prediction.
    assert _total(got, "mlobs_processor_spans_accepted_total") == total["spans"]
    assert _total(got, "mlobs_predictions_total", set="live") == total["predictions"]
    assert _total(got, "mlobs_feedback_total") == total["feedback"]
    assert _total(got, "mlobs_processor_records_total", type="summary") == total["summaries"]
    assert _total(got, "mlobs_processor_spans_rejected_total") == 0

    growth = peak_rss - idle_rss
    assert growth < RSS_BUDGET_BYTES, (
        f"peak RSS {peak_rss / 2**20:.0f} MiB is {growth / 2**20:.0f} MiB over the idle "
        f"{idle_rss / 2**20:.0f} MiB (budget {RSS_BUDGET_BYTES / 2**20:.0f} MiB)"
    )
    print(
        "; ".join(report) + f"; {total['spans']} spans and {total['predictions']} predictions "
        f"counted; RSS idle {idle_rss / 2**20:.0f} MiB, peak {peak_rss / 2**20:.0f} MiB"
    )
