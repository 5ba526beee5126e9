"""A small, realistic stream of typed records of every kind, for analyzer tests.

Two daily runs of a features component (inputs and outputs summarized, with real KLL sketches),
checks, a row sample, a labelled reference set, live predictions of a binary model and feedback
for part of them, and a KPI value. Deterministic (fixed seeds).
"""

from __future__ import annotations

import json

import numpy as np
from datasketches import kll_doubles_sketch

from otel_mlobs.processor.records import (
    CheckRecord,
    FeedbackBatch,
    Key,
    KpiRecord,
    PredictionBatch,
    Record,
    RunRecord,
    SampleRecord,
    SummaryRecord,
)

T0 = 1_700_000_000.0
DAY = 86_400.0
RUN_KEY = Key("taxi", "features")
PRED_KEY = Key("taxi", "serve", "tip")
FEEDBACK_KEY = Key("taxi", "", "tip")
LEVELS = np.array([0.05, 0.25, 0.5, 0.75, 0.95])


def _sketch(values: np.ndarray) -> bytes:
    sketch = kll_doubles_sketch(200)
    sketch.update(values)
    return sketch.serialize()


def summary(day: int, role: str = "output", shift: float = 0.0) -> SummaryRecord:
    rng = np.random.default_rng(day)
    fare = rng.normal(15 + shift, 4, size=500)
    distance = rng.exponential(3, size=500)
    numeric = [fare, distance]
    nan = float("nan")
    return SummaryRecord(
        key=RUN_KEY,
        run_id=f"run-{day}",
        event_time=T0 + day * DAY,
        role=role,
        dataset="trips",
        rows=500,
        pointer=f"sha256:{day:04d}",
        columns=["fare", "distance", "zone", "cash"],
        kinds=["numeric", "numeric", "categorical", "boolean"],
        count=np.array([495, 500, 500, 500], dtype=np.int64),
        nulls=np.array([5, 0, 0, 0], dtype=np.int64),
        mean=np.array([fare.mean(), distance.mean(), nan, 0.3]),
        std=np.array([fare.std(), distance.std(), nan, 0.46]),
        min=np.array([fare.min(), distance.min(), nan, 0.0]),
        max=np.array([fare.max(), distance.max(), nan, 1.0]),
        quantile_levels=LEVELS,
        quantiles=np.vstack(
            [np.quantile(v, LEVELS) for v in numeric] + [np.full(LEVELS.size, nan)] * 2
        ),
        sketches=[_sketch(fare), _sketch(distance), b"", b""],
        distinct=np.array([480.0, 490.0, 12.0, 2.0]),
        top_values=[{}, {}, {"midtown": 200, "jfk": 50}, {}],
    )


def run(day: int, ok: bool = True) -> RunRecord:
    return RunRecord(
        key=RUN_KEY,
        run_id=f"run-{day}",
        stage="features",
        event_time=T0 + day * DAY,
        duration_s=1.5 + day,
        ok=ok,
        error="" if ok else "ValueError: bad fare",
        inputs=("s3://raw/trips",),
        outputs=(f"sha256:{day:04d}",),
        code_version="abc123",
        trace_id=f"{day:032x}",
        span_id=f"{day:016x}",
        parent_span_id="",
    )


def check(day: int, passed: bool) -> CheckRecord:
    return CheckRecord(
        RUN_KEY,
        f"run-{day}",
        T0 + day * DAY,
        "fare_positive",
        "after",
        passed,
        "" if passed else "12 negative fares",
    )


def sample(day: int) -> SampleRecord:
    rng = np.random.default_rng(100 + day)
    return SampleRecord(
        key=RUN_KEY,
        run_id=f"run-{day}",
        event_time=T0 + day * DAY,
        role="output",
        dataset="trips",
        rows=500,
        columns={
            "fare": rng.normal(15, 4, size=50),
            "distance": rng.exponential(3, size=50),
            "zone": rng.choice(["midtown", "jfk", "soho"], size=50),
        },
    )


def predictions(start: int, n: int, t: float, reference: bool = False) -> PredictionBatch:
    rng = np.random.default_rng(start)
    scores = rng.uniform(size=n)
    labels = np.where(scores >= 0.5, "1", "0")
    truth = np.where(rng.uniform(size=n) < 0.85, labels, np.where(labels == "1", "0", "1"))
    return PredictionBatch(
        key=PRED_KEY,
        model_version="v1",
        ids=np.array([f"id{i}" for i in range(start, start + n)]),
        timestamps=t + np.arange(n, dtype=np.float64),
        scores=scores,
        classes=("0", "1"),
        labels=labels,
        features={"distance": rng.exponential(3, size=n), "fare": rng.normal(15, 4, size=n)},
        reference=reference,
        true_labels=truth if reference else None,
    )


def feedback(batch: PredictionBatch, fraction: float, delay: float) -> FeedbackBatch:
    n = int(len(batch) * fraction)
    rng = np.random.default_rng(len(batch))
    flip = rng.uniform(size=n) < 0.2
    assert batch.labels is not None
    labels = np.where(flip, np.where(batch.labels[:n] == "1", "0", "1"), batch.labels[:n])
    return FeedbackBatch(
        key=FEEDBACK_KEY,
        ids=batch.ids[:n].copy(),
        labels=labels,
        timestamps=batch.timestamps[:n] + delay,
    )


def kpi(day: int, value: float) -> KpiRecord:
    return KpiRecord(Key("taxi", "serve", "tip"), "revenue_per_trip", value, T0 + day * DAY)


def stream() -> list[Record]:
    """The whole scenario in event-time order."""
    out: list[Record] = []
    reference = predictions(0, 400, T0 - DAY, reference=True)
    out.append(reference)
    for day in (1, 2):
        out += [
            run(day, ok=day == 1),
            check(day, passed=day == 1),
            summary(day, "input"),
            summary(day, "output", shift=3.0 * (day - 1)),
            sample(day),
        ]
        live = predictions(1000 * day, 300, T0 + day * DAY)
        out += [live, feedback(live, 0.6, 3600.0), kpi(day, 2.0 + day)]
    return out


def extra() -> list[Record]:
    """Records of every type for a third day, to continue a stream after a restore."""
    live = predictions(5000, 100, T0 + 3 * DAY)
    return [
        run(3),
        check(3, True),
        summary(3, "output"),
        sample(3),
        live,
        feedback(live, 0.5, 60.0),
        kpi(3, 4.0),
    ]


def to_json_safe(obj: object) -> str:
    """Deterministic JSON, so two query() results compare equal (NaN stays NaN)."""
    return json.dumps(obj, sort_keys=True, default=repr)
