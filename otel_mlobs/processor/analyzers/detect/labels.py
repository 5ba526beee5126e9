"""Class labels as small integer codes, and which of them are the model's classes.

Predicted and true labels arrive as canonical strings (:func:`otel_mlobs.packing.label_strings`);
comparing integer codes is what makes the join's correctness test a single vectorized ``==``.
The model's classes come from the ``classes`` of scored batches when given (authoritative), else
from every predicted label and reference true label seen; feedback outside them is rejected.
"""

from __future__ import annotations

import numpy as np

UNKNOWN = -1


class ClassTable:
    """Intern label strings to codes ``0..n-1``; remember which codes are the model's classes."""

    def __init__(self, max_labels: int = 1024) -> None:
        if max_labels < 2:
            raise ValueError(f"max_labels must be >= 2, got {max_labels}")
        self.max_labels = max_labels
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        self._valid = np.zeros(max_labels, dtype=bool)
        self._declared = False  # classes came from a scored batch's ``classes``

    @property
    def names(self) -> list[str]:
        """Label strings by code."""
        return list(self._names)

    @property
    def known(self) -> bool:
        """Whether any model class is known yet."""
        return bool(self._valid.any())

    def classes(self) -> list[str]:
        """The model's classes, by code order."""
        return [n for i, n in enumerate(self._names) if self._valid[i]]

    def encode(self, labels: np.ndarray, *, learn: bool = True) -> np.ndarray:
        """Codes of ``labels`` (int32). New strings get codes while room lasts, else UNKNOWN."""
        arr = np.asarray(labels)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int32)
        if arr.dtype.kind != "U":
            arr = arr.astype(str)
        uniq, inverse = np.unique(arr, return_inverse=True)
        codes = np.empty(uniq.shape[0], dtype=np.int32)
        for i, name in enumerate(uniq.tolist()):  # one step per distinct label, not per row
            code = self._codes.get(name)
            if code is None and learn and len(self._names) < self.max_labels:
                code = len(self._names)
                self._codes[name] = code
                self._names.append(name)
            codes[i] = UNKNOWN if code is None else code
        return codes[inverse.reshape(-1)]

    def declare(self, classes: tuple[str, ...] | list[str]) -> None:
        """Take a scored batch's class list as the model's classes."""
        if not classes:
            return
        codes = self.encode(np.asarray(classes, dtype=str))
        if not self._declared:
            self._valid[:] = False
            self._declared = True
        self._valid[codes[codes >= 0]] = True

    def observe(self, codes: np.ndarray) -> None:
        """Count predicted or reference labels as classes, unless classes were declared."""
        if self._declared:
            return
        codes = np.asarray(codes)
        self._valid[np.unique(codes[codes >= 0])] = True

    def is_valid(self, codes: np.ndarray) -> np.ndarray:
        """Which codes are model classes (everything passes while no class is known)."""
        codes = np.asarray(codes)
        if not self.known:
            return codes >= 0
        ok = codes >= 0
        out = np.zeros(codes.shape[0], dtype=bool)
        out[ok] = self._valid[codes[ok]]
        return out
