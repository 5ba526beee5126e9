"""summarize_frame: statistics checked against numpy/pandas on random data and edge cases."""

from __future__ import annotations

import json

import datasketches
import numpy as np
import pandas as pd
import pytest

from otel_mlobs.sdk import summarize as sm
from otel_mlobs.sdk.summarize import summarize_frame

LEVELS = np.array(sm.DEFAULT_QUANTILE_LEVELS)


def _noisy(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(10.0, 3.0, size=n)
    x[rng.random(n) < 0.07] = np.nan
    x[rng.random(n) < 0.01] = np.inf
    x[rng.random(n) < 0.01] = -np.inf
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numeric_statistics_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = _noisy(rng, 20_000)
    s = summarize_frame(pd.DataFrame({"x": x}), seed=seed).column("x")
    finite = x[np.isfinite(x)]
    assert s["kind"] == "numeric"
    assert s["count"] == np.count_nonzero(~np.isnan(x))  # infinities are values
    assert s["nulls"] == np.count_nonzero(np.isnan(x))
    assert s["mean"] == pytest.approx(finite.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(finite.std(ddof=0), rel=1e-9)
    assert s["min"] == finite.min() and s["max"] == finite.max()
    # quantiles come from a sketch of a 512-row sample: its rank error is the sample's
    sketch = datasketches.kll_doubles_sketch.deserialize(s["sketch"])
    assert sketch.n <= sm.DEFAULT_SKETCH_ROWS
    np.testing.assert_array_equal(sketch.get_quantiles(LEVELS.tolist()), s["quantiles"])
    ranks = np.searchsorted(np.sort(finite), s["quantiles"]) / len(finite)
    assert np.all(np.abs(ranks - LEVELS) < _rank_tolerance(sketch.n)), ranks
    every = summarize_frame(pd.DataFrame({"x": x}), sketch_rows=None).column("x")
    ranks = np.searchsorted(np.sort(finite), every["quantiles"]) / len(finite)
    assert np.all(np.abs(ranks - LEVELS) < 0.02), ranks
    assert datasketches.kll_doubles_sketch.deserialize(every["sketch"]).n == len(finite)
    distinct = len(np.unique(x[~np.isnan(x)]))
    assert every["distinct"] == pytest.approx(distinct, rel=0.01)  # hashed over every row
    # From the sample: a lower bound, here within a fifth (the infinities repeat, the rest
    # never does, and a value drawn twice by chance pulls the estimate down).
    assert 0.8 * distinct <= s["distinct"] <= distinct


def _rank_tolerance(m: int) -> np.ndarray:
    """Four standard deviations of the rank error of an ``m``-value uniform sample."""
    return 4 * np.sqrt(LEVELS * (1 - LEVELS) / m) + 1 / m


def test_sketch_is_a_mergeable_kll_of_the_finite_values() -> None:
    rng = np.random.default_rng(3)
    a, b = _noisy(rng, 5000), _noisy(rng, 7000)
    full = {"sketch_rows": None}
    sa = datasketches.kll_doubles_sketch.deserialize(summarize_frame({"x": a}, **full).sketches[0])
    sb = datasketches.kll_doubles_sketch.deserialize(summarize_frame({"x": b}, **full).sketches[0])
    assert sa.n == np.isfinite(a).sum()
    sa.merge(sb)
    both = np.concatenate([a, b])
    both = np.sort(both[np.isfinite(both)])
    assert sa.n == len(both)
    assert sa.get_min_value() == both[0] and sa.get_max_value() == both[-1]
    median_rank = np.searchsorted(both, sa.get_quantile(0.5)) / len(both)
    assert abs(median_rank - 0.5) < 0.02


def test_small_columns_have_exact_nearest_rank_quantiles() -> None:
    x = np.random.default_rng(4).normal(size=50)
    levels = (0.1, 0.3, 0.5, 0.9)
    got = summarize_frame({"x": x}, quantile_levels=levels).quantiles[0]
    xs = np.sort(x)
    assert got.tolist() == [xs[min(int(q * 50), 49)] for q in levels]


def test_integer_boolean_and_datetime_columns() -> None:
    stamps = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 06:00", None], utc=True)
    local = stamps.tz_convert("America/New_York")
    df = pd.DataFrame(
        {
            "i": [1, 2, 3],
            "b": [True, False, True],
            "nb": pd.array([True, None, True], dtype="boolean"),
            "ni": pd.array([1, None, 5], dtype="Int64"),
            "t": local,
            "naive": np.array(["2024-01-01", "2024-01-02", "NaT"], dtype="datetime64[s]"),
        }
    )
    s = summarize_frame(df)
    assert s.kinds == ["numeric", "boolean", "boolean", "numeric", "datetime", "datetime"]
    assert s.column("i")["mean"] == 2.0 and s.column("i")["distinct"] == 3
    b = s.column("b")
    assert b["mean"] == pytest.approx(2 / 3) and b["top_values"] == {"True": 2, "False": 1}
    assert b["sketch"] == b""
    assert s.column("nb")["nulls"] == 1 and s.column("nb")["mean"] == 1.0
    assert s.column("ni")["nulls"] == 1 and s.column("ni")["max"] == 5.0
    t = s.column("t")  # tz-aware: UTC seconds, whatever the display zone
    assert t["min"] == pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    assert t["max"] == t["min"] + 6 * 3600 and t["nulls"] == 1
    assert s.column("naive")["min"] == pd.Timestamp("2024-01-01", tz="UTC").timestamp()


@pytest.mark.parametrize("as_type", ["object", "category", "str"])
def test_categorical_top_values_and_nulls(as_type: str) -> None:
    rng = np.random.default_rng(5)
    values = rng.choice(
        np.array(["a", "b", "c", "ü", ""], dtype=object), size=5000, p=[0.4, 0.3, 0.15, 0.1, 0.05]
    )
    values[rng.random(5000) < 0.1] = None
    col = (
        pd.Series(values, dtype=as_type) if as_type != "object" else pd.Series(values, dtype=object)
    )
    frame = pd.DataFrame({"c": col})
    expected = pd.Series(values).value_counts(dropna=True)
    exact = {str(k): int(v) for k, v in expected.items()}
    every = summarize_frame(frame, sketch_rows=None).column("c")
    s = summarize_frame(frame).column("c")
    for got in (s, every):
        assert got["kind"] == "categorical"
        assert got["nulls"] == int(pd.isna(values).sum())  # every row, whatever the sample
        assert got["count"] == int(expected.sum())
        assert got["distinct"] == len(expected)
        assert np.isnan(got["mean"]) and got["sketch"] == b"" and np.isnan(got["quantiles"]).all()
    assert every["top_values"] == exact
    assert list(every["top_values"]) == [str(k) for k in expected.index]  # most frequent first
    if as_type == "category":  # codes are counted over every row by default too
        assert s["top_values"] == exact
    else:  # text: sample counts scaled to the column, within four standard deviations
        assert set(s["top_values"]) == set(exact)
        m = sm.DEFAULT_SKETCH_ROWS * 0.9  # about this many non-null values are sampled
        for key, count in exact.items():
            share = count / s["count"]
            sd = s["count"] * np.sqrt(share * (1 - share) / m)
            assert abs(s["top_values"][key] - count) <= 4 * sd + 1, (key, s["top_values"])


def test_top_values_are_bounded_and_unused_categories_ignored() -> None:
    values = np.repeat(np.arange(50).astype(str), np.arange(50, 0, -1)).astype(object)
    s = summarize_frame({"c": values}, sketch_rows=None).column("c")
    assert list(s["top_values"].items()) == [(str(i), 50 - i) for i in range(sm.TOP_VALUES)]
    sampled = summarize_frame({"c": values}).column("c")  # 1,275 rows: from 512 of them
    assert 0 < len(sampled["top_values"]) <= sm.TOP_VALUES
    cat = pd.Categorical(["x", "x", "y"], categories=["x", "y", "never"])
    s2 = summarize_frame(pd.DataFrame({"c": cat})).column("c")
    assert s2["top_values"] == {"x": 2, "y": 1} and s2["distinct"] == 2


def test_edge_cases_never_crash() -> None:
    empty = summarize_frame(pd.DataFrame())
    assert empty.columns == [] and empty.rows == 0 and empty.sample_columns == []
    no_rows = summarize_frame(
        pd.DataFrame({"a": pd.Series([], dtype=float), "b": pd.Series([], dtype=object)})
    )
    assert no_rows.count.tolist() == [0, 0] and no_rows.sample_size == 0
    nulls = summarize_frame(pd.DataFrame({"f": [np.nan] * 4, "o": [None] * 4}))
    assert nulls.nulls.tolist() == [4, 4] and nulls.count.tolist() == [0, 0]
    assert np.isnan(nulls.mean).all() and nulls.sketches == [b"", b""]
    infs = summarize_frame({"x": np.array([np.inf, -np.inf, np.nan])}).column("x")
    assert infs["count"] == 2 and infs["nulls"] == 1 and np.isnan(infs["mean"])
    assert infs["sketch"] == b"" and infs["distinct"] == 2
    df = pd.DataFrame([[1.0, "x", 3]], columns=["", "名前 🚕", "dup"])
    df.insert(3, "dup", [4], allow_duplicates=True)
    s = summarize_frame(df)
    assert s.columns == ["", "名前 🚕", "dup", "dup"] and s.max.tolist()[2:] == [3.0, 4.0]
    mixed = summarize_frame({"m": np.array([[1], "a", None, {"k": 1}], dtype=object)})
    assert mixed.kinds == ["categorical"] and mixed.count[0] == 3
    json.loads(mixed.top_values_json()[0])


def test_accepted_inputs_and_type_error() -> None:
    arr = np.arange(12.0).reshape(4, 3)
    assert summarize_frame(arr).columns == ["0", "1", "2"]
    assert summarize_frame(arr[:, 1].copy(), name="y").column("y")["mean"] == 5.5
    rec = np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "i4"), ("b", "f8")])
    assert summarize_frame(rec).columns == ["a", "b"]
    assert summarize_frame({"a": [1, 2], "b": ["x", "y"]}).kinds == ["numeric", "categorical"]
    with pytest.raises(ValueError, match="different lengths"):
        summarize_frame({"a": [1, 2], "b": [1]})
    for bad in ([1, 2, 3], "text", 42, {"a": 1}, np.zeros((2, 2, 2))):
        with pytest.raises(TypeError, match="expected|dict"):
            summarize_frame(bad)


