"""Content pointers: ``sha256:<hex>`` names for datasets, so lineage works without a catalogue.

A run's outputs and a later run's inputs match when they hold the same data (mltrace's idea), so a
pointer depends on content only: column names, row count and values, not on the Python object or
the memory layout. It is computed on the caller's thread (``log_input`` returns it), so it is
built for speed:

* fixed-width columns (numbers, booleans, datetimes) are viewed as one uint64 per row (no copy for
  8-byte types) and folded into a per-row accumulator with a multiply-xor;
* text columns (object, string and categorical) are joined into one UTF-8 buffer with a separator
  and fed to SHA-256 as they are; nulls become a marker that no string holds. A categorical and
  the object column with the same values therefore get the same pointer.

SHA-256 then runs over the names, the text buffers and the accumulator (8 bytes per row).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from otel_mlobs.sdk._tabular import Table, as_table

PREFIX = "sha256:"
_MIX = np.uint64(0x100000001B3)
_SEP = "\x1f"
_NULL = "\x00null\x00"


def content_pointer(data: Any, name: str = "data") -> str:
    """``sha256:<hex>`` of ``data``'s column names, row count and values."""
    table = data if isinstance(data, Table) else as_table(data, name)
    digest = hashlib.sha256(f"mlobs-table-v1\n{table.rows}\n".encode())
    acc = np.zeros(table.rows, dtype=np.uint64)
    for col_name, col in zip(table.names, table.columns, strict=True):
        digest.update(col_name.encode("utf-8", errors="surrogatepass") + b"\x00")
        words = _fixed_width_words(col)
        if words is None:
            digest.update(_text(col))
            continue
        acc *= _MIX
        acc ^= words
    digest.update(acc.tobytes())
    return PREFIX + digest.hexdigest()


def _fixed_width_words(col: Any) -> np.ndarray | None:
    """One uint64 per value for fixed-width columns, None for text-like ones."""
    if isinstance(col, np.ndarray):
        kind = col.dtype.kind
        if kind in "fiuMm" and col.dtype.itemsize == 8:
            return np.ascontiguousarray(col).view(np.uint64)
        if kind in "fiub":
            return col.astype(np.float64).view(np.uint64)
        return None
    dtype = getattr(col, "dtype", None)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return np.asarray(col.tz_convert(None)).view(np.int64).view(np.uint64)
    if dtype is not None and not isinstance(dtype, pd.CategoricalDtype) and (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    ):
        return col.to_numpy(dtype=np.float64, na_value=np.nan).view(np.uint64)
    return None


def _text(col: Any) -> bytes:
    """The column's values as separator-joined UTF-8 (nulls as a marker)."""
    if isinstance(col, pd.Categorical):
        names = [str(c) for c in col.categories] + [_NULL]
        codes = np.asarray(col.codes)
        text = _SEP.join([names[c] for c in codes.tolist()])
        return text.encode("utf-8", errors="surrogatepass")
    values = np.asarray(col, dtype=object)
    missing = pd.isna(values)
    if missing.any():
        values = values.copy()
        values[missing] = _NULL
    try:
        text = _SEP.join(values.tolist())
    except TypeError:  # not all strings: use their text
        text = _SEP.join(map(str, values.tolist()))
    return text.encode("utf-8", errors="surrogatepass")

