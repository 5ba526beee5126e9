"""The taxi scenario: deterministic, realistic in shape, and each incident does what it claims."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from otel_mlobs.scenarios import (
    DEFAULT_INCIDENTS,
    INCIDENT_NAMES,
    LABEL,
    PAYMENT_TYPES,
    Incident,
    TaxiScenario,
    parse_incidents,
)
from otel_mlobs.scenarios.incidents import RIDER_COLUMNS, WEATHER_COLUMNS
from otel_mlobs.scenarios.taxi import RAW_COLUMNS
from otel_mlobs.scenarios.transforms import build_features, clean_trips, model_matrix
from otel_mlobs.scenarios.zones import ZONES

D = dt.date.fromisoformat
ROWS = 1500


def scenario(*incidents: Incident, seed: int = 3, rows: int = ROWS) -> TaxiScenario:
    return TaxiScenario(
        seed=seed, start="2025-12-26", days=8, rows_per_day=rows, incidents=incidents, train_days=2
    )


def sources_equal(a, b) -> None:
    pd.testing.assert_frame_equal(a.trips, b.trips)
    pd.testing.assert_frame_equal(a.rider_history, b.rider_history)
    pd.testing.assert_frame_equal(a.weather, b.weather)
    pd.testing.assert_frame_equal(a.feedback, b.feedback)


def changed_columns(a: pd.DataFrame, b: pd.DataFrame) -> set[str]:
    assert list(a.columns) == list(b.columns)
    return {c for c in a.columns if not a[c].equals(b[c])}


# --- determinism and shape ---------------------------------------------------------------------


def test_same_seed_same_day_and_day_independent_of_range():
    a = scenario().day("2025-12-28")
    b = scenario().day("2025-12-28")
    sources_equal(a, b)
    # Generating from another start date gives the same data for the same calendar day.
    c = TaxiScenario(seed=3, start="2025-12-28", days=2, rows_per_day=ROWS).day(0)
    sources_equal(a, c)


def test_other_seed_other_data():
    a = scenario(seed=3).day(0).trips
    b = scenario(seed=4).day(0).trips
    assert not a["trip_distance"].equals(b["trip_distance"])


def test_tlc_shape_codes_and_zones():
    day = scenario().day(1)
    trips = day.trips
    assert tuple(trips.columns) == RAW_COLUMNS
    assert trips["trip_id"].is_unique
    pairs = set(zip(trips["payment_type"], trips["payment_type_name"], strict=True))
    assert pairs <= set(PAYMENT_TYPES.items())
    assert {1, 2} <= set(trips["payment_type"])
    known = {(z.location_id, z.name, z.borough) for z in ZONES}
    seen = set(
        zip(trips["PULocationID"], trips["pickup_zone"], trips["pickup_borough"], strict=True)
    )
    assert seen <= known and len(seen) > 25
    assert set(trips["VendorID"]) == {1, 2}
    ok = trips["fare_amount"] > 0
    assert (trips.loc[ok, "tpep_dropoff_datetime"] > trips.loc[ok, "tpep_pickup_datetime"]).all()
    money = [
        "fare_amount",
        "extra",
        "mta_tax",
        "tip_amount",
        "tolls_amount",
        "improvement_surcharge",
        "congestion_surcharge",
        "Airport_fee",
    ]
    np.testing.assert_allclose(trips[money].sum(axis=1), trips["total_amount"], atol=0.011)
    # Tips are recorded for card payments only.
    assert (trips.loc[trips["payment_type"] != 1, "tip_amount"] == 0).all()
    assert len(day.weather) == 24 and set(WEATHER_COLUMNS) <= set(day.weather.columns)
    assert list(day.rider_history.columns) == ["rider_id", *RIDER_COLUMNS]
    assert day.rider_history["rider_id"].is_unique


def test_seasonality_hourly_weekly_and_holiday():
    s = TaxiScenario(seed=5, start="2025-12-15", days=14, rows_per_day=3000, train_days=2)
    days = list(s)
    hours = pd.concat([d.trips["tpep_pickup_datetime"].dt.hour for d in days])
    counts = hours.value_counts()
    assert counts[4] * 4 < counts[18]  # dead of night vs evening rush
    weekday_late = np.mean(
        [(d.trips["tpep_pickup_datetime"].dt.hour < 3).mean() for d in days if d.date.weekday() < 5]
    )
    weekend_late = np.mean(
        [
            (d.trips["tpep_pickup_datetime"].dt.hour < 3).mean()
            for d in days
            if d.date.weekday() >= 5
        ]
    )
    assert weekend_late > 1.5 * weekday_late
    sizes = {d.date: len(d.trips) for d in days}
    assert sizes[D("2025-12-25")] < 0.75 * sizes[D("2025-12-18")]  # Christmas vs a Thursday


def test_a_day_is_fast():
    s = TaxiScenario(seed=0, rows_per_day=5000)
    s.day(0)
    best = min(_timed(s.day, i) for i in range(1, 6))
    assert best < 0.1


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def test_feedback_delays_hours_some_days_some_never():
    day = scenario().day(2)
    fb = day.feedback.merge(day.trips[["trip_id", "tpep_dropoff_datetime"]], on="trip_id")
    delay_h = (fb["label_time"] - fb["tpep_dropoff_datetime"]).dt.total_seconds() / 3600
    known = delay_h.dropna()
    assert 2 < known.median() < 12
    assert 0.02 < (known > 24).mean() < 0.2
    assert 0.005 < delay_h.isna().mean() < 0.05
    assert (known > 0).all()


def test_labels_learnable_with_noise():
    s = TaxiScenario(seed=17, start="2026-02-02", days=5, rows_per_day=2500, train_days=3)

    def labelled(i: int) -> pd.DataFrame:
        day = s.day(i)
        f = build_features(clean_trips(day.trips).trips, day.rider_history, day.weather)
        return f.merge(day.feedback[["trip_id", LABEL]], on="trip_id")

    train = pd.concat([labelled(i) for i in range(3)])
    test = labelled(4)
    forest = RandomForestClassifier(40, max_depth=10, min_samples_leaf=5, random_state=0)
    forest.fit(model_matrix(train), train[LABEL])
    accuracy = (forest.predict(model_matrix(test)) == test[LABEL]).mean()
    majority = max(test[LABEL].mean(), 1 - test[LABEL].mean())
    assert 0.74 < accuracy < 0.88
    assert accuracy > majority + 0.1


# --- incidents ---------------------------------------------------------------------------------

DATA_INCIDENTS = ["corruption", "staleness", "schema_change", "missing_values", "concept_shift"]


@pytest.mark.parametrize("name", DATA_INCIDENTS)
def test_incident_changes_exactly_its_ground_truth(name):
    inc = Incident(name, "2025-12-28", "2025-12-29")
    clean, bad = scenario(), scenario(inc)
    truth = bad.ground_truth()[0]
    assert truth.incident == name
    for date in bad.dates:
        a, b = clean.day(date), bad.day(date)
        if not inc.active(date):
            sources_equal(a, b)
            continue
        datasets = {"raw_trips": "trips", "rider_history": "rider_history", "weather": "weather"}
        if name == "staleness":  # a different table (other riders); tested on its own below
            del datasets["rider_history"]
        for dataset, attr in datasets.items():
            moved = changed_columns(getattr(a, attr), getattr(b, attr))
            expected = set(truth.columns) if dataset == truth.dataset else set()
            assert moved == expected, (date, dataset)


def test_corruption_is_kilometres():
    inc = Incident("corruption", "2025-12-28")
    a, b = scenario().day("2025-12-29"), scenario(inc).day("2025-12-29")
    np.testing.assert_allclose(
        b.trips["trip_distance"], (a.trips["trip_distance"] * 1.609), atol=0.006
    )


def test_staleness_repeats_the_last_good_extract():
    inc = Incident("staleness", "2025-12-28")
    s = scenario(inc)
    before, d1, d2 = (s.day(x).rider_history for x in ("2025-12-27", "2025-12-28", "2025-12-30"))
    pd.testing.assert_frame_equal(d1, before)
    pd.testing.assert_frame_equal(d2, before)
    # A healthy extract covers each day's riders with current figures.
    healthy = scenario().day("2025-12-30")
    assert set(healthy.rider_history["rider_id"]) == set(healthy.trips["rider_id"])
    assert not healthy.rider_history.equals(before)
    # The stale table misses most of today's riders and has stopped counting their trips.
    day = s.day("2025-12-30")
    features = build_features(clean_trips(day.trips).trips, day.rider_history, day.weather)
    assert features["rider_trip_count"].isna().mean() > 0.3
    good = build_features(clean_trips(healthy.trips).trips, healthy.rider_history, day.weather)
    assert good["rider_trip_count"].notna().all()


def test_schema_change_renames_only_credit_card():
    inc = Incident("schema_change", "2025-12-28")
    a, b = scenario().day("2025-12-28").trips, scenario(inc).day("2025-12-28").trips
    was_card = a["payment_type_name"] == "Credit card"
    assert (b.loc[was_card, "payment_type_name"] == "Card").all()
    assert (b.loc[~was_card, "payment_type_name"] == a.loc[~was_card, "payment_type_name"]).all()
    assert "Credit card" not in set(b["payment_type_name"])
    assert b["payment_type"].equals(a["payment_type"])


def test_missing_values_vendor_variant():
    inc = Incident("missing_values", "2025-12-28", params={"source": "vendor"})
    truth = inc.truth()
    assert (truth.component, truth.dataset) == ("clean", "raw_trips")
    a, b = scenario().day("2025-12-28"), scenario(inc).day("2025-12-28")
    hit = b.trips["VendorID"] == 2
    assert b.trips.loc[hit, list(truth.columns)].isna().all().all()
    assert b.trips.loc[~hit, list(truth.columns)].notna().all().all()
    assert changed_columns(a.trips, b.trips) == set(truth.columns)
    assert not set(b.feedback["trip_id"]) & set(b.trips.loc[hit, "trip_id"])
    assert clean_trips(b.trips).dropped["bad_fare"] >= hit.sum()


def test_concept_shift_lowers_tips_not_inputs():
    inc = Incident("concept_shift", "2025-12-28")
    a, b = scenario().day("2025-12-30"), scenario(inc).day("2025-12-30")
    assert b.feedback[LABEL].mean() < a.feedback[LABEL].mean() - 0.05
    features = [c for c in RAW_COLUMNS if c not in ("tip_amount", "total_amount")]
    pd.testing.assert_frame_equal(a.trips[features], b.trips[features])


def test_covariate_shift_adds_a_times_square_burst():
    inc = Incident("covariate_shift", "2025-12-31", "2025-12-31")
    a, b = scenario().day("2025-12-31"), scenario(inc).day("2025-12-31")
    n = len(a.trips)
    assert len(b.trips) > 1.3 * n
    pd.testing.assert_frame_equal(b.trips.iloc[:n], a.trips)  # the normal day is untouched
    burst = b.trips.iloc[n:]
    assert (burst["pickup_zone"] == "Times Sq/Theatre District").mean() > 0.6
    assert (burst["tpep_pickup_datetime"].dt.hour >= 19).all()
    assert burst["trip_distance"].median() > 1.5 * a.trips["trip_distance"].median()
    assert burst["passenger_count"].mean() > a.trips["passenger_count"].mean() + 0.5
    assert b.trips["trip_id"].is_unique
    assert set(b.rider_history["rider_id"]) == set(b.trips["rider_id"])
    sources_equal(scenario().day("2026-01-01"), scenario(inc).day("2026-01-01"))


def test_feedback_outage_holds_one_neighbourhood():
    inc = Incident("feedback_outage", "2025-12-28", "2025-12-28")
    a, b = scenario().day("2025-12-28"), scenario(inc).day("2025-12-28")
    pd.testing.assert_frame_equal(a.trips, b.trips)
    zone = a.trips.set_index("trip_id")["pickup_zone"]
    held = zone.loc[b.feedback["trip_id"]].to_numpy() == "East Village"
    assert held.sum() > 10
    delay = (b.feedback["label_time"] - a.feedback["label_time"]).dt.total_seconds() / 86400
    assert (delay[held].dropna() >= 3).all() and (delay[held].dropna() <= 7).all()
    assert (delay[~held].dropna() == 0).all()
    assert inc.truth().segment == {"pickup_zone": "East Village"}


def test_parse_and_errors():
    inc = Incident.parse("corruption@2025-12-28:2025-12-30")
    assert (inc.name, inc.start, inc.end) == ("corruption", D("2025-12-28"), D("2025-12-30"))
    assert inc.active(D("2025-12-30")) and not inc.active(D("2025-12-31"))
    assert Incident.parse("staleness@2025-12-28").end is None
    assert str(inc) == "corruption@2025-12-28:2025-12-30"
    assert parse_incidents("none") == [] and parse_incidents("") == []
    assert [i.name for i in parse_incidents("corruption@2025-12-28, staleness@2026-01-01")] == [
        "corruption",
        "staleness",
    ]
    with pytest.raises(ValueError, match="unknown incident 'nope'.*corruption"):
        Incident.parse("nope@2025-12-28")
    with pytest.raises(ValueError, match="bad start date"):
        Incident.parse("corruption@28/12/2025")
    with pytest.raises(ValueError, match="expected name@"):
        Incident.parse("corruption")
    with pytest.raises(ValueError, match="before start"):
        Incident.parse("corruption@2025-12-28:2025-12-01")
    with pytest.raises(ValueError, match="unknown params"):
        Incident("corruption", "2025-12-28", params={"zone": "x"})
    with pytest.raises(ValueError, match="rows_per_day"):
        TaxiScenario(rows_per_day=0)
    with pytest.raises(ValueError, match="train_days"):
        TaxiScenario(days=3, train_days=3)


def test_ground_truth_covers_every_incident_kind():
    s = TaxiScenario(seed=0, incidents=DEFAULT_INCIDENTS)
    truths = s.ground_truth()
    assert {t.incident for t in truths} == set(INCIDENT_NAMES)
    kinds = {t.incident: t.kind for t in truths}
    assert kinds["covariate_shift"] == kinds["concept_shift"] == "natural_shift"
    assert kinds["corruption"] == "pipeline_bug"
    # Live traffic starts after training; no incident touches the training days.
    assert min(t.start for t in truths) >= s.dates[s.train_days]
    # An incident outside the simulated range has no ground truth there.
    late = TaxiScenario(seed=0, days=3, train_days=1, incidents=["corruption@2027-01-01"])
    assert late.ground_truth() == []