def test_polars_frame() -> None:
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame(
        {"x": [1.0, None, 3.0], "c": ["a", "b", None]}, schema_overrides={"c": pl.Categorical}
    )
    s = summarize_frame(frame)
    assert s.columns == ["x", "c"] and s.kinds == ["numeric", "categorical"]
    assert s.column("x")["mean"] == 2.0 and s.column("x")["nulls"] == 1
    assert s.column("c")["top_values"] == {"a": 1, "b": 1} and s.column("c")["nulls"] == 1


def test_sample_is_bounded_uniform_rows_and_omits_sensitive_columns() -> None:
    n = 10_000
    a = np.arange(n, dtype=float)
    df = pd.DataFrame({"a": a, "twice": 2 * a, "name": (a % 7).astype(int).astype(str), "ssn": a})
    s = summarize_frame(df, sensitive={"ssn"}, sample_rows=300, seed=7)
    assert s.sample_columns == ["a", "twice", "name"] and s.sample_size == 300
    got = dict(zip(s.sample_columns, s.sample_values, strict=True))
    assert len(np.unique(got["a"])) == 300  # without replacement
    np.testing.assert_array_equal(got["twice"], 2 * got["a"])  # whole rows, not columns
    np.testing.assert_array_equal(got["name"], (got["a"] % 7).astype(int).astype(str))
    assert s.column("ssn")["count"] == n  # still summarized
    again = summarize_frame(df, sensitive={"ssn"}, sample_rows=300, seed=7)
    np.testing.assert_array_equal(again.sample_values[0], got["a"])
    assert summarize_frame(df, sample_rows=0).sample_columns == []
    small = summarize_frame(df.head(10), sample_rows=512)
    assert small.sample_size == 10 and small.sample_values[0].tolist() == a[:10].tolist()


