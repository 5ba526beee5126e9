"""The bounded hand-off between the receivers and the one worker that owns analyzer state.

Receivers decode on their own threads and ``offer`` the records of one export request as one
batch; a full queue (in requests, or in bytes of requests: the decoded records hold about as
much memory as the request they came in) refuses the batch at once (the receiver answers
"retry later") instead of blocking a receiving thread or growing without bound. The single
worker applies batches to the router under the state lock, so analyzers never see concurrent
updates.

With a :class:`Journal` (persistence on), ``offer`` numbers each batch in the log under the
queue's lock, so log order is apply order, and returns only once the batch is durable: the
receiver acknowledges after that. A batch that carries its request's serialized bytes
(``Batch.wire``, see :func:`redacted`) is logged as those bytes, with no encoding pass.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from otel_mlobs.processor.decode import DecodeResult
from otel_mlobs.processor.records import PredictionBatch, Record, SampleRecord, SummaryRecord
from otel_mlobs.processor.router import Router
from otel_mlobs.processor.stats import Stats

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """The records of one export request, stamped when the request arrived."""

    records: list[Record]
    received_at: float = field(default_factory=time.monotonic)
    seq: int = 0  # number in the write-ahead log; 0 without persistence
    size: int = 0  # bytes of the request as received, charged to the queue's byte budget
    wire: bytes | None = None  # the serialized request, when it decodes to exactly ``records``


class Journal(Protocol):
    """Where accepted batches become durable (see :mod:`otel_mlobs.processor.persistence`)."""

    def prepare(self, batch: Batch) -> Any:
        """Encode a batch, outside every lock."""

    def append(self, prepared: Any) -> int:
        """Write it; returns its number. Called under the queue's lock. May raise OSError."""

    def sync(self, seq: int) -> None:
        """Return once batch ``seq`` is on disk. May raise OSError."""


class IngestQueue:
    """A FIFO of batches, bounded in batches (export requests) and in their bytes, that knows
    when work is done.

    The byte bound is what keeps memory bounded: a thousand 64-span requests of run summaries
    are gigabytes, a thousand small ones are nothing. A batch being applied still counts until
    :meth:`done`, since its records are still in memory. One batch larger than the whole budget
    is admitted when nothing else is held, so no single request can wedge the queue.
    """

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"Invalid 'capacity': {capacity}; expected >= 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"Invalid 'max_bytes': {max_bytes}; expected >= 1 or None")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: deque[Batch] = deque()
        self._busy = 0  # batches taken but not yet done
        self._bytes = 0  # sizes of queued batches and of those taken but not yet done
        self._taken: deque[int] = deque()  # sizes of batches taken, in take order
        self._closed = False
        self._cond = threading.Condition()
        self.journal: Journal | None = None  # set before receivers start, never changed after

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes of requests held: queued, or taken and not yet done."""
        return self._bytes

    def _full(self, size: int) -> bool:
        """Under the lock: no room for one more batch of ``size`` bytes."""
        if len(self._items) >= self.capacity:
            return True
        held = self._bytes
        return self.max_bytes is not None and held > 0 and held + size > self.max_bytes

    @property
    def records(self) -> int:
        """Records waiting (not counting a batch being applied)."""
        with self._cond:
            return sum(len(b.records) for b in self._items)

    def offer(self, batch: Batch) -> bool:
        """Enqueue without waiting for room; False when the queue is full or closed.

        With a journal, also False when the batch cannot be made durable (logged and counted
        by the journal; the client retries).
        """
        journal = self.journal
        if journal is None:
            with self._cond:
                if self._closed or self._full(batch.size):
                    return False
                self._items.append(batch)
                self._bytes += batch.size
                self._cond.notify_all()
                return True
        if self._closed or self._full(batch.size):
            return False  # early answer: do not encode a batch that cannot be queued
        prepared = journal.prepare(batch)
        with self._cond:
            if self._closed or self._full(batch.size):
                return False
            try:
                batch.seq = journal.append(prepared)
            except OSError:
                return False
            self._items.append(batch)
            self._bytes += batch.size
            self._cond.notify_all()
        try:
            journal.sync(batch.seq)
        except OSError:
            return False  # queued, so applied; the retry may apply it twice (at-least-once)
        return True

    def take(self, timeout: float) -> Batch | None:
        """The next batch, or None after ``timeout`` s or once closed and drained.

        The caller must call :meth:`done` after handling a returned batch.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            self._busy += 1
            batch = self._items.popleft()
            self._taken.append(batch.size)
            return batch

    def done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._bytes -= self._taken.popleft()
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse new batches; ``take`` still drains what is queued."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or being applied; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)


