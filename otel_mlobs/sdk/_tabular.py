"""Turn the tabular things users pass to ``log_input`` / ``log_output`` into named 1-D columns.

Everything downstream (summaries, samples, content pointers) works on one shape only: a
:class:`Table` of equal-length 1-D columns, each a numpy array or a pandas array (``Categorical``
and other extension arrays are kept as they are, so categoricals stay codes + categories and
nothing is materialized as Python objects). Conversion is by reference where the source allows it.

A pandas DataFrame already stores its numeric columns as 2-D blocks, one per dtype. Those blocks
are handed on as they are (:attr:`Table.blocks`), so the summarizer reduces a whole block with one
numpy call per statistic instead of one per column, and reading a 24-column frame costs a few
microseconds instead of one ``Series`` per column. The blocks are read from pandas' block manager
(``DataFrame._mgr``); a pandas without it takes the per-column path, with the same result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ACCEPTED = (
    "a pandas DataFrame or Series, a numpy array (1-D, 2-D or structured), a dict of 1-D "
    "arrays or lists, or a polars DataFrame or Series"
)


@dataclass(slots=True)
class Table:
    """Equal-length named columns; names may repeat, be empty or hold any unicode.

    ``blocks`` optionally groups numeric and boolean numpy columns that share one 2-D array:
    ``(positions, array)`` where row ``j`` of ``array`` (shape ``(len(positions), rows)``) is
    the column at ``positions[j]``. Those columns are in ``columns`` too, as row views.
    """

    names: list[str]
    columns: list[Any]
    rows: int
    blocks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def is_tabular(data: Any) -> bool:
    """True for the inputs :func:`as_table` accepts, without converting anything."""
    if isinstance(data, pd.DataFrame | pd.Series | np.ndarray):
        return True
    if isinstance(data, Mapping):
        return bool(data) and all(_is_column_like(v) for v in data.values())
    return _polars_kind(data) is not None


def as_table(data: Any, name: str = "data") -> Table:
    """Normalize ``data``; raise :class:`TypeError` naming what is accepted otherwise.

    ``name`` names the single column of 1-D inputs (a 1-D array is the dataset itself).
    """
    if isinstance(data, pd.DataFrame):
        return _from_pandas(data)
    if isinstance(data, pd.Series):
        label = name if data.name is None else str(data.name)
        return Table([label], [_series_values(data)], len(data))
    if isinstance(data, np.ndarray):
        return _from_numpy(data, name)
    if isinstance(data, Mapping):
        return _from_mapping(data)
    kind = _polars_kind(data)
    if kind == "DataFrame":
        names = [str(c) for c in data.columns]
        cols = [_polars_values(data.get_column(c)) for c in data.columns]
        return Table(names, cols, data.height)
    if kind == "Series":
        label = str(data.name) if data.name else name
        return Table([label], [_polars_values(data)], len(data))
    raise TypeError(
        f"cannot summarize {type(data).__module__}.{type(data).__qualname__}; expected {ACCEPTED}"
    )


def _from_pandas(df: pd.DataFrame) -> Table:
    names = [str(c) for c in np.asarray(df.columns, dtype=object).tolist()]
    table = _from_blocks(df, names)
    if table is not None:
        return table
    return Table(names, [_series_values(s) for _, s in df.items()], len(df))


def _from_blocks(df: pd.DataFrame, names: list[str]) -> Table | None:
    """Columns straight from pandas' blocks, or None when the block manager is not readable."""
    try:
        blocks = [(blk.mgr_locs.as_array, blk.values) for blk in df._mgr.blocks]
    except AttributeError:  # a pandas without the block manager API
        return None
    n = len(df)
    columns: list[Any] = [None] * len(names)
    numeric: list[tuple[np.ndarray, np.ndarray]] = []
    placed = 0
    for positions, values in blocks:
        if getattr(values, "ndim", 0) == 2:
            if values.shape != (len(positions), n):
                return None
            parts = [values[j] for j in range(len(positions))]  # row views: no copy
            if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
                numeric.append((positions, values))
        elif len(positions) == 1 and len(values) == n:
            parts = [values]
        else:
            return None
        for pos, part in zip(positions.tolist(), parts, strict=True):
            if columns[pos] is None:
                placed += 1
            columns[pos] = part
    if placed != len(names):
        return None
    return Table(names, columns, n, numeric)


def _series_values(s: pd.Series) -> Any:
    if isinstance(s.dtype, np.dtype):
        return s.to_numpy()
    return s.array


def _from_numpy(arr: np.ndarray, name: str) -> Table:
    if arr.dtype.names is not None:
        if arr.ndim != 1:
            raise TypeError(f"structured arrays must be 1-D, got shape {arr.shape}")
        fields = list(arr.dtype.names)
        return Table(fields, [np.asarray(arr[f]) for f in fields], len(arr))
    if arr.ndim == 1:
        return Table([name], [arr], len(arr))
    if arr.ndim == 2:
        return Table([str(i) for i in range(arr.shape[1])], list(arr.T), arr.shape[0])
    raise TypeError(f"numpy arrays must be 1-D or 2-D, got shape {arr.shape}; expected {ACCEPTED}")


def _from_mapping(data: Mapping) -> Table:
    names: list[str] = []
    cols: list[Any] = []
    for key, value in data.items():
        if not _is_column_like(value):
            raise TypeError(
                f"dict value {key!r} is a {type(value).__name__}; a dict must map "
                f"names to 1-D arrays or lists"
            )
        col = _column(value)
        if getattr(col, "ndim", 1) != 1:
            raise TypeError(f"dict value {key!r} has shape {np.shape(col)}; columns must be 1-D")
        names.append(str(key))
        cols.append(col)
    lengths = {n: len(c) for n, c in zip(names, cols, strict=True)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"dict columns have different lengths: {lengths}")
    return Table(names, cols, next(iter(lengths.values()), 0))


def _is_column_like(value: Any) -> bool:
    return (
        isinstance(
            value,
            np.ndarray | pd.Series | pd.Index | pd.api.extensions.ExtensionArray | list | tuple,
        )
        or _polars_kind(value) == "Series"
    )


def _column(value: Any) -> Any:
    if isinstance(value, pd.Series | pd.Index):
        return value.to_numpy() if isinstance(value.dtype, np.dtype) else value.array
    if _polars_kind(value) == "Series":
        return _polars_values(value)
    if isinstance(value, np.ndarray | pd.api.extensions.ExtensionArray):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind == "U":  # keep None-free string lists as objects, like pandas does
        arr = arr.astype(object)
    return arr


def _polars_kind(data: Any) -> str | None:
    """ "DataFrame"/"Series" for polars objects; never imports polars itself."""
    module = type(data).__module__
    if not module.startswith("polars"):
        return None
    name = type(data).__name__
    return name if name in ("DataFrame", "Series") else None


def _polars_values(series: Any) -> Any:
    # Categorical/Enum columns come back as strings; numeric nulls as NaN (floats) or objects.
    values = series.to_numpy()
    if values.dtype.kind == "U":
        values = values.astype(object)
    return values
