"""Injectable incidents of the taxi scenario, each with the ground truth a detector should find.

An incident is a named fault switched on for a date range. Its ground truth says which component
and dataset show it first, which columns it touches, and whether it is a pipeline bug (someone must
fix code or a feed) or a natural shift (the world changed; retrain or accept). Tests and benchmarks
score detections and root-cause rankings against it.

Text form, as the demo's ``--incidents`` flag takes it: ``name@YYYY-MM-DD`` (open ended) or
``name@YYYY-MM-DD:YYYY-MM-DD`` (both days included).

>>> Incident.parse("corruption@2025-12-28:2025-12-30").active(date(2025, 12, 30))
True
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, Literal

IncidentKind = Literal["pipeline_bug", "natural_shift"]

WEATHER_COLUMNS: tuple[str, ...] = (
    "temperature_f",
    "precipitation_in",
    "wind_speed_mph",
    "visibility_mi",
    "snow_in",
)
RIDER_COLUMNS: tuple[str, ...] = ("rider_avg_tip_pct", "rider_trip_count")


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What an incident really is: the answer key for detection and diagnosis."""

    incident: str
    kind: IncidentKind
    start: date
    end: date | None  # last affected day, inclusive; None = until the end of the scenario
    component: str  # the pipeline component whose data shows the fault first
    dataset: str  # the dataset of that component carrying it
    columns: tuple[str, ...]  # columns whose values change; () when only labels change
    effect: str  # "data" | "labels" | "feedback"
    segment: Mapping[str, str]  # e.g. {"pickup_zone": "East Village"}; {} when all rows
    description: str

    def active(self, day: date) -> bool:
        """Whether ``day`` falls inside the incident's window."""
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True)
class _Spec:
    kind: IncidentKind
    component: str
    dataset: str
    columns: tuple[str, ...]
    effect: str
    description: str
    defaults: Mapping[str, Any]


_SPECS: dict[str, _Spec] = {
    "covariate_shift": _Spec(
        "natural_shift",
        "clean",
        "raw_trips",
        (
            "PULocationID",
            "pickup_zone",
            "DOLocationID",
            "dropoff_zone",
            "trip_distance",
            "passenger_count",
            "tpep_pickup_datetime",
        ),
        "data",
        "New Year's Eve: an evening burst of trips out of Times Square, longer and fuller.",
        {"zone": "Times Sq/Theatre District", "burst": 0.4},
    ),
    "concept_shift": _Spec(
        "natural_shift",
        "clean",
        "raw_trips",
        ("tip_amount", "total_amount"),  # the label source; no model input moves
        "labels",
        "Recession: riders tip less, so the same trips earn fewer >20% tips.",
        {"tip_drop": 0.07, "extra_no_tip": 0.08},
    ),
    "corruption": _Spec(
        "pipeline_bug",
        "clean",
        "raw_trips",
        ("trip_distance",),
        "data",
        "The trip feed switched trip_distance from miles to kilometres.",
        {"factor": 1.609},
    ),
    "staleness": _Spec(
        "pipeline_bug",
        "features",
        "rider_history",
        RIDER_COLUMNS,
        "data",
        "The rider-history extract stopped refreshing: the same table arrives every day.",
        {},
    ),
    "missing_values": _Spec(
        "pipeline_bug",
        "features",
        "weather",
        WEATHER_COLUMNS,
        "data",
        "The weather source fails: every weather column arrives null.",
        {"source": "weather", "vendor": 2},
    ),
    "schema_change": _Spec(
        "pipeline_bug",
        "clean",
        "raw_trips",
        ("payment_type_name",),
        "data",
        "The trip feed renamed payment type 'Credit card' to 'Card'.",
        {"old": "Credit card", "new": "Card"},
    ),
    "feedback_outage": _Spec(
        "pipeline_bug",
        "feedback",
        "feedback",
        (),
        "feedback",
        "Tip settlements for one neighbourhood's pickups are held up for days.",
        {"zone": "East Village", "min_days": 3.0, "max_days": 7.0},
    ),
}

INCIDENT_NAMES: tuple[str, ...] = tuple(_SPECS)


def _as_date(value: date | str, what: str) -> date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"bad {what} date {value!r}: expected YYYY-MM-DD") from exc


