"""Python strings to fixed-width numpy arrays, touching each string object as few times as possible.

Prediction ids and text features are sent whole, so every value has to become bytes on the
caller's thread. Reading 10,000 scattered ``str`` objects is what costs (each is a cache miss once
the model has run), so these helpers read each object once where they can:

* :func:`fixed_width` of equal-length ASCII strings (ids such as ``"20251225-000123"``) joins
  them into one buffer and reshapes it; other strings go through one numpy cast at a width read
  from the joined length check.
* :func:`category_text` of a low-cardinality column converts its distinct values only.
* :func:`factorize_strings` gives the codes of a column of ``str`` in one hash pass over their
  UTF-8 bytes, without first checking the column's type (another pass over every object).

ASCII text becomes ``|S`` (one byte a character, a quarter of ``<U``); anything else ``<U``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # pandas' string hash table: one pass, codes in order of first appearance
    from pandas._libs.hashtable import StringHashTable as _StringHashTable
except ImportError:  # a pandas without it: callers take their general path
    _StringHashTable = None

_SEP = "\x00"


def fixed_width(values: np.ndarray) -> np.ndarray:
    """A 1-D object array of ``str`` as ``|S`` (all ASCII) or ``<U`` at its longest value's width.

    Raises :class:`TypeError` if a value is not a ``str`` (callers convert those themselves).
    """
    items = values.tolist()
    n = len(items)
    items.append("")  # a trailing separator closes the last row
    text = _SEP.join(items)  # TypeError on the first non-str value
    if not n:
        return np.zeros(0, dtype="S1")
    if text.isascii():
        data = text.encode("ascii")
        width = len(items[0])
        if width and len(data) == n * (width + 1):
            flat = np.frombuffer(data, dtype=np.uint8)
            rows = flat.reshape(n, width + 1)
            # Equal widths put the n separators at the end of every row; no other NUL byte
            # may exist (a value holding one would shift them).
            if not rows[:, width].any() and np.count_nonzero(flat == 0) == n:
                return np.ascontiguousarray(rows[:, :width]).view(f"S{width}").reshape(n)
        return values.astype(f"S{max(map(len, items)) or 1}")
    return values.astype(f"<U{max(map(len, items)) or 1}")


def factorize_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(codes, uniques)`` of a 1-D object array whose values are all ``str``, as
    ``pandas.factorize`` gives them (codes in order of first appearance); None when a value is
    not a ``str`` (or cannot be encoded as UTF-8), for the caller's general path.

    The hash table marks every value that is not a ``str`` with code -1, so a column without -1
    held strings only: the one pass both checks and factorizes.
    """
    if _StringHashTable is None or values.dtype.kind != "O" or values.ndim != 1:
        return None
    try:
        uniques, codes = _StringHashTable(64).factorize(values, na_sentinel=-1)
    except (TypeError, ValueError, UnicodeError):  # e.g. lone surrogates
        return None
    codes = np.asarray(codes, dtype=np.intp)
    if len(codes) and int(codes.min()) < 0:
        return None
    return codes, np.asarray(uniques, dtype=object)


def category_text(codes: np.ndarray, names: list[str]) -> np.ndarray:
    """``names[code]`` for every code, ``""`` for code -1, as ``|S`` or ``<U``."""
    table = fixed_width(np.array([*names, ""], dtype=object))
    return table[codes]


def as_text(value: Any) -> str:
    """The text of one value; bytes are read as UTF-8."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
