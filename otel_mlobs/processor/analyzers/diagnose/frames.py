"""Summary and sample records straight from in-memory tables, without an OTLP round trip.

The diagnose analyzers consume only :class:`SummaryRecord` and :class:`SampleRecord`. These
helpers build the very records the decoder would produce from the SDK's events (they call the
SDK's own :func:`~otel_mlobs.sdk.summarize.summarize_frame`), so the analyzers can be replayed
offline on saved tables: a notebook, a backfill, a benchmark, a test.
"""

from __future__ import annotations

from typing import Any

from otel_mlobs.processor.records import Key, SampleRecord, SummaryRecord
from otel_mlobs.sdk.summarize import DEFAULT_SAMPLE_ROWS, FrameSummary, summarize_frame


def records_from_summary(
    key: Key,
    run_id: str,
    event_time: float,
    summary: FrameSummary,
    *,
    role: str = "output",
    dataset: str = "data",
    pointer: str = "",
) -> tuple[SummaryRecord, SampleRecord | None]:
    """The summary record and (when a sample was drawn) the sample record of one dataset."""
    summary_rec = SummaryRecord(
        key=key,
        run_id=run_id,
        event_time=float(event_time),
        role=role,
        dataset=dataset,
        rows=summary.rows,
        pointer=pointer or f"{dataset}@{run_id}",
        columns=list(summary.columns),
        kinds=list(summary.kinds),
        count=summary.count,
        nulls=summary.nulls,
        mean=summary.mean,
        std=summary.std,
        min=summary.min,
        max=summary.max,
        quantile_levels=summary.quantile_levels,
        quantiles=summary.quantiles,
        sketches=list(summary.sketches),
        distinct=summary.distinct,
        top_values=[dict(t) for t in summary.top_values],
    )
    sample = None
    if summary.sample_columns:
        sample = SampleRecord(
            key=key,
            run_id=run_id,
            event_time=float(event_time),
            role=role,
            dataset=dataset,
            rows=summary.rows,
            columns=dict(zip(summary.sample_columns, summary.sample_values, strict=True)),
        )
    return summary_rec, sample


def summary_record(
    key: Key,
    run_id: str,
    event_time: float,
    data: Any,
    *,
    role: str = "output",
    dataset: str = "data",
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int | None = None,
) -> SummaryRecord:
    """The summary record of ``data`` (anything the SDK summarizes: a DataFrame, a dict...)."""
    return records(
        key,
        run_id,
        event_time,
        data,
        role=role,
        dataset=dataset,
        sample_rows=sample_rows,
        seed=seed,
    )[0]


def sample_record(
    key: Key,
    run_id: str,
    event_time: float,
    data: Any,
    *,
    role: str = "output",
    dataset: str = "data",
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int | None = None,
) -> SampleRecord | None:
    """The sample record of ``data`` (``None`` when it has no rows to sample)."""
    return records(
        key,
        run_id,
        event_time,
        data,
        role=role,
        dataset=dataset,
        sample_rows=sample_rows,
        seed=seed,
    )[1]


def records(
    key: Key,
    run_id: str,
    event_time: float,
    data: Any,
    *,
    role: str = "output",
    dataset: str = "data",
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int | None = None,
) -> tuple[SummaryRecord, SampleRecord | None]:
    """Both records of one dataset, from one pass of the SDK's summarizer."""
    summary = summarize_frame(data, sample_rows=sample_rows, seed=seed)
    return records_from_summary(key, run_id, event_time, summary, role=role, dataset=dataset)
