"""Scale-out: three processors behind the Collector's routing add up to one processor.

The same multi-pipeline, multi-model stream, produced once through the SDK, is exported with the
real OTLP/gRPC exporter twice: to one processor, and to the routing front of
:mod:`otel_mlobs.lb` (the ``loadbalancing`` exporter's key and hash ring, as configured in
collector/loadbalanced.yaml) in front of three processors named like the shipped shards.

What must hold, series by series: every counter and histogram summed over the shards equals the
single processor's; every gauge of analyzer state is reported by exactly one shard, the one the
ring assigns its (pipeline, model) key, with the single processor's value.

The summaries travel whole, KLL sketches included: the processor merges sketches into
references without the sketch library's random compaction, so every figure, sketch-based ones
included, is a deterministic function of the key's own records.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.registry import CollectorRegistry

import otel_mlobs.sdk as mlobs
from otel_mlobs import semconv as sc
from otel_mlobs.lb import HashRing, LoadBalancer, RouteStats, routing_key, split_request
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor
from otel_mlobs.sdk.setup import SizeCappedExporter

SHARDS = ("mlobs-0:4317", "mlobs-1:4317", "mlobs-2:4317")  # collector/loadbalanced.yaml
T0 = 1_750_000_000.0
DAY = 86_400.0
# Pipelines and models chosen so that every shard owns some pipeline and some model state
# (asserted below, so a change of the ring cannot quietly make the test trivial).
MODELS = {"taxi": ("eta",), "shop": ("basket", "churn"), "fraud": ("score",)}
COMPONENTS = ("ingest", "features")
DAYS = 8
ROWS = 300
PRED_ROWS = 1_500

# Processor self-metrics that legitimately differ: the front splits one request into several,
# timings and queue gauges are per process.
PER_PROCESS = {
    "mlobs_processor_requests",
    "mlobs_processor_processing_latency_seconds",
    "mlobs_processor_queue_depth",
    "mlobs_processor_queue_capacity",
    "mlobs_processor_build_info",
}
ADDITIVE_GAUGES = {"mlobs_processor_analyzer_instances"}

Series = tuple[str, tuple[tuple[str, str], ...]]


def _frame(rng: np.random.Generator, day: int, component: str) -> pd.DataFrame:
    shift = 3.0 if component == "features" and day >= DAYS - 2 else 0.0  # a late drift
    data = {f"x{i}": rng.normal(i + shift, 1 + i / 4, size=ROWS) for i in range(8)}
    data["zone"] = rng.choice(["a", "b", "c", "d"], size=ROWS, p=[0.4, 0.3, 0.2, 0.1])
    frame = pd.DataFrame(data)
    frame.loc[: day % 5, "x1"] = np.nan
    return frame


def _stream() -> list[ReadableSpan]:
    """Runs with summaries, reference sets, live predictions and late feedback, via the SDK."""
    rng = np.random.default_rng(7)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    mlobs.configure(pipeline="default", tracer_provider=provider)
    try:
        for pipeline, models in MODELS.items():
            for model in models:
                ids = np.array([f"{model}-ref-{i}" for i in range(PRED_ROWS)])
                truth = rng.integers(0, 2, size=PRED_ROWS)
                scores = np.clip(truth * 0.6 + rng.uniform(0, 0.4, size=PRED_ROWS), 0, 1)
                mlobs.log_reference(
                    model,
                    ids,
                    truth,
                    scores=scores,
                    pipeline=pipeline,
                    features={"distance": rng.exponential(size=PRED_ROWS)},
                    timestamps=np.full(PRED_ROWS, T0),
                )
        for day in range(DAYS):
            when = T0 + day * DAY
            for pipeline, models in MODELS.items():
                for component in COMPONENTS:
                    with mlobs.observe(
                        component, pipeline=pipeline, stage="features", event_time=when
                    ) as run:
                        run.log_input("raw", _frame(rng, day, component), sample_rows=64)
                for model in models:
                    ids = np.array([f"{model}-{day}-{i}" for i in range(PRED_ROWS)])
                    truth = rng.integers(0, 2, size=PRED_ROWS)
                    noise = 0.4 + 0.1 * day  # the model degrades day by day
                    scores = np.clip(truth * 0.5 + rng.uniform(0, noise, size=PRED_ROWS), 0, 1)
                    mlobs.log_predictions(
                        model,
                        ids,
                        scores=scores,
                        pipeline=pipeline,
                        features={"distance": rng.exponential(size=PRED_ROWS)},
                        timestamps=when + np.arange(PRED_ROWS, dtype=np.float64),
                    )
                    if day >= 1:  # yesterday's labels, two thirds of them
                        prev = np.array([f"{model}-{day - 1}-{i}" for i in range(PRED_ROWS)])
                        keep = rng.uniform(size=PRED_ROWS) < 2 / 3
                        mlobs.log_feedback(
                            model,
                            prev[keep],
                            rng.integers(0, 2, size=int(keep.sum())),
                            pipeline=pipeline,
                            timestamps=np.full(int(keep.sum()), when),
                        )
    finally:
        mlobs.shutdown()
        provider.shutdown()
    spans = list(memory.get_finished_spans())
    assert any(
        e.attributes and e.attributes.get(sc.SUMMARY_SKETCHES) for s in spans for e in s.events
    ), "the stream carries no sketches"
    return spans


def _processor() -> Processor:
    # No periodic refresh during the run: the test refreshes every processor once, at the end,
    # so wall-clock timing cannot make one side refit before the other.
    config = ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0, refresh_interval_s=3600)
    return Processor(config, registry=CollectorRegistry())


def _export(spans: list[ReadableSpan], port: int) -> None:
    exporter = SizeCappedExporter(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=60)
    )
    try:
        for lo in range(0, len(spans), 64):  # the batch span processor's rhythm, in order
            assert exporter.export(spans[lo : lo + 64]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def _settle(proc: Processor) -> None:
    assert proc.wait_idle(timeout=120), "processor still busy"
    with proc.lock:
        proc.router.refresh()


def _samples(proc: Processor) -> dict[str, dict[Series, float]]:
    """{family type: {(sample name, labels): value}} of everything the processor exposes."""
    out: dict[str, dict[Series, float]] = defaultdict(dict)
    for family in proc.registry.collect():
        if family.name in PER_PROCESS:
            continue
        kind = "additive" if family.name in ADDITIVE_GAUGES else family.type
        if kind == "gauge" and family.name.startswith("mlobs_processor_"):
            continue  # the process's own state (queue, uptime, ...), not a key's
        for s in family.samples:
            out[kind][s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


@dataclass
class Fed:
    single: dict[str, dict[Series, float]]
    shards: dict[str, dict[str, dict[Series, float]]]  # shard name -> samples
    routed: dict[str, int]
    dropped: int
    sent: int


@pytest.fixture(scope="module")
def fed() -> Iterator[Fed]:
    spans = _stream()
    with ExitStack() as stack:
        single = stack.enter_context(_processor())
        shards = {name: stack.enter_context(_processor()) for name in SHARDS}
        front = stack.enter_context(
            LoadBalancer({name: f"127.0.0.1:{p.ports.grpc}" for name, p in shards.items()})
        )
        _export(spans, single.ports.grpc)
        _export(spans, front.port)
        for proc in (single, *shards.values()):
            _settle(proc)
        yield Fed(
            single=_samples(single),
            shards={name: _samples(p) for name, p in shards.items()},
            routed=dict(front.stats.routed),
            dropped=front.stats.dropped,
            sent=len(spans),
        )


def _owner(labels: tuple[tuple[str, str], ...]) -> str:
    """The shard that must hold a series: where the ring sends its (pipeline, model) key."""
    named = dict(labels)
    return HashRing(SHARDS).endpoint_for(
        routing_key({sc.PIPELINE: named["pipeline"], sc.MODEL: named.get("model", "")})
    )


def test_every_span_is_routed_and_every_shard_owns_state(fed):
    assert fed.dropped == 0
    assert sum(fed.routed.values()) == fed.sent
    ring = HashRing(SHARDS)
    pipelines = {ring.endpoint_for(p) for p in MODELS}
    models = {ring.endpoint_for(p + m) for p, ms in MODELS.items() for m in ms}
    assert pipelines == models == set(SHARDS), "the stream no longer spreads over all shards"
    for name in SHARDS:
        assert fed.routed[name] > 0
        accepted = fed.shards[name]["counter"][("mlobs_processor_spans_accepted_total", ())]
        assert accepted == fed.routed[name]
    assert fed.single["counter"][("mlobs_processor_spans_accepted_total", ())] == fed.sent


@pytest.mark.parametrize("kind", ["counter", "histogram", "additive"])
def test_summed_over_shards_equals_one_processor(fed, kind):
    single = fed.single[kind]
    summed: dict[Series, float] = defaultdict(float)
    for samples in fed.shards.values():
        for series, value in samples[kind].items():
            summed[series] += value
    assert single, f"no {kind} series at all"
    assert set(summed) == set(single)
    diffs = {s: (v, summed[s]) for s, v in single.items() if not math.isclose(v, summed[s])}
    assert not diffs, f"{len(diffs)} {kind} series differ (single, summed): {diffs}"


def test_model_and_pipeline_gauges_live_on_the_owning_shard(fed):
    gauges = fed.single["gauge"]
    model_gauges = [s for s in gauges if "model" in dict(s[1])]
    assert len(model_gauges) >= 10, "too few model-level gauges to compare"
    problems = []
    for series, value in gauges.items():
        holders = {name for name, samples in fed.shards.items() if series in samples["gauge"]}
        owner = _owner(series[1])
        if holders != {owner}:
            problems.append(f"{series}: held by {sorted(holders)}, owner {owner}")
            continue
        got = fed.shards[owner]["gauge"][series]
        if not (
            math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12)
            or (math.isnan(got) and math.isnan(value))
        ):
            problems.append(f"{series}: single {value}, shard {got}")
    extra = {
        series
        for samples in fed.shards.values()
        for series in samples["gauge"]
        if series not in gauges
    }
    assert not problems, "\n".join(problems)
    assert not extra, f"shards report gauges the single processor does not: {sorted(extra)}"


def test_split_keeps_resource_scope_and_order_and_drops_foreign_spans():
    from _otlp import attributes, feedback_span, foreign_span, predictions_span, run_span
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    ring = HashRing(SHARDS)
    spans = [
        run_span("taxi", "ingest", "r1"),
        predictions_span(3, pipeline="shop", model="churn"),
        foreign_span(),
        feedback_span(3, pipeline="shop", model="churn"),
        run_span("taxi", "features", "r2"),
    ]
    resource = Resource(attributes=attributes({"service.name": "jobs"}))
    scope = InstrumentationScope(name="otel_mlobs", version="1")
    req = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])
        ]
    )
    stats = RouteStats()
    parts = split_request(req, ring, stats=stats)
    got = {
        name: [s.span_id for rs in part.resource_spans for ss in rs.scope_spans for s in ss.spans]
        for name, part in parts.items()
    }
    taxi, churn = ring.endpoint_for("taxi"), ring.endpoint_for("shopchurn")
    expected: dict[str, list[bytes]] = defaultdict(list)
    for span in (spans[0], spans[4], spans[1], spans[3]):
        expected[taxi if span in spans[::4] else churn].append(span.span_id)
    assert got == dict(expected)
    assert stats.dropped == 1 and sum(stats.routed.values()) == 4
    for part in parts.values():
        assert part.resource_spans[0].resource == resource
        assert part.resource_spans[0].scope_spans[0].scope == scope


def test_ring_spreads_keys_and_moves_few_when_a_shard_is_added():
    keys = [f"pipeline{i}model{j}" for i in range(60) for j in range(20)]
    three = HashRing(SHARDS)
    four = HashRing([*SHARDS, "mlobs-3:4317"])
    counts = Counter(three.endpoint_for(k) for k in keys)
    assert set(counts) == set(SHARDS) and min(counts.values()) > len(keys) / 6
    moved = [k for k in keys if three.endpoint_for(k) != four.endpoint_for(k)]
    assert all(four.endpoint_for(k) == "mlobs-3:4317" for k in moved)  # only to the new shard
    assert len(moved) < len(keys) / 2
