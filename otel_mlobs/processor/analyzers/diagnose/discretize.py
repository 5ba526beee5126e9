"""Turn the columns of a row sample into small integer codes, learned from reference rows.

The density model and the drift classifier both reason over discretized columns: it makes one
model cover numbers, categories and flags alike, makes every parameter readable (a count in a
table), and keeps unseen values meaningful (their own code, not an extrapolation).

Codes per column: ``0`` null; ``1`` below the reference minimum; ``2`` above the reference
maximum; ``3..`` the reference bins (numeric quantile bins, or one code per frequent value and
one for "any other value"). Clock columns (epoch seconds that move on with every run) are coded
by their offset from the run's event time, so "08:00 on the day of the run" means the same thing
every day; identifier-like columns (a new range every run even after that) and run-level columns
(one value per run, a new one each run: a date, a day of week) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NULL, LOW, HIGH, FIRST = 0, 1, 2, 3
_TRENDING_OVERLAP = 0.3
_GRID = 4096  # cells of the lookup grid over the span of a numeric column's bin boundaries
_MARGIN = 4  # grid cells on either side of the outermost boundaries


@dataclass
class ColumnCoder:
    """How one column becomes codes."""

    name: str
    kind: str  # "numeric" | "offset" | "categorical"
    edges: np.ndarray  # numeric/offset: inner bin edges; categorical: unused
    values: np.ndarray  # numeric with few values: the exact values; categorical: vocabulary
    lo: float
    hi: float

    @property
    def n_codes(self) -> int:
        """Number of codes this column can take."""
        if self.kind == "categorical":
            return FIRST + len(self.values) + 1
        if len(self.values):
            return FIRST + len(self.values)
        return FIRST + len(self.edges) + 1

    def labels(self) -> list[str]:
        """Human names of the codes, for explanations."""
        out = ["null", f"< {self.lo:.4g}", f"> {self.hi:.4g}"]
        if self.kind == "categorical":
            return out + [str(v) for v in self.values] + ["other"]
        if len(self.values):
            return out + [f"{v:.4g}" for v in self.values]
        bounds = [self.lo, *self.edges.tolist(), self.hi]
        return out + [f"[{a:.4g}, {b:.4g}]" for a, b in zip(bounds, bounds[1:], strict=False)]

    def encode(self, values: np.ndarray, event_time: float) -> np.ndarray:
        """Codes of ``values`` (vectorized)."""
        values = np.asarray(values)
        if self.kind == "categorical":
            return self._lookup().codes(values)
        x = _as_float(values)
        if self.kind == "offset":
            x = x - event_time
        return _finish(self._bins(x), x, self.lo, self.hi)

    def _bins(self, x: np.ndarray) -> np.ndarray:
        """Reference-bin codes of finite in-range values (other values: anything)."""
        if len(self.values):
            idx = np.clip(np.searchsorted(self.values, x), 0, len(self.values) - 1)
            # an unseen value between known ones takes the nearest known code
            left = np.clip(idx - 1, 0, len(self.values) - 1)
            nearer_left = np.abs(x - self.values[left]) < np.abs(x - self.values[idx])
            return FIRST + np.where(nearer_left, left, idx)
        return FIRST + np.searchsorted(self.edges, x, side="right")

    def _lookup(self) -> _Vocabulary:
        found = self.__dict__.get("_vocab")
        if found is None:
            found = self.__dict__["_vocab"] = _Vocabulary(self.values)
        return found

    def __getstate__(self) -> dict:
        # The lookup table is derived from ``values``: rebuilt on first use after a restore.
        return {k: v for k, v in self.__dict__.items() if k != "_vocab"}


_NULL_TEXT = ("", "nan", "None")


class _Vocabulary:
    """Text -> code: the vocabulary and the null spellings share one key set.

    Fixed-width text is read as 64-bit words: a multiplicative hash of the words finds the
    only key a value can be, and comparing the words confirms it, so a column costs a few
    integer passes instead of a string search (whose comparisons are slow per value). Other
    text falls back to a sorted string search. Both are exact.
    """

    def __init__(self, vocabulary: np.ndarray) -> None:
        vocab = np.asarray(vocabulary).astype(str)
        keys = np.concatenate([vocab, np.array(_NULL_TEXT)])
        codes = np.concatenate([FIRST + np.arange(len(vocab)), np.full(len(_NULL_TEXT), NULL)])
        # a null spelling wins over a vocabulary entry of the same text, as it always has
        keys, first = np.unique(keys[::-1], return_index=True)
        self.keys = keys
        self.key_codes = codes[::-1][first].astype(np.int64)
        self.other = FIRST + len(vocab)
        self._by_dtype: dict[np.dtype, _WordKeys | None] = {}

    def codes(self, values: np.ndarray) -> np.ndarray:
        text = values if values.dtype.kind == "U" else values.astype(str)
        if text.dtype.itemsize % 8:  # whole 64-bit words: one more (empty) character
            text = text.astype(f"{text.dtype.byteorder}U{text.dtype.itemsize // 4 + 1}")
        text = np.require(text, requirements=["A", "C"])
        found = self._by_dtype.get(text.dtype, False)
        if found is False:
            found = self._by_dtype[text.dtype] = _WordKeys.of(self, text.dtype)
        if found is None:
            return self._search(text)
        words = text.view(np.uint64).reshape(len(text), text.dtype.itemsize // 8)
        return found.codes(words, self.other)

    def _search(self, text: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.keys, text)
        np.minimum(idx, len(self.keys) - 1, out=idx)
        return np.where(self.keys[idx] == text, self.key_codes[idx], self.other)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_by_dtype": {}}


class _WordKeys:
    """The keys of a :class:`_Vocabulary` as 64-bit words of one text dtype.

    A value's only possible key is found from the few word positions that tell the keys apart
    (often one or two of them): a multiplicative hash of those words indexes a small table of
    key numbers, whose empty slots name a sentinel that codes as "other". Comparing every word
    then confirms or rejects the key. (Should no collision-free table turn up, the vocabulary
    falls back to its string search.)
    """

    def __init__(
        self,
        where: list[int],
        mult: np.ndarray,
        shift: np.uint64,
        lookup: np.ndarray,
        words: list[np.ndarray],
        codes: np.ndarray,
    ) -> None:
        self.where, self.mult, self.shift, self.lookup = where, mult, shift, lookup
        self.words, self.key_codes = words, codes

    @classmethod
    def of(cls, vocab: _Vocabulary, dtype: np.dtype) -> _WordKeys | None:
        chars = dtype.itemsize // 4
        fit = np.array([len(k) <= chars for k in vocab.keys.tolist()], dtype=bool)
        keys = np.require(vocab.keys[fit].astype(dtype), requirements=["A", "C"])
        if not chars or not len(keys):
            return None
        words = keys.view(np.uint64).reshape(len(keys), dtype.itemsize // 8)
        codes = vocab.key_codes[fit]
        n, width = words.shape
        rows = words.tolist()
        where: list[int] = []  # greedily, the word positions that tell the keys apart
        while len({tuple(r[w] for w in where) for r in rows}) < n:
            where.append(
                max(
                    (w for w in range(width) if w not in where),
                    key=lambda w: len({tuple(r[v] for v in (*where, w)) for r in rows}),
                )
            )
        where = where or [0]
        bits = int(np.ceil(np.log2(n + 1))) + 2
        sentinel = np.zeros((1, width), dtype=np.uint64)  # codes as "other" if ever matched
        columns = [np.ascontiguousarray(c) for c in np.vstack([words, sentinel]).T]
        coded = np.append(codes, vocab.other)
        part = words[:, where]
        for seed in range(16):  # multipliers under which those words never collide
            mult = np.random.default_rng(seed).integers(1, 2**63, width, np.uint64) | 1
            for b in range(bits, bits + 4):
                shift = np.uint64(64 - b)
                slots = _word_hash(part, mult) >> shift
                if len(set(slots.tolist())) == n:
                    lookup = np.full(1 << b, n, dtype=np.intp)
                    lookup[slots.astype(np.intp)] = np.arange(n)
                    return cls(where, mult, shift, lookup, columns, coded)
        return None

    def codes(self, words: np.ndarray, other: int) -> np.ndarray:
        h = words[:, self.where[0]] * self.mult[0]
        for i, w in enumerate(self.where[1:], start=1):
            h += words[:, w] * self.mult[i]
        idx = self.lookup[h >> self.shift]
        diff = self.words[0][idx] ^ words[:, 0]
        for c in range(1, words.shape[1]):
            diff |= self.words[c][idx] ^ words[:, c]
        return np.where(diff == 0, self.key_codes[idx], other)


def _word_hash(words: np.ndarray, mult: np.ndarray) -> np.ndarray:
    out = words[:, 0] * mult[0]
    for c in range(1, words.shape[1]):
        out += words[:, c] * mult[c]
    return out


def _finish(codes: np.ndarray, x: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray):
    """Out-of-range and null codes over the bin codes (arrays broadcast per column)."""
    codes = np.where(x < lo, LOW, np.where(x > hi, HIGH, codes))
    return np.where(np.isfinite(x), codes, NULL).astype(np.int64)


def _as_float(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]").astype(np.int64) / 1e9
    return np.full(len(values), np.nan)


def _is_numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "fiuM"


def _run_constant(per_run: Sequence[np.ndarray]) -> bool:
    """Whether the column holds one value per run that changes between runs (a date, a day of
    week, a batch id): it names the run, so any new run looks new."""
    if len(per_run) < 2:
        return False
    firsts = []
    for values in per_run:
        v = np.asarray(values)
        if not len(v):
            continue
        # numbers compare as themselves (all NaNs alike, as their text would): no text needed
        _, counts = np.unique(v if v.dtype.kind in "fiub" else v.astype(str), return_counts=True)
        if counts.max() < 0.99 * len(v):
            return False
        firsts.append(str(v[0]))
    return len(set(firsts)) > 1


def _trending(per_run: Sequence[np.ndarray]) -> bool:
    """Whether each run's values occupy their own slice of the axis."""
    finite = [x[np.isfinite(x)] for x in per_run]
    finite = [np.sort(x) for x in finite if len(x) >= 4]
    if len(finite) < 2:
        return False
    sizes = np.array([len(x) for x in finite], dtype=np.int64)
    boxes = _sorted_quantiles(np.concatenate(finite), sizes, np.array([0.25, 0.75])).tolist()
    overlaps = []
    for (a0, a1), (b0, b1) in zip(boxes, boxes[1:], strict=False):
        union = max(a1, b1) - min(a0, b0)
        overlaps.append(1.0 if union == 0 else max(0.0, min(a1, b1) - max(a0, b0)) / union)
    return float(np.median(overlaps)) < _TRENDING_OVERLAP


