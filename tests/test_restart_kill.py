"""A processor killed with SIGKILL mid-stream and restarted ends where an uninterrupted one does.

The stream is a short taxi scenario recorded once through the SDK and encoded as OTLP export
requests, so both runs receive exactly the same bytes. The client sends one request at a time
and, like an OTLP exporter, only moves on after an OK: a request acknowledged before the kill
must survive it (the write-ahead log), everything after it is sent to the restarted process.

Two things make even two uninterrupted runs differ, so the comparison controls for them:

* some analyzers batch their heavier work into ``refresh()``, which runs on a wall-clock cadence
  (and before a scrape): both runs refresh only at the final scrape (a long
  ``--refresh-interval``; progress is read from ``/api/v1/status``, which does not refresh);
* merging KLL sketches (the drift analyzer's effect sizes, the constraints' shape checks) is
  randomized inside the sketch library, so those few families vary from run to run within the
  sketches' own error and are left out. Every other analyzer series must be equal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import otel_mlobs
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor
from otel_mlobs.scenarios import TaxiScenario, parse_incidents
from otel_mlobs.scenarios.pipeline import run_pipeline

LISTENING = re.compile(
    r"OTLP/gRPC 127\.0\.0\.1:(\d+), .* metrics http://127\.0\.0\.1:(\d+)/metrics"
)
Request = trace_service_pb2.ExportTraceServiceRequest


def record_stream() -> list[Request]:
    """Eight simulated days with two incidents, one span per export request."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otel_mlobs.configure(pipeline="taxi_tips", tracer_provider=provider)
    try:
        scenario = TaxiScenario(
            seed=1,
            start="2025-12-20",
            days=8,
            rows_per_day=300,
            incidents=parse_incidents("corruption@2025-12-25,feedback_outage@2025-12-24"),
            train_days=3,
        )
        run_pipeline(scenario, n_estimators=10, n_jobs=1)
    finally:
        otel_mlobs.shutdown()
        provider.shutdown()
    spans = memory.get_finished_spans()
    assert len(spans) > 30
    return [encode_spans([span]) for span in spans]


class Client:
    """The OTLP/gRPC and API ports of one processor."""

    def __init__(self, grpc_port: int, metrics_port: int) -> None:
        self.grpc_port, self.metrics_port = grpc_port, metrics_port
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{grpc_port}",
            options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
        )
        self.stub = trace_service_pb2_grpc.TraceServiceStub(self.channel)

    def send(self, request: Request) -> None:
        """One export, answered OK (the processor's acknowledgement)."""
        self.stub.Export(request, timeout=60)

    def _get(self, path: str) -> requests.Response:
        response = requests.get(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=60)
        response.raise_for_status()
        return response

    def status(self) -> dict:
        return self._get("/api/v1/status").json()

    def wait_idle(self) -> dict:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = self.status()
            if status["idle"]:
                return status
            time.sleep(0.05)
        raise AssertionError("processor never became idle")

    def samples(self, prefix: str = "mlobs_") -> dict[tuple, float]:
        """Every sample of the families whose name starts with ``prefix``."""
        out = {}
        for family in text_string_to_metric_families(self._get("/metrics").text):
            if family.name.startswith(prefix):
                for s in family.samples:
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def analyzer_samples(self) -> dict[tuple, float]:
        """The analyzers' families only, not the processor's own (requests, queue, state)."""
        return {k: v for k, v in self.samples().items() if not k[0].startswith("mlobs_processor")}


