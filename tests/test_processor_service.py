"""Processor lifecycle: ports, start/stop, draining on stop, wait_idle, snapshot/restore, config."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from _otlp import request, run_span, summary_event
from _processor import api, grpc_export, post_traces, running

from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.ingest import Batch, IngestQueue
from otel_mlobs.processor.service import Processor


def test_ports_are_bound_and_distinct():
    with running() as proc:
        ports = proc.ports
        assert len({ports.grpc, ports.http, ports.metrics}) == 3
        assert all(p > 0 for p in (ports.grpc, ports.http, ports.metrics))
        assert proc.healthy
    assert not proc.healthy


def test_a_processor_is_started_once():
    proc = Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0))
    assert proc.ports.grpc == 0 and not proc.healthy
    with proc, pytest.raises(RuntimeError, match="already running"):
        proc.start()
    proc.stop()  # stopping twice is harmless
    with pytest.raises(RuntimeError, match="already stopped"):
        proc.start()


def test_a_busy_port_fails_start_with_its_name_and_releases_the_others():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = set(threading.enumerate())
        proc = Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=port))
        with pytest.raises(OSError, match=f"cannot bind metrics on 127.0.0.1:{port}"):
            proc.start()
        assert not proc.healthy
        started = set(threading.enumerate()) - before
        assert not [t for t in started if t.name == "mlobs-http-loop"]


def test_stop_applies_what_was_already_accepted():
    proc = Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0)).start()
    try:
        with proc.lock:
            for i in range(5):
                grpc_export(proc, request(run_span(run_id=f"r{i}")))
            assert not proc.wait_idle(0.05)  # the worker waits for the lock
    finally:
        proc.stop()
    assert proc.registry.get_sample_value("mlobs_processor_records_total", {"type": "run"}) == 5


def test_wait_idle_returns_once_everything_is_applied():
    with running() as proc:
        for i in range(20):
            post_traces(
                proc,
                request(run_span(run_id=f"r{i}", events=[summary_event(5)])).SerializeToString(),
            )
        assert proc.wait_idle(10)
        assert len(proc.queue) == 0
        assert (
            proc.registry.get_sample_value("mlobs_processor_records_total", {"type": "summary"})
            == 20
        )
        latency = proc.registry.get_sample_value("mlobs_processor_processing_latency_seconds_count")
        assert latency == 20


def test_snapshot_moves_analyzer_state_to_another_processor():
    with running() as first:
        grpc_export(first, request(run_span(events=[summary_event(4)]), run_span(run_id="r2")))
        assert first.wait_idle(5)
        snap = first.snapshot()
        before = api(first, "/api/v1/analyzers/runs?pipeline=taxi&component=features").json()
    with running() as second:
        assert second.restore(snap) == []
        after = api(second, "/api/v1/analyzers/runs?pipeline=taxi&component=features").json()
        assert after == before
        labels = {"pipeline": "taxi", "component": "features", "stage": "features", "status": "ok"}
        assert second.registry.get_sample_value("mlobs_component_runs_total", labels) == 2


def test_queue_refuses_when_full_and_admits_after_a_take():
    q = IngestQueue(2)
    assert q.offer(Batch([])) and q.offer(Batch([]))
    assert not q.offer(Batch([]))
    batch = q.take(timeout=1)
    assert batch is not None and not q.wait_idle(0.01)
    assert q.offer(Batch([]))
    q.done()
    q.close()
    assert not q.offer(Batch([]))
    assert q.take(1) is not None and q.take(1) is not None  # closed queues still drain
    q.done()
    q.done()
    assert q.take(0.01) is None and q.wait_idle(0)


def test_queue_bytes_bound_memory_until_the_worker_is_done():
    q = IngestQueue(100, max_bytes=1000)
    assert q.offer(Batch([], size=600))
    assert not q.offer(Batch([], size=500))  # 1,100 bytes would be held
    assert q.offer(Batch([], size=400)) and q.bytes == 1000
    assert q.take(timeout=1).size == 600
    assert not q.offer(Batch([], size=1))  # a batch being applied still holds its records
    q.done()
    assert q.bytes == 400 and q.offer(Batch([], size=600))
    assert q.take(1).size == 400 and q.take(1).size == 600
    q.done()
    q.done()
    assert q.bytes == 0
    assert q.offer(Batch([], size=5000))  # larger than the budget, but nothing else is held
    assert not q.offer(Batch([], size=1))


def test_a_full_byte_budget_answers_retry_over_grpc_and_http():
    import grpc
    from _otlp import request, run_span, summary_event
    from _processor import grpc_export, post_traces

    req = request(run_span(run_id="r", events=[summary_event(20, seed=1)]))
    size = len(req.SerializeToString())
    with running(queue_bytes=size + size // 2, analyzers=[]) as proc:
        with proc.lock:  # the worker cannot finish applying a batch while the lock is held
            assert proc.queue.offer(Batch([], size=size))  # another request, not yet applied
            assert proc.queue.bytes == size
            with pytest.raises(grpc.RpcError) as err:
                grpc_export(proc, req)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert post_traces(proc, req.SerializeToString()).status_code == 503
            assert proc.queue.bytes == size  # neither refused request was queued
        assert proc.wait_idle(10)
        grpc_export(proc, req)  # room again once the worker is done


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("grpc_port", 70000),
        ("queue_bytes", 0),
        ("http_port", -1),
        ("queue_size", 0),
        ("max_request_bytes", 0),
        ("retry_after_s", 0),
        ("host", ""),
        ("analyzers", [object]),
    ],
)
def test_config_names_the_bad_setting(field, bad):
    with pytest.raises(ValueError, match=field):
        ProcessorConfig(**{field: bad})


def test_refresh_runs_periodically_on_the_worker():
    from otel_mlobs.processor.analyzers.runs import RunsAnalyzer

    calls = []

    class Refreshing(RunsAnalyzer):
        name = "refreshing"

        def refresh(self):
            calls.append(threading.current_thread().name)

    with running(analyzers=[Refreshing], refresh_interval_s=0.05) as proc:
        grpc_export(proc, request(run_span()))
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(calls) >= 2 and set(calls) == {"mlobs-ingest-worker"}


def test_retry_delays_spread_refused_clients_over_one_to_two_intervals():
    from otel_mlobs.processor.ingest import retry_delay

    assert retry_delay(2.0, lambda: 0.0) == 2.0 and retry_delay(2.0, lambda: 0.999) < 4.0
    delays = [retry_delay(1.0) for _ in range(2000)]
    assert min(delays) >= 1.0 and max(delays) < 2.0
    # Spread over the whole interval, not bunched: each quarter gets a fair share.
    counts = [sum(1.0 + q / 4 <= d < 1.0 + (q + 1) / 4 for d in delays) for q in range(4)]
    assert min(counts) > 400
