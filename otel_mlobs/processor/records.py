"""Typed records decoded from the wire contract: what analyzers consume.

The decoder turns spans into these and nothing else reaches an analyzer, so analyzers never see
OTLP or protobuf. Arrays are numpy; every record carries the identity it is routed by.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Key:
    """Routing key. ``model`` is "" for component records, ``component`` may be "" for feedback."""

    pipeline: str
    component: str = ""
    model: str = ""

    def labels(self) -> dict[str, str]:
        """Prometheus labels for this key (only the non-empty parts)."""
        out = {"pipeline": self.pipeline}
        if self.component:
            out["component"] = self.component
        if self.model:
            out["model"] = self.model
        return out


@dataclass(slots=True)
class RunRecord:
    """One component run (a span of role "run")."""

    key: Key
    run_id: str
    stage: str
    event_time: float  # s since epoch: the run's logical time
    duration_s: float  # wall-clock span duration
    ok: bool
    error: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    code_version: str
    trace_id: str  # hex
    span_id: str  # hex
    parent_span_id: str  # hex, "" for roots
    links: tuple[tuple[str, str], ...] = ()  # (trace_id, span_id) hex pairs
    shed: int = 0


@dataclass(slots=True)
class SummaryRecord:
    """Per-column summaries of one dataset chunk of one run (an ``mlobs.summary`` event)."""

    key: Key
    run_id: str
    event_time: float
    role: str  # "input" | "output"
    dataset: str
    rows: int
    pointer: str
    columns: list[str]
    kinds: list[str]
    count: np.ndarray  # int64 (n_columns,)
    nulls: np.ndarray  # int64
    mean: np.ndarray  # float64, NaN where undefined
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    quantile_levels: np.ndarray  # float64 (n_levels,)
    quantiles: np.ndarray  # float64 (n_columns, n_levels), NaN rows for non-numeric
    sketches: list[bytes]  # serialized KLL doubles sketches, b"" where none
    distinct: np.ndarray  # float64
    top_values: list[dict[str, int]]  # {} where none


@dataclass(slots=True)
class SampleRecord:
    """A bounded uniform row sample of one dataset of one run (an ``mlobs.sample`` event)."""

    key: Key
    run_id: str
    event_time: float
    role: str
    dataset: str
    rows: int  # rows in the whole dataset
    columns: dict[str, np.ndarray]  # equal-length arrays


@dataclass(slots=True)
class CheckRecord:
    """Result of one user check (an ``mlobs.check`` event)."""

    key: Key
    run_id: str
    event_time: float
    name: str
    phase: str  # "before" | "after"
    passed: bool
    message: str


@dataclass(slots=True)
class PredictionBatch:
    """Predictions of one model (an ``mlobs.predictions`` event). ``key.model`` is set."""

    key: Key
    model_version: str
    ids: np.ndarray  # str array
    timestamps: np.ndarray  # float64 s since epoch
    scores: np.ndarray | None  # (n,) positive-class score, or (n, k) with classes
    classes: tuple[str, ...]
    labels: np.ndarray | None  # predicted labels, as str array
    features: dict[str, np.ndarray] = field(default_factory=dict)
    reference: bool = False  # a labelled reference set (validation split), not live traffic
    true_labels: np.ndarray | None = None  # str array; set for reference batches

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class FeedbackBatch:
    """Ground-truth labels for earlier predictions (an ``mlobs.feedback`` event)."""

    key: Key
    ids: np.ndarray  # str array
    labels: np.ndarray  # str array
    timestamps: np.ndarray  # float64 s since epoch

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class KpiRecord:
    """A business KPI value (an ``mlobs.kpi`` event), attributed to ``key.model``."""

    key: Key
    name: str
    value: float
    event_time: float  # s since epoch


Record = (
    RunRecord
    | SummaryRecord
    | SampleRecord
    | CheckRecord
    | PredictionBatch
    | FeedbackBatch
    | KpiRecord
)
