"""An online adversarial classifier: can a model tell live rows from reference rows?

If live data is distributed like the reference, no classifier beats a coin: its AUC stays at 0.5
and its log loss at ln 2. The more the data moved, jointly over all columns, the better a
classifier does, and its weights say which columns give the change away. One number (AUC) per
dataset replaces a p-value per column, so there is nothing to correct for multiple testing and
no alarm from sheer sample size.

Rows are encoded once: every column by its reference coding (one-hot over quantile bins, null,
below-range and above-range codes, or over frequent categories), plus the standardized value of
numeric columns. The model is a logistic regression trained by plain SGD, one mini-batch of live
rows against as many reference rows at a time. Every live row is scored *before* it is trained
on (prequential evaluation), and scored against reference rows the model never trains on, so
the reported AUC and log loss are honest out-of-sample figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from otel_mlobs.processor.analyzers.diagnose.discretize import ColumnCoder, _as_float

_CLIP = 5.0


@dataclass
class RowEncoder:
    """Columns -> a dense float feature matrix; ``owner[f]`` is the column of feature ``f``."""

    coders: list[ColumnCoder]
    means: np.ndarray  # per coder; NaN for categorical coders
    stds: np.ndarray
    offsets: list[int]  # first feature of each coder
    n_features: int
    owner: np.ndarray

    @classmethod
    def fit(
        cls, coders: Sequence[ColumnCoder], samples: Sequence[tuple[float, Mapping]]
    ) -> RowEncoder:
        """Learn standardization of numeric columns from reference samples (event time, cols)."""
        means, stds, offsets, owner = [], [], [], []
        f = 0
        for j, coder in enumerate(coders):
            offsets.append(f)
            width = coder.n_codes + (coder.kind != "categorical")
            owner.extend([j] * width)
            f += width
            if coder.kind == "categorical":
                means.append(np.nan)
                stds.append(np.nan)
                continue
            x = np.concatenate([_raw(coder, cols.get(coder.name), t) for t, cols in samples])
            x = x[np.isfinite(x)]
            means.append(float(x.mean()) if len(x) else 0.0)
            sd = float(x.std()) if len(x) else 0.0
            stds.append(sd if sd > 0 else 1.0)
        return cls(
            list(coders),
            np.array(means),
            np.array(stds),
            offsets,
            f,
            np.array(owner, dtype=np.int64),
        )

    def encode(self, columns: Mapping[str, np.ndarray], event_time: float) -> np.ndarray:
        """Feature matrix of one sample (missing columns encode as all-zero features)."""
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.zeros((n, self.n_features))
        rows = np.arange(n)
        for j, coder in enumerate(self.coders):
            values = columns.get(coder.name)
            if values is None or len(values) != n:
                continue
            base = self.offsets[j]
            codes = coder.encode(values, event_time)
            out[rows, base + codes] = 1.0
            if coder.kind != "categorical":
                z = (_raw(coder, values, event_time) - self.means[j]) / self.stds[j]
                out[:, base + coder.n_codes] = np.clip(np.nan_to_num(z, nan=0.0), -_CLIP, _CLIP)
        return out

    def column_names(self) -> list[str]:
        """Column of each coder, in order."""
        return [c.name for c in self.coders]


def _raw(coder: ColumnCoder, values: np.ndarray | None, event_time: float) -> np.ndarray:
    if values is None:
        return np.empty(0)
    x = _as_float(np.asarray(values))
    return x - event_time if coder.kind == "offset" else x


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN with one class only."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranked = scores[order]
    ranks = np.empty(len(scores))
    # average ranks over ties
    _, first, counts = np.unique(ranked, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


class OnlineLogit:
    """Logistic regression by SGD with L2, for streams (label 1 = live, 0 = reference).

    >>> rng = np.random.default_rng(0)
    >>> m = OnlineLogit(2)
    >>> for _ in range(200):
    ...     live = rng.normal([1.0, 0.0], 1.0, (16, 2))
    ...     ref = rng.normal([0.0, 0.0], 1.0, (16, 2))
    ...     m.step(np.vstack([live, ref]), np.r_[np.ones(16), np.zeros(16)])
    >>> bool(m.weights[0] > 0.5 > abs(m.weights[1]))
    True
    """

    def __init__(self, n_features: int, lr: float = 0.05, l2: float = 1e-3) -> None:
        if n_features < 1 or not lr > 0 or l2 < 0:
            raise ValueError("n_features >= 1, lr > 0 and l2 >= 0 required")
        self.lr = float(lr)
        self.l2 = float(l2)
        self.weights = np.zeros(n_features)
        self.bias = 0.0
        self.steps = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(live) per row."""
        return 1.0 / (1.0 + np.exp(-np.clip(x @ self.weights + self.bias, -30, 30)))

    def step(self, x: np.ndarray, y: np.ndarray) -> None:
        """One SGD step on a mini-batch."""
        err = self.predict(x) - y
        self.weights -= self.lr * (x.T @ err / len(y) + self.l2 * self.weights)
        self.bias -= self.lr * float(err.mean())
        self.steps += 1


def log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row binary cross-entropy (nats)."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))