def admit(
    queue: IngestQueue, stats: Stats, transport: str, result: DecodeResult, received_at: float
) -> bool:
    """Queue a decoded request's records and count its spans; False when the queue is full.

    A request without records (only foreign or rejected spans) needs no queue slot.
    """
    enqueued = not result.records or queue.offer(
        Batch(result.records, received_at, wire=result.wire, size=result.request_bytes)
    )
    stats.decoded(transport, result, enqueued)
    return enqueued


Redact = Callable[[DecodeResult], DecodeResult]


def retry_delay(base_s: float, draw: Callable[[], float] = random.random) -> float:
    """How long to tell a refused client to wait: ``base_s`` to twice that, at random.

    Clients refused together by one full queue would otherwise all come back at the same
    instant and find it full again; spreading them over the interval lets the worker drain
    between arrivals.
    """
    return base_s * (1.0 + draw())


def redacted(result: DecodeResult, wire: bytes | None, redact: Redact | None) -> DecodeResult:
    """Apply identifier redaction, and keep ``wire`` (the serialized request) on the result
    only when those bytes decode to exactly its records.

    They do when every span was accepted (a request with foreign or rejected spans would log
    bytes nobody needs) and redaction replaced nothing: otherwise the log would hold the
    identifiers the records no longer carry. Replay applies redaction again (see
    :mod:`otel_mlobs.processor.persistence`), so logged bytes never reach an analyzer raw.
    """
    keep = wire is not None and result.accepted_spans == result.total_spans
    if redact is not None:
        before = _redactable(result.records) if keep else ()
        result = redact(result)
        keep = keep and _redactable(result.records) == before
    result.wire = wire if keep else None
    return result


def _redactable(records: list[Record]) -> list[int]:
    """Identities of every value redaction may replace (it swaps values, never edits them)."""
    out: list[int] = []
    for record in records:
        if isinstance(record, SampleRecord):
            out.extend(map(id, record.columns.values()))
        elif isinstance(record, PredictionBatch):
            out.extend(map(id, record.features.values()))
        elif isinstance(record, SummaryRecord):
            out.extend(map(id, record.top_values))
    return out


class Worker(threading.Thread):
    """Applies queued batches to the router and runs the analyzers' periodic refresh."""

    def __init__(
        self,
        queue: IngestQueue,
        router: Router,
        lock: threading.RLock,
        stats: Stats,
        refresh_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="mlobs-ingest-worker", daemon=True)
        self._queue = queue
        self._router = router
        self._lock = lock
        self._stats = stats
        self._refresh_interval = refresh_interval_s
        self._clock = clock
        self._next_refresh = clock() + refresh_interval_s
        self.applied_seq = 0  # log number of the last batch applied; written under the lock

    def run(self) -> None:
        while True:
            batch = self._queue.take(timeout=min(self._refresh_interval, 0.5))
            if batch is not None:
                try:
                    with self._lock:
                        self._router.dispatch_many(batch.records)
                        if batch.seq:
                            self.applied_seq = batch.seq
                    self._stats.applied(batch.records, self._clock() - batch.received_at)
                finally:
                    self._queue.done()
            elif self._queue.closed:
                return
            if self._clock() >= self._next_refresh:
                with self._lock:
                    self._router.refresh()
                self._next_refresh = self._clock() + self._refresh_interval
