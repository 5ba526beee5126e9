"""Packed column arrays: the one binary encoding of the wire contract.

A packed array is ``<numpy dtype str>\\n<raw little-endian buffer>``, e.g. ``b"<f8\\n" + data``.
Encoding is a ``tobytes()``; decoding is a zero-copy ``np.frombuffer``. Only plain numeric, bool
and fixed-width string dtypes are allowed, so a hostile span can never make the decoder build
Python objects or structured records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_ALLOWED_KINDS = frozenset("fiubUS")
_MAX_HEADER = 16


class PackingError(ValueError):
    """A packed array is malformed: bad header, disallowed dtype, or a ragged buffer."""


def pack(values: np.ndarray | Sequence) -> bytes:
    """Pack a 1-D array. Object arrays of strings become fixed-width unicode (``<U``)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        arr = arr.astype(str)
    elif arr.dtype.kind == "M":
        arr = arr.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    elif arr.dtype.kind == "m":
        arr = arr.astype("timedelta64[ns]").astype(np.int64).astype(np.float64) / 1e9
    if arr.dtype.kind not in _ALLOWED_KINDS:
        raise PackingError(f"cannot pack dtype {arr.dtype}; allowed kinds: f, i, u, b, U, S")
    arr = np.ascontiguousarray(arr.reshape(-1))
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.dtype.str.encode("ascii") + b"\n" + arr.tobytes()


def unpack(buf: bytes) -> np.ndarray:
    """Decode :func:`pack` output. Raises :class:`PackingError` on anything malformed."""
    if not isinstance(buf, bytes | bytearray | memoryview):
        raise PackingError(f"packed array must be bytes, got {type(buf).__name__}")
    buf = bytes(buf)
    nl = buf.find(b"\n", 0, _MAX_HEADER + 1)
    if nl <= 0:
        raise PackingError("packed array has no dtype header")
    try:
        dtype = np.dtype(buf[:nl].decode("ascii"))
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise PackingError(f"bad dtype header {buf[:nl]!r}") from exc
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise PackingError(f"dtype {dtype} not allowed in packed arrays")
    if dtype.itemsize == 0:
        raise PackingError("zero-width dtype")
    payload = memoryview(buf)[nl + 1 :]
    if len(payload) % dtype.itemsize:
        raise PackingError(
            f"buffer of {len(payload)} bytes is not a multiple of itemsize {dtype.itemsize}"
        )
    return np.frombuffer(payload, dtype=dtype)


def label_strings(values: np.ndarray | Sequence) -> np.ndarray:
    """Canonical string form of class labels, so predictions and feedback compare equal.

    ``True``/``1``/``1.0``/``"1"`` all become ``"1"``: a model that predicts booleans and a
    feedback job that writes integers still join. Vectorized; returns a ``<U`` array.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        return arr.astype(np.int8).astype(str)
    if arr.dtype.kind == "f":
        whole = np.isfinite(arr) & (arr == np.round(arr))
        if whole.all():
            return arr.astype(np.int64).astype(str)
        return arr.astype(str)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8", errors="replace")
    return arr.astype(str)
