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
from scipy.linalg.blas import sgemv
from scipy.special import expit

from otel_mlobs.processor.analyzers.diagnose.discretize import (
    FIRST,
    HIGH,
    LOW,
    NULL,
    ColumnCoder,
    _as_float,
)

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
        rows, hot, zcols, z = self.encode_sparse(columns, event_time)
        out = np.zeros((rows, self.n_features))
        out[np.arange(rows)[:, None], hot] = 1.0
        out[:, zcols] = z
        return out

    def encode_sparse(
        self, columns: Mapping[str, np.ndarray], event_time: float
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, hot, zcols, z): the one-hot feature of every row and present column
        (``hot[i, c]``), and the standardized values ``z`` of the present numeric columns that
        belong in features ``zcols``. One pass per column group, no per-column coder calls on
        the common dtypes."""
        n = len(next(iter(columns.values()))) if columns else 0
        plan = self._plan()
        hot_parts: list[np.ndarray] = []
        z_parts: list[np.ndarray] = []
        zcol_parts: list[np.ndarray] = []
        for group in plan:
            got = group.encode(columns, n, event_time)
            if got is None:
                continue
            hot, zcols, z = got
            hot_parts.append(hot)
            if zcols is not None:
                zcol_parts.append(zcols)
                z_parts.append(z)
        hot = np.hstack(hot_parts) if hot_parts else np.zeros((n, 0), np.int64)
        if z_parts:
            return n, hot, np.concatenate(zcol_parts), np.hstack(z_parts)
        return n, hot, np.zeros(0, np.int64), np.zeros((n, 0))

    def _plan(self) -> list[_Group]:
        plan = self.__dict__.get("_groups")
        if plan is None:
            plan = self.__dict__["_groups"] = _make_plan(self)
        return plan

    def __getstate__(self) -> dict:
        # The plan is derived from the coders: rebuilt on first use after a restore.
        return {k: v for k, v in self.__dict__.items() if k != "_groups"}

    def column_names(self) -> list[str]:
        """Column of each coder, in order."""
        return [c.name for c in self.coders]


class _Group:
    """Columns encoded together; ``encode`` gives (hot, zcols, z) or ``None`` if none present."""

    def encode(
        self, columns: Mapping[str, np.ndarray], n: int, event_time: float
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None:
        raise NotImplementedError


class _NumericGroup(_Group):
    """Numeric and clock-offset columns: codes for every column at once by broadcasting each
    value against its column's (padded) bin edges or known values."""

    def __init__(self, enc: RowEncoder, idx: list[int], by_values: bool) -> None:
        coders = [enc.coders[j] for j in idx]
        self.names = [c.name for c in coders]
        self.by_values = by_values
        marks = [c.values if by_values else c.edges for c in coders]
        width = max(1, max(len(m) for m in marks))
        self.marks = np.full((len(idx), width), np.inf)
        for i, m in enumerate(marks):
            self.marks[i, : len(m)] = m
        # (mark, column, 1): comparisons broadcast to (marks, columns, rows) and are counted
        # over the leading axis, which numpy reduces in contiguous strides.
        self.stacked = np.ascontiguousarray(self.marks.T)[:, :, None]
        self.last = np.array([max(len(m) - 1, 0) for m in marks], np.int64)[:, None]
        self.offset = np.array([c.kind == "offset" for c in coders])
        self.lo = np.array([c.lo for c in coders])[:, None]
        self.hi = np.array([c.hi for c in coders])[:, None]
        self.base = np.array([enc.offsets[j] for j in idx], np.int64)[:, None]
        self.zcols = np.array(
            [enc.offsets[j] + c.n_codes for j, c in zip(idx, coders, strict=True)], np.int64
        )
        self.mean = enc.means[idx][:, None]
        self.std = enc.stds[idx][:, None]

    def encode(self, columns, n, event_time):  # noqa: D102 - see _Group
        keep = [i for i, name in enumerate(self.names) if _fits(columns.get(name), n)]
        if not keep:
            return None
        sel = np.array(keep) if len(keep) < len(self.names) else slice(None)
        x = np.empty((len(keep), n))
        for r, i in enumerate(keep):
            values = np.asarray(columns[self.names[i]])
            x[r] = values if values.dtype.kind in "fiub" else _as_float(values)
        shifted = self.offset[sel]
        if shifted.any():
            x[shifted] -= event_time
        stacked = self.stacked[:, sel]
        if self.by_values:
            # searchsorted(values, x), then the nearer of the two neighbouring known values
            pos = _count(stacked < x).astype(np.int64)
            np.minimum(pos, self.last[sel], out=pos)
            left = np.maximum(pos - 1, 0)
            marks = self.marks[sel]
            gap_left = np.abs(x - np.take_along_axis(marks, left, 1))
            pos = np.where(gap_left < np.abs(x - np.take_along_axis(marks, pos, 1)), left, pos)
        else:  # searchsorted(edges, x, side="right")
            pos = _count(stacked <= x)
        codes = np.where(x < self.lo[sel], LOW, np.where(x > self.hi[sel], HIGH, FIRST + pos))
        codes = np.where(np.isfinite(x), codes, NULL) + self.base[sel]
        z = (x - self.mean[sel]) / self.std[sel]
        np.clip(z, -_CLIP, _CLIP, out=z)
        np.copyto(z, 0.0, where=np.isnan(z))
        return codes.T, self.zcols[sel], z.T