@dataclass(frozen=True, slots=True)
class Incident:
    """One fault switched on from ``start`` to ``end`` (inclusive; ``None`` = open ended).

    ``params`` override the incident's defaults, e.g. ``{"zone": "Astoria"}`` for a
    ``feedback_outage`` or ``{"source": "vendor"}`` for ``missing_values`` (one vendor's rows
    arrive with null fare and tip columns instead of the weather source failing).
    """

    name: str
    start: date | str
    end: date | str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in _SPECS:
            raise ValueError(
                f"unknown incident {self.name!r}; valid incidents: {', '.join(INCIDENT_NAMES)}"
            )
        start = _as_date(self.start, "start")
        end = None if self.end is None else _as_date(self.end, "end")
        if end is not None and end < start:
            raise ValueError(f"incident {self.name}: end {end} is before start {start}")
        spec = _SPECS[self.name]
        unknown = set(self.params) - set(spec.defaults)
        if unknown:
            raise ValueError(
                f"incident {self.name}: unknown params {sorted(unknown)}; "
                f"valid: {sorted(spec.defaults)}"
            )
        merged = {**spec.defaults, **self.params}
        if self.name == "missing_values" and merged["source"] not in ("weather", "vendor"):
            raise ValueError("missing_values source must be 'weather' or 'vendor'")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "params", MappingProxyType(merged))

    @classmethod
    def parse(cls, text: str) -> Incident:
        """Read ``name@YYYY-MM-DD`` or ``name@YYYY-MM-DD:YYYY-MM-DD``."""
        name, sep, when = text.strip().partition("@")
        if not sep or not name or not when:
            raise ValueError(
                f"bad incident {text!r}: expected name@YYYY-MM-DD[:YYYY-MM-DD], "
                f"name one of {', '.join(INCIDENT_NAMES)}"
            )
        start, _, end = when.partition(":")
        return cls(name.strip(), start, end or None)

    def active(self, day: date) -> bool:
        """Whether ``day`` falls inside the incident's window."""
        return self.start <= day and (self.end is None or day <= self.end)  # type: ignore[operator]

    def truth(self) -> GroundTruth:
        """The answer key for this incident, with its parameters resolved."""
        spec = _SPECS[self.name]
        component, dataset, columns = spec.component, spec.dataset, spec.columns
        description, segment = spec.description, {}
        if self.name == "missing_values" and self.params["source"] == "vendor":
            component, dataset = "clean", "raw_trips"
            columns = ("fare_amount", "tip_amount", "total_amount")
            description = f"Vendor {self.params['vendor']}'s rows arrive with null fare and tip."
            segment = {"VendorID": str(self.params["vendor"])}
        elif self.name in ("feedback_outage", "covariate_shift"):
            segment = {"pickup_zone": self.params["zone"]}
        return GroundTruth(
            incident=self.name,
            kind=spec.kind,
            start=self.start,  # type: ignore[arg-type]
            end=self.end,  # type: ignore[arg-type]
            component=component,
            dataset=dataset,
            columns=columns,
            effect=spec.effect,
            segment=MappingProxyType(segment),
            description=description,
        )

    def __str__(self) -> str:
        return f"{self.name}@{self.start}" + (f":{self.end}" if self.end else "")


def parse_incidents(text: str | Iterable[str]) -> list[Incident]:
    """Read a comma-separated list (or an iterable) of incidents; ``"none"`` or ``""`` is empty."""
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [item.strip() for item in items if item.strip()]
    if len(items) == 1 and items[0].lower() == "none":
        return []
    return [Incident.parse(item) for item in items]


DEFAULT_INCIDENTS: tuple[Incident, ...] = (
    Incident("corruption", "2025-12-27", "2025-12-28"),
    Incident("staleness", "2025-12-29", "2025-12-30"),
    Incident("covariate_shift", "2025-12-31", "2025-12-31"),
    Incident("feedback_outage", "2026-01-01", "2026-01-02"),
    Incident("schema_change", "2026-01-03", "2026-01-04"),
    Incident("missing_values", "2026-01-05", "2026-01-05"),
    Incident("concept_shift", "2026-01-06"),
)
"""The demo's schedule over its default three weeks from 2025-12-20: five quiet days for
training, two clean days of live traffic, then one incident after another (the recession
lasts to the end)."""
