"""Content pointers: ``sha256:<hex>`` names for datasets, so lineage works without a catalogue.

A run's outputs and a later run's inputs match when they hold the same data (mltrace's idea), so a
pointer depends on content only: column names, row count and values, not on the Python object,
the memory layout or the dtype a value happens to be stored in (an int column and a float column
of equal values, a ``Categorical`` and an object column of equal strings, tz-aware and naive
timestamps of the same instants all give the same pointer). It is computed on the caller's thread
(``log_input`` returns it), so it is a *fingerprint* rather than a hash of every byte, built from
what the summary computes anyway (:mod:`otel_mlobs.sdk._columns`):

* every row of every numeric, datetime and boolean column enters through exact statistics: null
  count, min, max and the sum of the float64 bit patterns of its values (mod 2**64); text and
  categorical columns through their null counts;
* :data:`~otel_mlobs.sdk._sampling.POINTER_ROWS` rows spread evenly over the table enter whole:
  the numbers' bits and the text of every column.

Changing one number changes its column's bit sum, so datasets that differ in their numbers get
different pointers unless the changes cancel out in every column's sum, as when values only move
between rows (a reordering, a swap); those, and changes to text outside the sampled rows, show
only where they touch the sampled rows. Passing ``pointer=`` to ``log_input`` / ``log_output``
(a URI, a table version) skips the fingerprint.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from otel_mlobs.sdk._columns import Columns, prepare
from otel_mlobs.sdk._sampling import plan
from otel_mlobs.sdk._tabular import Table, as_table

PREFIX = "sha256:"
_SEP = "\x1f"
_NULL = "\x00null\x00"


def content_pointer(data: Any, name: str = "data") -> str:
    """``sha256:<hex>`` of ``data``'s column names, row count and values (see the module docs).

    ``data`` is anything :func:`~otel_mlobs.sdk.summarize.summarize_frame` accepts, or a
    prepared :class:`~otel_mlobs.sdk._columns.Columns`.
    """
    if not isinstance(data, Columns):
        table = data if isinstance(data, Table) else as_table(data, name)
        data = prepare(table, plan(table.rows, None, 0, None))
    cols = data
    digest = hashlib.sha256(b"mlobs-table-v2\n" + cols.digest)
    rows = _rows(cols.rows)
    if len(rows) and len(cols.float_index):
        values = cols.float_rows(rows)[np.argsort(cols.float_index, kind="stable")]
        np.copyto(values, np.nan, where=np.isnan(values))  # one NaN bit pattern
        digest.update(values.astype("<f8").tobytes())
    text = [(c.index, _category_text(c.take(rows), c.categories)) for c in cols.categories]
    text += [(t.index, _text(t.take(rows))) for t in cols.texts]
    for _, joined in sorted(text, key=lambda item: item[0]):
        digest.update(joined.encode("utf-8", errors="surrogatepass") + b"\x1e")
    return PREFIX + digest.hexdigest()


def _rows(n: int) -> np.ndarray:
    """The rows spread evenly over an ``n``-row table that every plan gathers (whatever the
    sampling parameters, so the pointer of a table never depends on them)."""
    return plan(n, None, 0, None).pointer


def _category_text(codes: np.ndarray, categories: np.ndarray) -> str:
    names = [_str(c) for c in categories.tolist()] + [_NULL]
    return _SEP.join([names[c] for c in codes.tolist()])


def _text(values: np.ndarray) -> str:
    """The values joined by :data:`_SEP`, nulls as :data:`_NULL` and bytes read as UTF-8."""
    items = values.tolist()
    try:
        return _SEP.join(items)  # the common case, strings only: one C call
    except TypeError:
        pass
    missing = pd.isna(np.asarray(values, dtype=object)).tolist()
    return _SEP.join([_NULL if gone else _str(v) for v, gone in zip(items, missing, strict=True)])


def _str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
