"""What the processor exposes and keeps: no ids or raw values in metric labels, no raw ids in
stored state, and identifier columns hashed without disturbing the prediction/feedback join."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from _processor import api, grpc_export, running
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import otel_mlobs.sdk as mlobs
from otel_mlobs.processor.auth import SecurityConfig
from otel_mlobs.processor.decode import DecodeResult, decode_request
from otel_mlobs.processor.privacy import PREFIX, IdHasher
from otel_mlobs.processor.records import (
    FeedbackBatch,
    Key,
    PredictionBatch,
    SampleRecord,
    SummaryRecord,
)
from otel_mlobs.scenarios import TaxiScenario
from otel_mlobs.scenarios.pipeline import run_pipeline

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01
CITIES = np.array(["Zzyzx-North", "Zzyzx-South", "Quuxville-Old", "Quuxville-New"])
TOP_K = 5  # StuckFeedbackAnalyzer's default: patterns exported per model


def _spans(produce) -> list[ExportTraceServiceRequest]:
    """Run ``produce`` against an in-memory SDK; its spans as OTLP requests of 50 spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mlobs.configure(tracer_provider=provider)
    try:
        produce()
    finally:
        mlobs.shutdown()
        provider.shutdown()
    spans = exporter.get_finished_spans()
    return [encode_spans(spans[i : i + 50]) for i in range(0, len(spans), 50)]


@dataclass
class Sent:
    """What went over the wire, decoded: every id and raw value a label or blob must not hold."""

    ids: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)  # string values of samples and features
    numbers: set[float] = field(default_factory=set)  # non-integer numeric feature values

    @classmethod
    def of(cls, requests: list[ExportTraceServiceRequest]) -> Sent:
        sent = cls()
        for req in requests:
            for rec in decode_request(req).records:
                if isinstance(rec, PredictionBatch | FeedbackBatch):
                    sent.ids.update(rec.ids.tolist())
                columns = (
                    rec.columns
                    if isinstance(rec, SampleRecord)
                    else rec.features
                    if isinstance(rec, PredictionBatch)
                    else {}
                )
                for values in columns.values():
                    if values.dtype.kind in "US":
                        sent.strings.update(map(str, values.tolist()))
                    elif values.dtype.kind == "f":
                        finite = values[np.isfinite(values)]
                        sent.numbers.update(finite[finite != np.round(finite)].tolist())
                if isinstance(rec, SummaryRecord):
                    for top in rec.top_values:
                        sent.strings.update(top)
        return sent


@dataclass
class Seen:
    """What a processor fed those requests exposes and keeps."""

    labels: list[tuple[str, str, str]]  # (family, label, value)
    snapshot: dict
    answers: list[str]  # every analyzer's API answer for every key, as text
    samples: dict[tuple[str, tuple], float]


