"""The per-family series cap: bounded scrapes whatever the pipelines send."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from _otlp import T0, request, run_span, summary_event
from _processor import api, grpc_export, running
from prometheus_client.parser import text_string_to_metric_families

from otel_mlobs.cli import _apply_env, build_parser
from otel_mlobs.processor.analyzers.base import Histogram
from otel_mlobs.processor.cardinality import (
    MAX_LABEL_VALUE_CHARS,
    OVERFLOW,
    SeriesLimiter,
    bounded_label,
)
from otel_mlobs.processor.config import ProcessorConfig

N_COLUMNS = 10_000


@dataclass
class Fam:
    kind: str
    samples: list = field(default_factory=list)
    keys: list = field(default_factory=list)

    @classmethod
    def of(cls, kind: str, values: dict[str, float | Histogram]) -> Fam:
        fam = cls(kind)
        for column, v in values.items():
            labels = {"pipeline": "p", "column": column}
            fam.samples.append((labels, v))
            fam.keys.append(tuple(sorted(labels.items())))
        return fam

    def columns(self) -> list[str]:
        return [labels["column"] for labels, _ in self.samples]


# --- the limiter ------------------------------------------------------------------------------


def test_counters_fold_into_an_overflow_series_that_keeps_the_sum():
    limiter = SeriesLimiter(5)
    values = {f"c{i}": float(i) for i in range(12)}
    fams = {"m_total": Fam.of("counter", values)}
    limiter.limit(fams)
    fam = fams["m_total"]
    assert len(fam.samples) == 5 == len(fam.keys)
    assert fam.columns() == ["c0", "c1", "c2", "c3", OVERFLOW]
    overflow_labels, overflow = fam.samples[-1]
    assert overflow_labels == {"column": OVERFLOW, "pipeline": OVERFLOW}
    assert overflow == sum(range(4, 12))
    assert sum(v for _, v in fam.samples) == sum(values.values())
    assert limiter.last_dropped == {"m_total": 8} and limiter.dropped_total == {"m_total": 8}
    limiter.limit({"m_total": Fam.of("counter", values)})
    assert limiter.dropped_total == {"m_total": 16}  # summed over scrapes: a counter


def test_gauges_over_the_cap_are_dropped_not_summed():
    limiter = SeriesLimiter(3)
    fams = {"ratio": Fam.of("gauge", {f"c{i}": 0.5 for i in range(10)})}
    limiter.limit(fams)
    assert fams["ratio"].columns() == ["c0", "c1"]  # no overflow series: 0.5 * 8 means nothing
    assert limiter.last_dropped == {"ratio": 8}


def test_histograms_merge_bucket_by_bucket():
    h = Histogram(((1.0, 1.0), (math.inf, 3.0)), 4.0)
    limiter = SeriesLimiter(2)
    fams = {"lat": Fam.of("histogram", {f"c{i}": h for i in range(4)})}
    limiter.limit(fams)
    assert fams["lat"].columns() == ["c0", OVERFLOW]
    assert fams["lat"].samples[-1][1] == Histogram(((1.0, 3.0), (math.inf, 9.0)), 12.0)
    odd = Histogram(((2.0, 1.0), (math.inf, 1.0)), 1.0)
    fams = {"lat": Fam.of("histogram", {"c0": h, "c1": h, "c2": odd})}
    limiter.limit(fams)
    assert fams["lat"].columns() == ["c0"]  # bucket layouts differ: nothing to merge into


def test_admission_is_sticky_and_freed_places_are_refilled():
    limiter = SeriesLimiter(4)  # three real series and the overflow
    limiter.limit({"m": Fam.of("counter", {c: 1.0 for c in "defgh"})})
    # New columns reported first do not push out the ones already exposed.
    fams = {"m": Fam.of("counter", {c: 1.0 for c in "abcdefgh"})}
    limiter.limit(fams)
    assert fams["m"].columns() == ["d", "e", "f", OVERFLOW]
    # When an exposed series goes away, its place goes to the next one reported.
    fams = {"m": Fam.of("counter", {c: 1.0 for c in "abcdfgh"})}
    limiter.limit(fams)
    assert fams["m"].columns() == ["a", "d", "f", OVERFLOW]
    # A family under the cap is left alone, and a family that disappears is forgotten.
    small = {"m": Fam.of("counter", {"z": 1.0})}
    limiter.limit(small)
    assert small["m"].columns() == ["z"] and limiter.last_dropped == {}
    limiter.limit({})
    assert limiter._admitted == {}
    with pytest.raises(ValueError, match=">= 2"):
        SeriesLimiter(1)


def test_long_label_values_are_shortened_and_stay_unique():
    long_a, long_b = "a" * 100_000, "a" * 99_999 + "b"
    short_a, short_b = bounded_label(long_a), bounded_label(long_b)
    assert len(short_a) == len(short_b) == MAX_LABEL_VALUE_CHARS
    assert short_a != short_b and short_a.startswith("aaa")
    assert bounded_label("zone") == "zone"


# --- through the processor --------------------------------------------------------------------


def _feed(proc, components: int) -> None:
    for c in range(components):
        for day in range(2):
            run = run_span(
                component=f"wide{c}",
                run_id=f"r{c}-{day}",
                event_time=T0 + day * 86_400,
                events=[summary_event(N_COLUMNS, seed=day, rows=1000)],
            )
            assert grpc_export(proc, request(run)).partial_success.rejected_spans == 0
    assert proc.wait_idle(timeout=60)


def _families(proc) -> tuple[dict, int]:
    response = api(proc, "/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    return families, len(response.content)


def _series(family) -> set[tuple]:
    return {tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")) for s in family.samples}


def _total(family) -> float:
    return sum(s.value for s in family.samples if s.name.endswith("_total"))


@dataclass
class Wide:
    """Scrapes of a processor fed two components of 10,000 columns each, and what its analyzers
    reported before the cap (``raw``: family -> {series labels: value})."""

    cap: int
    first: dict
    second: dict
    size: int
    raw: dict[str, dict[tuple, float]]


def _wide(cap: int | None) -> Wide:
    with running(**({} if cap is None else {"max_series_per_metric": cap})) as proc:
        _feed(proc, components=2)
        first, size = _families(proc)
        second, _ = _families(proc)
        with proc.lock:
            samples = proc.router.metrics()
        cap = proc.config.max_series_per_metric
    raw: dict[str, dict[tuple, float]] = {}
    for m in samples:
        raw.setdefault(m.name.removesuffix("_total"), {})[tuple(sorted(m.labels.items()))] = m.value
    return Wide(cap, first, second, size, raw)


@pytest.fixture(scope="module")
def default_cap() -> Wide:
    return _wide(None)


@pytest.fixture(scope="module")
def low_cap() -> Wide:
    return _wide(1_500)


def test_a_10000_column_pipeline_cannot_flood_a_scrape(default_cap):
    wide = default_cap
    assert wide.cap == 10_000
    over = {n for n, series in wide.raw.items() if len(series) > wide.cap}
    assert "mlobs_column_quantile" in over  # the wide pipeline really overflows a family
    for name, family in wide.first.items():
        assert len(_series(family)) <= wide.cap, name
    dropped = {
        s.labels["metric"]: s.value for s in wide.first["mlobs_processor_series_dropped"].samples
    }
    assert {n.removesuffix("_total") for n in dropped} == over
    for name, n in dropped.items():
        assert n == len(wide.raw[name.removesuffix("_total")]) - (wide.cap - 1)
    overflow = {
        s.labels["metric"]: s.value for s in wide.first["mlobs_processor_series_overflow"].samples
    }
    assert overflow == dropped
    quantile = wide.first["mlobs_column_quantile"]
    assert not any(OVERFLOW in s.labels.values() for s in quantile.samples)  # a gauge: dropped
    assert _series(quantile) <= set(wide.raw["mlobs_column_quantile"])
    assert _series(wide.second["mlobs_column_quantile"]) == _series(quantile)  # stable
    assert wide.size < 20 * 1024 * 1024


def test_counters_over_the_cap_keep_their_sum_in_the_overflow_series(low_cap):
    wide = low_cap
    counters = [
        n
        for n, f in wide.first.items()
        if f.type == "counter"
        and not n.startswith("mlobs_processor_")
        and len(wide.raw.get(n, ())) > wide.cap
    ]
    assert "mlobs_column_values" in counters
    for name in counters:
        family = wide.first[name]
        assert len(_series(family)) == wide.cap
        assert any(OVERFLOW in s.labels.values() for s in family.samples)
        assert _total(family) == pytest.approx(sum(wide.raw[name].values()))
    dropped = {
        s.labels["metric"]: s.value for s in wide.second["mlobs_processor_series_dropped"].samples
    }
    first = {
        s.labels["metric"]: s.value for s in wide.first["mlobs_processor_series_dropped"].samples
    }
    assert dropped == {k: 2 * v for k, v in first.items()}  # counted again at each scrape
    for name in counters:
        assert _series(wide.second[name]) == _series(wide.first[name])


def test_the_cap_is_a_flag_and_an_environment_variable(monkeypatch):
    parser = build_parser()
    args = parser.parse_args(["processor", "--max-series-per-metric", "500"])
    _apply_env(args)
    assert args.max_series_per_metric == 500
    monkeypatch.setenv("MLOBS_MAX_SERIES_PER_METRIC", "2000")
    args = parser.parse_args(["processor"])
    _apply_env(args)
    assert args.max_series_per_metric == 2000
    with pytest.raises(ValueError, match="max_series_per_metric"):
        ProcessorConfig(max_series_per_metric=1)