class ProcessorProcess(Client):
    """``mlobs processor`` as a child process on free ports, its log drained by a thread."""

    def __init__(self, state_dir: Path) -> None:  # noqa: D107 - the client part comes in ready()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "otel_mlobs.cli", "processor",
                "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
                "--state-dir", str(state_dir), "--checkpoint-interval", "0.2",
                "--refresh-interval", "3600",
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("MLOBS_")},
        )  # fmt: skip
        self.lines: list[str] = []

    def ready(self) -> ProcessorProcess:
        """Wait for the listening line (starting takes seconds: overlap it with other work)."""
        super().__init__(*self._wait_for_ports())
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _wait_for_ports(self) -> tuple[int, int]:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            self.lines.append(line)
            match = LISTENING.search(line)
            if match:
                return int(match.group(1)), int(match.group(2))
        self.proc.kill()
        raise AssertionError("processor did not start:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.channel.close()
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def launched() -> Iterator[list[ProcessorProcess]]:
    started: list[ProcessorProcess] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


# Series computed from merged KLL sketches: they vary between any two runs (see the docstring).
_MERGED_SKETCH_FAMILIES = {
    "mlobs_column_psi",
    "mlobs_column_jensen_shannon",
    "mlobs_column_wasserstein",
    "mlobs_constraints",
    "mlobs_constraint_evaluations_total",
    "mlobs_constraint_violations_total",
    "mlobs_constraint_precision",
}
_MERGED_SKETCH_METHODS = {"drift", "constraints"}  # alerts raised from those series


def _exact(samples: dict[tuple, float]) -> dict[tuple, float]:
    """The series two runs of the same stream must agree on exactly."""
    return {
        (name, labels): v
        for (name, labels), v in samples.items()
        if name not in _MERGED_SKETCH_FAMILIES
        and dict(labels).get("method") not in _MERGED_SKETCH_METHODS
    }


def _same(got: dict[tuple, float], want: dict[tuple, float]) -> list[str]:
    """Differences between two sample sets, NaN equal to NaN."""
    diffs = [f"missing {k}" for k in want.keys() - got.keys()]
    diffs += [f"unexpected {k}" for k in got.keys() - want.keys()]
    for k in want.keys() & got.keys():
        a, b = got[k], want[k]
        if not (a == b or (a != a and b != b)):
            diffs.append(f"{k}: {a} != {b}")
    return sorted(diffs)


def test_sigkill_mid_stream_then_restart_matches_an_uninterrupted_run(tmp_path, launched):
    first = ProcessorProcess(tmp_path / "killed")  # starts while the stream is recorded
    launched.append(first)
    stream = record_stream()

    uninterrupted = ProcessorConfig(
        grpc_port=0, http_port=0, metrics_port=0, state_dir=str(tmp_path / "reference"),
        checkpoint_interval_s=0.2, refresh_interval_s=3600,
    )  # fmt: skip
    with Processor(uninterrupted) as proc:  # in process: one child start less
        reference = Client(proc.ports.grpc, proc.ports.metrics)
        for request in stream:
            reference.send(request)
        reference.wait_idle()
        want = _exact(reference.analyzer_samples())
        reference.channel.close()
    assert len(want) > 100

    first.ready()
    checkpointed, killed_after = len(stream) // 3, 2 * len(stream) // 3
    for request in stream[:checkpointed]:
        first.send(request)
    first.wait_idle()
    deadline = time.monotonic() + 30
    while first.status()["persistence"]["log_batches"] > 0:  # until a checkpoint covers all
        assert time.monotonic() < deadline, "no checkpoint covered the first third"
        time.sleep(0.05)
    for request in stream[checkpointed:killed_after]:
        first.send(request)  # acknowledged: durable, whatever the worker has applied yet
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = ProcessorProcess(tmp_path / "killed").ready()
    launched.append(second)
    recovery = second.status()["persistence"]["recovery"]
    assert recovery["restored_entries"] > 0
    assert 0 < recovery["replayed_batches"] <= killed_after - checkpointed
    assert recovery["dropped"] == {}, "".join(second.lines)
    for request in stream[killed_after:]:
        second.send(request)
    second.wait_idle()
    diffs = _same(_exact(second.analyzer_samples()), want)
    assert diffs == [], "\n".join(diffs[:40])
    state = second.samples("mlobs_processor_state")
    assert state[("mlobs_processor_state_replayed_batches", ())] == recovery["replayed_batches"]
    assert all(v == 0 for k, v in state.items() if k[0] == "mlobs_processor_state_dropped_total")
    assert second.stop() == 0
    assert any("final checkpoint written" in line for line in second.lines)
