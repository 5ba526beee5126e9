"""Processor ingest: run spans and predictions per second end to end, latency, analyzer costs.

The processor is ``mlobs processor`` in a child process, with its defaults (every analyzer of
``DEFAULT_ANALYZERS``, persistence on in a temporary state directory), or ``--no-persistence``.
This process is the load generator: it produces the spans once through the SDK (run spans with
summaries of the 20-column benchmark frame, 100,000-row prediction batches, feedback for half of
them), then exports them with the real OTLP/gRPC exporter from a few sender threads, each
exporter wrapped as the SDK wraps it (requests of at most 3.5 MiB). Throughput counts from the
first export to the moment the processor has applied the last record (its status API), so it
includes receiving, decoding, the write-ahead log and every analyzer; the processor's own CPU
time over the same interval (``/proc/PID/stat``) gives the per-core figure.

Latency is measured afterwards at half the measured throughput (a loaded but not saturated
processor): the client side times each export call (the processor acknowledges once a request
is decoded and queued), the processor side reports arrival to applied in
``mlobs_processor_processing_latency_seconds`` (its p99 is read from the histogram buckets, so
it is the upper bound of the bucket holding the 99th percentile).

Per-analyzer cost: the same spans are decoded and applied in this process, timing each
analyzer's ``update()`` per record type, so the slow ones are named.

Targets: at least 2,000 run spans and 200,000 predictions per second per core.

    python benchmarks/ingest.py
    python benchmarks/ingest.py --runs 100 --prediction-batches 5 --no-persistence
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

from otel_mlobs.sdk.summarize import DEFAULT_SAMPLE_ROWS  # noqa: E402

TARGET_RUN_SPANS_PER_CORE_S = 2_000
TARGET_PREDICTIONS_PER_CORE_S = 200_000
T0 = 1_750_000_000.0
COMPONENTS = ("clean", "join", "features", "score_input")
_PORTS = re.compile(
    r"OTLP/gRPC \S+:(\d+), OTLP/HTTP \w+://\S+?:(\d+)\S*, metrics \w+://\S+?:(\d+)/metrics"
)
_TICK = os.sysconf("SC_CLK_TCK")


# --- the processor child ------------------------------------------------------------------------


@dataclass
class Child:
    """``mlobs processor`` on free ports in a child process, with its stderr kept."""

    proc: subprocess.Popen[str]
    grpc: int
    http: int
    metrics: int
    log: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole process (every thread) so far."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the whole process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) / _TICK, int(fields[12]) / _TICK

    def memory(self, name: str = "VmRSS") -> int:
        """A figure of ``/proc/PID/status`` in bytes: VmRSS (now) or VmHWM (peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {name} in /proc/{self.pid}/status")

    def status(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.metrics}/api/v1/status"
        return requests.get(url, timeout=30).json()

    def records(self) -> Counter[str]:
        """Records applied so far, by type (run, summary, sample, predictions, feedback...)."""
        return Counter(self.status()["counters"]["records"])

    def metrics_samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = requests.get(f"http://127.0.0.1:{self.metrics}/metrics", timeout=30).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def wait_records(self, kind: str, expected: int, timeout_s: float) -> float:
        """Block until ``expected`` records of ``kind`` are applied; returns that moment."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            if self.records()[kind] >= expected:
                return now
            if now > deadline or self.proc.poll() is not None:
                raise RuntimeError(
                    f"processor applied {self.records()[kind]} of {expected} {kind} records; "
                    "log tail:\n" + "".join(self.log[-20:])
                )
            time.sleep(0.1)


# ``mlobs processor`` with no analyzer registered: what receiving, decoding, logging and
# queueing cost on their own. Only this benchmark starts the processor this way.
_NO_ANALYZERS = (
    "import sys; from otel_mlobs.processor import service; service.DEFAULT_ANALYZERS = (); "
    "from otel_mlobs.cli import main; sys.exit(main(sys.argv[1:]))"
)


@contextmanager
def processor_child(
    persistence: bool = True, queue_size: int | None = None, analyzers: bool = True
) -> Iterator[Child]:
    """Start ``mlobs processor`` (persistence in a temporary directory unless told otherwise;
    ``analyzers=False`` registers none, to measure everything else)."""
    state = Path(tempfile.mkdtemp(prefix="mlobs-bench-"))
    launch = ["-m", "otel_mlobs.cli"] if analyzers else ["-c", _NO_ANALYZERS]
    cmd = [
        sys.executable, *launch, "processor",
        "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
    ]  # fmt: skip
    cmd += ["--state-dir", str(state / "state")] if persistence else ["--no-persistence"]
    if queue_size is not None:
        cmd += ["--queue-size", str(queue_size)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOBS_")}
    proc = subprocess.Popen(
        cmd, cwd=state, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        log: list[str] = []
        ports = None
        assert proc.stderr is not None
        while ports is None:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError("processor exited before listening:\n" + "".join(log))
            log.append(line)
            ports = _PORTS.search(line)
        threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
        grpc, http, metrics = (int(p) for p in ports.groups())
        yield Child(proc, grpc, http, metrics, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(state, ignore_errors=True)


# --- producing and sending ----------------------------------------------------------------------


@contextmanager
def capture() -> Iterator[Any]:
    """The SDK configured onto an in-memory exporter; yields the exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_mlobs

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otel_mlobs.configure(pipeline="bench", tracer_provider=provider)
    try:
        yield memory
    finally:
        otel_mlobs.shutdown()
        provider.shutdown()


def run_spans(n: int, rows: int, seed: int, sample_rows: int | None = None) -> list[Any]:
    """``n`` component runs, each logging a ``rows``-row slice of the 20-column frame, with a
    row sample of the SDK's default size unless ``sample_rows`` says otherwise (0: none)."""
    import otel_mlobs

    frame = C.to_pandas(C.make_raw(rows * 4, seed=seed))
    with capture() as memory:
        for i in range(n):
            lo = (i * 7919) % (len(frame) - rows)
            when = T0 + 3600.0 * (i // len(COMPONENTS))
            component = COMPONENTS[i % len(COMPONENTS)]
            with otel_mlobs.observe(component, stage="features", event_time=when) as run:
                run.log_input("trips", frame.iloc[lo : lo + rows], sample_rows=sample_rows)
        return list(memory.get_finished_spans())


@dataclass
class PredictionStream:
    """Spans of a reference set, live prediction batches and the feedback for half of them."""

    reference: list[Any]
    batches: list[list[Any]]  # the spans of each live batch
    feedback: list[list[Any]]
    rows: int
    feedback_rows: int


def prediction_stream(n_batches: int, rows: int, seed: int, model: str = "tip") -> PredictionStream:
    import otel_mlobs

    rng = np.random.default_rng(seed)
    with capture() as memory:
        ref_rows = min(rows, 20_000)
        truth = rng.integers(0, 2, size=ref_rows)
        otel_mlobs.log_reference(
            model, np.char.add("ref-", np.arange(ref_rows).astype(str)), truth,
            scores=np.clip(0.3 * truth + rng.uniform(0, 0.7, ref_rows), 0, 1),
            features={"distance": rng.exponential(3.0, ref_rows)},
            timestamps=np.full(ref_rows, T0),
        )  # fmt: skip
        reference = list(memory.get_finished_spans())
        memory.clear()
        batches, feedback = [], []
        for b in range(n_batches):
            ids = np.char.add(f"b{b}-", np.arange(rows).astype(str))
            when = T0 + 600.0 * b
            otel_mlobs.log_predictions(
                model, ids, scores=rng.uniform(size=rows),
                features={"distance": rng.exponential(3.0, rows)},
                timestamps=when + np.linspace(0, 599, rows),
            )  # fmt: skip
            batches.append(list(memory.get_finished_spans()))
            memory.clear()
            half = ids[::2]
            otel_mlobs.log_feedback(
                model, half, rng.integers(0, 2, size=len(half)),
                timestamps=np.full(len(half), when + 3600.0),
            )  # fmt: skip
            feedback.append(list(memory.get_finished_spans()))
            memory.clear()
    return PredictionStream(reference, batches, feedback, rows, (rows + 1) // 2)


def exporter(child: Child) -> Any:
    """The SDK's export path: the OTLP/gRPC exporter behind the SDK's 3.5 MiB request cap."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from otel_mlobs.sdk.setup import SizeCappedExporter

    return SizeCappedExporter(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{child.grpc}", insecure=True, timeout=120)
    )


def send(child: Child, batches: Sequence[Sequence[Any]], senders: int) -> list[float]:
    """Export every batch from ``senders`` threads as fast as accepted; per-call seconds."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    work: queue.SimpleQueue[Sequence[Any]] = queue.SimpleQueue()
    for batch in batches:
        work.put(batch)
    latencies: list[float] = []
    failures: list[int] = []

    def sender() -> None:
        exp = exporter(child)
        try:
            while True:
                try:
                    batch = work.get_nowait()
                except queue.Empty:
                    return
                t = time.perf_counter()
                if exp.export(batch) is not SpanExportResult.SUCCESS:
                    failures.append(len(batch))
                latencies.append(time.perf_counter() - t)
        finally:
            exp.shutdown()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} export calls failed ({sum(failures)} spans)")
    return latencies


def paced(child: Child, batches: Sequence[Sequence[Any]], interval_s: float) -> list[float]:
    """Export one batch every ``interval_s`` from one thread; per-call seconds."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    exp = exporter(child)
    latencies = []
    try:
        start = time.perf_counter()
        for i, batch in enumerate(batches):
            delay = start + i * interval_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t = time.perf_counter()
            if exp.export(batch) is not SpanExportResult.SUCCESS:
                raise RuntimeError("a paced export failed")
            latencies.append(time.perf_counter() - t)
    finally:
        exp.shutdown()
    return latencies


def count_events(spans: Sequence[Any], name: str) -> int:
    return sum(1 for s in spans for e in s.events if e.name == name)


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Throughput:
    items: int
    wall_s: float
    cpu_s: float  # the processor's

    @property
    def per_s(self) -> float:
        return self.items / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.items / self.cpu_s if self.cpu_s > 0 else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "items": self.items,
            "wall_s": self.wall_s,
            "processor_cpu_s": self.cpu_s,
            "per_s": self.per_s,
            "per_processor_cpu_s": self.per_cpu_s,
        }


def measure(
    child: Child, send_fn: Callable[[], object], kind: str, expected: int, items: int
) -> Throughput:
    """Time ``send_fn`` until ``expected`` more records of ``kind`` are applied."""
    before = child.records()[kind]
    cpu0, t0 = child.cpu_seconds(), time.monotonic()
    send_fn()
    t1 = child.wait_records(kind, before + expected, timeout_s=3600)
    return Throughput(items, t1 - t0, child.cpu_seconds() - cpu0)


LATENCY = "mlobs_processor_processing_latency_seconds"


def latency_histogram(child: Child) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the processor's processing latency histogram."""
    out = []
    for (name, labels), value in child.metrics_samples().items():
        if name == LATENCY + "_bucket":
            out.append((float(dict(labels)["le"]), value))
    return sorted(out)


def histogram_quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float:
    """Upper bound of the bucket holding quantile ``q`` of the observations in between."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1] if counts else 0
    if not total:
        return float("nan")
    for le, cumulative in counts:
        if cumulative >= q * total:
            return le
    return float("inf")


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) if values else float("nan")


def latency_at(
    child: Child, batches: Sequence[Sequence[Any]], interval_s: float, kind: str, expected: int
) -> dict[str, float]:
    before = latency_histogram(child)
    start = child.records()[kind]
    client = paced(child, batches, interval_s)
    child.wait_records(kind, start + expected, timeout_s=3600)
    after = latency_histogram(child)
    return {
        "requests": len(client),
        "interval_s": interval_s,
        "client_ack_p50_s": percentile(client, 0.5),
        "client_ack_p99_s": percentile(client, 0.99),
        "processor_p50_le_s": histogram_quantile(before, after, 0.5),
        "processor_p99_le_s": histogram_quantile(before, after, 0.99),
    }


def analyzer_costs(requests_: Sequence[Sequence[Any]], unit: int) -> dict[str, Any]:
    """Decode the spans of each export request and apply each request's records through
    ``Router.dispatch_many``, as the worker does, timing every analyzer.

    Each analyzer runs alone on its own router (instances never share state, so the work is the
    same as beside the others), which names the cost of each. Times are this thread's CPU time
    (``thread_time``), so other work on the machine does not inflate them. Returns
    milliseconds per ``unit`` (per span, or per batch) by analyzer, plus the decode time.
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from otel_mlobs.processor.analyzers import DEFAULT_ANALYZERS
    from otel_mlobs.processor.decode import decode_request
    from otel_mlobs.processor.router import Router

    encoded = [encode_spans(list(spans)) for spans in requests_]
    t = time.thread_time()
    batches = [decode_request(req).records for req in encoded]
    decode_s = time.thread_time() - t
    cost: dict[str, float] = {}
    refresh: dict[str, float] = {}
    errors: dict[str, int] = {}
    snapshot: dict[Any, bytes] = {}
    snapshot_s = 0.0
    for cls in DEFAULT_ANALYZERS:
        router = Router([cls])
        t = time.thread_time()
        for batch in batches:
            router.dispatch_many(batch)
        cost[cls.name] = time.thread_time() - t
        t = time.thread_time()
        router.refresh()
        refresh[cls.name] = time.thread_time() - t
        t = time.thread_time()
        snapshot.update(router.snapshot())
        snapshot_s += time.thread_time() - t
        if router.errors:
            errors.update(router.errors)
        if not router.count()[cls.name]:
            del cost[cls.name]  # accepts none of these records: nothing to name
    scale = 1e3 / unit
    return {
        "checkpoint": checkpoint_cost(snapshot, snapshot_s),
        "decode_ms": decode_s * scale,
        "refresh_ms": sum(refresh.values()) * scale,
        "apply_ms": sum(cost.values()) * scale,
        "by_analyzer_ms": {k: v * scale for k, v in sorted(cost.items(), key=lambda kv: -kv[1])},
        "errors": errors,
        "records": dict(Counter(type(r).__name__ for b in batches for r in b)),
        "requests": len(batches),
    }


def checkpoint_cost(entries: dict[Any, bytes], snapshot_s: float) -> dict[str, float]:
    """What one checkpoint of this state costs: the snapshot (taken under the state lock, so
    the worker waits) and the SQLite write of every entry (a first write: all rewritten)."""
    from otel_mlobs.processor.store import CheckpointStore

    with tempfile.TemporaryDirectory(prefix="mlobs-bench-state-") as tmp:
        store = CheckpointStore(Path(tmp) / "state.db")
        store.load()
        t = time.thread_time()
        result = store.write(entries, covers=1)
        write_s = time.thread_time() - t
        store.close()
    return {
        "entries": result.entries,
        "bytes": result.size_bytes,
        "snapshot_cpu_s": snapshot_s,
        "write_cpu_s": write_s,
    }


def pipeline_costs(spans: Sequence[Any], batch_spans: int, repeats: int = 3) -> dict[str, float]:
    """CPU per run span of each step a request takes outside the analyzers, in this thread;
    the least of ``repeats`` passes, since the disk and the caches are shared with other work.

    The steps run as the processor runs them (``thread_time``, which counts the kernel's work
    for this thread too, e.g. copying log bytes into the page cache): protobuf parse, decode,
    identifier redaction, the log payload (the request bytes as they came, or, for a request
    that cannot be logged that way, its pickled records), the log write and its fdatasync,
    the queue hand-off with the worker's bookkeeping. What the processor spends beyond their
    sum is gRPC transport, thread switches and the metrics/status port.
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    bodies = [
        encode_spans(list(spans[i : i + batch_spans])).SerializeToString()
        for i in range(0, len(spans), batch_spans)
    ]
    best: dict[str, float] = {}
    for _ in range(repeats):
        for step, seconds in _pipeline_pass(bodies).items():
            best[step] = min(seconds, best.get(step, float("inf")))
    scale = 1e3 / len(spans)
    return {step: seconds * scale for step, seconds in best.items()}


def _pipeline_pass(bodies: Sequence[bytes]) -> Counter[str]:
    """One pass of :func:`pipeline_costs` over the request bodies: seconds by step."""
    import secrets

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from otel_mlobs.processor.decode import decode_request
    from otel_mlobs.processor.ingest import Batch, IngestQueue, redacted
    from otel_mlobs.processor.persistence import Persistence, encode_records
    from otel_mlobs.processor.privacy import IdHasher
    from otel_mlobs.processor.router import Router
    from otel_mlobs.processor.stats import Stats
    from otel_mlobs.processor.wal import WriteAheadLog

    steps: Counter[str] = Counter()

    def timed(step: str, fn: Callable[[], Any]) -> Any:
        t = time.thread_time()
        out = fn()
        steps[step] += time.thread_time() - t
        return out

    hasher = IdHasher(secrets.token_bytes(32))
    router = Router([])
    stats = Stats()
    work = IngestQueue(len(bodies) + 1)
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-log-") as tmp:
        journal = Persistence(Path(tmp), 30.0, router, threading.RLock(), applied=lambda: 0)
        log = WriteAheadLog(Path(tmp) / "log", next_seq=1)
        for body in bodies:
            request = timed("protobuf parse", partial(ExportTraceServiceRequest.FromString, body))
            result = timed("decode", partial(decode_request, request))
            result = timed("identifier redaction", partial(redacted, result, body, hasher.apply))
            batch = Batch(result.records, wire=result.wire)
            prepared = timed("log payload", lambda b=batch: journal.prepare(b))
            timed("log payload if pickled (fallback)", lambda b=batch: encode_records(b.records))
            timed("log write + fdatasync", lambda p=prepared: log.sync(log.append(p.parts, p.crc)))

            def hand_off(batch: Batch = batch, result: Any = result) -> None:
                work.offer(batch)
                stats.decoded("grpc", result, True)
                taken = work.take(0)
                assert taken is not None
                router.dispatch_many(taken.records)
                stats.applied(taken.records, 0.0)
                work.done()

            timed("queue, worker and counters", hand_off)
        log.close()
    return steps


# --- the benchmark ------------------------------------------------------------------------------


def bench_config(
    args: argparse.Namespace, persistence: bool, spans: list[Any], stream: PredictionStream
) -> dict[str, Any]:
    """Every end-to-end figure against one processor configuration."""
    out: dict[str, Any] = {"persistence": persistence}
    with processor_child(persistence=persistence) as child:
        # Warm-up: imports, first instances, the reference set.
        warm = spans[: len(COMPONENTS) * 2]
        send(child, [warm], 1)
        child.wait_records("run", len(warm), 600)
        send(child, [stream.reference], 1)
        ref_events = count_events(stream.reference, "mlobs.predictions")
        child.wait_records("predictions", ref_events, 600)

        timed = spans[len(warm) :]
        batches = [timed[i : i + args.batch_spans] for i in range(0, len(timed), args.batch_spans)]
        runs = measure(
            child, lambda: send(child, batches, args.senders), "run", len(timed), len(timed)
        )
        print(
            f"[ingest] persistence={persistence}: {runs.per_s:,.1f} run spans/s "
            f"({runs.per_cpu_s:,.1f} per processor CPU-s)",
            file=sys.stderr,
        )
        out["run_spans"] = runs.as_dict()
        if persistence:
            out["checkpoints_after_run_spans"] = child.status()["persistence"]["checkpoints"]

        pred_events = sum(count_events(b, "mlobs.predictions") for b in stream.batches)
        preds = measure(
            child,
            lambda: send(child, stream.batches, args.senders),
            "predictions",
            pred_events,
            stream.rows * len(stream.batches),
        )
        print(
            f"[ingest] persistence={persistence}: {preds.per_s:,.0f} predictions/s "
            f"({preds.per_cpu_s:,.0f} per processor CPU-s)",
            file=sys.stderr,
        )
        out["predictions"] = preds.as_dict()

        fb_events = sum(count_events(b, "mlobs.feedback") for b in stream.feedback)
        fb = measure(
            child,
            lambda: send(child, stream.feedback, args.senders),
            "feedback",
            fb_events,
            stream.feedback_rows * len(stream.feedback),
        )
        out["feedback"] = fb.as_dict()

        # Latency at half the measured throughput, on fresh spans of the same shape.
        lat_spans = run_spans(args.latency_runs, args.rows, args.seed + 1, args.sample_rows)
        lat_batches = [[s] for s in lat_spans]
        out["run_latency"] = latency_at(child, lat_batches, 2.0 / runs.per_s, "run", len(lat_spans))
        lat_stream = prediction_stream(
            args.latency_batches, args.batch_rows, args.seed + 2, model="tip_latency"
        )
        events = sum(count_events(b, "mlobs.predictions") for b in lat_stream.batches)
        before = child.records()["predictions"]
        send(child, [lat_stream.reference], 1)
        child.wait_records(
            "predictions", before + count_events(lat_stream.reference, "mlobs.predictions"), 600
        )
        out["prediction_latency"] = latency_at(
            child, lat_stream.batches, 2.0 * args.batch_rows / preds.per_s, "predictions", events
        )
        out["processor_peak_rss_bytes"] = child.memory("VmHWM")
        out["processor_rss_bytes"] = child.memory("VmRSS")
    return out


def overhead_config(
    args: argparse.Namespace, persistence: bool, spans: list[Any], repeats: int = 3
) -> dict[str, Any]:
    """The processor's CPU per run span with no analyzer registered: receiving, parsing,
    decoding, redaction, the log, the queue and the worker's bookkeeping, end to end.

    The timed spans are sent ``repeats`` times (a few seconds of CPU in all), the user and
    kernel shares of the processor's CPU kept apart.
    """
    with processor_child(persistence=persistence, analyzers=False) as child:
        warm = spans[: len(COMPONENTS) * 2]
        send(child, [warm], 1)
        child.wait_records("run", len(warm), 600)
        timed = spans[len(warm) :] * repeats
        batches = [timed[i : i + args.batch_spans] for i in range(0, len(timed), args.batch_spans)]
        user0, sys0 = child.cpu_split()
        runs = measure(
            child, lambda: send(child, batches, args.senders), "run", len(timed), len(timed)
        )
        user1, sys1 = child.cpu_split()
        out = runs.as_dict()
        out["cpu_ms_per_span"] = runs.cpu_s * 1e3 / len(timed)
        out["user_ms_per_span"] = (user1 - user0) * 1e3 / len(timed)
        out["system_ms_per_span"] = (sys1 - sys0) * 1e3 / len(timed)
        if persistence:
            out["checkpoints"] = child.status()["persistence"].get("checkpoints")
    print(
        f"[ingest] no analyzers, persistence={persistence}: "
        f"{out['cpu_ms_per_span']:.3f} ms CPU per run span",
        file=sys.stderr,
    )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=400, help="timed run spans (default 400)")
    ap.add_argument("--rows", type=int, default=2_000, help="rows per logged dataset")
    ap.add_argument(
        "--batch-spans",
        type=int,
        default=64,
        help="run spans per export call, like the batch span processor (default 64)",
    )
    ap.add_argument(
        "--prediction-batches", type=int, default=20, help="timed prediction batches (default 20)"
    )
    ap.add_argument("--batch-rows", type=int, default=100_000, help="rows per prediction batch")
    ap.add_argument("--senders", type=int, default=2, help="concurrent exporters (default 2)")
    ap.add_argument("--latency-runs", type=int, default=40)
    ap.add_argument("--latency-batches", type=int, default=10)
    ap.add_argument(
        "--no-persistence",
        action="store_true",
        help="only the in-memory processor (default: both configurations)",
    )
    ap.add_argument(
        "--sample-rows",
        type=int,
        default=DEFAULT_SAMPLE_ROWS,
        help="row sample per logged dataset (default: the SDK's, "
        f"{DEFAULT_SAMPLE_ROWS}; 0: summaries only); results other than the default "
        "go to ingest_sample_rows_N.*",
    )
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.sample_rows < 0:
        ap.error("--sample-rows must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    machine = C.machine_info()  # before our own load moves the load average
    warm = len(COMPONENTS) * 2
    print("[ingest] producing spans through the SDK", file=sys.stderr)
    spans = run_spans(args.runs + warm, args.rows, args.seed, args.sample_rows)
    stream = prediction_stream(args.prediction_batches, args.batch_rows, args.seed)
    costs = {
        "run_span": analyzer_costs(
            [spans[i : i + args.batch_spans] for i in range(warm, len(spans), args.batch_spans)],
            args.runs,
        ),
        "prediction_batch_100k": analyzer_costs(stream.batches, args.prediction_batches),
        "feedback_batch_50k": analyzer_costs(stream.feedback, args.prediction_batches),
    }
    configs = [False] if args.no_persistence else [True, False]
    pipeline = {
        "steps_ms": pipeline_costs(spans[warm:], args.batch_spans),
        "end_to_end": {
            ("persistence" if persistence else "in_memory"): overhead_config(
                args, persistence, spans
            )
            for persistence in configs
        },
    }
    results = [bench_config(args, persistence, spans, stream) for persistence in configs]
    payload = {
        "benchmark": "ingest",
        "command": C.command_line(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "workload": {
            "run_span": f"one component run logging a {args.rows}-row slice of the 20-column "
            "benchmark frame (15 float, 5 categorical): one summary event and "
            + (
                f"one {args.sample_rows}-row sample event"
                if args.sample_rows
                else "no row sample (--sample-rows 0)"
            )
            + (" (the SDK's defaults)" if args.sample_rows == DEFAULT_SAMPLE_ROWS else ""),
            "prediction_batch": f"log_predictions of {args.batch_rows:,} rows: ids, scores, "
            "one bucketing feature, timestamps",
            "feedback_batch": "log_feedback for every second prediction of a batch",
            "run_span_bytes": int(np.mean([_span_bytes(s) for s in spans[:50]])),
        },
        "targets": {
            "run_spans_per_core_s": TARGET_RUN_SPANS_PER_CORE_S,
            "predictions_per_core_s": TARGET_PREDICTIONS_PER_CORE_S,
        },
        "results": results,
        "analyzer_costs": costs,
        "pipeline_costs": pipeline,
        "machine": machine,
        "code": C.code_version(),
    }
    stem = "ingest"
    if args.sample_rows != DEFAULT_SAMPLE_ROWS:
        stem = f"ingest_sample_rows_{args.sample_rows}"
    C.write_results(stem, payload, render_markdown(payload), args.out_dir)
    return payload


def _span_bytes(span: Any) -> int:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans([span]).ByteSize()


def render_markdown(p: dict[str, Any]) -> str:
    t = p["targets"]
    lines = ["# Processor ingest throughput, latency and analyzer costs", ""]
    lines.append(
        "`mlobs processor` in a child process with every default analyzer; this process "
        "exports spans produced by the SDK with the OTLP/gRPC exporter "
        f"({p['settings']['senders']} senders). Throughput runs from the first export to the "
        "last record applied. Per core = per second of the processor's own CPU time."
    )
    lines += [
        "",
        f"Run span: {p['workload']['run_span']}, "
        f"{p['workload']['run_span_bytes'] / 1024:,.0f} KiB on the wire.",
        "",
    ]
    rows = []
    for r in p["results"]:
        name = "persistence on (default)" if r["persistence"] else "in memory (--no-persistence)"
        for key, label in (
            ("run_spans", "run spans"),
            ("predictions", "predictions"),
            ("feedback", "feedback labels"),
        ):
            x = r[key]
            rows.append([name, label, x["items"], x["per_s"], x["per_processor_cpu_s"]])
    lines.append(
        C.md_table(
            ["processor", "stream", "items", "per second (wall)", "per processor CPU-second"], rows
        )
    )
    lines.append("")
    best = p["results"][0]
    for r in p["results"]:
        ok_runs = r["run_spans"]["per_processor_cpu_s"] >= t["run_spans_per_core_s"]
        ok_preds = r["predictions"]["per_processor_cpu_s"] >= t["predictions_per_core_s"]
        name = "persistence on" if r["persistence"] else "in memory"
        lines.append(
            f"- {name}: run spans {r['run_spans']['per_processor_cpu_s']:,.0f}/core-s "
            f"(target {t['run_spans_per_core_s']:,}: {'met' if ok_runs else 'NOT met'}); "
            f"predictions {r['predictions']['per_processor_cpu_s']:,.0f}/core-s "
            f"(target {t['predictions_per_core_s']:,}: {'met' if ok_preds else 'NOT met'})."
        )
    lines += ["", "## Latency at half the measured throughput", ""]
    rows = []
    for r in p["results"]:
        name = "persistence on" if r["persistence"] else "in memory"
        for key, label in (
            ("run_latency", "1 run span per request"),
            ("prediction_latency", "1 prediction batch per request"),
        ):
            x = r[key]
            rows.append(
                [
                    name,
                    label,
                    x["requests"],
                    x["client_ack_p50_s"] * 1e3,
                    x["client_ack_p99_s"] * 1e3,
                    f"<= {x['processor_p50_le_s']:g}",
                    f"<= {x['processor_p99_le_s']:g}",
                ]
            )
    lines.append(
        C.md_table(
            [
                "processor",
                "requests",
                "n",
                "ack p50 (ms)",
                "ack p99 (ms)",
                "applied p50 (s)",
                "applied p99 (s)",
            ],
            rows,
        )
    )
    lines.append("")
    lines.append(
        "Ack: the export call as the client sees it (the processor answers once a request "
        "is decoded, queued and, with persistence, in the write-ahead log). Applied: "
        "arrival to the last record applied, from `mlobs_processor_processing_latency_"
        "seconds` (bucket upper bounds)."
    )
    lines += ["", "## Where the time goes per run span", ""]
    lines += _breakdown_lines(p)
    lines += ["", "## Analyzer cost through `Router.dispatch_many`", ""]
    lines.append(
        "Each analyzer on its own router, fed every export request's records at once "
        "as the worker feeds them (run spans in requests of "
        f"{p['settings']['batch_spans']}, one prediction or feedback batch per "
        "request); this thread's CPU time."
    )
    lines.append("")
    for key, unit in (
        ("run_span", "ms per run span"),
        ("prediction_batch_100k", "ms per 100,000-row prediction batch"),
        ("feedback_batch_50k", "ms per 50,000-label feedback batch"),
    ):
        c = p["analyzer_costs"][key]
        lines.append(f"### {key.replace('_', ' ')} ({unit})")
        lines.append("")
        rows = [["decode (receiver thread)", c["decode_ms"]]]
        rows += [[name, ms] for name, ms in c["by_analyzer_ms"].items()]
        rows.append(["all analyzers", c["apply_ms"]])
        rows.append(["periodic refresh, once after the stream", c["refresh_ms"]])
        lines.append(C.md_table(["step", unit], rows))
        ceiling = 1e3 / c["apply_ms"] if c["apply_ms"] else float("inf")
        per = "run spans" if key == "run_span" else "batches"
        lines.append("")
        lines.append(f"Analyzer work alone caps one worker at {ceiling:,.1f} {per} per second.")
        if c.get("errors"):
            lines.append(f"Analyzer errors while measuring: {c['errors']}.")
        lines.append("")
    m = p["machine"]
    lines.append(
        f"Machine: {m['cpu_count']} CPUs ({m['processor']}), Python {m['python']}, numpy "
        f"{m['numpy']}; load average at start {m['load_avg_1m_5m_15m'][0]}; processor peak RSS "
        f"{best['processor_peak_rss_bytes'] / 2**20:,.0f} MiB."
    )
    lines.append("")
    lines.append(C.code_line(p["code"]))
    lines.append("")
    lines.append(f"Command: `{p['command']}`")
    return "\n".join(lines)


def _breakdown_lines(p: dict[str, Any]) -> list[str]:
    """Processor CPU per run span: analyzers, each step outside them, and what is left."""
    pipe = p["pipeline_costs"]
    steps = pipe["steps_ms"]
    analyzers = p["analyzer_costs"]["run_span"]["apply_ms"]
    lines = [
        "Steps measured one by one in the benchmark process (CPU time of the thread doing "
        "them, kernel work included); end to end is the processor's own CPU (all threads, "
        "user + kernel) per run span with no analyzer registered, so the analyzers' share is "
        "taken from the table below instead.",
        "",
    ]
    rows = [[name, ms] for name, ms in steps.items() if "fallback" not in name]
    measured = sum(ms for _, ms in rows)
    rows.append(["sum of the steps", measured])
    lines.append(C.md_table(["step (ms per run span)", "ms"], rows))
    fallback = steps.get("log payload if pickled (fallback)")
    if fallback is not None:
        lines.append("")
        lines.append(
            f"A request that cannot be logged as it came (foreign or rejected spans, or "
            f"identifiers hashed) is logged as pickled records instead: {fallback:.3f} ms per "
            "run span more."
        )
    logging = steps.get("log payload", 0.0) + steps.get("log write + fdatasync", 0.0)
    in_steps = {"persistence": measured, "in_memory": measured - logging}
    rows = [
        [name.replace("_", " "), e["cpu_ms_per_span"], e["user_ms_per_span"],
         e["system_ms_per_span"], e["per_processor_cpu_s"], in_steps[name],
         e["cpu_ms_per_span"] - in_steps[name]]
        for name, e in pipe["end_to_end"].items()
    ]  # fmt: skip
    header = ["processor, no analyzers", "CPU ms per run span", "user", "kernel",
              "run spans per CPU-second", "in the steps above", "the rest"]  # fmt: skip
    lines += ["", C.md_table(header, rows), ""]
    lines.append(
        f"The rest: gRPC transport (receiving {p['settings']['batch_spans']}-span requests of "
        f"~{p['settings']['batch_spans'] * p['workload']['run_span_bytes'] / 1e6:.0f} MB), "
        "thread hand-offs, the status polling of this benchmark; in memory, the steps exclude "
        "the log."
    )
    ck = p["analyzer_costs"]["run_span"]["checkpoint"]
    lines.append("")
    lines.append(
        f"A checkpoint of the state these run spans leave ({ck['entries']} analyzer entries, "
        f"{ck['bytes'] / 2**20:,.1f} MiB) costs {ck['snapshot_cpu_s'] * 1e3:,.0f} ms of CPU "
        f"to snapshot (under the state lock) and {ck['write_cpu_s'] * 1e3:,.0f} ms to write; "
        "at the default interval of 30 s that is "
        f"{(ck['snapshot_cpu_s'] + ck['write_cpu_s']) / 30 * 100:.1f}% of a core."
    )
    for r in p["results"]:
        total = r["run_spans"]["processor_cpu_s"] * 1e3 / r["run_spans"]["items"]
        name = "persistence on" if r["persistence"] else "in memory"
        base = pipe["end_to_end"].get("persistence" if r["persistence"] else "in_memory")
        if base is None:
            continue
        lines.append("")
        lines.append(
            f"- {name}, every analyzer: {total:.2f} ms of processor CPU per run span = "
            f"{analyzers:.2f} analyzers + {base['cpu_ms_per_span']:.2f} everything else + "
            f"{total - analyzers - base['cpu_ms_per_span']:+.2f} difference (GIL hand-offs "
            "between receiver threads and the worker, refreshes, checkpoints, and the "
            "analyzers' cost varying with the state they hold)."
        )
        if r.get("checkpoints_after_run_spans"):
            done = r["checkpoints_after_run_spans"]
            lines.append(
                f"  Checkpoints written by then: {done['written']}, "
                f"{done['seconds_total']:.2f} s in all."
            )
    return lines


if __name__ == "__main__":
    main()