class _CategoricalGroup(_Group):
    """Categorical columns: each value's fixed-width text is hashed to 64 bits in one
    vectorized pass and looked up among the hashes of the reference vocabulary (a collision of
    an unseen value with a known one has probability ~2^-64 per value)."""

    def __init__(self, enc: RowEncoder, idx: list[int]) -> None:
        self.coders = [enc.coders[j] for j in idx]
        self.base = [enc.offsets[j] for j in idx]
        null = _hash_text(np.array(["", "nan", "None"]))
        self.tables: list[tuple[np.ndarray, np.ndarray, int] | None] = []
        for c, base in zip(self.coders, self.base, strict=True):
            h = _hash_text(np.asarray(c.values).astype(str)) if len(c.values) else None
            if h is None or len(np.unique(h)) < len(h) or np.isin(h, null).any():
                self.tables.append(None)  # no usable hash table: the coder's own path
                continue
            # one sorted table of the known values' and the null spellings' hashes
            keys = np.concatenate([h, null])
            codes = np.concatenate([FIRST + np.arange(len(h)), np.full(len(null), NULL)]) + base
            order = np.argsort(keys)
            self.tables.append((keys[order], codes[order], base + FIRST + len(h)))

    def encode(self, columns, n, event_time):  # noqa: D102 - see _Group
        out = []
        for coder, base, table in zip(self.coders, self.base, self.tables, strict=True):
            values = columns.get(coder.name)
            if not _fits(values, n):
                continue
            values = np.asarray(values)
            h = _hash_text(values if values.dtype.kind == "U" else values.astype(str))
            if table is None or h is None:
                out.append(coder.encode(values, event_time) + base)
                continue
            keys, codes, other = table
            pos = np.searchsorted(keys, h)
            np.minimum(pos, len(keys) - 1, out=pos)
            out.append(np.where(keys[pos] == h, codes[pos], other))
        if not out:
            return None
        return np.stack(out, axis=1), None, None


_WORDS = np.random.default_rng(20_240_611).integers(1, 2**63, 1024, dtype=np.uint64) | 1


def _hash_text(text: np.ndarray) -> np.ndarray | None:
    """64-bit hash of each string of a native fixed-width unicode array, independent of the
    array's width (zero padding adds nothing); ``None`` for other layouts."""
    if text.dtype.kind != "U" or text.dtype.byteorder == ">":
        return None
    chars = text.dtype.itemsize // 4
    if chars % 2:
        text = text.astype(f"<U{chars + 1}")
        chars += 1
    words = chars // 2
    if words > len(_WORDS):
        return None
    if words == 0:
        return np.zeros(len(text), np.uint64)
    packed = np.ascontiguousarray(text).view(np.uint64).reshape(len(text), words)
    return packed @ _WORDS[:words]  # wraps modulo 2^64


def _count(hits: np.ndarray) -> np.ndarray:
    """True values over the leading axis of a boolean array (bytes add fastest)."""
    if len(hits) < 255:
        return hits.view(np.uint8).sum(0, dtype=np.uint8).astype(np.int64)
    return hits.sum(0)


