"""Snapshots of the data a caller logs, so background work sees it as it was at the call.

The caller may change its frame or arrays as soon as ``log_input`` or ``log_predictions``
returns, while the summary is still being computed on the SDK's worker
(:mod:`otel_mlobs.sdk._worker`). A snapshot must therefore not share writable memory with
anything the caller holds, and must be cheap, since it is taken on the caller's thread:

* pandas objects under copy-on-write (always from pandas 3, opt-in before): a shallow copy. It
  shares the blocks, and pandas copies a block before writing to it while another object
  references it, so every write through the caller's frame (``df.loc[...] = ...``,
  ``df["x"] += 1``, ``inplace=True`` methods) lands in a fresh block; arrays handed out by pandas
  for such frames are read-only. Without copy-on-write: a deep copy.
* numpy arrays: a copy (they are writable and have no such protection).
* dicts: a new dict of snapshotted columns; lists and tuples become tuples (their items, usually
  numbers and strings, are immutable).
* polars objects are immutable once built: a clone, which shares the buffers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def snapshot(data: Any) -> Any:
    """``data`` as a value later changes to the caller's objects cannot reach; anything the
    SDK does not read is returned as it is (reading it then raises as usual)."""
    if isinstance(data, np.ndarray):
        return data.copy()
    if isinstance(data, pd.DataFrame | pd.Series | pd.Index):
        return data.copy(deep=not copy_on_write())
    if isinstance(data, pd.api.extensions.ExtensionArray):
        return data.copy()
    if isinstance(data, Mapping):
        return {key: _column(value) for key, value in data.items()}
    if type(data).__module__.startswith("polars") and hasattr(data, "clone"):
        return data.clone()
    return data


def copy_on_write() -> bool:
    """Whether pandas copies shared blocks before writing (always from pandas 3)."""
    if _pandas_major() >= 3:
        return True
    try:
        return pd.get_option("mode.copy_on_write") is True
    except (KeyError, pd.errors.OptionError):
        return False


def _column(value: Any) -> Any:
    if type(value) is np.ndarray:
        return value.copy()
    if isinstance(value, list | tuple):
        return tuple(value)
    return snapshot(value)


@functools.cache
def _pandas_major() -> int:
    try:
        return int(pd.__version__.split(".", 1)[0])
    except ValueError:
        return 0
