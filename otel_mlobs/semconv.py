"""The wire contract between pipelines and the processor: every ``mlobs.*`` name in one place.

Anything that speaks OTLP can emit this contract (Python via :mod:`otel_mlobs.sdk`, or a Java,
Spark or dbt hook by hand), so these names are the project's real API. docs/semconv.md is the
human-readable twin of this module; a test keeps the two in step.

Design rules
------------
* One span per component run (``mlobs.span.role = "run"``). Everything the run observed rides as
  span events on that span. When a run has more events than OTel's default limit of 128 per span,
  the SDK continues on child spans with role ``"part"`` that repeat the run's identity attributes,
  so every event can be decoded on its own without reassembling spans.
* Prediction and feedback batches ride on their own spans (roles ``"predictions"`` and
  ``"feedback"``), at most :data:`MAX_ROWS_PER_EVENT` rows per event and
  :data:`MAX_EVENTS_PER_SPAN` events per span, so a 100,000-row batch never meets the 4 MiB gRPC
  default of an intermediate Collector in one piece.
* Column arrays are *packed*: a ``bytes`` attribute holding ``<numpy dtype str>\\n<raw buffer>``
  (see :mod:`otel_mlobs.packing`). A producer may instead send a native OTLP array; the decoder
  accepts both. Packing keeps the SDK's cost per row near a ``memcpy`` instead of one protobuf
  ``AnyValue`` per element.
* Times are event times in seconds since the UNIX epoch (double), never arrival times, so a replay
  of last year gives the same answers as living through it.
* Every span carries :data:`SCHEMA_VERSION` in :data:`SCHEMA`; the processor rejects (and counts)
  spans of an unknown major version.
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = "1.0"
"""Major.minor of this contract. Minor bumps only add optional names."""

PREFIX: Final = "mlobs."

# --- span attributes ------------------------------------------------------------------------
SCHEMA: Final = "mlobs.schema_version"  # string, e.g. "1.0"
SPAN_ROLE: Final = "mlobs.span.role"  # string, one of SPAN_ROLES
PIPELINE: Final = "mlobs.pipeline"  # string
COMPONENT: Final = "mlobs.component"  # string
STAGE: Final = "mlobs.stage"  # string, one of STAGES (free text accepted, normalized to "other")
RUN_ID: Final = "mlobs.run.id"  # string, unique per run
RUN_EVENT_TIME: Final = "mlobs.run.event_time"  # double, s since epoch: the run's logical time
RUN_INPUTS: Final = "mlobs.run.inputs"  # string[]: pointers (URI or "sha256:<hex>") read
RUN_OUTPUTS: Final = "mlobs.run.outputs"  # string[]: pointers written
CODE_VERSION: Final = "mlobs.code.version"  # string, e.g. a git sha
PART_INDEX: Final = "mlobs.part.index"  # int, 1.. on continuation spans of role "part"
MODEL: Final = "mlobs.model.name"  # string, on predictions/feedback spans
MODEL_VERSION: Final = "mlobs.model.version"  # string, optional
SDK_SHED: Final = "mlobs.sdk.shed"  # int: items the SDK had to drop for this span (0 if absent)

SPAN_ROLE_RUN: Final = "run"
SPAN_ROLE_PART: Final = "part"
SPAN_ROLE_PREDICTIONS: Final = "predictions"
SPAN_ROLE_FEEDBACK: Final = "feedback"
SPAN_ROLES: Final = (SPAN_ROLE_RUN, SPAN_ROLE_PART, SPAN_ROLE_PREDICTIONS, SPAN_ROLE_FEEDBACK)

STAGES: Final = ("etl", "features", "train", "inference", "feedback", "other")

# --- event: mlobs.summary (one per (role, dataset, chunk of <= MAX_COLUMNS_PER_EVENT columns)) ---
EVENT_SUMMARY: Final = "mlobs.summary"
DATA_ROLE: Final = "mlobs.data.role"  # string: "input" | "output"
DATA_NAME: Final = "mlobs.data.name"  # string: dataset name given to log_input/log_output
DATA_ROWS: Final = "mlobs.data.rows"  # int: rows in the whole dataset
DATA_POINTER: Final = "mlobs.data.pointer"  # string: content hash or URI of the dataset
SUMMARY_COLUMNS: Final = "mlobs.summary.columns"  # string[]
SUMMARY_KINDS: Final = "mlobs.summary.kinds"  # string[], one of COLUMN_KINDS per column
SUMMARY_COUNT: Final = "mlobs.summary.count"  # int[]: non-null values
SUMMARY_NULLS: Final = "mlobs.summary.nulls"  # int[]: null/NaN values (inf counts as a value)
SUMMARY_MEAN: Final = "mlobs.summary.mean"  # double[]: NaN where undefined; booleans: true ratio
SUMMARY_STD: Final = "mlobs.summary.std"  # double[]: population std (ddof=0) of finite values
SUMMARY_MIN: Final = "mlobs.summary.min"  # double[]
SUMMARY_MAX: Final = "mlobs.summary.max"  # double[]
SUMMARY_QUANTILE_LEVELS: Final = "mlobs.summary.quantile_levels"  # double[] (shared by columns)
SUMMARY_QUANTILES: Final = "mlobs.summary.quantiles"  # packed <f8, shape (columns, levels)
SUMMARY_SKETCHES: Final = "mlobs.summary.sketches"  # bytes[]: KLL doubles sketch, b"" if none
SUMMARY_DISTINCT: Final = "mlobs.summary.distinct"  # double[]: distinct-value estimate
SUMMARY_TOP_VALUES: Final = "mlobs.summary.top_values"  # string[]: JSON {value: count} or ""

KIND_NUMERIC: Final = "numeric"
KIND_CATEGORICAL: Final = "categorical"
KIND_BOOLEAN: Final = "boolean"
KIND_DATETIME: Final = "datetime"  # numeric stats are in seconds since epoch
COLUMN_KINDS: Final = (KIND_NUMERIC, KIND_CATEGORICAL, KIND_BOOLEAN, KIND_DATETIME)

DEFAULT_QUANTILE_LEVELS: Final = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

# --- event: mlobs.sample (bounded uniform row sample; sensitive columns omitted) ---------------
EVENT_SAMPLE: Final = "mlobs.sample"
# also carries DATA_ROLE, DATA_NAME, DATA_ROWS
SAMPLE_COLUMNS: Final = "mlobs.sample.columns"  # string[]
SAMPLE_VALUES: Final = "mlobs.sample.values"  # bytes[]: one packed array per column, equal length

# --- event: mlobs.check (user checks run before/after a component) ----------------------------
EVENT_CHECK: Final = "mlobs.check"
CHECK_NAME: Final = "mlobs.check.name"  # string
CHECK_PHASE: Final = "mlobs.check.phase"  # string: "before" | "after"
CHECK_PASSED: Final = "mlobs.check.passed"  # bool
CHECK_MESSAGE: Final = "mlobs.check.message"  # string, "" when passed

# --- event: mlobs.predictions (on spans of role "predictions") ---------------------------------
# A "reference" set is a labelled batch, typically the validation split logged by the training
# component: the label-free accuracy estimators learn from it. It carries true labels inline.
EVENT_PREDICTIONS: Final = "mlobs.predictions"
PRED_IDS: Final = "mlobs.predictions.ids"  # packed <U/|S array or string[]
PRED_TIMESTAMPS: Final = "mlobs.predictions.timestamps"  # packed <f8, s since epoch
PRED_SCORES: Final = "mlobs.predictions.scores"  # packed <f8: (n,) positive-class or (n*k,)
PRED_CLASSES: Final = "mlobs.predictions.classes"  # string[]: k class names when scores are (n, k)
PRED_LABELS: Final = "mlobs.predictions.labels"  # packed array of predicted labels
PRED_FEATURE_NAMES: Final = "mlobs.predictions.feature_names"  # string[]
PRED_FEATURES: Final = "mlobs.predictions.features"  # bytes[]: one packed array per feature
PRED_SET: Final = "mlobs.predictions.set"  # string: "live" (default) | "reference"
PRED_TRUE_LABELS: Final = "mlobs.predictions.true_labels"  # packed: known labels ("reference")

PRED_SET_LIVE: Final = "live"
PRED_SET_REFERENCE: Final = "reference"
PRED_SETS: Final = (PRED_SET_LIVE, PRED_SET_REFERENCE)

# --- event: mlobs.feedback (on spans of role "feedback") ---------------------------------------
EVENT_FEEDBACK: Final = "mlobs.feedback"
FB_IDS: Final = "mlobs.feedback.ids"  # packed or string[]
FB_LABELS: Final = "mlobs.feedback.labels"  # packed array of true labels
FB_TIMESTAMPS: Final = "mlobs.feedback.timestamps"  # packed <f8: when the label became known

# --- event: mlobs.kpi (a business KPI value, attributed to the model named on its span) --------
EVENT_KPI: Final = "mlobs.kpi"
KPI_NAME: Final = "mlobs.kpi.name"  # string, e.g. "revenue_per_trip" (few distinct names)
KPI_VALUE: Final = "mlobs.kpi.value"  # double
KPI_TIME: Final = "mlobs.kpi.time"  # double, s since epoch: the event time the value describes

# --- limits the SDK respects so OTel's defaults never truncate a run --------------------------
MAX_EVENTS_PER_SPAN: Final = 100  # OTel default limit is 128; keep headroom for user events
MAX_COLUMNS_PER_EVENT: Final = 64  # attributes are arrays, so this bounds event size, not count
MAX_ROWS_PER_EVENT: Final = 10_000  # prediction/feedback rows per event
MAX_EVENTS_PER_BATCH_SPAN: Final = 8  # prediction/feedback events per span (~1 MiB per span)

DATA_ROLES: Final = ("input", "output")
CHECK_PHASES: Final = ("before", "after")
