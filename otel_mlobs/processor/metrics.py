"""Prometheus export: one custom collector for every analyzer's samples and the processor's own.

At each scrape the collector copies samples under the state lock (analyzers' ``metrics()`` are
cheap by contract) and builds the metric families outside it, so a slow scrape never stalls the
worker for longer than the copy.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from itertools import chain

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from otel_mlobs.processor.analyzers.base import Histogram, Metric
from otel_mlobs.processor.cardinality import (
    DEFAULT_MAX_SERIES,
    SERIES_DROPPED,
    SERIES_OVERFLOW,
    SeriesKey,
    SeriesLimiter,
    bounded_label,
)
from otel_mlobs.processor.ingest import IngestQueue
from otel_mlobs.processor.router import Router
from otel_mlobs.processor.stats import Stats, StatsSnapshot

logger = logging.getLogger(__name__)


def version() -> str:
    try:
        return metadata.version("otel-mlobs")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(slots=True)
class _Family:
    kind: str
    help: str
    unit: str
    samples: list[tuple[dict[str, str], float | Histogram]]
    keys: list[SeriesKey] = field(default_factory=list)  # parallel to samples (grouped ones)


class ProcessorCollector(Collector):
    """Builds all ``mlobs_*`` families at scrape time.

    Samples sharing a name must agree on kind and help; a clashing sample (different kind) or a
    duplicate series (same name and labels) is dropped and logged with the analyzer's evidence,
    so one buggy analyzer cannot make Prometheus reject the whole scrape. Every family is
    capped at ``max_series_per_metric`` series (:mod:`otel_mlobs.processor.cardinality`).
    ``sources`` are extra sample providers (the processor's auth counters) grouped and capped
    like the analyzers' samples.
    """

    def __init__(
        self,
        router: Router,
        lock: threading.RLock,
        stats: Stats,
        queue: IngestQueue,
        registry: CollectorRegistry | None = None,
        max_series_per_metric: int = DEFAULT_MAX_SERIES,
        sources: Sequence[Callable[[], Iterable[Metric]]] = (),
    ) -> None:
        self._router = router
        self._lock = lock
        self._stats = stats
        self._queue = queue
        self._version = version()
        self._warned: set[tuple[str, str]] = set()
        self._sources = tuple(sources)
        self._limiter = SeriesLimiter(max_series_per_metric)
        self._limit_lock = threading.Lock()  # scrapes may run on two executor threads at once
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Family]:
        return []  # collecting is not free: do not let register() call collect()

    def collect(self) -> Iterator[Family]:
        with self._lock:
            samples = self._router.metrics()
            errors = dict(self._router.errors)
            instances = self._router.count()
        stats = self._stats.snapshot()
        families = self._group(chain(samples, *(source() for source in self._sources)))
        with self._limit_lock:
            self._limiter.limit(families)
            dropped_total, last_dropped = self._limiter.dropped_total, self._limiter.last_dropped
        self._self_metrics(families, stats, errors, instances)
        families[SERIES_DROPPED] = _Family(
            "counter",
            "Series left out of scrapes by the per-family series cap, summed over scrapes, "
            "by metric family.",
            "",
            [({"metric": n}, float(v)) for n, v in sorted(dropped_total.items())],
        )
        families[SERIES_OVERFLOW] = _Family(
            "gauge",
            "Series the last scrape left out by the per-family series cap (counters and "
            "histograms folded into the __overflow__ series, gauges dropped), by metric family.",
            "",
            [({"metric": n}, float(v)) for n, v in sorted(last_dropped.items())],
        )
        for name, fam in families.items():
            try:
                family = _build(name, fam)
            except ValueError as exc:  # e.g. an invalid metric name from an analyzer
                self._warn_once(name, "build", str(exc))
                continue
            yield family

    def _group(self, samples: Iterable[Metric]) -> dict[str, _Family]:
        families: dict[str, _Family] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for m in samples:
            problem = _problem(m, families.get(m.name))
            if problem is not None:
                self._warn_once(m.name, *problem)
                continue
            labels = {k: bounded_label(str(v)) for k, v in m.labels.items()}
            key = tuple(sorted(labels.items()))
            series = (m.name, key)
            if series in seen:
                self._warn_once(m.name, "duplicate", f"duplicate series {m.name}{labels}")
                continue
            seen.add(series)
            fam = families.get(m.name)
            if fam is None:
                fam = families[m.name] = _Family(m.kind, m.help, m.unit, [])
            fam.samples.append((labels, m.value))
            fam.keys.append(key)
        return families

    def _warn_once(self, name: str, problem: str, message: str) -> None:
        """Log each kind of problem once per metric name: scrapes repeat every few seconds."""
        if (name, problem) not in self._warned:
            self._warned.add((name, problem))
            logger.warning("metric sample dropped: %s", message)

    def _self_metrics(
        self,
        families: dict[str, _Family],
        stats: StatsSnapshot,
        errors: dict[str, int],
        instances: dict[str, int],
    ) -> None:
        def add(name: str, kind: str, help_text: str, values: Iterable[tuple[dict, float]]) -> None:
            families[name] = _Family(kind, help_text, "", list(values))

        add(
            "mlobs_processor_spans_received_total",
            "counter",
            "Spans received in decodable export requests, by transport (grpc|http).",
            (({"transport": t}, n) for t, n in stats.spans_received.items()),
        )
        add(
            "mlobs_processor_spans_accepted_total",
            "counter",
            "mlobs spans decoded into records.",
            [({}, stats.spans_accepted)],
        )
        add(
            "mlobs_processor_spans_rejected_total",
            "counter",
            "mlobs spans rejected as malformed, by reason (reported as OTLP partial success).",
            (({"reason": r}, n) for r, n in stats.spans_rejected.items()),
        )
        add(
            "mlobs_processor_spans_ignored_total",
            "counter",
            "Spans without mlobs attributes (other traffic), accepted and ignored.",
            [({}, stats.spans_ignored)],
        )
        add(
            "mlobs_processor_spans_refused_total",
            "counter",
            "Spans of requests refused because the ingest queue was full (clients retry them).",
            (({"transport": t}, n) for t, n in stats.spans_refused.items()),
        )
        add(
            "mlobs_processor_requests_total",
            "counter",
            "Export requests answered, by transport and status code.",
            (({"transport": t, "code": c}, n) for (t, c), n in stats.requests.items()),
        )
        add(
            "mlobs_processor_records_total",
            "counter",
            "Records applied to analyzers, by record type.",
            (({"type": t}, n) for t, n in stats.records.items()),
        )
        add(
            "mlobs_processor_queue_full_total",
            "counter",
            "Export requests refused because the ingest queue was full, by transport.",
            (({"transport": t}, n) for t, n in stats.queue_full.items()),
        )
        add(
            "mlobs_processor_sdk_shed_total",
            "counter",
            "Items producers reported dropping before export (mlobs.sdk.shed).",
            [({}, stats.sdk_shed)],
        )
        add(
            "mlobs_processor_analyzer_errors_total",
            "counter",
            "Analyzer failures (update, refresh or metrics), by analyzer.",
            (({"analyzer": a}, n) for a, n in errors.items()),
        )
        add(
            "mlobs_processor_analyzer_instances",
            "gauge",
            "Analyzer instances (one per key), by analyzer.",
            (({"analyzer": a}, n) for a, n in instances.items()),
        )
        add(
            "mlobs_processor_queue_depth",
            "gauge",
            "Export requests waiting in the ingest queue.",
            [({}, len(self._queue))],
        )
        add(
            "mlobs_processor_queue_capacity",
            "gauge",
            "Capacity of the ingest queue, in export requests.",
            [({}, self._queue.capacity)],
        )
        add(
            "mlobs_processor_queue_bytes",
            "gauge",
            "Bytes of export requests held for the worker: queued, or being applied.",
            [({}, self._queue.bytes)],
        )
        if self._queue.max_bytes is not None:
            add(
                "mlobs_processor_queue_bytes_capacity",
                "gauge",
                "Byte budget of the ingest queue.",
                [({}, self._queue.max_bytes)],
            )
        add(
            "mlobs_processor_build_info",
            "gauge",
            "Processor build information (always 1).",
            [({"version": self._version}, 1.0)],
        )
        families["mlobs_processor_processing_latency_seconds"] = _Family(
            "histogram",
            "Time from a request's arrival to its records being applied to the analyzers.",
            "seconds",
            [({}, stats.latency)],
        )


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _problem(m: Metric, family: _Family | None) -> tuple[str, str] | None:
    """(problem, message) when a sample cannot be exposed, else None.

    Names must be classic Prometheus names: older servers reject the scrape otherwise.
    """
    if not _METRIC_NAME.fullmatch(m.name):
        return "name", f"invalid metric name {m.name!r}"
    if m.kind not in ("counter", "gauge", "histogram"):
        return "kind", f"{m.name} has unknown kind {m.kind!r}"
    if family is not None and family.kind != m.kind:
        return "clash", f"{m.name} reported as {m.kind} and {family.kind}"
    if (m.kind == "histogram") != isinstance(m.value, Histogram):
        return "value", f"{m.name} is a {m.kind} with value {m.value!r}"
    bad = [
        k
        for k in m.labels
        if not _LABEL_NAME.fullmatch(k)
        or k.startswith("__")
        or (k == "le" and m.kind == "histogram")
    ]
    if bad:
        return "labels", f"{m.name} has invalid label names {bad}"
    return None


def _build(name: str, fam: _Family) -> Family:
    if fam.kind == "counter":
        base = name.removesuffix("_total")
        out: Family = CounterMetricFamily(base, fam.help, unit=_unit(base, fam.unit))
        for labels, value in fam.samples:
            out.samples.append(Sample(base + "_total", labels, float(value)))  # type: ignore[arg-type]
        return out
    if fam.kind == "gauge":
        out = GaugeMetricFamily(name, fam.help, unit=_unit(name, fam.unit))
        for labels, value in fam.samples:
            out.samples.append(Sample(name, labels, float(value)))  # type: ignore[arg-type]
        return out
    out = HistogramMetricFamily(name, fam.help, unit=_unit(name, fam.unit))
    for labels, value in fam.samples:
        assert isinstance(value, Histogram)
        for upper, cumulative in value.buckets:
            out.samples.append(
                Sample(name + "_bucket", {**labels, "le": floatToGoString(upper)}, cumulative)
            )
        count = value.buckets[-1][1] if value.buckets else 0.0
        out.samples.append(Sample(name + "_count", labels, count))
        out.samples.append(Sample(name + "_sum", labels, value.sum))
    return out


def _unit(name: str, unit: str) -> str:
    """The unit, only when the name already ends with it (else client_python would append it)."""
    return unit if unit and name.endswith("_" + unit) else ""