def test_huge_strings_are_shed_from_the_sample_and_cut_in_top_values() -> None:
    long = "x" * 5000
    df = pd.DataFrame({"text": [long, "short"] * 300, "v": np.arange(600.0)})
    s = summarize_frame(df, seed=0)
    assert s.sample_columns == ["v"] and s.shed == 1
    keys = sorted(s.column("text")["top_values"], key=len)
    assert keys[0] == "short"
    assert len(keys[1]) == sm.MAX_TOP_VALUE_CHARS and keys[1].endswith("…")
    assert s.truncated == 1


def test_sketch_rows_bounds_the_sketch_but_keeps_exact_moments() -> None:
    x = np.random.default_rng(8).normal(size=50_000)
    s = summarize_frame({"x": x}, sketch_rows=2000, seed=1)
    sketch = datasketches.kll_doubles_sketch.deserialize(s.sketches[0])
    assert sketch.n == 2000
    assert s.mean[0] == pytest.approx(x.mean(), rel=1e-12) and s.count[0] == 50_000
    ranks = np.searchsorted(np.sort(x), s.quantiles[0]) / len(x)
    assert np.all(np.abs(ranks - LEVELS) < 0.05)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="quantile levels"):
        summarize_frame({"x": [1.0]}, quantile_levels=(0.5, 1.5))
    with pytest.raises(ValueError, match="sample_rows"):
        summarize_frame({"x": [1.0]}, sample_rows=-1)
    with pytest.raises(ValueError, match="sketch_rows"):
        summarize_frame({"x": [1.0]}, sketch_rows=0)


