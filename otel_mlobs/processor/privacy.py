"""Identifier columns are stored as keyed hashes, not as the ids themselves.

Pipelines log their frames as they are, and frames carry ids: the taxi pipeline's ``trip_id``
column rides in every row sample and, on small days, in the summaries' top values, and the
diagnose analyzers keep those samples. Prediction and feedback *ids* never need storing raw (the
join keeps 64-bit hashes of them), and an identifier *column* tells an analyzer nothing but
"unique": so before records are queued, :class:`IdHasher` replaces the values of every
identifier column with a keyed BLAKE2b digest, ``h:`` and 16 hex digits.

Which string columns are identifiers is decided once per (pipeline, column name) and then kept,
so a column is hashed in every record or in none, and analyzers never see a category turn into
a digest from one batch to the next:

* from :data:`DECIDE_ROWS` non-empty values on (a row sample, bucketing features, or a summary's
  row count with its top values), a column is an identifier when at least
  :data:`DISTINCT_SHARE` of its values are distinct (for top values: when even the most frequent
  ones were each seen once), and a repeating categorical otherwise;
* with fewer rows nothing is decided, except for columns *named* like identifiers (``id``,
  ``trip_id``, ``tripId``, ``uuid``, ...) whose values are all distinct: those are hashed. A
  small batch of zone names is not evidence enough either way.

Repeating categoricals (zones, payment types) stay readable, since alerts and stuck-feedback
patterns must name them. Empty strings stay empty, so null shares are unchanged. Numeric id
columns are not recognized: mark them ``sensitive`` in the SDK to keep them out of samples.

The digest is keyed with a per-deployment secret (``id_hash_key_file``), so someone holding the
processor's state cannot confirm a guessed id by hashing it. The same id always gives the same
digest under one key: uniqueness, repetition and freshness checks work on digests exactly as on
ids. Without a configured key each process draws a random one, and digests then differ across
restarts and shards, which only matters to checks comparing values across a restart.

Cost: one ``np.unique`` per string column, and one ``hashlib`` call per distinct value of an
identifier column (row samples are a few hundred rows).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from otel_mlobs.processor.decode import DecodeResult
from otel_mlobs.processor.records import PredictionBatch, SampleRecord, SummaryRecord

MIN_ROWS = 8
DECIDE_ROWS = 64
DISTINCT_SHARE = 0.9
MAX_DECISIONS = 100_000  # (pipeline, column) decisions remembered, oldest forgotten first
PREFIX = "h:"
KEY_BYTES = 32
_ID_WORD = re.compile(r"(?:^|[^A-Za-z0-9])(?:id|ids|uuid|guid)$", re.IGNORECASE)
_ID_CAMEL = re.compile(r"[a-z0-9](?:Id|ID|Ids|IDs|Uuid|UUID|Guid|GUID)$")


def read_key(path: str) -> bytes:
    """The hash key from a file: its bytes, at least 16 of them (hex or raw, as written)."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"Invalid 'id_hash_key_file': cannot read {path!r}: {exc}") from None
    if len(key) < 16:
        raise ValueError(
            f"Invalid 'id_hash_key_file': {path!r} holds {len(key)} bytes; at least 16 needed "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))' > FILE`)"
        )
    return key[:64]  # BLAKE2b takes keys up to 64 bytes


def id_like_name(name: str) -> bool:
    """``id``, ``trip_id``, ``trip.id``, ``tripId``, ``uuid``: a name that says identifier
    (and ``paid`` or ``grid`` do not)."""
    return bool(_ID_WORD.search(name) or _ID_CAMEL.search(name))


