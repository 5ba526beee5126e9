"""Synthetic NYC yellow-taxi days shaped like the TLC Yellow Trip records, with incidents.

Each simulated day has three sources, as a real tip-prediction pipeline would:

* ``trips`` — the trip feed, TLC column names and codes (VendorID, tpep_pickup_datetime, ...,
  payment_type with its TLC name beside it), plus a few dirty rows for the clean step to drop;
* ``rider_history`` — the day's extract of a rider feature table, keyed by ``rider_id``: each
  rider's average tip share and trip count so far;
* ``weather`` — 24 hourly rows (temperature, precipitation, wind, visibility, snow).

The task is "will the tip exceed 20% of the fare?". Tips are only recorded for card payments (as
in the TLC data), and a card rider's tip share follows their personal habit plus trip, time,
place and weather effects and noise, so a random forest learns it to roughly 80% accuracy.
``feedback`` holds each trip's label and when it becomes known (a settlement delay of hours,
sometimes days, sometimes never).

Everything is drawn from numpy generators seeded by ``(seed, date)`` and split into independent
streams per concern, so a day is the same whichever range it is generated in, and switching an
incident on changes exactly the columns its ground truth names and nothing else.

>>> s = TaxiScenario(seed=1, start="2025-12-20", days=2, rows_per_day=500)
>>> s.day(0).trips.shape[0] > 0
True
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from otel_mlobs.scenarios.incidents import (
    WEATHER_COLUMNS,
    GroundTruth,
    Incident,
)
from otel_mlobs.scenarios.weather import hourly_weather
from otel_mlobs.scenarios.zones import JFK_ID, zone_table

LABEL = "tip_over_20pct"
"""Name of the binary label: tip_amount > 0.2 * fare_amount."""

PAYMENT_TYPES: dict[int, str] = {
    1: "Credit card",
    2: "Cash",
    3: "No charge",
    4: "Dispute",
    5: "Unknown",
    6: "Voided trip",
}
"""TLC payment_type codes and their names."""

VENDORS: dict[int, str] = {1: "Creative Mobile Technologies", 2: "Curb Mobility"}

N_RIDERS = 40_000
_RIDER_EPOCH = date(2025, 1, 1)  # rider trip counts grow from here

# Share of a day's trips per pickup hour (NYC yellow cabs: quiet 4-5 am, evening peak; weekends
# shift late into the night).
_HOURLY_WEEKDAY = np.array(
    [2.2, 1.3, 0.8, 0.6, 0.6, 1.0, 2.2, 3.8, 4.8, 4.9, 4.6, 4.7,
     5.0, 5.0, 5.2, 5.4, 5.5, 6.1, 6.6, 6.3, 5.6, 5.4, 5.0, 3.9]
)  # fmt: skip
_HOURLY_WEEKEND = np.array(
    [4.4, 3.6, 2.7, 1.8, 1.1, 0.8, 1.0, 1.5, 2.3, 3.3, 4.2, 4.8,
     5.1, 5.2, 5.3, 5.3, 5.3, 5.5, 5.7, 5.6, 5.2, 5.1, 5.0, 4.8]
)  # fmt: skip
_WEEKDAY_FACTOR = np.array([0.88, 0.97, 1.00, 1.06, 1.08, 1.05, 0.94])  # Mon..Sun
_HOLIDAY_FACTOR = {(12, 24): 0.80, (12, 25): 0.60, (12, 31): 0.90, (1, 1): 0.75}
_RAIN_DEMAND = 0.25  # extra share of trips in a wet hour
_PASSENGERS = np.array([1, 2, 3, 4, 5, 6])
_PASSENGER_P = np.array([0.72, 0.15, 0.05, 0.03, 0.03, 0.02])
_NON_CARD = np.array([2, 3, 4])
_NON_CARD_P = np.array([0.94, 0.035, 0.025])

_TIP_NOISE_SD = 0.05
_NO_TIP_P = 0.07
_HISTORY_NOISE = 0.10  # rider_avg_tip_pct error for a rider with one past trip

RAW_COLUMNS: tuple[str, ...] = (
    "trip_id",
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "pickup_zone",
    "pickup_borough",
    "DOLocationID",
    "dropoff_zone",
    "dropoff_borough",
    "payment_type",
    "payment_type_name",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "congestion_surcharge",
    "Airport_fee",
    "total_amount",
    "rider_id",
)


@dataclass(frozen=True)
class Riders:
    """The rider population: each rider's hidden tipping habit and observed history."""

    tip_habit: np.ndarray  # true mean tip share on card trips
    card_p: np.ndarray  # probability of paying by card
    base_count: np.ndarray  # trips before the rider epoch
    daily_rate: np.ndarray  # trips per day since then
    history_noise: np.ndarray  # standard-normal error of the recorded average

    @classmethod
    def draw(cls, seed: int) -> Riders:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x71D]))
        return cls(
            tip_habit=np.clip(rng.normal(0.18, 0.07, N_RIDERS), 0.0, 0.45),
            card_p=rng.beta(6.0, 2.0, N_RIDERS),
            base_count=np.floor(rng.lognormal(2.3, 1.0, N_RIDERS)).astype(np.int64),
            daily_rate=rng.gamma(1.0, 0.08, N_RIDERS),
            history_noise=rng.normal(0.0, 1.0, N_RIDERS),
        )

    def history(self, rider: np.ndarray, day: date) -> tuple[np.ndarray, np.ndarray]:
        """(rider_avg_tip_pct, rider_trip_count) as the history service reports them on ``day``."""
        elapsed = max((day - _RIDER_EPOCH).days, 0)
        count = self.base_count[rider] + np.floor(elapsed * self.daily_rate[rider]).astype(np.int64)
        noise = self.history_noise[rider] * _HISTORY_NOISE / np.sqrt(1.0 + count)
        avg = np.clip(self.tip_habit[rider] + noise, 0.0, 1.0).round(3)
        return avg, count


