"""The processor's own counters: every span and request is counted somewhere, never dropped.

A decoded span is accepted, rejected (with a reason) or ignored (not an mlobs span); a span of a
request turned away because the ingest queue was full is counted as refused (the client retries
it, so it will usually be received again).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from otel_mlobs.processor.analyzers.base import Histogram
from otel_mlobs.processor.analyzers.histogram import FixedHistogram
from otel_mlobs.processor.decode import DecodeResult
from otel_mlobs.processor.records import (
    CheckRecord,
    FeedbackBatch,
    KpiRecord,
    PredictionBatch,
    Record,
    RunRecord,
    SampleRecord,
    SummaryRecord,
)

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

RECORD_TYPES: dict[type, str] = {
    RunRecord: "run",
    SummaryRecord: "summary",
    SampleRecord: "sample",
    CheckRecord: "check",
    PredictionBatch: "predictions",
    FeedbackBatch: "feedback",
    KpiRecord: "kpi",
}


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A consistent copy of the counters, taken under the stats lock."""

    spans_received: dict[str, int]  # by transport
    spans_accepted: int
    spans_rejected: dict[str, int]  # by reason
    spans_ignored: int
    spans_refused: dict[str, int]  # by transport
    requests: dict[tuple[str, str], int]  # by (transport, code)
    records: dict[str, int]  # by record type
    queue_full: dict[str, int]  # by transport
    sdk_shed: int
    latency: Histogram

    def as_json(self) -> dict[str, Any]:
        return {
            "spans_received": self.spans_received,
            "spans_accepted": self.spans_accepted,
            "spans_rejected": self.spans_rejected,
            "spans_ignored": self.spans_ignored,
            "spans_refused": self.spans_refused,
            "requests": [
                {"transport": t, "code": c, "count": n} for (t, c), n in self.requests.items()
            ],
            "records": self.records,
            "queue_full": self.queue_full,
            "sdk_shed": self.sdk_shed,
        }


class Stats:
    """Thread-safe counters shared by the receivers (many threads) and the worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: Counter[str] = Counter()
        self._accepted = 0
        self._rejected: Counter[str] = Counter()
        self._ignored = 0
        self._refused: Counter[str] = Counter()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._records: Counter[str] = Counter()
        self._queue_full: Counter[str] = Counter()
        self._shed = 0
        self._latency = FixedHistogram(LATENCY_BUCKETS)

    def decoded(self, transport: str, result: DecodeResult, enqueued: bool) -> None:
        """Count a decoded request's spans; ``enqueued`` is False when the queue refused it."""
        with self._lock:
            self._received[transport] += result.total_spans
            if not enqueued:
                self._refused[transport] += result.total_spans
                self._queue_full[transport] += 1
                return
            self._accepted += result.accepted_spans
            self._ignored += result.ignored_spans
            self._rejected.update(result.rejected_by_reason)
            self._shed += result.shed

    def request(self, transport: str, code: str) -> None:
        with self._lock:
            self._requests[transport, code] += 1

    def applied(self, records: list[Record], latency_s: float) -> None:
        counts = Counter(RECORD_TYPES.get(type(r), "other") for r in records)
        with self._lock:
            self._records.update(counts)
            self._latency.observe(latency_s)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                spans_received=dict(self._received),
                spans_accepted=self._accepted,
                spans_rejected=dict(self._rejected),
                spans_ignored=self._ignored,
                spans_refused=dict(self._refused),
                requests=dict(self._requests),
                records=dict(self._records),
                queue_full=dict(self._queue_full),
                sdk_shed=self._shed,
                latency=self._latency.value(),
            )
