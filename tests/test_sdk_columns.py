"""Every-row statistics (otel_mlobs.sdk._columns) checked against numpy, on both memory paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from otel_mlobs.sdk import _columns, _tabular
from otel_mlobs.sdk._columns import prepare, time_seconds
from otel_mlobs.sdk._sampling import plan
from otel_mlobs.sdk._tabular import as_table
from otel_mlobs.sdk.pointers import content_pointer
from otel_mlobs.sdk.summarize import summarize_frame


def _frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.normal(0, 1e4, size=4), 3, size=(n, 4))
    x[rng.random((n, 4)) < 0.1] = np.nan
    x[rng.random((n, 4)) < 0.03] = np.inf
    x[rng.random((n, 4)) < 0.03] = -np.inf
    df = pd.DataFrame(x, columns=list("abcd"))
    df["i"] = rng.integers(-5, 5, n)
    df["flag"] = rng.random(n) < 0.3
    df["when"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), "s")
    df["text"] = rng.choice(["x", "y", None], n)
    df["big"] = 1.7e9 + rng.normal(0, 60, n)  # mean far from zero: the two-pass variance
    return df


def _values(col: pd.Series) -> np.ndarray:
    if col.dtype.kind == "M":
        return time_seconds(col.to_numpy())
    return col.to_numpy(dtype=np.float64)


@pytest.fixture(params=["stacked", "per_block"])
def memory_path(request, monkeypatch):
    """Small tables are stacked into one array; large ones are reduced block by block."""
    if request.param == "per_block":
        monkeypatch.setattr(_columns, "MAX_CHUNK_BYTES", 1000)
    else:
        monkeypatch.setattr(_columns, "CACHE_CHUNK_BYTES", 500)  # several cache chunks
    return request.param


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_match_numpy_and_leave_the_input_alone(seed: int, memory_path) -> None:
    df = _frame(seed, 300)
    before = df.copy()
    cols = prepare(as_table(df))
    pd.testing.assert_frame_equal(df, before)  # masked passes work on copies only
    assert [cols.names[i] for i in np.sort(cols.float_index)] == [
        "a",
        "b",
        "c",
        "d",
        "i",
        "flag",
        "when",
        "big",
    ]
    for j, pos in enumerate(cols.float_index.tolist()):
        v = _values(df.iloc[:, pos])
        finite = v[np.isfinite(v)]
        assert cols.nulls[j] == np.isnan(v).sum()
        assert cols.count[j] == (~np.isnan(v)).sum()
        assert cols.finite[j] == len(finite)
        assert cols.mean[j] == pytest.approx(finite.mean(), rel=1e-12)
        assert cols.std[j] == pytest.approx(finite.std(), rel=1e-9)
        assert cols.min[j] == finite.min() and cols.max[j] == finite.max()
    (text,) = cols.texts
    assert text.nulls == df["text"].isna().sum() and not text.strings


def test_planned_rows_are_gathered_on_the_way(memory_path) -> None:
    df = _frame(3, 500)
    rows = plan(500, 40, 10, 7)
    cols = prepare(as_table(df), rows)

    def values(idx):
        return np.stack([_values(df.iloc[:, p])[idx] for p in cols.float_index.tolist()])

    np.testing.assert_array_equal(cols.picked, values(rows.rows))
    for idx in (rows.sketch, rows.sample, rows.pointer):
        np.testing.assert_array_equal(cols.float_rows(idx), values(idx))
    other = np.array([1, 2, 499])  # not planned: read from the columns themselves
    np.testing.assert_array_equal(cols.float_rows(other), values(other))


def test_pandas_blocks_and_per_column_reading_agree(monkeypatch) -> None:
    df = _frame(4, 2000)
    via_blocks = summarize_frame(df)
    pointer = content_pointer(df)
    assert as_table(df).blocks  # the numeric blocks were handed on
    monkeypatch.setattr(_tabular, "_from_blocks", lambda frame, names: None)
    assert not as_table(df).blocks
    per_column = summarize_frame(df)
    assert content_pointer(df) == pointer
    for field in ("count", "nulls", "mean", "std", "min", "max", "distinct", "quantiles"):
        np.testing.assert_allclose(
            getattr(per_column, field), getattr(via_blocks, field), rtol=1e-12, err_msg=field
        )
    assert per_column.sketches == via_blocks.sketches
    assert per_column.top_values == via_blocks.top_values


def test_text_null_counts_over_every_row() -> None:
    n = 5000
    values = np.array([f"v{i % 7}" for i in range(n)], dtype=object)
    clean = prepare(as_table({"t": values})).texts[0]
    assert clean.nulls == 0 and clean.strings
    values[[3, 4000]] = None
    values[17] = np.nan
    assert prepare(as_table({"t": values})).texts[0].nulls == 3
    as_str = pd.Series(values, dtype="str")
    text = prepare(as_table(pd.DataFrame({"t": as_str}))).texts[0]
    assert text.nulls == 3 and not text.strings
    fixed = prepare(as_table({"t": np.array(["a", "bc"])})).texts[0]
    assert fixed.nulls == 0 and fixed.strings


def test_empty_and_all_null_columns() -> None:
    empty = as_table(pd.DataFrame({"f": pd.Series([], dtype=float)}))
    cols = prepare(empty, plan(0, 512, 512, None))
    assert cols.count.tolist() == [0] and np.isnan(cols.mean).all()
    nulls = prepare(as_table({"f": np.full(10, np.nan)}))
    assert nulls.nulls.tolist() == [10] and nulls.finite.tolist() == [0]
    assert np.isnan(nulls.min).all() and np.isnan(nulls.std).all()


def test_numeric_arrays_read_where_they_lie_match_float64_copies(memory_path) -> None:
    """1-D integer, float32 and strided columns are converted while their segment is filled;
    statistics, pointer and summary equal those of contiguous float64 copies."""
    rng = np.random.default_rng(5)
    n = 3000
    pairs = rng.normal(5, 2, size=(n, 2))
    pairs[rng.random(n) < 0.05, 0] = np.nan
    raw = {
        "strided": pairs[:, 0],
        "ints": rng.integers(-1000, 1000, n).astype(np.int32),
        "small": rng.normal(size=n).astype(np.float32),
        "unsigned": rng.integers(0, 2**40, n, dtype=np.uint64),
        "big": 1.7e9 + rng.normal(0, 60, n),
    }
    copies = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in raw.items()}
    rows = plan(n, 512, 512, None)
    got, want = prepare(as_table(raw), rows), prepare(as_table(copies), rows)
    assert got.digest == want.digest
    for attr in ("count", "nulls", "mean", "std", "min", "max", "bits", "picked"):
        np.testing.assert_array_equal(getattr(got, attr), getattr(want, attr))
    assert content_pointer(raw) == content_pointer(copies)
    a, b = summarize_frame(raw), summarize_frame(copies)
    assert a.sketches == b.sketches and a.top_values == b.top_values
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    np.testing.assert_array_equal(a.distinct, b.distinct)
    assert [v.tobytes() for v in a.sample_values] == [v.tobytes() for v in b.sample_values]