def _fits(values: np.ndarray | None, n: int) -> bool:
    return values is not None and len(values) == n


def _make_plan(enc: RowEncoder) -> list[_Group]:
    by_edges, by_values, categorical = [], [], []
    for j, c in enumerate(enc.coders):
        if c.kind == "categorical":
            categorical.append(j)
        elif len(c.values):
            by_values.append(j)
        else:
            by_edges.append(j)
    plan: list[_Group] = []
    if by_edges:
        plan.append(_NumericGroup(enc, by_edges, by_values=False))
    if by_values:
        plan.append(_NumericGroup(enc, by_values, by_values=True))
    if categorical:
        plan.append(_CategoricalGroup(enc, categorical))
    return plan


def _raw(coder: ColumnCoder, values: np.ndarray | None, event_time: float) -> np.ndarray:
    if values is None:
        return np.empty(0)
    x = _as_float(np.asarray(values))
    return x - event_time if coder.kind == "offset" else x


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN with one class only."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    return separation(scores[labels], scores[~labels])


def separation(positive: np.ndarray, negative: np.ndarray) -> float:
    """AUC of ``positive`` scores over ``negative`` ones: the share of pairs ordered right, ties
    counted half; one sort of the negatives and two searches of the positives in them."""
    if not len(positive) or not len(negative):
        return float("nan")
    ranked = np.sort(negative)
    below = np.searchsorted(ranked, positive, side="left")
    upto = np.searchsorted(ranked, positive, side="right")
    return float((below.sum() + upto.sum()) / (2.0 * len(positive) * len(negative)))


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

    def prequential(self, batches: np.ndarray, n: int, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Score, then learn, ``n`` live rows in mini-batches; (live scores, held-out reference
        scores), one held-out row per live row.

        The same SGD as :meth:`predict` then :meth:`step` per mini-batch, in float32 and with
        the bias as a last constant feature. ``batches[k]`` holds one mini-batch: ``B`` live
        rows, ``B`` reference rows to train on and ``B`` held-out reference rows; mini-batch
        ``b`` of the run sits in ``batches[(slot + b) % len(batches)]`` (``n`` must fit). One
        product scores all three parts and one BLAS call takes the step, so a mini-batch costs
        five small calls on arrays that stay in cache.
        """
        batch = batches.shape[1] // 3
        rounds = -(-n // batch)
        if rounds > len(batches):
            raise ValueError("more live rows than mini-batch slots")
        w = np.append(self.weights, self.bias).astype(np.float32)
        shrink = np.full(len(w), 1.0 - self.lr * self.l2, np.float32)
        shrink[-1] = 1.0  # no decay on the bias
        out = np.empty((rounds, 3 * batch), np.float32)
        target = np.r_[np.ones(batch), np.zeros(batch)].astype(np.float32)
        err = np.empty(2 * batch, np.float32)
        for b in range(rounds):
            k = (slot + b) % len(batches)
            rows, score = batches[k], out[b]
            m = min(batch, n - b * batch)
            if m == batch:
                np.matmul(rows, w, out=score)
                expit(score, out=score)
                np.subtract(score[: 2 * batch], target, out=err)
                w *= shrink
                # w -= lr / 2B * X^T err, in place
                sgemv(-self.lr / (2 * batch), rows[: 2 * batch].T, err, 1.0, w, overwrite_y=1)
            else:  # the run's last, short batch: as many reference rows as live ones
                live, ref = rows[:m], rows[batch : batch + m]
                score[:] = 0.5
                score[:m] = expit(live @ w)
                score[batch : batch + m] = expit(ref @ w)
                score[2 * batch : 2 * batch + m] = expit(rows[2 * batch : 2 * batch + m] @ w)
                part = np.float32(self.lr / (2 * m))
                grad = ((score[:m] - 1.0) * part) @ live + (score[batch : batch + m] * part) @ ref
                w *= shrink
                w -= grad
        self.weights = w[:-1].astype(np.float64)
        self.bias = float(w[-1])
        self.steps += rounds
        return (
            out[:, :batch].ravel()[:n].astype(np.float64),
            out[:, 2 * batch :].ravel()[:n].astype(np.float64),
        )


def log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row binary cross-entropy (nats)."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))