def _sorted_quantiles(values: np.ndarray, sizes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(run, q)`` of every run at once, bit for bit (numpy's default "linear"
    method, its interpolation formula included), for runs that are sorted, finite, non-empty
    and laid end to end in ``values``; shape (runs, len(q)). One call instead of one per run,
    and no partitioning: the runs are sorted already."""
    n = sizes[:, None].astype(np.float64)
    virtual = (n - 1) * q[None, :]
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev[above] = -1  # numpy's convention: the last value, interpolation weight unused
    nxt[above] = -1
    prev_i, next_i = prev.astype(np.intp), nxt.astype(np.intp)
    gamma = virtual - prev_i
    starts = (np.cumsum(sizes) - sizes)[:, None]
    a = values[np.where(prev_i < 0, sizes[:, None] - 1, prev_i) + starts]
    b = values[np.where(next_i < 0, sizes[:, None] - 1, next_i) + starts]
    diff = b - a
    out = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), out)


def fit_coder(
    name: str,
    per_run: Sequence[np.ndarray],
    event_times: Sequence[float],
    *,
    bins: int = 10,
    top: int = 24,
) -> ColumnCoder | None:
    """Learn one column's coding from its reference values, one array per run; ``None`` for
    identifier-like columns that no coding makes comparable across runs."""
    sample = np.concatenate([np.asarray(v) for v in per_run]) if per_run else np.empty(0)
    if not len(sample):
        return None
    if _run_constant(per_run):
        return None
    if not _is_numeric(sample):
        text = sample.astype(str)
        text = text[(text != "") & (text != "nan") & (text != "None")]
        vals, counts = np.unique(text, return_counts=True)
        if len(vals) and len(vals) > 0.5 * len(text) and len(vals) > top:
            return None  # an id or free text: every value is new
        keep = np.sort(vals[np.argsort(-counts, kind="stable")[:top]])
        return ColumnCoder(name, "categorical", np.empty(0), keep, np.nan, np.nan)
    runs = [_as_float(np.asarray(v)) for v in per_run]
    kind = "numeric"
    if _trending(runs):
        offsets = [x - t for x, t in zip(runs, event_times, strict=True)]
        if _trending(offsets):
            return None
        runs, kind = offsets, "offset"
    x = np.concatenate(runs)
    x = x[np.isfinite(x)]
    if not len(x):
        return ColumnCoder(name, kind, np.empty(0), np.array([0.0]), 0.0, 0.0)
    lo, hi = float(x.min()), float(x.max())
    x = np.sort(x)
    distinct = x[np.concatenate([[True], x[1:] != x[:-1]])]  # np.unique of sorted values
    if len(distinct) <= bins:
        return ColumnCoder(name, kind, np.empty(0), distinct, lo, hi)
    q = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(_sorted_quantiles(x, np.array([len(x)]), q)[0])
    return ColumnCoder(name, kind, edges, np.empty(0), lo, hi)


def encode_rows(
    coders: Sequence[ColumnCoder], columns: Mapping[str, np.ndarray], event_time: float
) -> tuple[np.ndarray, np.ndarray]:
    """Codes matrix (rows, coders) and a mask of the coders whose column is present."""
    codes, present = RowCoder(coders).encode(columns, event_time)
    return codes.astype(np.int64), present


class RowCoder:
    """All columns of one or several samples to codes at once, for coders fitted once and used
    every run.

    Numeric columns are gathered into one (columns, rows) matrix so the clock offsets, range
    checks and null checks are single passes; the bin search is one ``searchsorted`` per
    column, and per column of several samples together when :meth:`encode_many` is given a
    batch. Codes come out as the transpose of a (coders, rows) array, so each column's codes
    are contiguous for the scorer.
    """

    def __init__(self, coders: Sequence[ColumnCoder]) -> None:
        self.coders = list(coders)
        numeric = [j for j, c in enumerate(self.coders) if c.kind != "categorical"]
        self._numeric = np.array(numeric, dtype=np.int64)
        # small codes: a quarter of the memory traffic of int64 in every later pass
        most = max((c.n_codes for c in self.coders), default=0)
        self._dtype = np.int16 if most < np.iinfo(np.int16).max else np.int64
        self._categorical = [j for j, c in enumerate(self.coders) if c.kind == "categorical"]
        num = [self.coders[j] for j in numeric]
        self._lo = np.array([c.lo for c in num], dtype=np.float64)[:, None]
        self._hi = np.array([c.hi for c in num], dtype=np.float64)[:, None]
        self._offset = np.array([c.kind == "offset" for c in num], dtype=bool)
        grids = [_grid(c) for c in num]
        self._origin = np.array([g[0] for g in grids], dtype=np.float64)[:, None]
        self._inv_width = np.array([g[1] for g in grids], dtype=np.float64)[:, None]
        self._grid = np.concatenate([g[2] for g in grids]) if grids else np.zeros(0, np.int8)
        self._grid_at = (np.arange(len(num), dtype=np.int64) * _GRID)[:, None]
        width = max((len(c.edges) for c in num), default=0)
        self._edges = np.full((len(num), max(width, 1)), np.inf)  # +inf pads: never <= x
        for i, c in enumerate(num):
            self._edges[i, : len(c.edges)] = c.edges
        self._by_value = np.array([bool(len(c.values)) for c in num], dtype=bool)

    def encode(
        self, columns: Mapping[str, np.ndarray], event_time: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Codes matrix (rows, coders; ``int16`` unless a coder has more codes) and a mask of
        the coders whose column is present."""
        codes, present, _ = self.encode_many([(columns, event_time)])
        return codes, present[0]

    def encode_many(
        self, samples: Sequence[tuple[Mapping[str, np.ndarray], float]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes of several samples (columns, event time) stacked: the codes matrix (all rows,
        coders), the presence mask of each sample (samples, coders) and each sample's first
        row (plus the total at the end). A column absent from a sample codes as null there."""
        sizes = [len(next(iter(c.values()))) if c else 0 for c, _ in samples]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total, d = int(bounds[-1]), len(self.coders)
        out = np.zeros((d, total), dtype=self._dtype)
        present = np.zeros((len(samples), d), dtype=bool)
        if self._numeric.size:
            x = np.empty((len(self._numeric), total))
            for i, j in enumerate(self._numeric.tolist()):
                name = self.coders[j].name
                parts = [columns.get(name) for columns, _ in samples]
                if all(
                    isinstance(v, np.ndarray) and len(v) == m and v.dtype.kind in "fiub"
                    for v, m in zip(parts, sizes, strict=True)
                ):  # the common case: every sample has the column, as numbers
                    if len(parts) == 1:
                        x[i] = parts[0]
                    else:
                        np.concatenate(parts, out=x[i], casting="unsafe")
                    present[:, j] = True
                    continue
                x[i] = np.nan
                for s, values in enumerate(parts):
                    if values is not None and len(values) == sizes[s]:
                        values = np.asarray(values)
                        a, b = bounds[s], bounds[s + 1]
                        x[i, a:b] = values if values.dtype.kind in "fiub" else _as_float(values)
                        present[s, j] = True
            if self._offset.any():
                times = np.array([t for _, t in samples], dtype=np.float64)
                x[self._offset] -= np.repeat(times, sizes)
            codes = self._numeric_bins(x)
            np.putmask(codes, x < self._lo, LOW)
            np.putmask(codes, x > self._hi, HIGH)
            finite = np.isfinite(x)
            if not finite.all():
                np.putmask(codes, ~finite, NULL)
            out[self._numeric] = codes
        for j in self._categorical:
            name = self.coders[j].name
            parts, spans = [], []
            for s, (columns, _) in enumerate(samples):
                values = columns.get(name)
                if values is not None and len(values) == sizes[s]:
                    parts.append(np.asarray(values))
                    spans.append(s)
                    present[s, j] = True
            if not parts:
                continue
            lookup = self.coders[j]._lookup()
            if len(spans) == len(samples):
                out[j] = lookup.codes(np.concatenate(parts) if len(parts) > 1 else parts[0])
                continue
            for s, values in zip(spans, parts, strict=True):
                out[j, bounds[s] : bounds[s + 1]] = lookup.codes(values)
        return out.T, present, bounds

    def _numeric_bins(self, x: np.ndarray) -> np.ndarray:
        """Bin codes (``int8``) of the numeric block (columns, rows), exact by construction.

        Each column's span of bin boundaries is cut into ``_GRID`` equal cells; a cell whose
        neighbourhood holds no boundary has one code, read from a table (values beyond the
        span share the outermost cells' codes), and values next to a boundary (or in columns
        too narrow for a grid) are searched as :meth:`ColumnCoder.encode` does. A bin search
        is branchy per value; the lookup is a handful of flat passes. Range and null codes
        are the caller's.
        """
        with np.errstate(invalid="ignore", over="ignore"):
            t = (x - self._origin) * self._inv_width
            np.clip(t, 0, _GRID - 1, out=t)
            cell = t.astype(np.intp)
        cell += self._grid_at
        codes = np.take(self._grid, cell, mode="clip")  # NaN: any code, the caller's null wins
        unsure = np.flatnonzero(codes < 0)
        if len(unsure):
            total = x.shape[1]
            rows = unsure // total
            flat, xv = codes.reshape(-1), x.reshape(-1)[unsure]
            by_edge = ~self._by_value[rows]
            flat[unsure[by_edge]] = FIRST + np.count_nonzero(
                self._edges[rows[by_edge]] <= xv[by_edge, None], axis=1
            )
            for i in np.unique(rows[~by_edge]).tolist():
                at = unsure[rows == i]
                flat[at] = self.coders[int(self._numeric[i])]._bins(xv[rows == i])
        return codes


def _grid(coder: ColumnCoder) -> tuple[float, float, np.ndarray]:
    """(origin, cells per unit, code per cell or -1 near a boundary) of one numeric coder.

    A value's cell is computed with rounding, so it may sit a cell off; a cell is trusted only
    when no boundary lies within two cells of it, and only when a cell is a million float
    steps wide, so that rounding is far below a cell.
    """
    unsure = np.full(_GRID, -1, dtype=np.int8)
    if len(coder.values):
        v = coder.values
        bounds = 0.5 * (v[:-1] + v[1:])  # nearest-value codes change at the midpoints
    else:
        bounds = coder.edges
    bounds = np.asarray(bounds, dtype=np.float64)
    if not len(bounds) or not np.isfinite(bounds).all():
        return 0.0, 0.0, unsure
    first, last = float(bounds.min()), float(bounds.max())
    width = max(last - first, abs(first) * 1e-3, 1e-12) / (_GRID - 2 * _MARGIN)
    origin = first - _MARGIN * width
    if not width > 1e6 * np.spacing(max(abs(origin), abs(origin + _GRID * width))):
        return 0.0, 0.0, unsure
    centers = origin + (np.arange(_GRID) + 0.5) * width
    table = coder._bins(centers).astype(np.int8)
    near = np.floor((bounds - origin) / width).astype(np.int64)
    for shift in range(-2, 3):
        hit = near + shift
        table[hit[(hit >= 0) & (hit < _GRID)]] = -1
    return origin, 1.0 / width, table
