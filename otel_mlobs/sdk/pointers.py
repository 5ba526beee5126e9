"""Content pointers: ``sha256:<hex>`` names for datasets, so lineage works without a catalogue.

A run's outputs and a later run's inputs match when they hold the same data (mltrace's idea), so a
pointer must depend on content only: column names, row count and values, not on the Python object
or the memory layout. Values are hashed per row with pandas' vectorized ``hash_array`` (one uint64
per value; categoricals hash their categories once and take by code, giving the same hashes as the
equivalent object column), rows are combined column by column with a multiply-xor, and SHA-256
runs over that one uint64 per row. Cost: a few numpy passes per column and SHA-256 over 8 bytes
per row.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from otel_mlobs.sdk._tabular import Table, as_table

PREFIX = "sha256:"
_MIX = np.uint64(0x100000001B3)
_NULL_HASH = np.uint64(np.iinfo(np.uint64).max)  # what pandas uses for nulls


def content_pointer(data: Any, name: str = "data") -> str:
    """``sha256:<hex>`` of ``data``'s column names, row count and values."""
    table = data if isinstance(data, Table) else as_table(data, name)
    digest = hashlib.sha256(f"mlobs-table-v1\n{table.rows}\n".encode())
    acc = np.zeros(table.rows, dtype=np.uint64)
    for col_name, col in zip(table.names, table.columns, strict=True):
        digest.update(col_name.encode("utf-8", errors="surrogatepass") + b"\x00")
        acc *= _MIX
        acc ^= _column_hash(col)
    digest.update(acc.tobytes())
    return PREFIX + digest.hexdigest()


def is_pointer(value: Any) -> bool:
    """True for a non-empty string: a URI or a content hash."""
    return isinstance(value, str) and bool(value)


def _column_hash(col: Any) -> np.ndarray:
    if isinstance(col, pd.Categorical):
        cats = pd.util.hash_array(np.asarray(col.categories, dtype=object))
        codes = np.asarray(col.codes)
        out = cats.take(np.maximum(codes, 0)) if len(cats) else np.zeros(len(codes), np.uint64)
        out[codes < 0] = _NULL_HASH
        return out
    if isinstance(col, np.ndarray):
        try:
            return pd.util.hash_array(col)
        except TypeError:  # unhashable objects: hash their text
            text = np.fromiter((str(v) for v in col), dtype=object, count=len(col))
            return pd.util.hash_array(text)
    return pd.util.hash_pandas_object(pd.Series(col, copy=False), index=False).to_numpy()
