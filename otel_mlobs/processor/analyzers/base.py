"""The analyzer contract.

An analyzer is one small online estimator over one routing key, shaped like a river estimator:
parameters are public attributes set in ``__init__`` and validated there, learned state is
private, ``update(record)`` consumes one record and returns nothing, ``metrics()`` reports, and
``snapshot()`` / ``restore()`` make it durable and movable between processor shards.

Memory is bounded by construction (reservoirs, sketches, fixed panes): an analyzer must never
grow with the length of the stream. ``update`` runs on the processor's single worker thread;
an analyzer that needs heavy work (fitting a model) does it lazily inside ``update`` at a bounded
cadence, or in ``refresh()``, which the processor calls off the receiving path.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from otel_mlobs.processor.records import Key, Record

MetricKind = Literal["counter", "gauge", "histogram"]


class BatchFailures(Exception):
    """Raised by :meth:`Analyzer.update_many` when some records of a batch failed and every
    other record was applied, so the router counts exactly the failed ones.

    Any other exception out of ``update_many`` leaves unknown which records were applied; the
    router then counts every record of the batch as failed.
    """

    def __init__(self, failures: Sequence[tuple[Record, BaseException]]) -> None:
        self.failures = list(failures)
        first = self.failures[0][1] if self.failures else None
        super().__init__(f"{len(self.failures)} record(s) of the batch failed; first: {first!r}")
        self.__cause__ = first


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative histogram value: ``buckets`` are (upper bound, cumulative count), +Inf last."""

    buckets: tuple[tuple[float, float], ...]
    sum: float


@dataclass(frozen=True, slots=True)
class Metric:
    """One sample an analyzer reports. The exporter groups samples into metric families.

    ``name`` is the full Prometheus name (``mlobs_...``); counters are named with ``_total``.
    Labels must be bounded (pipeline, component, model, column, method, ...): never ids or raw
    feature values.
    """

    name: str
    kind: MetricKind
    help: str
    labels: Mapping[str, str]
    value: float | Histogram
    unit: str = ""


class Analyzer(ABC):
    """Base class of every processor analyzer.

    Subclasses set ``accepts`` to the record types they want; the router only calls ``update``
    with those. ``name`` identifies the analyzer in snapshots and in the API.
    """

    name: ClassVar[str]
    accepts: ClassVar[tuple[type, ...]]

    def __init__(self, key: Key) -> None:
        self.key = key

    @classmethod
    def key_for(cls, record: Record) -> Key:
        """The key this analyzer class groups ``record`` under. Default: the record's own key.

        Model-level analyzers drop the component so that predictions (logged inside an
        inference run) and feedback (logged elsewhere) meet in one instance.
        """
        return record.key

    @abstractmethod
    def update(self, record: Record) -> None:
        """Consume one record of an accepted type."""

    def update_many(self, records: Sequence[Record]) -> None:
        """Consume several records of this instance's key, in arrival order.

        The router hands over every record one ingest batch holds for this instance at once,
        so an analyzer whose per-record cost is mostly fixed overhead can override this and
        work on the whole batch in one vectorized pass. The default applies them one by one.

        A record that fails must not cost the others: apply the rest, then raise
        :class:`BatchFailures` naming the failed ones.
        """
        failures: list[tuple[Record, BaseException]] = []
        for record in records:
            try:
                self.update(record)
            except Exception as exc:  # noqa: BLE001 - reported with the batch
                failures.append((record, exc))
        if failures:
            raise BatchFailures(failures)

    @abstractmethod
    def metrics(self) -> Iterable[Metric]:
        """Current samples, called at scrape time under the state lock: keep it cheap."""

    def refresh(self) -> None:  # noqa: B027 - optional hook
        """Optional heavier periodic work (refitting), called by the processor's worker."""

    def query(self, **params: Any) -> dict[str, Any]:
        """JSON-able state for the API. Default: nothing beyond the key."""
        return {"analyzer": self.name, **self.key.labels()}

    def snapshot(self) -> bytes:
        """Serialize learned state. Default: pickle of the instance dict (override if large)."""
        return pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        """Inverse of :meth:`snapshot`, on a freshly constructed instance with the same key."""
        self.__dict__.update(pickle.loads(blob))  # noqa: S301 - our own snapshots only

    def labels(self, **extra: str) -> dict[str, str]:
        """The key's labels plus ``extra``."""
        out = self.key.labels()
        out.update(extra)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"
