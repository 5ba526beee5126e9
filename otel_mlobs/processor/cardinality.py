"""Bounds on what one scrape can hold: series per metric family and label value length.

Labels are bounded by design (pipeline, component, model, column, ...), but a pipeline with
10,000 columns, or a producer that names columns after ids, would still put tens of thousands of
series into every family and make Prometheus pay for each of them. :class:`SeriesLimiter` caps
every family at ``max_series`` series:

* Admission is sticky: series exposed at the previous scrape stay exposed while they still
  exist, and newcomers take free places in the order the analyzers report them. (Families
  under half the cap are not remembered, to keep scrapes cheap: one that jumps from there
  past the cap in a single scrape is admitted in report order.) A series
  therefore does not flicker in and out between scrapes, and the cap never reshuffles which
  columns are visible while the set of columns is stable.
* What does not fit is folded into one overflow series whose every label is ``__overflow__``:
  counters are summed and histograms merged bucket by bucket (``sum()`` over the family stays
  exact), gauges are dropped (a summed ratio or mean would be a wrong value that alerts could
  fire on). The overflow series takes one of the ``max_series`` places.
* ``mlobs_processor_series_dropped_total{metric}`` counts the series left out, summed over
  scrapes; ``mlobs_processor_series_overflow{metric}`` says how many the last scrape left out.

Label values longer than :data:`MAX_LABEL_VALUE_CHARS` are shortened to a prefix and a digest
of the whole value (still unique), since one megabyte-long column name would otherwise ride in
every scrape, and Prometheus servers configured with ``label_value_length_limit`` reject the
whole scrape for a single long value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

from otel_mlobs.processor.analyzers.base import Histogram

OVERFLOW = "__overflow__"
DEFAULT_MAX_SERIES = 10_000
MAX_LABEL_VALUE_CHARS = 512
_DIGEST_CHARS = 16
SERIES_DROPPED = "mlobs_processor_series_dropped_total"
SERIES_OVERFLOW = "mlobs_processor_series_overflow"

SeriesKey = tuple[tuple[str, str], ...]
Value = float | Histogram


def bounded_label(value: str) -> str:
    """``value``, or a prefix of it and a digest of the whole when it is too long."""
    if len(value) <= MAX_LABEL_VALUE_CHARS:
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return value[: MAX_LABEL_VALUE_CHARS - _DIGEST_CHARS - 1] + "~" + digest


class Family(Protocol):
    """What the limiter needs of a grouped family: its kind and parallel samples and keys."""

    kind: str
    samples: list[tuple[dict[str, str], Value]]
    keys: list[SeriesKey]


class SeriesLimiter:
    """Caps the series of every family; remembers the last admitted set per family.

    Not thread-safe: the collector calls it under its own lock.
    """

    def __init__(self, max_series: int = DEFAULT_MAX_SERIES) -> None:
        if not isinstance(max_series, int) or max_series < 2:
            raise ValueError(
                f"Invalid 'max_series': {max_series!r}; expected an integer >= 2 "
                "(one place is the overflow series)"
            )
        self.max_series = max_series
        self._admitted: dict[str, set[SeriesKey]] = {}
        self._dropped_total: dict[str, int] = {}
        self._last_dropped: dict[str, int] = {}

    @property
    def dropped_total(self) -> dict[str, int]:
        """Series left out per family, summed over every limited scrape."""
        return dict(self._dropped_total)

    @property
    def last_dropped(self) -> dict[str, int]:
        """Series left out per family by the last scrape (only families over the cap)."""
        return dict(self._last_dropped)

    def limit(self, families: Mapping[str, Family]) -> None:
        """Cap every family in place and update the drop counts."""
        self._last_dropped = {}
        for name, fam in families.items():
            if len(fam.keys) > self.max_series:
                self._cap(name, fam)
            elif len(fam.keys) > self.max_series // 2:
                self._admitted[name] = set(fam.keys)
            else:  # far from the cap: not worth hashing every key at every scrape
                self._admitted.pop(name, None)
        for gone in self._admitted.keys() - families.keys():
            del self._admitted[gone]

    def _cap(self, name: str, fam: Family) -> None:
        previous = self._admitted.get(name, set())
        places = self.max_series - 1  # one is the overflow series
        order = range(len(fam.keys))
        kept = [i for i in order if fam.keys[i] in previous][:places]
        if len(kept) < places:
            chosen = set(kept)
            kept.extend([i for i in order if i not in chosen][: places - len(kept)])
            kept.sort()
        kept_set = set(kept)
        rest = [fam.samples[i] for i in order if i not in kept_set]
        fam.samples = [fam.samples[i] for i in kept]
        fam.keys = [fam.keys[i] for i in kept]
        self._admitted[name] = set(fam.keys)
        overflow = _fold(fam.kind, [v for _, v in rest])
        if overflow is not None:
            labels = dict.fromkeys(sorted({n for lab, _ in rest for n in lab}), OVERFLOW)
            fam.samples.append((labels, overflow))
            fam.keys.append(tuple(labels.items()))
        self._last_dropped[name] = len(rest)
        self._dropped_total[name] = self._dropped_total.get(name, 0) + len(rest)


def _fold(kind: str, values: list[Value]) -> Value | None:
    """The overflow value: counters summed, histograms merged, gauges none."""
    if not values or kind == "gauge":
        return None
    if kind == "counter":
        return float(sum(float(v) for v in values))  # type: ignore[arg-type]
    hists = [v for v in values if isinstance(v, Histogram)]
    bounds = [u for u, _ in hists[0].buckets]
    if any([u for u, _ in h.buckets] != bounds for h in hists):
        return None  # different bucket layouts cannot be merged
    counts = [sum(h.buckets[i][1] for h in hists) for i in range(len(bounds))]
    return Histogram(tuple(zip(bounds, counts, strict=True)), float(sum(h.sum for h in hists)))
