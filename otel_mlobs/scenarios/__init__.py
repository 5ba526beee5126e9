"""Synthetic NYC-taxi pipeline with injectable incidents, for the demo, tests and benchmarks.

>>> from otel_mlobs.scenarios import TaxiScenario, Incident
>>> scenario = TaxiScenario(seed=0, days=7, incidents=[Incident("corruption", "2025-12-24")])
>>> [t.component for t in scenario.ground_truth()]
['clean']

``run_pipeline(scenario)`` drives the five instrumented components (clean, features, train,
inference, feedback) over the simulated days; it is imported lazily because it needs the SDK
and scikit-learn, which the data generator alone does not.
"""

from __future__ import annotations

from typing import Any

from otel_mlobs.scenarios.incidents import (
    DEFAULT_INCIDENTS,
    INCIDENT_NAMES,
    GroundTruth,
    Incident,
    parse_incidents,
)
from otel_mlobs.scenarios.taxi import LABEL, PAYMENT_TYPES, Day, TaxiScenario

__all__ = [
    "DEFAULT_INCIDENTS",
    "INCIDENT_NAMES",
    "LABEL",
    "PAYMENT_TYPES",
    "Day",
    "GroundTruth",
    "Incident",
    "TaxiScenario",
    "parse_incidents",
    "run_pipeline",
    "PipelineResult",
    "DayResult",
]


def __getattr__(name: str) -> Any:
    if name in ("run_pipeline", "PipelineResult", "DayResult"):
        from otel_mlobs.scenarios import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
