"""Put events on spans without ever meeting OTel's limits: chunking, continuation spans, counters.

OTel keeps at most 128 events per span (dropping the rest silently) and an intermediate Collector
rejects gRPC messages over 4 MiB, so the emitter bounds three things: columns per event
(:data:`~otel_mlobs.semconv.MAX_COLUMNS_PER_EVENT`, then halving while an event is over
:data:`MAX_EVENT_BYTES`), events per span (:data:`~otel_mlobs.semconv.MAX_EVENTS_PER_SPAN`, or
the batch limit for predictions) and bytes per span (:data:`MAX_SPAN_BYTES`). A full span is
continued on a new one: ``part`` children of a run span, or further sibling spans of a prediction
batch, each repeating the identity attributes so every event decodes on its own.

Anything the SDK has to drop is counted in :func:`stats` and on the span (``mlobs.sdk.shed``).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from opentelemetry import trace

from otel_mlobs import semconv
from otel_mlobs.packing import pack
from otel_mlobs.sdk.summarize import FrameSummary

MAX_EVENT_BYTES = 1 << 20
"""Payload bytes per event before a chunk is split further."""
MAX_SPAN_BYTES = 3 << 20
"""Payload bytes per span before continuing on a new span (below gRPC's 4 MiB default)."""

Attributes = dict[str, Any]
Event = tuple[str, Attributes, int]  # (name, attributes, estimated payload bytes)

_lock = threading.Lock()
_counters: Counter[str] = Counter()


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to the SDK counter ``name`` (thread-safe)."""
    if n:
        with _lock:
            _counters[name] += n


def stats() -> dict[str, int]:
    """SDK counters since start: spans, part_spans, events, rows_sent, shed, truncated_values,
    checks_failed, errors. ``shed`` counts items the SDK had to drop (also on spans as
    mlobs.sdk.shed); ``errors`` counts data the SDK could not summarize (logged)."""
    with _lock:
        out = dict.fromkeys(
            (
                "spans",
                "part_spans",
                "events",
                "rows_sent",
                "shed",
                "truncated_values",
                "checks_failed",
                "errors",
            ),
            0,
        )
        out.update(_counters)
        return out


def reset_stats() -> None:
    """Zero the counters (tests and long-running benchmarks)."""
    with _lock:
        _counters.clear()


def event_limit(default: int = semconv.MAX_EVENTS_PER_SPAN) -> int:
    """Events per span: the contract's limit, lowered if the user lowered OTel's own limit."""
    raw = os.environ.get("OTEL_SPAN_EVENT_COUNT_LIMIT", "")
    try:
        user = int(raw)
    except ValueError:
        return default
    return max(1, min(default, user - 8)) if user > 0 else default


def value_bytes(value: Any) -> int:
    """Rough encoded size of an attribute value (payload only; protobuf framing is small)."""
    if isinstance(value, bytes | str):
        return len(value) + 2
    if isinstance(value, list | tuple):
        return sum(value_bytes(v) for v in value) + 2
    return 9


def attributes_bytes(attributes: Mapping[str, Any]) -> int:
    return sum(len(k) + value_bytes(v) for k, v in attributes.items())


class SpanSink:
    """Adds events to a span and continues on a new span when the current one is full.

    ``first`` is the span to fill first; ``next_span(i)`` starts continuation ``i`` (1, 2, ...).
    Continuations are ended here; ``first`` is ended here only when ``own_first`` is true.
    ``end_time`` (ns since the epoch) is when spans ended here end; None: when they are ended.
    """

    def __init__(
        self,
        first: trace.Span,
        next_span: Callable[[int], trace.Span],
        *,
        max_events: int,
        max_bytes: int = MAX_SPAN_BYTES,
        own_first: bool = False,
        used_events: int = 0,
        end_time: int | None = None,
    ) -> None:
        self.end_time = end_time
        self.max_events = max(1, max_events)
        self.max_bytes = max_bytes
        self._first = first
        self._span = first
        self._own_first = own_first
        self._next_span = next_span
        self._events = used_events
        self._bytes = 0
        self.continuations = 0
        self._lock = threading.Lock()

    @property
    def span(self) -> trace.Span:
        """The span events currently go to."""
        return self._span

    def add(
        self,
        name: str,
        attributes: Attributes,
        nbytes: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Add one event; ``timestamp`` (ns since the epoch) defaults to now, and is given when
        the event is added later than the call it describes (on the SDK's worker)."""
        size = attributes_bytes(attributes) if nbytes is None else nbytes
        with self._lock:
            if self._events >= self.max_events or (
                self._events and self._bytes + size > self.max_bytes
            ):
                self._roll()
            self._span.add_event(name, attributes, timestamp)
            self._events += 1
            self._bytes += size
        count("events")

    def close(self) -> None:
        """End the continuation span in use (and ``first`` if owned)."""
        with self._lock:
            if self._span is not self._first or self._own_first:
                # an owned ``first`` that was rolled over is already ended
                self._span.end(end_time=self.end_time)

    def _roll(self) -> None:
        if self._span is not self._first or self._own_first:
            self._span.end(end_time=self.end_time)
        self.continuations += 1
        self._span = self._next_span(self.continuations)
        self._events = 0
        self._bytes = 0


def summary_events(summary: FrameSummary, role: str, name: str, pointer: str) -> Iterator[Event]:
    """``mlobs.summary`` events of ``summary``, at most 64 columns and ~1 MiB each.

    The per-column numbers (counts, moments, extremes, distinct estimates) travel as packed
    arrays, which the OTel SDK stores as one ``bytes`` value instead of checking each element;
    names, kinds and top values stay native string arrays.
    """
    head = {
        semconv.DATA_ROLE: role,
        semconv.DATA_NAME: name,
        semconv.DATA_ROWS: int(summary.rows),
        semconv.DATA_POINTER: pointer,
    }
    levels = summary.quantile_levels.tolist()
    tops = summary.top_values_json()
    col_bytes = [
        len(c) + len(s) + len(t) + 8 * (9 + len(levels))
        for c, s, t in zip(summary.columns, summary.sketches, tops, strict=True)
    ]
    count = summary.count.astype("<i8", copy=False)
    nulls = summary.nulls.astype("<i8", copy=False)

    def build(lo: int, hi: int) -> Event:
        attrs = dict(head)
        attrs.update(
            {
                semconv.SUMMARY_COLUMNS: summary.columns[lo:hi],
                semconv.SUMMARY_KINDS: summary.kinds[lo:hi],
                semconv.SUMMARY_COUNT: packed(count[lo:hi]),
                semconv.SUMMARY_NULLS: packed(nulls[lo:hi]),
                semconv.SUMMARY_MEAN: packed(summary.mean[lo:hi]),
                semconv.SUMMARY_STD: packed(summary.std[lo:hi]),
                semconv.SUMMARY_MIN: packed(summary.min[lo:hi]),
                semconv.SUMMARY_MAX: packed(summary.max[lo:hi]),
                semconv.SUMMARY_QUANTILE_LEVELS: levels,
                semconv.SUMMARY_QUANTILES: packed(summary.quantiles[lo:hi].reshape(-1)),
                semconv.SUMMARY_SKETCHES: summary.sketches[lo:hi],
                semconv.SUMMARY_DISTINCT: packed(summary.distinct[lo:hi]),
                semconv.SUMMARY_TOP_VALUES: tops[lo:hi],
            }
        )
        return semconv.EVENT_SUMMARY, attrs, sum(col_bytes[lo:hi]) + 200

    if not summary.columns:
        yield build(0, 0)
        return
    for lo, hi in _chunks(col_bytes, semconv.MAX_COLUMNS_PER_EVENT, MAX_EVENT_BYTES):
        yield build(lo, hi)


def sample_events(summary: FrameSummary, role: str, name: str) -> Iterator[Event]:
    """``mlobs.sample`` events: the row sample split by columns, at most 64 and ~1 MiB each."""
    if not summary.sample_columns:
        return
    arrays = [packed(v) for v in summary.sample_values]
    sizes = [len(p) + len(c) + 4 for p, c in zip(arrays, summary.sample_columns, strict=True)]
    for lo, hi in _chunks(sizes, semconv.MAX_COLUMNS_PER_EVENT, MAX_EVENT_BYTES):
        attrs = {
            semconv.DATA_ROLE: role,
            semconv.DATA_NAME: name,
            semconv.DATA_ROWS: int(summary.rows),
            semconv.SAMPLE_COLUMNS: summary.sample_columns[lo:hi],
            semconv.SAMPLE_VALUES: arrays[lo:hi],
        }
        yield semconv.EVENT_SAMPLE, attrs, sum(sizes[lo:hi]) + 100


def packed(arr: np.ndarray) -> bytes:
    """:func:`otel_mlobs.packing.pack` of a 1-D array, built with a single copy of the buffer for
    the dtypes the SDK itself produces (native-order numbers, booleans, fixed-width strings)."""
    if arr.dtype.kind in "fiubSU" and arr.dtype.byteorder != ">":
        return b"".join(
            (arr.dtype.str.encode("ascii"), b"\n", memoryview(np.ascontiguousarray(arr)).cast("B"))
        )
    return pack(arr)


def check_event(name: str, phase: str, passed: bool, message: str) -> Event:
    attrs = {
        semconv.CHECK_NAME: name,
        semconv.CHECK_PHASE: phase,
        semconv.CHECK_PASSED: bool(passed),
        semconv.CHECK_MESSAGE: message,
    }
    return semconv.EVENT_CHECK, attrs, attributes_bytes(attrs)


def _chunks(sizes: Sequence[int], max_items: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """Contiguous [lo, hi) ranges of at most ``max_items`` items and ``max_bytes`` (unless one
    item alone is larger: it then travels alone)."""
    lo, total = 0, 0
    for i, size in enumerate(sizes):
        if i > lo and (i - lo >= max_items or total + size > max_bytes):
            yield lo, i
            lo, total = i, 0
        total += size
    if lo < len(sizes):
        yield lo, len(sizes)
