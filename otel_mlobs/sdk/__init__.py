"""The otel-mlobs SDK: runs inside user pipelines and emits the wire contract as OTel spans.

Quick start::

    import otel_mlobs as mlobs

    mlobs.configure(pipeline="taxi")                 # OTLP exporter, honours OTEL_* variables

    @mlobs.component("clean", stage="etl", after=[lambda out: out["output"].notna().all().all()])
    def clean(raw):                                  # DataFrame args -> inputs, result -> output
        return raw.dropna()

    with mlobs.observe("score", stage="inference", event_time=day) as run:
        run.log_input("features", X)                 # summaries + a bounded row sample
        proba = model.predict_proba(X)
        mlobs.log_predictions("tip-model", ids, scores=proba[:, 1], features=X[["zone"]])

    mlobs.log_feedback("tip-model", labelled_ids, labels)
    mlobs.flush()

Modules: ``setup`` (configure, flush, shutdown), ``run`` (observe, component, Run),
``predictions`` (prediction, reference and feedback batches), ``summarize`` (the pure summary
function), ``checks`` (user checks), ``pointers`` (content hashes), ``_emit`` (chunking onto
spans, counters) and ``_worker`` (the thread that finishes summaries and prediction batches after
the caller's call returns; ``flush()`` waits for it).
"""

from __future__ import annotations

from otel_mlobs.sdk._emit import stats
from otel_mlobs.sdk.checks import CheckFailed, CheckFailedWarning
from otel_mlobs.sdk.pointers import content_pointer
from otel_mlobs.sdk.predictions import log_feedback, log_predictions, log_reference
from otel_mlobs.sdk.run import Run, component, current_run, observe
from otel_mlobs.sdk.setup import configure, flush, shutdown
from otel_mlobs.sdk.summarize import DEFAULT_QUANTILE_LEVELS, FrameSummary, summarize_frame

__all__ = [
    "DEFAULT_QUANTILE_LEVELS",
    "CheckFailed",
    "CheckFailedWarning",
    "FrameSummary",
    "Run",
    "component",
    "configure",
    "content_pointer",
    "current_run",
    "flush",
    "log_feedback",
    "log_predictions",
    "log_reference",
    "observe",
    "shutdown",
    "stats",
    "summarize_frame",
]
