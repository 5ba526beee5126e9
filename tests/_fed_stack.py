"""One processor fed by a short taxi run with incidents, and a Prometheus that watched it.

The rules, dashboards and report tests all need the same thing: a processor whose metrics and
API look like a real deployment's after something went wrong. Building it takes a scenario run
(about 15 s), so it is built once per test session, on first use, and stopped when the session
ends (``config.add_cleanup``).

Prometheus (when its binary is on PATH) starts *before* the scenario so that it scrapes the
counters while they grow: rates are then non-zero, as they would be in production. Besides the
scenario, the processor receives one span of an unknown schema version (a rejected span) and a
burst of requests while its worker is held (a full queue), so that the self-monitoring series
exist too.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mlobs import semconv
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor
from otel_mlobs.promrun import PrometheusServer, find_binary

PIPELINE = "taxi_tips"
MODEL = "tip_classifier"
DAYS = 10
TRAIN_DAYS = 4
ROWS_PER_DAY = 500
START = "2025-12-20"
# A unit change in the trip feed, a weather outage and a neighbourhood whose tips stop settling:
# hard constraints, corruption and drift, column groups and a stuck-feedback pattern.
INCIDENTS = "corruption@2025-12-26,feedback_outage@2025-12-25,missing_values@2025-12-28"
QUEUE_SIZE = 16


@dataclass
class FedStack:
    """What the tests read: the processor, its final exposition, and Prometheus if available."""

    processor: Processor
    prometheus: PrometheusServer | None
    exposition: str
    families: set[str] = field(default_factory=set)  # metric names in the exposition
    runs: float = 0.0  # component runs the processor counted
    state_dir: str = ""  # persistence on, as deployed by default

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.processor.ports.metrics}"


_STACK: FedStack | None = None


def fed_stack(request: pytest.FixtureRequest) -> FedStack:
    """The session's fed stack, built on first call."""
    global _STACK
    if _STACK is None:
        stack = _build()
        request.config.add_cleanup(_stop)
        _STACK = stack
    return _STACK


def _stop() -> None:
    global _STACK
    stack, _STACK = _STACK, None
    if stack is None:
        return
    if stack.prometheus is not None:
        stack.prometheus.stop()
    stack.processor.stop()
    if stack.state_dir:
        shutil.rmtree(stack.state_dir, ignore_errors=True)


def _build() -> FedStack:
    import otel_mlobs
    from otel_mlobs.scenarios import TaxiScenario, parse_incidents
    from otel_mlobs.scenarios.pipeline import run_pipeline
    from otel_mlobs.sdk.setup import SizeCappedExporter, make_exporter

    state_dir = tempfile.mkdtemp(prefix="mlobs-fed-")
    proc = Processor(
        ProcessorConfig(
            grpc_port=0, http_port=0, metrics_port=0, queue_size=QUEUE_SIZE, state_dir=state_dir
        )
    ).start()
    prometheus = None
    try:
        if find_binary() is not None:
            prometheus = PrometheusServer(f"127.0.0.1:{proc.ports.metrics}").start()
            # Its first scrape waits for service discovery (about 5 s); the scenario must not
            # finish before Prometheus has seen the counters start.
            assert prometheus.wait_for('up{job="mlobs"} == 1', timeout_s=30), prometheus.log_tail()
        provider = TracerProvider(resource=Resource.create({"service.name": "ops-tests"}))
        exporter = make_exporter(endpoint=f"http://127.0.0.1:{proc.ports.grpc}", protocol="grpc")
        provider.add_span_processor(
            BatchSpanProcessor(SizeCappedExporter(exporter), max_queue_size=16_384)
        )
        otel_mlobs.configure(pipeline=PIPELINE, tracer_provider=provider)
        scenario = TaxiScenario(
            seed=0,
            start=START,
            days=DAYS,
            rows_per_day=ROWS_PER_DAY,
            incidents=parse_incidents(INCIDENTS),
            train_days=TRAIN_DAYS,
        )

        _reject_one_span(proc)  # once before and once after: the counter moves while watched

        def settle(day: object) -> None:
            otel_mlobs.flush()
            assert proc.wait_idle(timeout=60), "processor still busy after 60 s"

        try:
            run_pipeline(scenario, progress=settle, n_estimators=20, n_jobs=2)
        finally:
            otel_mlobs.shutdown()
            provider.shutdown()
        _reject_one_span(proc)
        _fill_the_queue(proc)
        assert proc.wait_idle(timeout=60)
        exposition = _get(f"http://127.0.0.1:{proc.ports.metrics}/metrics")
        stack = FedStack(
            proc, prometheus, exposition, exposition_names(exposition), state_dir=state_dir
        )
        stack.runs = _runs(exposition)
        if prometheus is not None:
            _wait_for_final_scrape(prometheus, stack.runs)
        return stack
    except BaseException:
        if prometheus is not None:
            prometheus.stop()
        proc.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        raise


def exposition_names(text: str) -> set[str]:
    """Every metric name a Prometheus text exposition declares or samples.

    Families with no sample yet (a counter by reason before the first rejection) still declare
    ``# TYPE``; histograms add their ``_bucket`` / ``_sum`` / ``_count`` series.
    """
    names = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, flags=re.MULTILINE))
    return names


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode("utf-8")


def _runs(exposition: str) -> float:
    values = re.findall(r"^mlobs_component_runs_total\{[^}]*\} (\S+)$", exposition, re.MULTILINE)
    return sum(float(v) for v in values)


def _post(proc: Processor, body: bytes) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{proc.ports.http}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _span_body(attributes: dict[str, object]) -> bytes:
    """One span with ``attributes`` as an OTLP/HTTP protobuf request body."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("ops-tests").start_as_current_span("probe") as span:
        span.set_attributes(attributes)  # type: ignore[arg-type]
    provider.shutdown()
    return encode_spans(memory.get_finished_spans()).SerializeToString()


def _reject_one_span(proc: Processor) -> None:
    """A producer of a future major version of the wire contract: rejected and counted."""
    body = _span_body(
        {
            semconv.SCHEMA: "99.0",
            semconv.SPAN_ROLE: "run",
            semconv.PIPELINE: PIPELINE,
            semconv.COMPONENT: "clean",
        }
    )
    assert _post(proc, body) == 200  # a partial success: the client must not retry


def _fill_the_queue(proc: Processor) -> None:
    """Hold the worker (it applies records under the processor's lock) and send a burst."""
    body = _span_body(
        {
            semconv.SCHEMA: semconv.SCHEMA_VERSION,
            semconv.SPAN_ROLE: "run",
            semconv.PIPELINE: "queue_probe",
            semconv.COMPONENT: "probe",
            semconv.STAGE: "other",
            semconv.RUN_ID: "probe",
            semconv.RUN_EVENT_TIME: time.time(),
        }
    )
    with proc.lock:
        codes = [_post(proc, body) for _ in range(QUEUE_SIZE + 4)]
    assert 503 in codes, f"the queue never filled: {codes}"


def _wait_for_final_scrape(prometheus: PrometheusServer, runs: float) -> None:
    """Until Prometheus holds the final counts and has evaluated the rules on them."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = prometheus.query("sum(mlobs_component_runs_total)")
        if got and float(got[0]["value"][1]) >= runs:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"Prometheus never scraped the final state:\n{prometheus.log_tail()}")
    time.sleep(2.5)  # two more evaluation rounds of the rules at the 1 s interval