def _feed(requests: list[ExportTraceServiceRequest], **config) -> Seen:
    with running(**config) as proc:
        for req in requests:
            assert grpc_export(proc, req).partial_success.rejected_spans == 0
        assert proc.wait_idle(timeout=60)
        text = api(proc, "/metrics").text
        listing = api(proc, "/api/v1/analyzers").json()["analyzers"]
        answers = [
            api(proc, f"/api/v1/analyzers/{a['name']}", params=key).text
            for a in listing
            for key in a["keys"]
        ]
        snapshot = proc.snapshot()
    labels, samples = [], {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels.extend((family.name, k, v) for k, v in s.labels.items())
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return Seen(labels, snapshot, answers, samples)


_UTF8_RUN = re.compile(rb"[\x21-\x7e]{4,}")
_UTF32_RUN = re.compile(rb"(?:[\x21-\x7e]\x00\x00\x00){4,}")


def _blobs_holding(snapshot: dict, ids: set[str]) -> dict:
    """Snapshot entries holding any id, as UTF-8 (JSON, pickles) or UTF-32 (numpy str arrays).

    Printable runs are pulled out of each blob once and every window of an id's length is
    looked up in the id set (ids sit back to back in a fixed-width numpy array).
    """
    lengths = sorted({len(i) for i in ids})
    found = {}
    for key, blob in snapshot.items():
        runs = [m.decode("ascii") for m in _UTF8_RUN.findall(blob)]
        runs += [m.decode("utf-32-le") for m in _UTF32_RUN.findall(blob)]
        hits = {
            run[j : j + n]
            for run in runs
            for n in lengths
            for j in range(len(run) - n + 1)
            if run[j : j + n] in ids
        }
        if hits:
            found[key] = len(hits)
    return found


# --- the taxi scenario ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def taxi() -> tuple[Sent, Seen, Seen]:
    scenario = TaxiScenario(
        seed=3,
        start="2025-12-24",
        days=8,
        rows_per_day=600,
        incidents=["corruption@2025-12-30", "feedback_outage@2025-12-29"],
    )
    requests = _spans(lambda: run_pipeline(scenario, n_estimators=20))
    sent = Sent.of(requests)
    assert len(sent.ids) > 1000
    hashed = _feed(requests)
    raw = _feed(requests, security=SecurityConfig(hash_identifiers=False))
    return sent, hashed, raw


def test_taxi_ids_never_appear_in_metric_labels(taxi):
    sent, seen, _ = taxi
    assert len(seen.labels) > 500
    leaked = [lab for lab in seen.labels if any(i in lab[2] for i in sent.ids)]
    assert leaked == []
    numeric = [
        lab
        for lab in seen.labels
        if lab[1] not in ("le", "quantile") and _float(lab[2]) in sent.numbers
    ]
    assert numeric == []


def test_taxi_ids_are_not_kept_raw_in_state_or_answered_by_the_api(taxi):
    sent, hashed, raw = taxi
    # The pipeline logs trip_id as a data column: without hashing, samples keep the ids...
    assert _blobs_holding(raw.snapshot, sent.ids)
    # ...with hashing (the default), no analyzer keeps a single one.
    assert _blobs_holding(hashed.snapshot, sent.ids) == {}
    for answer in hashed.answers:
        assert not any(i in answer for i in sent.ids)


def test_taxi_join_and_counts_are_the_same_with_hashed_identifiers(taxi):
    """The join hashes prediction ids itself, so its figures cannot depend on stored digests;
    and every count is the same. (Drift distances are left out: they differ a little between
    two runs of the same input even without hashing.)"""
    _, hashed, raw = taxi
    joined = {k: v for k, v in raw.samples.items() if k[0].startswith("mlobs_model_")}
    assert any("joined" in k[0] for k in joined)
    assert {k: hashed.samples.get(k) for k in joined} == pytest.approx(joined, nan_ok=True)
    counts = {
        k: v
        for k, v in raw.samples.items()
        if k[0].endswith("_total") and not k[0].startswith("mlobs_processor_")
    }
    assert len(counts) > 100
    assert {k: hashed.samples.get(k) for k in counts} == counts


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# --- crafted records: distinctive ids and values, and stuck feedback in one city ---------------


def _crafted() -> None:
    rng = np.random.default_rng(7)
    n = 400
    for day in range(8):
        t = T0 + day * DAY
        ids = np.array([f"ORD-{day:02d}-{i:05d}-7f3a" for i in range(n)])
        city = CITIES[rng.integers(0, len(CITIES), n)]
        amount = np.round(rng.uniform(10, 500, n), 2) + 0.00123
        frame = pd.DataFrame({"order_id": ids, "city": city, "amount": amount})
        with mlobs.observe("orders", stage="features", event_time=t) as run:
            run.log_output("orders", frame)
        mlobs.log_predictions(
            "churn",
            ids,
            scores=rng.uniform(size=n),
            features={"city": city, "amount": amount},
            timestamps=np.full(n, t),
        )
        answered = np.ones(n, bool) if day < 5 else ~np.char.startswith(city, "Quuxville")
        mlobs.log_feedback(
            "churn",
            ids[answered],
            rng.integers(0, 2, int(answered.sum())),
            timestamps=np.full(int(answered.sum()), t + 3600),
        )


@pytest.fixture(scope="module")
def crafted() -> tuple[Sent, Seen]:
    requests = _spans(_crafted)
    return Sent.of(requests), _feed(requests)


def test_crafted_ids_and_values_stay_out_of_labels_but_for_capped_patterns(crafted):
    sent, seen = crafted
    assert {"Zzyzx-North", "Quuxville-Old"} <= sent.strings and sent.numbers
    for family, label, text in seen.labels:
        assert not any(i in text for i in sent.ids), (family, label, text)
        assert _float(text) not in sent.numbers, (family, label, text)
        assert not re.search(r"\d+\.\d+0123", text), (family, label, text)  # no raw amounts
        if any(city in text for city in CITIES):
            # The one exception: stuck-feedback patterns name feature values, top-k only.
            assert family.startswith("mlobs_stuck_feedback_pattern_") and label == "pattern"
    patterns = {(f, v) for f, lab, v in seen.labels if lab == "pattern"}
    assert any("Quuxville" in v for _, v in patterns)  # the stuck city is named...
    by_family: dict[str, int] = {}
    for family, _ in patterns:
        by_family[family] = by_family.get(family, 0) + 1
    assert max(by_family.values()) <= TOP_K  # ...in at most top_k series per family
    assert _blobs_holding(seen.snapshot, sent.ids) == {}


# --- the hasher itself ------------------------------------------------------------------------


def _sample(columns: dict[str, np.ndarray], pipeline: str = "p") -> SampleRecord:
    n = len(next(iter(columns.values())))
    return SampleRecord(Key(pipeline, "c"), "r", 0.0, "input", "d", n, dict(columns))


def _hashed(hasher: IdHasher, values: np.ndarray, column: str, pipeline: str = "p") -> bool:
    record = _sample({column: values}, pipeline)
    hasher.apply(DecodeResult(records=[record]))
    out = record.columns[column]
    return out is not values and any(str(v).startswith(PREFIX) for v in out)


def test_id_hasher_hashes_identifier_columns_consistently():
    key = b"k" * 32
    hasher = IdHasher(key)
    ids = np.array([f"trip-{i}" for i in range(100)] + [""])
    zones = np.array(["a", "b", "c", "d"] * 25 + [""])
    record = _sample({"trip_id": ids, "zone": zones, "fare": np.arange(101.0)})
    hasher.apply(DecodeResult(records=[record]))
    hashed = record.columns["trip_id"]
    assert all(h.startswith(PREFIX) and len(h) == len(PREFIX) + 16 for h in hashed[:-1])
    assert hashed[-1] == ""  # nulls stay nulls
    assert len(set(hashed[:-1].tolist())) == 100  # still unique
    assert not any(str(z).startswith(PREFIX) for z in record.columns["zone"])
    assert record.columns["fare"].dtype == np.float64  # numbers untouched
    assert IdHasher(key).digest("trip-3") == hashed[3]  # same key, same digest
    assert IdHasher(b"x" * 32).digest("trip-3") != hashed[3]  # another deployment's key
    assert IdHasher().digest("trip-3") != IdHasher().digest("trip-3")  # random per process
    with pytest.raises(ValueError, match="16 to 64"):
        IdHasher(b"short")


def test_id_hasher_decides_once_per_column_so_values_never_change_form():
    hasher = IdHasher(b"k" * 32)
    # 100 unique values decide "identifier", whatever the name; small batches then follow.
    assert _hashed(hasher, np.array([f"o{i}" for i in range(100)]), "order")
    assert hasher.decided("p", "order") is True
    assert _hashed(hasher, np.array(["o1", "o1"]), "order")
    # 100 repeating values decide "categorical"; a later all-distinct batch stays readable.
    assert not _hashed(hasher, np.array(["a", "b"] * 50), "zone")
    assert hasher.decided("p", "zone") is False
    assert not _hashed(hasher, np.array([f"z{i}" for i in range(100)]), "zone")
    # Small batches decide nothing: distinct zone names are not evidence of ids...
    assert not _hashed(hasher, np.array([f"z{i}" for i in range(20)]), "dropoff")
    assert hasher.decided("p", "dropoff") is None
    # ...but a column named like an id with distinct values is hashed, even one row of it.
    assert _hashed(hasher, np.array(["t-1"]), "trip_id")
    assert _hashed(hasher, np.array([f"t{i}" for i in range(20)]), "tripId")
    assert not _hashed(hasher, np.array(["t1", "t1", "t2"] * 3), "rider_id")  # repeats
    assert hasher.decided("p", "trip_id") is None
    # Decisions are per pipeline, and bytes columns count as strings.
    assert hasher.decided("q", "order") is None
    assert _hashed(hasher, np.array([f"o{i}".encode() for i in range(100)]), "order", "q")
    assert not _hashed(hasher, np.arange(100).astype(str).astype(np.int64), "n")


def test_id_hasher_hashes_top_values_of_unique_columns():
    hasher = IdHasher(b"k" * 32)
    once = {f"t{i}": 1 for i in range(5)}
    nan = np.full(3, np.nan)
    summary = SummaryRecord(
        key=Key("p", "c"),
        run_id="r",
        event_time=0.0,
        role="output",
        dataset="d",
        rows=500,
        pointer="",
        columns=["trip", "zone", "small"],
        kinds=["categorical"] * 3,
        count=np.array([500, 500, 10]),
        nulls=np.zeros(3, np.int64),
        mean=nan,
        std=nan,
        min=nan,
        max=nan,
        quantile_levels=np.empty(0),
        quantiles=np.empty((3, 0)),
        sketches=[b""] * 3,
        distinct=nan,
        top_values=[dict(once), {"a": 300, "b": 200}, {"x": 1, "y": 1}],
    )
    hasher.apply(DecodeResult(records=[summary]))
    assert summary.top_values[0] == {hasher.digest(k): 1 for k in once}
    assert summary.top_values[1] == {"a": 300, "b": 200}
    assert summary.top_values[2] == {"x": 1, "y": 1}  # 10 rows: too few to call it ids
    assert hasher.decided("p", "trip") is True and hasher.decided("p", "zone") is False
