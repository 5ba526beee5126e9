"""Hourly New York winter weather: the scenario's second source, joined to trips by hour.

Rain raises demand and tips a little, so weather is a real (weak) feature rather than noise, and a
failed weather feed hurts the model measurably.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

_MEAN_TEMP_F = 39.0
_DAY_TEMP_SD_F = 7.0
_DIURNAL_AMPLITUDE_F = 5.0
_WET_DAY_P = 0.35


def hourly_weather(rng: np.random.Generator, day: date) -> pd.DataFrame:
    """24 rows, one per hour of ``day``: temperature, precipitation, wind, visibility, snow."""
    hours = np.arange(24)
    # Coldest around 6 am, warmest around 3 pm.
    diurnal = -_DIURNAL_AMPLITUDE_F * np.cos((hours - 3) / 24 * 2 * np.pi)
    temperature = _MEAN_TEMP_F + rng.normal(0, _DAY_TEMP_SD_F) + diurnal + rng.normal(0, 1.0, 24)

    precipitation = np.zeros(24)
    if rng.random() < _WET_DAY_P:
        first = int(rng.integers(0, 24))
        length = int(rng.integers(3, 11))
        wet = (hours >= first) & (hours < first + length)
        precipitation[wet] = rng.gamma(1.5, 0.03, int(wet.sum()))
    else:
        rng.random()  # keep the stream aligned whether or not it rains
    snowing = (precipitation > 0) & (temperature <= 33.0)
    snow = np.where(snowing, precipitation * 10.0, 0.0)

    wind = np.clip(rng.normal(10.0, 3.0) + rng.normal(0, 2.0, 24) + 20 * precipitation, 0, None)
    visibility = np.where(
        snowing,
        rng.uniform(0.5, 3.0, 24),
        np.where(precipitation > 0, rng.uniform(3.0, 8.0, 24), 10.0),
    )
    start = pd.Timestamp(day)
    return pd.DataFrame(
        {
            "hour": pd.date_range(start, periods=24, freq="h").as_unit("us"),
            "temperature_f": temperature.round(1),
            "precipitation_in": precipitation.round(3),
            "wind_speed_mph": wind.round(1),
            "visibility_mi": visibility.round(1),
            "snow_in": snow.round(2),
        }
    )