def test_sample_statistics_of_ids_codes_and_small_columns() -> None:
    n = 20_000
    rng = np.random.default_rng(9)
    df = pd.DataFrame(
        {
            "trip_id": [f"t{i:06d}" for i in range(n)],  # unique text
            "payment": rng.choice(["card", "cash", "none"], n, p=[0.7, 0.25, 0.05]),
            "measure": rng.normal(size=n),  # unique numbers
            "hour": rng.integers(0, 24, n),  # every value recurs
        }
    )
    s = summarize_frame(df)
    ids = s.column("trip_id")
    assert ids["distinct"] == n and ids["top_values"] == {}  # nothing to show for an id
    assert s.column("measure")["distinct"] == n
    assert s.column("hour")["distinct"] == 24
    pay = s.column("payment")
    assert pay["distinct"] == 3 and list(pay["top_values"]) == ["card", "cash", "none"]
    assert abs(sum(pay["top_values"].values()) - n) <= 3  # scaled to the column's count
    small = summarize_frame(df.head(300))  # fewer rows than the sample: everything exact
    assert small.column("payment")["top_values"] == df.head(300)["payment"].value_counts().to_dict()
    assert small.column("trip_id")["distinct"] == 300
    assert small.column("measure")["distinct"] == 300


def test_chao_lin_estimator() -> None:
    # d + f1^2 / (2 f2 m / (m - 1) + f1 q / (1 - q)) with q = m / population
    d, f1, f2, m, pop = 100, 40, 10, 200, 1000
    q = m / pop
    expected = d + f1 * f1 / (2 * f2 * m / (m - 1) + f1 * q / (1 - q))
    assert sm._chao_lin_one(d, f1, f2, m, pop) == pytest.approx(expected)
    assert sm._chao_lin_one(512, 512, 0, 512, 10_000) == pytest.approx(10_000)  # all unique
    assert sm._chao_lin_one(7, 0, 3, 512, 10_000) == 7  # nothing seen once: all were seen
    assert sm._chao_lin_one(50, 10, 5, 80, 80) == 50  # the sample is the column


def test_run_counts_match_numpy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        k, m = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        x = rng.integers(0, 6, size=(k, m)).astype(float)
        x[rng.random((k, m)) < 0.2] = np.nan
        x[rng.random((k, m)) < 0.05] = np.inf
        ordered = np.sort(x, axis=1)
        present = np.count_nonzero(~np.isnan(ordered), axis=1)
        d, f1, f2 = sm._run_counts(ordered, present)
        for r in range(k):
            _, counts = np.unique(ordered[r, : present[r]], return_counts=True)
            assert (d[r], f1[r], f2[r]) == (len(counts), (counts == 1).sum(), (counts == 2).sum())


def test_same_data_same_summary_and_seeds_change_the_sample() -> None:
    rng = np.random.default_rng(11)
    df = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(list("abcdef"), 5000)})
    a, b = summarize_frame(df), summarize_frame(df.copy())
    assert a.sketches == b.sketches and a.top_values == b.top_values
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    np.testing.assert_array_equal(a.distinct, b.distinct)
    np.testing.assert_array_equal(a.sample_values[0], b.sample_values[0])
    other = summarize_frame(df, seed=3)
    assert not np.array_equal(other.sample_values[0], a.sample_values[0])


def test_sampling_plan_is_shared_and_consistent() -> None:
    from otel_mlobs.sdk._sampling import plan

    p = plan(10_000, 512, 300, None)
    assert p is plan(10_000, 512, 300, None)  # drawn once per size
    assert len(p.sketch) == 512 and len(np.unique(p.sketch)) == 512
    assert len(p.sample) == 300 and set(p.sample) <= set(p.sketch)
    assert set(p.rows) == set(p.sketch) | set(p.sample) | set(p.pointer)
    assert all(np.all(np.diff(a) > 0) for a in (p.sketch, p.sample, p.rows))
    with pytest.raises(ValueError):
        p.sketch[0] = 1  # shared: read-only
    assert plan(100, 512, 512, None).sketch is None  # small tables use every row


def test_large_samples_are_compacted_by_the_library() -> None:
    x = np.random.default_rng(12).normal(size=20_000)
    s = summarize_frame({"x": x}, sketch_rows=3000)
    sketch = datasketches.kll_doubles_sketch.deserialize(s.sketches[0])
    assert sketch.n == 3000 and sketch.k == sm.DEFAULT_SKETCH_K
    assert sketch.num_retained < 3000
    with pytest.raises(ValueError, match="sketch_k"):
        summarize_frame({"x": x}, sketch_k=4)
