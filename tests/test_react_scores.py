"""Column error scores: corruption and staleness caught, and never confused with each other."""

from __future__ import annotations

import numpy as np
import pytest
from test_react_support import DAY, PIPELINE, pipeline, summary, top

from otel_mlobs.processor.analyzers.react import RootCauseAnalyzer
from otel_mlobs.processor.records import Key


def column(a: RootCauseAnalyzer, component: str, label: str, **params: str) -> dict:
    cols = a.query(view="scores", component=component, **params)["components"][0]["columns"]
    return next(c for c in cols if c["column"] == label)


def corrupt_c3(comp: str, d: int, m: np.ndarray) -> np.ndarray:
    if comp == "ingest" and d >= 13:
        m[3] *= 0.62  # miles read as kilometres
    return m


def test_corruption_caught_on_the_injected_column():
    a = pipeline(14, fault=corrupt_c3)
    c3 = column(a, "ingest", "raw.c3")
    thr = a.params
    assert c3["corruption"] >= thr.z_threshold
    assert c3["staleness"] < thr.stale_threshold  # a jump is not a freeze
    assert c3["evidence"] and "sd" in c3["evidence"][0]
    others = [column(a, "ingest", f"raw.c{i}") for i in range(10) if i != 3]
    assert max(c["corruption"] for c in others) < thr.z_threshold
    best = top(a)
    assert best["component"] == "ingest" and best["columns"][0]["column"] == "raw.c3"
    # the path back from the predictions runs through the components that carried it
    assert [p["component"] for p in best["path"]] == ["ingest", "features", "serve"]


def freeze_c5(comp: str, d: int, m: np.ndarray, _cache: dict = {}) -> np.ndarray:  # noqa: B006
    if comp == "features":
        if d == 9:
            _cache["v"] = m[5]
        if d >= 10:
            m[5] = _cache["v"]  # the feature job keeps serving day 9's answer
    return m


def test_staleness_caught_where_corruption_sees_nothing():
    a = pipeline(12, fault=freeze_c5)
    c5 = column(a, "features", "feats.c5")
    assert c5["staleness"] >= a.params.stale_threshold
    assert c5["corruption"] < a.params.z_threshold  # the frozen value is an ordinary value
    assert "frozen" in " ".join(c5["evidence"])
    upstream = column(a, "ingest", "raw.c5")  # the source still varies: not stale there
    assert upstream["staleness"] < a.params.stale_threshold
    best = top(a)
    assert best["component"] == "features" and best["columns"][0]["column"] == "feats.c5"


def test_clean_pipeline_raises_nothing():
    a = pipeline(40, columns=20, seed=7)
    for s in a._series.values():
        rows = s.rows_until()[8:]
        n = len(s.columns)
        assert (s.corruption[rows, :n] >= a.params.z_threshold).sum() == 0
        assert (s.staleness[rows, :n] >= a.params.stale_threshold).mean() < 0.01


def _one(a: RootCauseAnalyzer, d: int, **kw) -> None:
    cols = kw.pop("columns", ["x", "y"])
    means = kw.pop("means", np.array([5.0 + 0.1 * np.sin(d), 3.0 + 0.1 * np.cos(3 * d)]))
    a.update(summary("load", f"r{d}", d * DAY, cols, means, **kw))


def test_missing_values_show_as_corruption_of_the_null_ratio():
    a = RootCauseAnalyzer(Key(PIPELINE))
    for d in range(10):
        _one(a, d)
    _one(a, 10, nulls=np.array([0, 700]))
    y = column(a, "load", "d.y")
    assert y["corruption"] >= a.params.z_threshold
    assert column(a, "load", "d.x")["corruption"] < a.params.z_threshold


def test_schema_change_vanished_column_and_renamed_category():
    a = RootCauseAnalyzer(Key(PIPELINE))
    kinds = ["numeric", "categorical"]
    for d in range(10):
        top = {"Credit card": 600 + d, "Cash": 400 - d}
        _one(a, d, columns=["x", "pay"], kinds=kinds, means=np.array([5.0 + 0.1 * np.sin(d),
             np.nan]), top_values=[{}, top])
    _one(a, 10, columns=["x", "pay"], kinds=kinds, means=np.array([5.0, np.nan]),
         top_values=[{}, {"Card": 610, "Cash": 390}])
    pay = column(a, "load", "d.pay")
    assert pay["corruption"] >= a.params.z_threshold  # same shares, unseen vocabulary
    _one(a, 11, columns=["x"], means=np.array([5.0]))
    pay = column(a, "load", "d.pay")
    assert "missing from the latest run" in pay["evidence"]
    assert pay["zeta"] >= a.params.schema_ratio


def test_metrics_snapshot_restore_and_bounded_memory():
    a = pipeline(30, fault=corrupt_c3, analyzer=RootCauseAnalyzer(Key(PIPELINE), max_runs=16))
    assert all(len(s.times) == 16 for s in a._series.values())
    m = {(x.name, tuple(sorted(x.labels.items()))): x.value for x in a.metrics()}
    key = ("mlobs_column_corruption_score", tuple(sorted({
        "pipeline": PIPELINE, "component": "ingest", "role": "output", "dataset": "raw",
        "column": "c3"}.items())))
    assert key in m
    assert any(n == "mlobs_root_cause_score" for n, _ in m)
    b = RootCauseAnalyzer(Key(PIPELINE), max_runs=16)
    b.restore(a.snapshot())
    assert [(x.name, dict(x.labels), x.value) for x in b.metrics()] == \
        [(x.name, dict(x.labels), x.value) for x in a.metrics()]


def test_ranking_as_of_a_past_time():
    def fault(comp: str, d: int, m: np.ndarray) -> np.ndarray:
        if comp == "ingest" and d == 12:
            m[1] *= 0.5  # a one-day incident, long over by the end
        return m

    a = pipeline(16, fault=fault)
    then = top(a, at=str(12 * DAY + 3600))
    assert then["component"] == "ingest" and then["columns"][0]["column"] == "raw.c1"
    assert column(a, "ingest", "raw.c1")["corruption"] < a.params.z_threshold


def test_bad_parameters_are_clear_errors():
    a = pipeline(6)
    with pytest.raises(ValueError, match="unknown view"):
        a.query(view="nope")
    with pytest.raises(ValueError, match="bad time"):
        a.query(at="yesterday-ish")
    with pytest.raises(KeyError, match="known: .*features"):
        a.query(view="history", component="nope")
    with pytest.raises(ValueError, match="Invalid 'estimators'"):
        RootCauseAnalyzer(Key(PIPELINE), estimators=("mean", "median"))
