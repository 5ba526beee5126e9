"""Every analyzer in DEFAULT_ANALYZERS honours the analyzer contract.

Construct with only a key, survive an empty state, report well-formed metrics, and come back
identical from ``snapshot()`` -> ``restore()`` -- also when the stream continues afterwards, since
that is what a restarted or re-sharded processor does.
"""

from __future__ import annotations

import json
import math
import pickle
from collections import Counter

import _records
import pytest

from otel_mlobs.processor.analyzers import DEFAULT_ANALYZERS
from otel_mlobs.processor.analyzers.base import Analyzer, Histogram, Metric
from otel_mlobs.processor.api import jsonable
from otel_mlobs.processor.records import Key

ANALYZERS = pytest.mark.parametrize("cls", DEFAULT_ANALYZERS, ids=lambda c: c.name)


def _records_for(cls: type[Analyzer], records) -> tuple[Key, list]:
    """The accepted records of the key with the most of them (the one a test can fill)."""
    accepted = [r for r in records if isinstance(r, cls.accepts)]
    assert accepted, f"{cls.__name__} accepts none of {sorted({type(r).__name__ for r in records})}"
    counts = Counter(cls.key_for(r) for r in accepted)
    key = counts.most_common(1)[0][0]
    return key, [r for r in accepted if cls.key_for(r) == key]


def _fed(cls: type[Analyzer]) -> Analyzer:
    key, records = _records_for(cls, _records.stream())
    analyzer = cls(key)
    for record in records:
        analyzer.update(record)
    return analyzer


def _normalized(metrics) -> list[tuple]:
    """Metrics as comparable tuples: labels sorted, NaN made equal to itself."""

    def value(v):
        if isinstance(v, Histogram):
            return ("hist", tuple(v.buckets), _num(v.sum))
        return _num(v)

    return sorted(
        (m.name, m.kind, m.help, m.unit, tuple(sorted(m.labels.items())), value(m.value))
        for m in metrics
    )


def _num(v: float) -> float | str:
    return "nan" if isinstance(v, float) and math.isnan(v) else float(v)


@ANALYZERS
def test_registered_analyzers_are_well_declared(cls):
    assert issubclass(cls, Analyzer)
    assert isinstance(cls.name, str) and cls.name.isidentifier()
    assert cls.accepts and all(isinstance(t, type) for t in cls.accepts)
    assert sum(c.name == cls.name for c in DEFAULT_ANALYZERS) == 1, "names must be unique"


@ANALYZERS
def test_empty_analyzer_reports_snapshots_and_reprs(cls):
    key, _ = _records_for(cls, _records.stream())
    empty = cls(key)
    assert isinstance(list(empty.metrics()), list)
    assert cls.__name__ in repr(empty)
    json.dumps(jsonable(empty.query()))
    fresh = cls(key)
    fresh.restore(empty.snapshot())
    assert _normalized(fresh.metrics()) == _normalized(empty.metrics())
    empty.refresh()


@ANALYZERS
def test_metrics_are_well_formed(cls):
    analyzer = _fed(cls)
    analyzer.refresh()
    metrics = list(analyzer.metrics())
    assert metrics, f"{cls.name} reports nothing after a stream of accepted records"
    kinds: dict[str, tuple[str, str]] = {}
    series = set()
    for m in metrics:
        assert isinstance(m, Metric)
        assert m.name.startswith("mlobs_"), m.name
        assert m.kind in ("counter", "gauge", "histogram"), m
        if m.kind == "counter":
            assert m.name.endswith("_total"), f"counter {m.name} must end in _total"
            assert m.value >= 0, m
        assert kinds.setdefault(m.name, (m.kind, m.help)) == (m.kind, m.help), (
            f"{m.name}: kind/help differ between samples"
        )
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.labels.items()), m
        assert m.labels.get("pipeline") == analyzer.key.pipeline, m
        ident = (m.name, tuple(sorted(m.labels.items())))
        assert ident not in series, f"duplicate series {ident}"
        series.add(ident)
        if m.kind == "histogram":
            assert isinstance(m.value, Histogram)
            bounds = [b for b, _ in m.value.buckets]
            counts = [c for _, c in m.value.buckets]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf, m
            assert counts == sorted(counts), f"{m.name} buckets must be cumulative"
        else:
            assert isinstance(m.value, int | float), m


@ANALYZERS
def test_snapshot_restore_gives_identical_metrics_and_query(cls):
    original = _fed(cls)
    blob = original.snapshot()
    assert isinstance(blob, bytes)
    restored = cls(original.key)
    restored.restore(blob)
    assert _normalized(restored.metrics()) == _normalized(original.metrics())
    assert _records.to_json_safe(jsonable(restored.query())) == _records.to_json_safe(
        jsonable(original.query())
    )


@ANALYZERS
def test_restored_analyzer_continues_like_the_original(cls):
    original = _fed(cls)
    restored = cls(original.key)
    restored.restore(original.snapshot())
    for record in _records.extra():
        if isinstance(record, cls.accepts) and cls.key_for(record) == original.key:
            original.update(record)
            restored.update(record)
    original.refresh()
    restored.refresh()
    assert _normalized(restored.metrics()) == _normalized(original.metrics())


@ANALYZERS
def test_snapshot_is_independent_of_later_updates(cls):
    analyzer = _fed(cls)
    blob = analyzer.snapshot()
    before = _normalized(analyzer.metrics())
    for record in _records.extra():
        if isinstance(record, cls.accepts) and cls.key_for(record) == analyzer.key:
            analyzer.update(record)
    restored = cls(analyzer.key)
    restored.restore(blob)
    assert _normalized(restored.metrics()) == before


@ANALYZERS
def test_analyzer_pickles(cls):
    analyzer = _fed(cls)
    clone = pickle.loads(pickle.dumps(analyzer))
    assert _normalized(clone.metrics()) == _normalized(analyzer.metrics())
