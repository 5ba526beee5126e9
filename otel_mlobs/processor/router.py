"""Route records to analyzer instances: one instance per (analyzer class, key).

The router is not thread-safe by design: the processor's single worker thread calls
:meth:`Router.dispatch_many` and :meth:`Router.refresh` under the state lock, and readers (scrapes,
the API, snapshots) take the same lock. One analyzer failing on one record is logged and
counted; the other analyzers still get the record.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from otel_mlobs.processor.analyzers.base import Analyzer, BatchFailures, Metric
from otel_mlobs.processor.records import Key, Record

logger = logging.getLogger(__name__)

SnapshotKey = tuple[str, Key]  # (analyzer name, key)


class Router:
    """Analyzer instances by (class, key), created on the first record for a key."""

    def __init__(self, analyzers: Sequence[type[Analyzer]]) -> None:
        names = [cls.name for cls in analyzers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"analyzer names must be unique; duplicated: {dupes}")
        self.analyzers: tuple[type[Analyzer], ...] = tuple(analyzers)
        self._by_name = {cls.name: cls for cls in analyzers}
        self._instances: dict[type[Analyzer], dict[Key, Analyzer]] = {c: {} for c in analyzers}
        self._routes: dict[type, tuple[type[Analyzer], ...]] = {}
        self.errors: Counter[str] = Counter()  # analyzer name -> failed update/refresh/metrics

    def _classes_for(self, record_type: type) -> tuple[type[Analyzer], ...]:
        route = self._routes.get(record_type)
        if route is None:
            route = tuple(c for c in self.analyzers if issubclass(record_type, c.accepts))
            self._routes[record_type] = route
        return route

    def dispatch(self, record: Record) -> None:
        """Give ``record`` to every analyzer class that accepts its type."""
        for cls in self._classes_for(type(record)):
            try:
                key = cls.key_for(record)
                instances = self._instances[cls]
                instance = instances.get(key)
                if instance is None:
                    instance = instances[key] = cls(key)
                instance.update(record)
            except Exception:
                self._failed(cls.name, "update", record.key)

    def dispatch_many(self, records: Sequence[Record]) -> None:
        """Give a whole ingest batch to the analyzers, grouped per instance in arrival order.

        Instances are independent, so only the order within one instance matters; grouping
        lets an analyzer that overrides :meth:`Analyzer.update_many` pay its fixed costs once
        per batch instead of once per record. An analyzer reports the records that failed with
        :class:`BatchFailures` and only those are counted; any other error out of a batch
        update counts one failure per record the batch held.
        """
        groups: dict[tuple[type[Analyzer], Key], list[Record]] = {}
        for record in records:
            for cls in self._classes_for(type(record)):
                try:
                    key = cls.key_for(record)
                except Exception:
                    self._failed(cls.name, "update", record.key)
                    continue
                groups.setdefault((cls, key), []).append(record)
        for (cls, key), batch in groups.items():
            instances = self._instances[cls]
            instance = instances.get(key)
            if instance is None:
                try:
                    instance = instances[key] = cls(key)
                except Exception:
                    for record in batch:
                        self._failed(cls.name, "update", record.key)
                    continue
            try:
                instance.update_many(batch)
            except BatchFailures as failed:
                for record, exc in failed.failures:
                    self._failed(cls.name, "update", record.key, exc)
            except Exception:
                for record in batch:
                    self._failed(cls.name, "update", record.key)

    def refresh(self) -> None:
        """Run every instance's periodic heavier work."""
        for instance in self.instances():
            try:
                instance.refresh()
            except Exception:
                self._failed(instance.name, "refresh", instance.key)

    def metrics(self) -> list[Metric]:
        """Every instance's current samples (call under the state lock; cheap by contract)."""
        out: list[Metric] = []
        for instance in self.instances():
            try:
                out.extend(instance.metrics())
            except Exception:
                self._failed(instance.name, "metrics", instance.key)
        return out

    def _failed(self, name: str, what: str, key: Key, exc: BaseException | None = None) -> None:
        """Count one failure; log the first ten and every thousandth, with the traceback of
        ``exc`` (or of the exception being handled)."""
        self.errors[name] += 1
        if self.errors[name] <= 10 or self.errors[name] % 1000 == 0:
            logger.error(
                "analyzer %s failed in %s for %s (%d failures)",
                name,
                what,
                key,
                self.errors[name],
                exc_info=exc or True,
            )

    def instances(self) -> Iterator[Analyzer]:
        for per_key in self._instances.values():
            yield from per_key.values()

    def analyzer_class(self, name: str) -> type[Analyzer] | None:
        return self._by_name.get(name)

    def get(self, name: str, key: Key) -> Analyzer | None:
        cls = self._by_name.get(name)
        return None if cls is None else self._instances[cls].get(key)

    def keys(self) -> dict[str, list[Key]]:
        """Known keys per analyzer name (every registered analyzer appears, maybe empty)."""
        return {cls.name: list(self._instances[cls]) for cls in self.analyzers}

    def snapshot(self) -> dict[SnapshotKey, bytes]:
        """Every instance's state, to persist or to move to another shard."""
        return {(inst.name, inst.key): inst.snapshot() for inst in self.instances()}

    def restore(self, snapshot: Mapping[SnapshotKey, bytes]) -> list[SnapshotKey]:
        """Replace instances with the snapshotted ones; returns the entries that were skipped.

        An entry is skipped (and logged) when its analyzer is not registered here or its
        blob does not restore, so one stale entry cannot block a restart.
        """
        skipped: list[SnapshotKey] = []
        for (name, key), blob in snapshot.items():
            cls = self._by_name.get(name)
            if cls is None:
                logger.warning("snapshot entry for unknown analyzer %r (%s) skipped", name, key)
                skipped.append((name, key))
                continue
            try:
                instance = cls(key)
                instance.restore(blob)
            except Exception:
                logger.exception("snapshot entry %r %s does not restore; skipped", name, key)
                skipped.append((name, key))
                continue
            self._instances[cls][key] = instance
        return skipped

    def count(self) -> dict[str, int]:
        """Instances per analyzer name."""
        return {cls.name: len(self._instances[cls]) for cls in self.analyzers}


def describe(analyzers: Iterable[type[Analyzer]]) -> list[dict[str, object]]:
    """JSON-able description of analyzer classes, for the API."""
    return [
        {
            "name": cls.name,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "accepts": [t.__name__ for t in cls.accepts],
            "doc": (cls.__doc__ or "").strip().split("\n", 1)[0],
        }
        for cls in analyzers
    ]
