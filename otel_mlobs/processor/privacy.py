"""Identifier columns are stored as keyed hashes, not as the ids themselves.

Pipelines log their frames as they are, and frames carry ids: the taxi pipeline's ``trip_id``
column rides in every row sample and, on small days, in the summaries' top values, and the
diagnose analyzers keep those samples. Prediction and feedback *ids* never need storing raw (the
join keeps 64-bit hashes of them), and an identifier *column* tells an analyzer nothing but
"unique": so before records are queued, :class:`IdHasher` replaces the values of every
identifier-like string column with a keyed BLAKE2b digest, ``h:`` and 16 hex digits.

Identifier-like means: a string column of row samples or bucketing features with at least
:data:`MIN_ROWS` non-empty values of which at least :data:`DISTINCT_SHARE` are distinct, or the
top values of a summary column that are all seen exactly once. Repeating categoricals (zones,
payment types) stay readable, since alerts and stuck-feedback patterns must name them. Empty
strings stay empty, so null shares are unchanged. Numeric id columns are not recognized: mark
them ``sensitive`` in the SDK to keep them out of samples altogether.

The digest is keyed with a per-deployment secret (``id_hash_key_file``), so someone holding the
processor's state cannot confirm a guessed id by hashing it. The same id always gives the same
digest under one key: uniqueness, repetition and freshness checks work on digests exactly as on
ids. Without a configured key each process draws a random one, and digests then differ across
restarts and shards, which only matters to checks comparing values across a restart.

Cost: one ``hashlib`` call per distinct value of an identifier column (row samples are a few
hundred rows); the identifier test itself is one ``np.unique`` per string column.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import numpy as np

from otel_mlobs.processor.decode import DecodeResult
from otel_mlobs.processor.records import PredictionBatch, SampleRecord, SummaryRecord

MIN_ROWS = 8
DISTINCT_SHARE = 0.9
PREFIX = "h:"
KEY_BYTES = 32


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


class IdHasher:
    """Replaces identifier-like string values in decoded records with keyed digests.

    Parameters
    ----------
    key
        The secret; ``None`` draws a random one for this process.
    min_rows, distinct_share
        What makes a column identifier-like (see the module docstring).
    """

    def __init__(
        self,
        key: bytes | None = None,
        min_rows: int = MIN_ROWS,
        distinct_share: float = DISTINCT_SHARE,
    ) -> None:
        if key is not None and not 16 <= len(key) <= 64:
            raise ValueError(f"Invalid 'key': {len(key)} bytes; expected 16 to 64")
        if min_rows < 2 or not 0 < distinct_share <= 1:
            raise ValueError("min_rows must be >= 2 and distinct_share in (0, 1]")
        self._key = key if key is not None else secrets.token_bytes(KEY_BYTES)
        self.min_rows = min_rows
        self.distinct_share = distinct_share

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

    def is_identifier(self, values: np.ndarray) -> bool:
        """A string array whose non-empty values are (nearly) all distinct."""
        if values.dtype.kind not in "US" or values.size < self.min_rows:
            return False
        strings = _as_str(values)
        filled = strings[strings != ""]
        if filled.size < self.min_rows:
            return False
        return np.unique(filled).size >= self.distinct_share * filled.size

    def apply(self, result: DecodeResult) -> DecodeResult:
        """Hash identifier columns of every record of ``result`` in place; returns it."""
        for record in result.records:
            if isinstance(record, SampleRecord):
                self._columns(record.columns)
            elif isinstance(record, PredictionBatch):
                self._columns(record.features)
            elif isinstance(record, SummaryRecord):
                record.top_values = [self._top_values(tv) for tv in record.top_values]
        return result

    def _columns(self, columns: dict[str, np.ndarray]) -> None:
        for name, values in columns.items():
            if self.is_identifier(values):
                columns[name] = self.hash_array(values)

    def _top_values(self, top: dict[str, int]) -> dict[str, int]:
        if len(top) < 2 or any(count != 1 for count in top.values()):
            return top
        return {self.digest(value) if value else value: count for value, count in top.items()}


def _as_str(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8", errors="replace")
    return values
