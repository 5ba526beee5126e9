"""Router (dispatch, isolation, snapshot/restore) and the Prometheus collector built on it."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import ClassVar

import _records
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from otel_mlobs.processor.analyzers import DEFAULT_ANALYZERS
from otel_mlobs.processor.analyzers.base import Analyzer, BatchFailures, Histogram, Metric
from otel_mlobs.processor.analyzers.runs import RunsAnalyzer
from otel_mlobs.processor.analyzers.traffic import TrafficAnalyzer
from otel_mlobs.processor.ingest import IngestQueue
from otel_mlobs.processor.metrics import ProcessorCollector
from otel_mlobs.processor.records import Key, RunRecord
from otel_mlobs.processor.router import Router
from otel_mlobs.processor.stats import Stats


class Exploding(Analyzer):
    """Fails on every update: the router must keep the other analyzers going."""

    name: ClassVar[str] = "exploding"
    accepts: ClassVar[tuple[type, ...]] = (RunRecord,)

    def update(self, record):
        raise RuntimeError("boom")

    def metrics(self):
        return []


class Fixed(Analyzer):
    """Reports whatever samples the test sets on the class."""

    name: ClassVar[str] = "fixed"
    accepts: ClassVar[tuple[type, ...]] = (RunRecord,)
    samples: ClassVar[list[Metric]] = []

    def update(self, record):
        pass

    def metrics(self):
        return list(type(self).samples)


def test_records_reach_the_analyzers_that_accept_them_under_their_keys():
    router = Router([RunsAnalyzer, TrafficAnalyzer])
    for record in _records.stream():
        router.dispatch(record)
    keys = router.keys()
    assert keys["runs"] == [_records.RUN_KEY]
    assert keys["traffic"] == [Key("taxi", "", "tip")]  # predictions and feedback meet
    assert router.get("traffic", Key("taxi", "", "tip")).feedback > 0
    assert router.get("runs", _records.RUN_KEY).runs == 2
    assert router.count() == {"runs": 1, "traffic": 1}


def test_a_failing_analyzer_is_counted_and_the_others_still_update(caplog):
    router = Router([Exploding, RunsAnalyzer])
    with caplog.at_level(logging.ERROR):
        router.dispatch(_records.run(1))
        router.dispatch(_records.run(2))
    assert router.errors["exploding"] == 2
    assert router.get("runs", _records.RUN_KEY).runs == 2
    assert "analyzer exploding failed in update" in caplog.text


class Batching(Analyzer):
    """Records each batch it is handed, to check grouping and order."""

    name: ClassVar[str] = "batching"
    accepts: ClassVar[tuple[type, ...]] = (RunRecord,)

    def __init__(self, key):
        super().__init__(key)
        self.batches: list[list[str]] = []

    def update(self, record):
        self.batches.append([record.run_id])

    def update_many(self, records):
        if any(r.run_id == "bad" for r in records):
            raise RuntimeError("boom")
        self.batches.append([r.run_id for r in records])

    def metrics(self):
        return []


def test_dispatch_many_hands_each_instance_its_records_in_order_once():
    other = Key("taxi", "clean")
    records = [_records.run(1), replace(_records.run(2), key=other), _records.run(3)]
    router = Router([Batching, RunsAnalyzer])
    router.dispatch_many(records)
    assert router.get("batching", _records.RUN_KEY).batches == [
        [records[0].run_id, records[2].run_id]
    ]
    assert router.get("batching", other).batches == [[records[1].run_id]]
    assert router.get("runs", _records.RUN_KEY).runs == 2  # default path: one by one


def test_dispatch_many_isolates_failures_per_instance(caplog):
    router = Router([Exploding, Batching, RunsAnalyzer])
    bad = replace(_records.run(5), run_id="bad")
    with caplog.at_level(logging.ERROR):
        router.dispatch_many([_records.run(1), _records.run(2), bad])
    assert router.errors["exploding"] == 3  # one failure per record, each tried
    assert router.errors["batching"] == 3  # an unexplained batch failure counts every record
    assert router.get("runs", _records.RUN_KEY).runs == 3


class Picky(RunsAnalyzer):
    """Batch-updating analyzer that refuses one record and applies the rest."""

    name: ClassVar[str] = "picky"

    def update_many(self, records):
        failures = []
        for record in records:
            if record.run_id == "bad":
                failures.append((record, ValueError("bad run")))
            else:
                self.update(record)
        if failures:
            raise BatchFailures(failures)


def test_a_batch_that_names_its_failed_records_counts_only_those(caplog):
    router = Router([Picky])
    bad = replace(_records.run(5), run_id="bad")
    with caplog.at_level(logging.ERROR):
        router.dispatch_many([_records.run(1), bad, _records.run(2)])
    assert router.errors["picky"] == 1
    assert router.get("picky", _records.RUN_KEY).runs == 2
    assert "ValueError: bad run" in caplog.text


def test_the_default_batch_update_applies_around_a_failing_record():
    class Fussy(RunsAnalyzer):
        name: ClassVar[str] = "fussy"

        def update(self, record):
            if record.run_id == "bad":
                raise ValueError("bad run")
            super().update(record)

    router = Router([Fussy])
    router.dispatch_many([_records.run(1), replace(_records.run(5), run_id="bad"), _records.run(2)])
    assert router.errors["fussy"] == 1
    assert router.get("fussy", _records.RUN_KEY).runs == 2


def test_duplicate_analyzer_names_are_refused():
    class Other(RunsAnalyzer):
        pass

    with pytest.raises(ValueError, match="runs"):
        Router([RunsAnalyzer, Other])


def test_snapshot_restores_every_instance_and_skips_what_it_cannot():
    router = Router(DEFAULT_ANALYZERS)
    for record in _records.stream():
        router.dispatch(record)
    snap = router.snapshot()
    assert ("runs", _records.RUN_KEY) in snap
    snap[("retired", Key("x"))] = b"whatever"
    snap[("columns", Key("broken", "c"))] = b"not a pickle"
    fresh = Router(DEFAULT_ANALYZERS)
    skipped = fresh.restore(snap)
    assert sorted(skipped) == [("columns", Key("broken", "c")), ("retired", Key("x"))]
    assert fresh.keys() == router.keys()

    def as_set(r):
        return {(m.name, tuple(sorted(m.labels.items())), repr(m.value)) for m in r.metrics()}

    assert as_set(fresh) == as_set(router)


# --- collector ----------------------------------------------------------------------------------


def _collector(analyzers):
    router = Router(analyzers)
    registry = CollectorRegistry()
    ProcessorCollector(router, threading.RLock(), Stats(), IngestQueue(7), registry)
    return router, registry


def _families(registry):
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_collector_exposes_counters_gauges_and_histograms():
    Fixed.samples = [
        Metric("mlobs_things_total", "counter", "Things.", {"pipeline": "p"}, 3.0),
        Metric("mlobs_things_total", "counter", "Things.", {"pipeline": "q", "extra": "e"}, 4.0),
        Metric("mlobs_level_ratio", "gauge", "Level.", {"pipeline": "p"}, 0.25, unit="ratio"),
        Metric(
            "mlobs_wait_seconds",
            "histogram",
            "Waits.",
            {"pipeline": "p"},
            Histogram(((1.0, 2.0), (float("inf"), 5.0)), 7.5),
            unit="seconds",
        ),
    ]
    router, registry = _collector([Fixed])
    router.dispatch(_records.run(1))
    fams = _families(registry)
    assert fams["mlobs_things"].type == "counter"
    assert registry.get_sample_value("mlobs_things_total", {"pipeline": "q", "extra": "e"}) == 4
    assert registry.get_sample_value("mlobs_level_ratio", {"pipeline": "p"}) == 0.25
    assert fams["mlobs_wait_seconds"].type == "histogram"
    assert (
        registry.get_sample_value("mlobs_wait_seconds_bucket", {"pipeline": "p", "le": "+Inf"}) == 5
    )
    assert registry.get_sample_value("mlobs_wait_seconds_count", {"pipeline": "p"}) == 5
    assert registry.get_sample_value("mlobs_wait_seconds_sum", {"pipeline": "p"}) == 7.5


def test_collector_drops_clashing_and_duplicate_samples_but_keeps_the_scrape(caplog):
    Fixed.samples = [
        Metric("mlobs_a_total", "counter", "A.", {"pipeline": "p"}, 1.0),
        Metric("mlobs_a_total", "gauge", "A.", {"pipeline": "q"}, 2.0),  # kind clash
        Metric("mlobs_b", "gauge", "B.", {"pipeline": "p"}, 1.0),
        Metric("mlobs_b", "gauge", "B.", {"pipeline": "p"}, 9.0),  # duplicate series
        Metric("mlobs bad name", "gauge", "Bad.", {}, 1.0),  # invalid name
        Metric("mlobs_c", "histogram", "C.", {}, 3.0),  # histogram without buckets
        Metric("mlobs_d", "gauge", "D.", {"bad-label": "x"}, 1.0),
    ]
    router, registry = _collector([Fixed])
    router.dispatch(_records.run(1))
    with caplog.at_level(logging.WARNING):
        fams = _families(registry)
    assert registry.get_sample_value("mlobs_a_total", {"pipeline": "p"}) == 1
    assert registry.get_sample_value("mlobs_a_total", {"pipeline": "q"}) is None
    assert [s.value for s in fams["mlobs_b"].samples] == [1.0]
    assert {"mlobs_c", "mlobs_d", "mlobs bad name"}.isdisjoint(fams)
    for message in (
        "duplicate series",
        "reported as gauge and counter",
        "invalid metric name",
        "invalid label names ['bad-label']",
        "mlobs_c is a histogram",
    ):
        assert message in caplog.text


def test_self_metrics_are_present_on_an_idle_processor():
    _, registry = _collector(DEFAULT_ANALYZERS)
    fams = _families(registry)
    assert registry.get_sample_value("mlobs_processor_queue_capacity") == 7
    assert registry.get_sample_value("mlobs_processor_queue_depth") == 0
    assert registry.get_sample_value("mlobs_processor_spans_accepted_total") == 0
    info = fams["mlobs_processor_build_info"].samples[0]
    assert info.value == 1 and info.labels["version"]
    assert fams["mlobs_processor_processing_latency_seconds"].type == "histogram"
    for analyzer in DEFAULT_ANALYZERS:
        labels = {"analyzer": analyzer.name}
        assert registry.get_sample_value("mlobs_processor_analyzer_instances", labels) == 0
