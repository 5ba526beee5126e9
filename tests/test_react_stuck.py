"""Stuck feedback: a stalled segment found as a predicate, gone when its labels arrive late."""

from __future__ import annotations

import numpy as np

from otel_mlobs.processor.analyzers.react import StuckFeedbackAnalyzer
from otel_mlobs.processor.analyzers.react.stuck_feedback import hash_ids
from otel_mlobs.processor.records import FeedbackBatch, Key, PredictionBatch

HOUR = 3600.0
ZONES = np.array(["East Village", "SoHo", "Harlem", "Astoria", "Midtown"])
KEY = Key("taxi", "", "tips")


def day_of_traffic(
    a: StuckFeedbackAnalyzer,
    day: int,
    rng: np.random.Generator,
    stuck_zone: str | None = None,
    n: int = 2000,
) -> np.ndarray:
    """One day's predictions; feedback a few hours later, some never, the stuck zone's held."""
    t0 = day * 24 * HOUR
    ids = np.char.add(f"d{day}-", np.arange(n).astype(str))
    ts = t0 + rng.uniform(0, 24 * HOUR, n)
    zone = ZONES[rng.integers(0, len(ZONES), n)]
    pay = np.where(rng.random(n) < 0.6, "card", "cash")
    features = {"pickup_zone": zone, "payment_type": pay, "distance": rng.gamma(2.0, 1.5, n)}
    a.update(PredictionBatch(Key("taxi", "serve", "tips"), "v1", ids, ts, None, (), None, features))
    delay = rng.lognormal(np.log(4 * HOUR), 0.8, n)
    never = rng.random(n) < 0.05
    held = (zone == stuck_zone) | never
    arrived = ts + delay <= t0 + 24 * HOUR
    done = arrived & ~held
    a.update(FeedbackBatch(KEY, ids[done], np.ones(done.sum()).astype(str), (ts + delay)[done]))
    # labels that settle overnight arrive with tomorrow's batch (also not the held ones)
    late = ~arrived & ~held
    a.update(
        FeedbackBatch(
            KEY,
            ids[late],
            np.ones(late.sum()).astype(str),
            np.minimum((ts + delay)[late], t0 + 30 * HOUR),
        )
    )
    return ids[zone == stuck_zone]


def test_stuck_zone_found_and_removed_when_feedback_arrives_late():
    rng = np.random.default_rng(3)
    a = StuckFeedbackAnalyzer(KEY, overdue_after_s=12 * HOUR, capacity=4000)
    for d in range(5):
        day_of_traffic(a, d, rng)
    assert a.patterns() == []  # the usual 5% never-labelled is not a pattern
    held = day_of_traffic(a, 5, rng, stuck_zone="East Village")
    day_of_traffic(a, 6, rng)
    top = a.patterns()[0]
    assert top["pattern"] == "pickup_zone = East Village"
    assert top["coverage"] >= 0.9 and top["lift"] > 2
    names = {(m.name, m.labels.get("pattern")) for m in a.metrics()}
    assert ("mlobs_stuck_feedback_pattern_coverage", top["pattern"]) in names
    # the held labels finally come: every one of them is a deletion from the overdue counts
    a.update(
        FeedbackBatch(KEY, held, np.ones(len(held)).astype(str), np.full(len(held), 7 * 24 * HOUR))
    )
    assert all("East Village" not in p["pattern"] for p in a.patterns())
    assert a.query()["late_feedback_sampled"] > 0


def test_sample_is_bounded_and_uniform_by_hash():
    rng = np.random.default_rng(0)
    a = StuckFeedbackAnalyzer(KEY, capacity=500, overdue_after_s=HOUR)
    for d in range(3):
        day_of_traffic(a, d, rng, n=3000)
    assert a.sampled <= 500 and 0 < a.sample_rate < 0.5
    kept = a._hash[a._state != 0]
    assert kept.max() < a._tau  # exactly the ids hashing below the threshold
    b = StuckFeedbackAnalyzer(KEY, capacity=500, overdue_after_s=HOUR)
    b.restore(a.snapshot())
    assert [(m.name, dict(m.labels), m.value) for m in b.metrics()] == [
        (m.name, dict(m.labels), m.value) for m in a.metrics()
    ]


def test_hash_is_stable_across_string_widths_and_types():
    ids = np.array(["a", "trip-123", "ü"])
    wide = ids.astype("<U40")
    assert (hash_ids(ids) == hash_ids(wide)).all()
    assert (hash_ids(np.array([b"a", b"trip-123"])) == hash_ids(ids[:2])).all()
    assert len(set(hash_ids(np.arange(10000).astype(str)).tolist())) == 10000


def _city_day(
    a: StuckFeedbackAnalyzer,
    day: int,
    rng: np.random.Generator,
    stuck: str | None = None,
    n: int = 3000,
) -> None:
    """Twenty zones; 6% of labels never come, drawn at random; the stuck zone's are held."""
    zones = np.array([f"zone {i:02d}" for i in range(20)])
    ids = np.char.add(f"d{day}-", np.arange(n).astype(str))
    ts = day * 24 * HOUR + rng.uniform(0, 24 * HOUR, n)
    zone = zones[rng.integers(0, len(zones), n)]
    a.update(
        PredictionBatch(
            Key("taxi", "serve", "tips"), "v1", ids, ts, None, (), None, {"pickup_zone": zone}
        )
    )
    done = (rng.random(n) >= 0.06) & (zone != stuck)
    a.update(
        FeedbackBatch(
            KEY,
            ids[done],
            np.ones(done.sum()).astype(str),
            ts[done] + rng.uniform(1, 4, done.sum()) * HOUR,
        )
    )


def test_a_stalled_zone_is_its_whole_excess_however_late_the_city_runs_by_chance():
    # The overdue count of the other nineteen zones wanders by chance around the usual 6%; that
    # noise is not excess, so the stalled zone explains all of it on its first overdue day.
    for seed in range(6):
        rng = np.random.default_rng(seed)
        a = StuckFeedbackAnalyzer(KEY, overdue_after_s=12 * HOUR, capacity=30_000)
        for d in range(6):
            _city_day(a, d, rng)
        assert a.patterns() == [], seed  # chance alone describes nothing
        _city_day(a, 6, rng, stuck="zone 03")
        _city_day(a, 7, rng)
        top = a.patterns()[0]
        assert top["pattern"] == "pickup_zone = zone 03" and top["coverage"] >= 0.9, seed


def test_lazy_settling_reports_what_settling_after_every_batch_reports():
    # ingest passes over the whole sample only once per settling interval of event time;
    # reads settle first, so nothing a reader sees depends on it
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    eager = StuckFeedbackAnalyzer(KEY, overdue_after_s=12 * HOUR, capacity=3000)
    lazy = StuckFeedbackAnalyzer(KEY, overdue_after_s=12 * HOUR, capacity=3000)
    original = eager.update

    def update_and_settle(record):
        original(record)
        eager.settle()

    eager.update = update_and_settle  # type: ignore[method-assign]
    for d in range(7):
        stuck = "Harlem" if d == 5 else None
        day_of_traffic(eager, d, rng_a, stuck_zone=stuck)
        day_of_traffic(lazy, d, rng_b, stuck_zone=stuck)
    assert [(m.name, dict(m.labels), m.value) for m in lazy.metrics()] == [
        (m.name, dict(m.labels), m.value) for m in eager.metrics()
    ]
    assert lazy.patterns()[0]["pattern"] == "pickup_zone = Harlem"