@dataclass(frozen=True)
class Day:
    """One simulated day: its three sources, its labels, and the incidents active on it."""

    date: date
    index: int
    trips: pd.DataFrame
    rider_history: pd.DataFrame
    weather: pd.DataFrame
    feedback: pd.DataFrame  # trip_id, tip_over_20pct, label_time (NaT: the label never comes)
    incidents: tuple[Incident, ...]

    @property
    def event_time(self) -> float:
        """Start of the day in seconds since the epoch (the day is read as UTC)."""
        return dt.datetime(
            self.date.year, self.date.month, self.date.day, tzinfo=dt.UTC
        ).timestamp()


@dataclass
class _Streams:
    weather: np.random.Generator
    trips: np.random.Generator
    tips: np.random.Generator
    feedback: np.random.Generator
    incident: np.random.Generator

    @classmethod
    def for_day(cls, seed: int, day: date) -> _Streams:
        children = np.random.SeedSequence([seed, day.toordinal()]).spawn(5)
        return cls(*(np.random.default_rng(c) for c in children))


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, axis=-1)
    return cdf / cdf[..., -1:]


def _pick(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling; ``cdf`` is 1-D (shared) or 2-D (one row per draw)."""
    if cdf.ndim == 1:
        return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
    return np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)


class TaxiScenario:
    """A run of simulated days with a schedule of incidents.

    Parameters
    ----------
    seed
        Seed of every random stream; same seed, same data.
    start
        First simulated day (``YYYY-MM-DD`` or a date).
    days
        Number of days.
    rows_per_day
        Mean trips per day; weekday, holiday and rain factors move each day around it.
    incidents
        :class:`Incident` objects (or their ``name@date`` text) to switch on.
    train_days
        Leading days whose labelled trips train the model; live inference starts after them.
        Defaults to 5 (fewer when the run is shorter).
    """

    def __init__(
        self,
        seed: int = 0,
        start: date | str = "2025-12-20",
        days: int = 21,
        rows_per_day: int = 5000,
        incidents: Iterable[Incident | str] = (),
        *,
        train_days: int | None = None,
    ) -> None:
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"Invalid 'seed' {seed!r}: a non-negative integer is required")
        if not isinstance(days, int | np.integer) or days < 2:
            raise ValueError(f"Invalid 'days' {days!r}: at least 2 days are required")
        if not isinstance(rows_per_day, int | np.integer) or rows_per_day < 20:
            raise ValueError(f"Invalid 'rows_per_day' {rows_per_day!r}: at least 20 is required")
        if train_days is None:
            train_days = min(5, days - 1)
        if not isinstance(train_days, int | np.integer) or not 1 <= train_days < days:
            raise ValueError(
                f"Invalid 'train_days' {train_days!r}: between 1 and days - 1 ({days - 1})"
            )
        self.seed = int(seed)
        self.start = Incident("corruption", start).start  # reuse the date validation
        self.days = int(days)
        self.rows_per_day = int(rows_per_day)
        self.train_days = int(train_days)
        self.incidents = tuple(
            i if isinstance(i, Incident) else Incident.parse(i) for i in incidents
        )
        self.dates = [self.start + dt.timedelta(days=i) for i in range(self.days)]
        self._riders = Riders.draw(self.seed)
        self._frozen: dict[date, pd.DataFrame] = {}

    def __repr__(self) -> str:
        names = ",".join(str(i) for i in self.incidents) or "none"
        return (
            f"TaxiScenario(seed={self.seed}, start={self.start}, days={self.days}, "
            f"rows_per_day={self.rows_per_day}, incidents={names})"
        )

    def __len__(self) -> int:
        return self.days

    def __iter__(self) -> Iterator[Day]:
        return (self.day(i) for i in range(self.days))

    def active(self, day: date) -> tuple[Incident, ...]:
        """Incidents switched on for ``day``."""
        return tuple(i for i in self.incidents if i.active(day))

    def ground_truth(self) -> list[GroundTruth]:
        """Answer keys of the incidents that touch the simulated range, in schedule order."""
        last = self.dates[-1]
        return [
            i.truth()
            for i in self.incidents
            if i.start <= last and (i.end is None or i.end >= self.start)  # type: ignore[operator]
        ]

    def day(self, which: int | date | str) -> Day:
        """Generate one day, by position in the range or by date."""
        if isinstance(which, int | np.integer):
            if not 0 <= which < self.days:
                raise IndexError(f"day {which} outside 0..{self.days - 1}")
            index = int(which)
        else:
            when = Incident("corruption", which).start
            if when not in self.dates:
                raise IndexError(f"{when} is outside {self.dates[0]}..{self.dates[-1]}")
            index = self.dates.index(when)
        day = self.dates[index]
        return self._generate(day, index, self.active(day))

    # --- generation ------------------------------------------------------------------------

    def _generate(self, day: date, index: int, incidents: tuple[Incident, ...]) -> Day:
        rs = _Streams.for_day(self.seed, day)
        by_name = {i.name: i for i in incidents}
        weather = hourly_weather(rs.weather, day)
        wet = weather["precipitation_in"].to_numpy() > 0

        weekend = day.weekday() >= 5
        base = _HOURLY_WEEKEND if weekend else _HOURLY_WEEKDAY
        hour_w = base / base.sum() * (1.0 + _RAIN_DEMAND * wet)
        factor = _WEEKDAY_FACTOR[day.weekday()] * _HOLIDAY_FACTOR.get((day.month, day.day), 1.0)
        n = max(1, round(self.rows_per_day * factor * hour_w.sum()))

        zt = zone_table()
        cols = _draw_trips(
            rs.trips,
            n,
            day,
            hour_cdf=_cdf(hour_w),
            pickup_cdfs=(_cdf(zt.weight_day), _cdf(zt.weight_night)),
            dropoff_cdf=_cdf(zt.weight_day[None, :] * (0.15 + np.exp(-zt.distance / 2.5))),
            passenger_cdf=_cdf(_PASSENGER_P),
            riders=self._riders,
        )
        _dirty_rows(rs.trips, cols)
        concept = by_name.get("concept_shift")
        _tips(rs.tips, rs.incident, cols, self._riders, wet, concept)
        if "covariate_shift" in by_name:
            inc = by_name["covariate_shift"]
            burst = _nye_burst(rs.incident, max(1, round(n * inc.params["burst"])), day, inc, self)
            _tips(rs.incident, rs.incident, burst, self._riders, wet, concept)
            cols = {k: np.concatenate([cols[k], burst[k]]) for k in cols}
        n_all = len(cols["hour"])
        trips = _trip_frame(cols, day)

        if "staleness" in by_name:
            rider_history = self._frozen_history(by_name["staleness"].start - dt.timedelta(days=1))
        else:
            rider_history = _history_table(self._riders, cols["rider"], day)

        label_time = _label_times(rs.feedback, cols, day)
        if "feedback_outage" in by_name:
            inc = by_name["feedback_outage"]
            held = trips["pickup_zone"].to_numpy() == inc.params["zone"]
            delay = rs.incident.uniform(inc.params["min_days"], inc.params["max_days"], n_all)
            label_time = np.where(
                held, label_time + (delay * 86400).astype("timedelta64[s]"), label_time
            )

        # Feed faults last, so labels are computed from the truth the feed failed to carry.
        if "corruption" in by_name:
            km = trips["trip_distance"].to_numpy() * by_name["corruption"].params["factor"]
            trips["trip_distance"] = km.round(2)
        if "schema_change" in by_name:
            p = by_name["schema_change"].params
            trips["payment_type_name"] = trips["payment_type_name"].replace(p["old"], p["new"])
        knowable = np.ones(n_all, dtype=bool)
        if "missing_values" in by_name:
            p = by_name["missing_values"].params
            if p["source"] == "weather":
                weather.loc[:, list(WEATHER_COLUMNS)] = np.nan
            else:
                hit = trips["VendorID"].to_numpy() == p["vendor"]
                trips.loc[hit, ["fare_amount", "tip_amount", "total_amount"]] = np.nan
                knowable = ~hit

        fare, tip = cols["fare_amount"], cols["tip_amount"]
        keep = knowable & (fare > 0) & (cols["trip_distance"] > 0)
        feedback = pd.DataFrame(
            {
                "trip_id": trips["trip_id"].to_numpy()[keep],
                LABEL: (tip > 0.2 * fare)[keep].astype(np.int8),
                "label_time": label_time[keep],
            }
        )
        return Day(day, index, trips, rider_history, weather, feedback, incidents)

    def _frozen_history(self, frozen_day: date) -> pd.DataFrame:
        """The last good day's rider-history table, which a stale extract keeps delivering."""
        if frozen_day not in self._frozen:
            self._frozen[frozen_day] = self._generate(frozen_day, -1, ()).rider_history
        return self._frozen[frozen_day].copy()


def _history_table(riders: Riders, rider: np.ndarray, day: date) -> pd.DataFrame:
    """The day's extract of the rider feature table: one row per rider who rode that day."""
    ids = np.unique(rider)
    avg, count = riders.history(ids, day)
    return pd.DataFrame({"rider_id": ids, "rider_avg_tip_pct": avg, "rider_trip_count": count})


# --- column generators (each one vectorized over the day's trips) -----------------------------


def _draw_trips(
    rng: np.random.Generator,
    n: int,
    day: date,
    *,
    hour_cdf: np.ndarray,
    pickup_cdfs: tuple[np.ndarray, np.ndarray],
    dropoff_cdf: np.ndarray,
    passenger_cdf: np.ndarray,
    riders: Riders,
) -> dict[str, np.ndarray]:
    zt = zone_table()
    hour = _pick(hour_cdf, rng.random(n))
    second = rng.integers(0, 3600, n)
    night = (hour >= 21) | (hour < 4)
    u = rng.random(n)
    pu = np.where(night, _pick(pickup_cdfs[1], u), _pick(pickup_cdfs[0], u))
    do = _pick(dropoff_cdf[pu], rng.random(n))
    airport = zt.is_airport[pu] | zt.is_airport[do]
    distance = np.maximum(zt.distance[pu, do] * rng.lognormal(0.0, 0.3, n), 0.1).round(2)

    weekend = day.weekday() >= 5
    mph = np.where(night, 17.0, np.where((hour >= 7) & (hour < 20), 9.5, 13.0))
    mph = mph * np.where(airport, 1.8, 1.0) * (1.1 if weekend else 1.0) * rng.lognormal(0, 0.2, n)
    duration_s = distance / mph * 3600.0 + rng.uniform(60, 240, n)

    rider = np.floor(N_RIDERS * rng.random(n) ** 2.2).astype(np.int64)
    card = rng.random(n) < np.clip(riders.card_p[rider] + 0.1 * airport, 0, 1)
    payment = np.where(card, 1, _NON_CARD[_pick(_cdf(_NON_CARD_P), rng.random(n))])
    jfk_manhattan = ((zt.ids[pu] == JFK_ID) & zt.is_manhattan[do]) | (
        (zt.ids[do] == JFK_ID) & zt.is_manhattan[pu]
    )
    negotiated = rng.random(n) < 0.003
    ratecode = np.where(jfk_manhattan, 2, np.where(negotiated, 5, 1))
    metered = 3.0 + 3.5 * distance + 0.2 * duration_s / 60.0
    fare = np.where(
        ratecode == 2, 70.0, metered * np.where(negotiated, rng.uniform(0.8, 1.2, n), 1)
    )
    cross_river = airport & (zt.is_manhattan[pu] | zt.is_manhattan[do])
    return {
        "hour": hour,
        "second": second,
        "night": night,
        "pu": pu,
        "do": do,
        "airport": airport,
        "trip_distance": distance,
        "duration_s": duration_s,
        "rider": rider,
        "passenger_count": _PASSENGERS[_pick(passenger_cdf, rng.random(n))],
        "VendorID": np.where(rng.random(n) < 0.3, 1, 2),
        "payment_type": payment,
        "RatecodeID": ratecode,
        "store_and_fwd_flag": np.where(rng.random(n) < 0.005, "Y", "N"),
        "fare_amount": fare.round(2),
        "tolls_amount": np.where(cross_river & (rng.random(n) < 0.6), 6.94, 0.0),
    }


def _dirty_rows(rng: np.random.Generator, cols: dict[str, np.ndarray]) -> None:
    """A few meter glitches and voided trips, as every real feed has, for the clean step."""
    n = len(cols["hour"])
    u = rng.random(n)
    zero = u < 0.004
    void = (u >= 0.004) & (u < 0.006)
    cols["trip_distance"] = np.where(zero, 0.0, cols["trip_distance"])
    cols["fare_amount"] = np.where(void, -cols["fare_amount"], cols["fare_amount"])
    cols["payment_type"] = np.where(void, 4, cols["payment_type"])


def _nye_burst(
    rng: np.random.Generator, m: int, day: date, inc: Incident, scenario: TaxiScenario
) -> dict[str, np.ndarray]:
    """Revellers leaving Times Square: evening pickups, far dropoffs, full cabs."""
    zt = zone_table()
    hot = zt.index_of(inc.params["zone"])
    pickup_w = np.full(len(zt.ids), 0.02)
    pickup_w[hot] = 3.0
    for name in ("Midtown Center", "Midtown North", "Clinton East"):
        pickup_w[zt.index_of(name)] = 0.15
    hour_w = np.zeros(24)
    hour_w[19:24] = [0.5, 0.8, 1.0, 1.3, 1.6]
    # Revellers head home: the further out of Manhattan, the likelier.
    far = (zt.weight_day * np.where(zt.is_manhattan, 0.4, 6.0))[None, :] * (0.3 + zt.distance)
    return _draw_trips(
        rng,
        m,
        day,
        hour_cdf=_cdf(hour_w),
        pickup_cdfs=(_cdf(pickup_w), _cdf(pickup_w)),
        dropoff_cdf=_cdf(far),
        passenger_cdf=_cdf(np.array([0.15, 0.35, 0.25, 0.2, 0.03, 0.02])),
        riders=scenario._riders,
    )


def _tips(
    rng: np.random.Generator,
    rng_incident: np.random.Generator,
    cols: dict[str, np.ndarray],
    riders: Riders,
    wet_hours: np.ndarray,
    concept: Incident | None,
) -> None:
    """Card riders tip by habit, shifted by the trip; cash tips are not recorded (TLC rule)."""
    zt = zone_table()
    n = len(cols["hour"])
    share = (
        riders.tip_habit[cols["rider"]]
        + 0.04 * (cols["trip_distance"] < 1.5)
        - 0.05 * cols["airport"]
        + 0.025 * cols["night"]
        + 0.02 * wet_hours[cols["hour"]]
        + 0.02 * (zt.boroughs[cols["do"]] == "Brooklyn")
        - 0.02 * (cols["passenger_count"] >= 3)
        + rng.normal(0.0, _TIP_NOISE_SD, n)
    )
    no_tip = rng.random(n) < _NO_TIP_P
    if concept is not None:
        share = share - concept.params["tip_drop"]
        no_tip |= rng_incident.random(n) < concept.params["extra_no_tip"]
    card = cols["payment_type"] == 1
    share = np.where(card & ~no_tip & (cols["fare_amount"] > 0), np.clip(share, 0.0, 0.6), 0.0)
    cols["tip_amount"] = (cols["fare_amount"] * share).round(2)


def _label_times(rng: np.random.Generator, cols: dict[str, np.ndarray], day: date) -> np.ndarray:
    """When each trip's tip becomes known: hours after dropoff, some days, a few never."""
    n = len(cols["hour"])
    hours = rng.lognormal(np.log(6.0), 1.0, n)
    hours = hours + np.where(rng.random(n) < 0.06, rng.uniform(24.0, 120.0, n), 0.0)
    never = rng.random(n) < 0.02
    arrival = _dropoff(cols, day) + (hours * 3600).astype("timedelta64[s]")
    return np.where(never, np.datetime64("NaT"), arrival).astype("datetime64[s]")


def _pickup(cols: dict[str, np.ndarray], day: date) -> np.ndarray:
    midnight = np.datetime64(day, "s")
    return midnight + (cols["hour"] * 3600 + cols["second"]).astype("timedelta64[s]")


def _dropoff(cols: dict[str, np.ndarray], day: date) -> np.ndarray:
    return _pickup(cols, day) + cols["duration_s"].astype("timedelta64[s]")


def _trip_frame(cols: dict[str, np.ndarray], day: date) -> pd.DataFrame:
    """Assemble the TLC-shaped trip table and its money columns."""
    zt = zone_table()
    n = len(cols["hour"])
    pickup = _pickup(cols, day)
    hour = cols["hour"]
    weekday = day.weekday() < 5
    extra = np.where((hour >= 20) | (hour < 6), 1.0, 0.0)
    if weekday:
        extra = np.where((hour >= 16) & (hour < 20), 2.5, extra)
    pu, do = cols["pu"], cols["do"]
    congestion = np.where(zt.is_manhattan[pu] | zt.is_manhattan[do], 2.5, 0.0)
    airport_fee = np.where(zt.is_airport[pu], 1.75, 0.0)
    fare = cols["fare_amount"]
    sign = np.sign(fare)
    extra, mta, improvement = extra * sign, 0.5 * sign, 1.0 * sign
    congestion, airport_fee = congestion * sign, airport_fee * sign
    total = fare + extra + mta + cols["tip_amount"] + cols["tolls_amount"] + improvement
    total = total + congestion + airport_fee
    ids = np.char.add(f"{day:%Y%m%d}-", np.char.zfill(np.arange(n).astype(str), 6))
    payment = cols["payment_type"]
    names = np.array([PAYMENT_TYPES[k] for k in range(1, 7)])
    frame = pd.DataFrame(
        {
            "trip_id": ids,
            "VendorID": cols["VendorID"].astype(np.int64),
            "tpep_pickup_datetime": pickup.astype("datetime64[us]"),
            "tpep_dropoff_datetime": _dropoff(cols, day).astype("datetime64[us]"),
            "passenger_count": cols["passenger_count"].astype(np.int64),
            "trip_distance": cols["trip_distance"],
            "RatecodeID": cols["RatecodeID"].astype(np.int64),
            "store_and_fwd_flag": cols["store_and_fwd_flag"],
            "PULocationID": zt.ids[pu],
            "pickup_zone": zt.names[pu],
            "pickup_borough": zt.boroughs[pu],
            "DOLocationID": zt.ids[do],
            "dropoff_zone": zt.names[do],
            "dropoff_borough": zt.boroughs[do],
            "payment_type": payment.astype(np.int64),
            "payment_type_name": names[payment - 1],
            "fare_amount": fare,
            "extra": extra,
            "mta_tax": mta,
            "tip_amount": cols["tip_amount"],
            "tolls_amount": cols["tolls_amount"],
            "improvement_surcharge": improvement,
            "congestion_surcharge": congestion,
            "Airport_fee": airport_fee,
            "total_amount": total.round(2),
            "rider_id": cols["rider"],
        }
    )
    return frame