class IdHasher:
    """Replaces identifier string values in decoded records with keyed digests.

    Thread-safe: the receivers call :meth:`apply` from several threads.

    Parameters
    ----------
    key
        The secret; ``None`` draws a random one for this process.
    """

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and not 16 <= len(key) <= 64:
            raise ValueError(f"Invalid 'key': {len(key)} bytes; expected 16 to 64")
        self._key = key if key is not None else secrets.token_bytes(KEY_BYTES)
        self._decided: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, value: str) -> str:
        """The stored form of one identifier."""
        h = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), key=self._key, digest_size=8)
        return PREFIX + h.hexdigest()

    def hash_array(self, values: np.ndarray) -> np.ndarray:
        """Every non-empty value replaced by its digest (computed once per distinct value)."""
        strings = _as_str(values)
        uniq, inverse = np.unique(strings, return_inverse=True)
        table = np.array([self.digest(u) if u else "" for u in uniq.tolist()], dtype=str)
        return table[inverse.reshape(-1)] if uniq.size else strings

    def decided(self, pipeline: str, column: str) -> bool | None:
        """What is known about a column: identifier (True), categorical (False), or None."""
        with self._lock:
            return self._decided.get((pipeline, column))

    def export_decisions(self) -> bytes:
        """Every remembered decision, oldest first, for a checkpoint.

        A restarted processor must treat a column as the one before it did: otherwise a column
        decided categorical from earlier traffic could be re-decided from a few rows after the
        restart, and its values would turn into digests mid-stream.
        """
        with self._lock:
            items = [[p, c, bool(v)] for (p, c), v in self._decided.items()]
        return json.dumps(items, separators=(",", ":")).encode()

    def import_decisions(self, blob: bytes) -> int:
        """Load decisions saved by :meth:`export_decisions` (kept ones win); returns how many."""
        items = json.loads(blob)
        if not isinstance(items, list) or not all(
            isinstance(i, list)
            and len(i) == 3
            and isinstance(i[0], str)
            and isinstance(i[1], str)
            and isinstance(i[2], bool)
            for i in items
        ):
            raise ValueError("identifier decisions: expected a list of [pipeline, column, bool]")
        with self._lock:
            merged: OrderedDict[tuple[str, str], bool] = OrderedDict(
                ((p, c), v) for p, c, v in items
            )
            merged.update(self._decided)
            while len(merged) > MAX_DECISIONS:
                merged.popitem(last=False)
            self._decided = merged
        return len(items)

    def _decide(self, pipeline: str, column: str, identifier: bool) -> None:
        with self._lock:
            self._decided[pipeline, column] = identifier
            self._decided.move_to_end((pipeline, column))
            while len(self._decided) > MAX_DECISIONS:
                self._decided.popitem(last=False)

    def is_identifier(self, pipeline: str, column: str, values: np.ndarray) -> bool:
        """Whether to hash this string column (decides, and remembers, when the rows suffice)."""
        if values.dtype.kind not in "US":
            return False
        known = self.decided(pipeline, column)
        if known is not None:
            return known
        strings = _as_str(values)
        filled = strings[strings != ""]
        if filled.size < MIN_ROWS:
            return filled.size > 0 and id_like_name(column) and _all_distinct(filled)
        distinct = np.unique(filled).size
        if filled.size >= DECIDE_ROWS:
            identifier = distinct >= DISTINCT_SHARE * filled.size
            self._decide(pipeline, column, identifier)
            return identifier
        return id_like_name(column) and distinct == filled.size

    def apply(self, result: DecodeResult) -> DecodeResult:
        """Hash identifier columns of every record of ``result`` in place; returns it."""
        for record in result.records:
            if isinstance(record, SampleRecord):
                self._columns(record.key.pipeline, record.columns)
            elif isinstance(record, PredictionBatch):
                self._columns(record.key.pipeline, record.features)
            elif isinstance(record, SummaryRecord):
                self._summary(record)
        return result

    def _columns(self, pipeline: str, columns: dict[str, np.ndarray]) -> None:
        for name, values in columns.items():
            if self.is_identifier(pipeline, name, values):
                columns[name] = self.hash_array(values)

    def _summary(self, record: SummaryRecord) -> None:
        """Top values each seen once are the first values of a unique column, i.e. ids."""
        pipeline = record.key.pipeline
        for i, top in enumerate(record.top_values):
            if not top:
                continue
            name = record.columns[i]
            identifier = self.decided(pipeline, name)
            if identifier is None:
                once = len(top) >= 2 and all(count == 1 for count in top.values())
                if int(record.count[i]) >= DECIDE_ROWS:
                    identifier = once
                    self._decide(pipeline, name, identifier)
                else:
                    identifier = once and id_like_name(name)
            if identifier:
                record.top_values[i] = {self.digest(v) if v else v: n for v, n in top.items()}


def _all_distinct(values: np.ndarray) -> bool:
    return np.unique(values).size == values.size


def _as_str(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8", errors="replace")
    return values
