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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

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
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

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


@contextmanager
def processor_child(persistence: bool = True, queue_size: int | None = None) -> Iterator[Child]:
    """Start ``mlobs processor`` (persistence in a temporary directory unless told otherwise)."""
    state = Path(tempfile.mkdtemp(prefix="mlobs-bench-"))
    cmd = [
        sys.executable, "-m", "otel_mlobs.cli", "processor",
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


def run_spans(n: int, rows: int, seed: int) -> list[Any]:
    """``n`` component runs, each logging a ``rows``-row slice of the 20-column frame."""
    import otel_mlobs

    frame = C.to_pandas(C.make_raw(rows * 4, seed=seed))
    with capture() as memory:
        for i in range(n):
            lo = (i * 7919) % (len(frame) - rows)
            when = T0 + 3600.0 * (i // len(COMPONENTS))
            component = COMPONENTS[i % len(COMPONENTS)]
            with otel_mlobs.observe(component, stage="features", event_time=when) as run:
                run.log_input("trips", frame.iloc[lo : lo + rows])
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


def histogram_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]],
                       q: float) -> float:
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


def latency_at(child: Child, batches: Sequence[Sequence[Any]], interval_s: float,
               kind: str, expected: int) -> dict[str, float]:
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


def analyzer_costs(spans: Sequence[Any], unit: int) -> dict[str, Any]:
    """Decode ``spans`` and apply them to a fresh router here, timing every ``update()``.

    Times are this thread's CPU time (``thread_time``), so other work on the machine does not
    inflate them. Returns milliseconds per ``unit`` (per span, or per batch) by analyzer and
    by (analyzer, record type), plus the decode time.
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from otel_mlobs.processor.analyzers import DEFAULT_ANALYZERS
    from otel_mlobs.processor.decode import decode_request
    from otel_mlobs.processor.router import Router

    requests_ = [encode_spans(list(spans[i : i + 16])) for i in range(0, len(spans), 16)]
    t = time.thread_time()
    records = [r for req in requests_ for r in decode_request(req).records]
    decode_s = time.thread_time() - t
    router = Router(DEFAULT_ANALYZERS)
    cost: Counter[tuple[str, str]] = Counter()
    for record in records:
        for cls in router._classes_for(type(record)):
            key = cls.key_for(record)
            instances = router._instances[cls]
            instance = instances.get(key)
            if instance is None:
                instance = instances[key] = cls(key)
            t = time.thread_time()
            instance.update(record)
            cost[cls.name, type(record).__name__] += time.thread_time() - t
    t = time.thread_time()
    router.refresh()
    refresh_s = time.thread_time() - t
    per: dict[str, float] = defaultdict(float)
    for (name, _), seconds in cost.items():
        per[name] += seconds
    scale = 1e3 / unit
    total = sum(per.values())
    return {
        "decode_ms": decode_s * scale,
        "refresh_ms": refresh_s * scale,
        "apply_ms": total * scale,
        "by_analyzer_ms": {k: v * scale for k, v in sorted(per.items(), key=lambda kv: -kv[1])},
        "by_analyzer_and_record_ms": {
            f"{a} <- {r}": v * scale for (a, r), v in sorted(cost.items(), key=lambda kv: -kv[1])
        },
        "records": dict(Counter(type(r).__name__ for r in records)),
    }


# --- the benchmark ------------------------------------------------------------------------------


def bench_config(args: argparse.Namespace, persistence: bool, spans: list[Any],
                 stream: PredictionStream) -> dict[str, Any]:
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
        runs = measure(child, lambda: send(child, batches, args.senders), "run", len(timed),
                       len(timed))
        print(f"[ingest] persistence={persistence}: {runs.per_s:,.1f} run spans/s "
              f"({runs.per_cpu_s:,.1f} per processor CPU-s)", file=sys.stderr)
        out["run_spans"] = runs.as_dict()

        pred_events = sum(count_events(b, "mlobs.predictions") for b in stream.batches)
        preds = measure(child, lambda: send(child, stream.batches, args.senders),
                        "predictions", pred_events, stream.rows * len(stream.batches))
        print(f"[ingest] persistence={persistence}: {preds.per_s:,.0f} predictions/s "
              f"({preds.per_cpu_s:,.0f} per processor CPU-s)", file=sys.stderr)
        out["predictions"] = preds.as_dict()

        fb_events = sum(count_events(b, "mlobs.feedback") for b in stream.feedback)
        fb = measure(child, lambda: send(child, stream.feedback, args.senders), "feedback",
                     fb_events, stream.feedback_rows * len(stream.feedback))
        out["feedback"] = fb.as_dict()

        # Latency at half the measured throughput, on fresh spans of the same shape.
        lat_spans = run_spans(args.latency_runs, args.rows, seed=args.seed + 1)
        lat_batches = [[s] for s in lat_spans]
        out["run_latency"] = latency_at(child, lat_batches, 2.0 / runs.per_s, "run",
                                        len(lat_spans))
        lat_stream = prediction_stream(args.latency_batches, args.batch_rows, args.seed + 2,
                                       model="tip_latency")
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=400, help="timed run spans (default 400)")
    ap.add_argument("--rows", type=int, default=2_000, help="rows per logged dataset")
    ap.add_argument("--batch-spans", type=int, default=64,
                    help="run spans per export call, like the batch span processor (default 64)")
    ap.add_argument("--prediction-batches", type=int, default=20,
                    help="timed prediction batches (default 20)")
    ap.add_argument("--batch-rows", type=int, default=100_000, help="rows per prediction batch")
    ap.add_argument("--senders", type=int, default=2, help="concurrent exporters (default 2)")
    ap.add_argument("--latency-runs", type=int, default=40)
    ap.add_argument("--latency-batches", type=int, default=10)
    ap.add_argument("--no-persistence", action="store_true",
                    help="only the in-memory processor (default: both configurations)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out-dir", type=Path, default=None)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    machine = C.machine_info()  # before our own load moves the load average
    warm = len(COMPONENTS) * 2
    print("[ingest] producing spans through the SDK", file=sys.stderr)
    spans = run_spans(args.runs + warm, args.rows, args.seed)
    stream = prediction_stream(args.prediction_batches, args.batch_rows, args.seed)
    costs = {
        "run_span": analyzer_costs(spans[warm:], unit=args.runs),
        "prediction_batch_100k": analyzer_costs(
            [s for b in stream.batches for s in b], unit=args.prediction_batches
        ),
        "feedback_batch_50k": analyzer_costs(
            [s for b in stream.feedback for s in b], unit=args.prediction_batches
        ),
    }
    configs = [False] if args.no_persistence else [True, False]
    results = [bench_config(args, persistence, spans, stream) for persistence in configs]
    payload = {
        "benchmark": "ingest",
        "command": C.command_line(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "workload": {
            "run_span": f"one component run logging a {args.rows}-row slice of the 20-column "
            "benchmark frame (15 float, 5 categorical) with the SDK's defaults: one summary "
            "event and one 512-row sample event",
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
        "machine": machine,
        "code": C.code_version(),
    }
    C.write_results("ingest", payload, render_markdown(payload), args.out_dir)
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
    lines.append("")
    rows = []
    for r in p["results"]:
        name = "persistence on (default)" if r["persistence"] else "in memory (--no-persistence)"
        for key, label in (("run_spans", "run spans"), ("predictions", "predictions"),
                           ("feedback", "feedback labels")):
            x = r[key]
            rows.append([name, label, x["items"], x["per_s"], x["per_processor_cpu_s"]])
    lines.append(C.md_table(["processor", "stream", "items", "per second (wall)",
                             "per processor CPU-second"], rows))
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
        for key, label in (("run_latency", "1 run span per request"),
                           ("prediction_latency", "1 prediction batch per request")):
            x = r[key]
            rows.append([name, label, x["requests"], x["client_ack_p50_s"] * 1e3,
                         x["client_ack_p99_s"] * 1e3, f"<= {x['processor_p50_le_s']:g}",
                         f"<= {x['processor_p99_le_s']:g}"])
    lines.append(C.md_table(["processor", "requests", "n", "ack p50 (ms)", "ack p99 (ms)",
                             "applied p50 (s)", "applied p99 (s)"], rows))
    lines.append("")
    lines.append("Ack: the export call as the client sees it (the processor answers once a request "
                 "is decoded, queued and, with persistence, in the write-ahead log). Applied: "
                 "arrival to the last record applied, from `mlobs_processor_processing_latency_"
                 "seconds` (bucket upper bounds).")
    lines += ["", "## Where the time goes: per-analyzer `update()` cost", ""]
    for key, unit in (("run_span", "ms per run span"),
                      ("prediction_batch_100k", "ms per 100,000-row prediction batch"),
                      ("feedback_batch_50k", "ms per 50,000-label feedback batch")):
        c = p["analyzer_costs"][key]
        lines.append(f"### {key.replace('_', ' ')} ({unit})")
        lines.append("")
        rows = [["decode (receiver thread)", c["decode_ms"]]]
        rows += [[name, ms] for name, ms in c["by_analyzer_ms"].items()]
        rows.append(["all analyzers", c["apply_ms"]])
        lines.append(C.md_table(["step", unit], rows))
        if key == "run_span":
            lines.append("")
            lines.append("By record type (a run span carries a run, a summary and a sample):")
            lines.append("")
            lines.append(C.md_table(["analyzer <- record", unit],
                                    list(c["by_analyzer_and_record_ms"].items())[:8]))
        ceiling = 1e3 / c["apply_ms"] if c["apply_ms"] else float("inf")
        per = "run spans" if key == "run_span" else "batches"
        lines.append("")
        lines.append(f"Analyzer work alone caps one worker at {ceiling:,.1f} {per} per second.")
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


if __name__ == "__main__":
    main()
