"""Turn the tabular things users pass to ``log_input`` / ``log_output`` into named 1-D columns.

Everything downstream (summaries, samples, content pointers) works on one shape only: a
:class:`Table` of equal-length 1-D columns, each a numpy array or a pandas array (``Categorical``
and other extension arrays are kept as they are, so categoricals stay codes + categories and
nothing is materialized as Python objects). Conversion is by reference where the source allows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ACCEPTED = (
    "a pandas DataFrame or Series, a numpy array (1-D, 2-D or structured), a dict of 1-D "
    "arrays or lists, or a polars DataFrame or Series"
)


@dataclass(slots=True)
class Table:
    """Equal-length named columns; names may repeat, be empty or hold any unicode."""

    names: list[str]
    columns: list[Any]
    rows: int


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
    raise TypeError(f"cannot summarize {type(data).__module__}.{type(data).__qualname__}; "
                    f"expected {ACCEPTED}")


def _from_pandas(df: pd.DataFrame) -> Table:
    names = [str(c) for c in df.columns]
    dtypes = df.dtypes.tolist()
    # One homogeneous numpy block (the common numeric frame): rows of the transposed view are
    # contiguous columns, obtained without copying and without a Series per column.
    if dtypes and all(isinstance(d, np.dtype) and d.kind in "fiub" for d in dtypes) and all(
        d == dtypes[0] for d in dtypes
    ):
        block = df.to_numpy().T
        return Table(names, list(block), len(df))
    return Table(names, [_series_values(s) for _, s in df.items()], len(df))


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
            raise TypeError(f"dict value {key!r} is a {type(value).__name__}; a dict must map "
                            f"names to 1-D arrays or lists")
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
    return isinstance(value, np.ndarray | pd.Series | pd.Index | pd.api.extensions.ExtensionArray
                      | list | tuple) or _polars_kind(value) == "Series"


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
    """"DataFrame"/"Series" for polars objects; never imports polars itself."""
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
