"""The analyzers the processor runs by default.

To add one, write an :class:`~otel_mlobs.processor.analyzers.base.Analyzer` subclass in its own
module and append the class to :data:`DEFAULT_ANALYZERS`; tests/test_analyzer_conformance.py
then checks it (construct, update, snapshot/restore, metrics, repr) with every other one.
"""

from __future__ import annotations

from otel_mlobs.processor.analyzers.base import Analyzer
from otel_mlobs.processor.analyzers.columns import ColumnsAnalyzer
from otel_mlobs.processor.analyzers.detect import ModelAccuracyAnalyzer
from otel_mlobs.processor.analyzers.diagnose import (
    ConstraintAnalyzer,
    DriftAnalyzer,
    LikelihoodAnalyzer,
)
from otel_mlobs.processor.analyzers.react import RootCauseAnalyzer, StuckFeedbackAnalyzer
from otel_mlobs.processor.analyzers.runs import RunsAnalyzer
from otel_mlobs.processor.analyzers.traffic import TrafficAnalyzer

DEFAULT_ANALYZERS: list[type[Analyzer]] = [
    RunsAnalyzer,
    ColumnsAnalyzer,
    TrafficAnalyzer,
    ModelAccuracyAnalyzer,
    RootCauseAnalyzer,
    StuckFeedbackAnalyzer,
    ConstraintAnalyzer,
    LikelihoodAnalyzer,
    DriftAnalyzer,
]

__all__ = [
    "DEFAULT_ANALYZERS",
    "Analyzer",
    "ColumnsAnalyzer",
    "ConstraintAnalyzer",
    "DriftAnalyzer",
    "LikelihoodAnalyzer",
    "ModelAccuracyAnalyzer",
    "RootCauseAnalyzer",
    "RunsAnalyzer",
    "StuckFeedbackAnalyzer",
    "TrafficAnalyzer",
]
