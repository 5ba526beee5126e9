"""Exact KLL sketches written by the SDK are the DataSketches library's own bytes and answers."""

from __future__ import annotations

import datasketches
import numpy as np
import pytest

from otel_mlobs.sdk import _kll

LEVELS = np.array([0.0, 0.01, 0.1, 0.25, 0.29, 0.5, 0.57, 0.75, 0.99, 1.0])


def _library(values: np.ndarray, k: int) -> datasketches.kll_doubles_sketch:
    sketch = datasketches.kll_doubles_sketch(max(k, len(values)))
    sketch.update(np.ascontiguousarray(values[::-1]))  # stored in reverse order of insertion
    return sketch


@pytest.mark.parametrize("n", [1, 2, 3, 8, 199, 200, 201, 512, 1024])
def test_bytes_equal_the_library_and_answer_alike(n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.sort(rng.integers(0, max(2, n // 3), size=n).astype(float))  # with repeats
    ours = _kll.exact_sketch(values, 200)
    assert ours == _library(values, 200).serialize()
    sketch = datasketches.kll_doubles_sketch.deserialize(ours)
    assert sketch.n == n and sketch.num_retained == n
    assert sketch.get_min_value() == values[0] and sketch.get_max_value() == values[-1]
    expected = np.asarray(sketch.get_quantiles(LEVELS.tolist()))
    got = _kll.nearest_rank(values[None, :], np.zeros(1, np.int64), np.array([n]), LEVELS)[0]
    np.testing.assert_array_equal(got, expected)


def test_many_rows_at_once_and_offsets() -> None:
    rng = np.random.default_rng(0)
    rows = np.sort(rng.normal(size=(5, 300)), axis=1)
    assert _kll.exact_sketches(rows, 200) == [_kll.exact_sketch(r, 200) for r in rows]
    lo = np.array([0, 3, 0, 10, 0])
    size = np.array([300, 290, 0, 250, 1])
    got = _kll.nearest_rank(rows, lo, size, LEVELS)
    for r in range(5):
        if size[r] == 0:
            assert np.isnan(got[r]).all()
            continue
        part = rows[r, lo[r] : lo[r] + size[r]]
        want = datasketches.kll_doubles_sketch.deserialize(_kll.exact_sketch(part, 200))
        np.testing.assert_array_equal(got[r], want.get_quantiles(LEVELS.tolist()))


def test_exact_sketches_merge_with_compacting_ones() -> None:
    rng = np.random.default_rng(1)
    small = np.sort(rng.normal(size=400))
    big = rng.normal(size=50_000)
    merged = datasketches.kll_doubles_sketch.deserialize(_kll.exact_sketch(small, 200))
    other, _ = _kll.library_sketch(big, 200, [0.5])
    merged.merge(datasketches.kll_doubles_sketch.deserialize(other))
    assert merged.n == 50_400
    both = np.sort(np.concatenate([small, big]))
    rank = np.searchsorted(both, merged.get_quantile(0.5)) / len(both)
    assert abs(rank - 0.5) < 0.02


def test_bad_k_is_refused() -> None:
    with pytest.raises(ValueError, match="k must lie"):
        _kll.exact_sketch(np.arange(3.0), 7)
    with pytest.raises(ValueError, match="k must lie"):
        _kll.exact_sketch(np.arange(70_000.0), 200)
