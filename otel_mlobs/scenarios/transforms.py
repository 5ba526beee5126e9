"""The taxi pipeline's data steps as plain functions: clean the feed, build model features.

They know nothing of observability, so tests and benchmarks can call them directly; the
pipeline module wraps them in instrumented component runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from otel_mlobs.scenarios.incidents import RIDER_COLUMNS, WEATHER_COLUMNS
from otel_mlobs.scenarios.taxi import PAYMENT_TYPES
from otel_mlobs.scenarios.zones import AIRPORT_IDS

FEATURES: tuple[str, ...] = (
    "trip_distance",
    "trip_minutes",
    "fare_amount",
    "extra",
    "tolls_amount",
    "passenger_count",
    "pickup_hour",
    "pickup_dow",
    "PULocationID",
    "DOLocationID",
    "is_airport",
    "pay_card",
    "pay_cash",
    *RIDER_COLUMNS,
    *WEATHER_COLUMNS,
)
"""Model inputs, all numeric. NaN is allowed: the forest routes missing values itself."""

BUCKET_FEATURES: tuple[str, ...] = (
    "pickup_zone",
    "payment_type_name",
    "pickup_hour",
    "trip_distance",
)
"""Columns sent along with predictions so the processor can slice performance."""

_REQUIRED = (
    "trip_id",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "trip_distance",
    "fare_amount",
    "payment_type",
    "payment_type_name",
    "PULocationID",
    "DOLocationID",
)


@dataclass(frozen=True)
class CleanResult:
    """Clean rows plus why the others went, for the component's checks."""

    trips: pd.DataFrame
    dropped: dict[str, int]


def clean_trips(raw: pd.DataFrame) -> CleanResult:
    """Drop rows no model should see: meter glitches, voids, impossible times, unknown codes."""
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        raise ValueError(f"trip feed lacks required columns {missing}")
    pickup = raw["tpep_pickup_datetime"].to_numpy()
    dropoff = raw["tpep_dropoff_datetime"].to_numpy()
    fare = raw["fare_amount"].to_numpy(dtype=float)
    reasons = {
        "zero_distance": ~(raw["trip_distance"].to_numpy(dtype=float) > 0),
        "bad_fare": ~(fare > 0),  # NaN fares fail too
        "bad_times": ~(dropoff > pickup),
        "unknown_payment": ~raw["payment_type"].isin(list(PAYMENT_TYPES)).to_numpy(),
    }
    bad = np.zeros(len(raw), dtype=bool)
    for mask in reasons.values():
        bad |= mask
    return CleanResult(
        trips=raw.loc[~bad].reset_index(drop=True),
        dropped={name: int(mask.sum()) for name, mask in reasons.items()},
    )


def build_features(
    trips: pd.DataFrame, rider_history: pd.DataFrame, weather: pd.DataFrame
) -> pd.DataFrame:
    """Join the three sources (riders by ``rider_id``, weather by pickup hour) into model inputs."""
    pickup = trips["tpep_pickup_datetime"]
    minutes = (trips["tpep_dropoff_datetime"] - pickup).dt.total_seconds() / 60.0
    payment = trips["payment_type_name"].to_numpy()
    airports = list(AIRPORT_IDS)
    out = pd.DataFrame(
        {
            "trip_id": trips["trip_id"].to_numpy(),
            "tpep_pickup_datetime": pickup.to_numpy(),
            "pickup_zone": trips["pickup_zone"].to_numpy(),
            "payment_type_name": payment,
            "trip_distance": trips["trip_distance"].to_numpy(dtype=float),
            "trip_minutes": minutes.to_numpy().round(2),
            "fare_amount": trips["fare_amount"].to_numpy(dtype=float),
            "extra": trips["extra"].to_numpy(dtype=float),
            "tolls_amount": trips["tolls_amount"].to_numpy(dtype=float),
            "passenger_count": trips["passenger_count"].to_numpy(dtype=float),
            "pickup_hour": pickup.dt.hour.to_numpy(dtype=np.int64),
            "pickup_dow": pickup.dt.day_of_week.to_numpy(dtype=np.int64),
            "PULocationID": trips["PULocationID"].to_numpy(dtype=np.int64),
            "DOLocationID": trips["DOLocationID"].to_numpy(dtype=np.int64),
            "is_airport": (
                trips["PULocationID"].isin(airports) | trips["DOLocationID"].isin(airports)
            ).to_numpy(dtype=np.int64),
            "pay_card": (payment == PAYMENT_TYPES[1]).astype(np.int64),
            "pay_cash": (payment == PAYMENT_TYPES[2]).astype(np.int64),
            "_hour_key": pickup.dt.floor("h").to_numpy(),
            "rider_id": trips["rider_id"].to_numpy(),
        }
    )
    history = rider_history.drop_duplicates("rider_id")[["rider_id", *RIDER_COLUMNS]]
    out = out.merge(history, on="rider_id", how="left").drop(columns="rider_id")
    hourly = weather.rename(columns={"hour": "_hour_key"})
    hourly["_hour_key"] = hourly["_hour_key"].astype(out["_hour_key"].dtype)
    out = out.merge(hourly[["_hour_key", *WEATHER_COLUMNS]], on="_hour_key", how="left")
    return out.drop(columns="_hour_key")


def model_matrix(features: pd.DataFrame) -> np.ndarray:
    """The float matrix the classifier sees, columns in :data:`FEATURES` order."""
    return features.loc[:, list(FEATURES)].to_numpy(dtype=np.float64)
