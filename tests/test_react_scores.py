"""Column error scores: corruption and staleness caught, and never confused with each other."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from test_react_support import DAY, PIPELINE, pipeline, run, summary, top

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
        _one(
            a,
            d,
            columns=["x", "pay"],
            kinds=kinds,
            means=np.array([5.0 + 0.1 * np.sin(d), np.nan]),
            top_values=[{}, top],
        )
    _one(
        a,
        10,
        columns=["x", "pay"],
        kinds=kinds,
        means=np.array([5.0, np.nan]),
        top_values=[{}, {"Card": 610, "Cash": 390}],
    )
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
    key = (
        "mlobs_column_corruption_score",
        tuple(
            sorted(
                {
                    "pipeline": PIPELINE,
                    "component": "ingest",
                    "role": "output",
                    "dataset": "raw",
                    "column": "c3",
                }.items()
            )
        ),
    )
    assert key in m
    assert any(n == "mlobs_root_cause_score" for n, _ in m)
    b = RootCauseAnalyzer(Key(PIPELINE), max_runs=16)
    b.restore(a.snapshot())
    assert [(x.name, dict(x.labels), x.value) for x in b.metrics()] == [
        (x.name, dict(x.labels), x.value) for x in a.metrics()
    ]


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


def _rename_payments(a: RootCauseAnalyzer, days: int, refresh_every_day: bool) -> None:
    """ingest -> features -> serve with a categorical renamed on day 12 and a unit bug on 15."""
    rng = np.random.default_rng(5)
    for d in range(days):
        for comp, role in (("ingest", "output"), ("features", "output"), ("serve", "input")):
            card = "Card" if d >= 12 else "Credit card"
            n_card = int(rng.integers(580, 620))
            means = np.array([10 + rng.normal(0, 0.1), np.nan])
            if comp == "ingest" and d >= 15:
                means[0] *= 1.609
            a.update(
                run(
                    comp,
                    f"{comp}{d}",
                    d * DAY,
                    stage="inference" if comp == "serve" else "etl",
                    inputs=(f"p{comp}{d - 1}",),
                    outputs=(f"p{comp}{d}",),
                )
            )
            a.update(
                summary(
                    comp,
                    f"{comp}{d}",
                    d * DAY,
                    ["x", "pay"],
                    means,
                    role=role,
                    kinds=["numeric", "categorical"],
                    top_values=[{}, {card: n_card, "Cash": 1000 - n_card}],
                )
            )
        if refresh_every_day:
            a.refresh()


def test_scores_do_not_depend_on_how_runs_are_batched_between_refreshes():
    # refreshed daily, every component has one new run: scored side by side in one block;
    # refreshed once, every run is pending at once: scored per component, settling which runs
    # were anomalous (they leave baseline and vocabulary) over several passes
    daily, once = RootCauseAnalyzer(Key(PIPELINE)), RootCauseAnalyzer(Key(PIPELINE))
    _rename_payments(daily, 20, refresh_every_day=True)
    _rename_payments(once, 20, refresh_every_day=False)
    assert once.pending_runs == 60 and daily.pending_runs == 0
    once.refresh()
    assert once.pending_runs == 0
    for comp, s in daily._series.items():
        o = once._series[comp]
        n = len(s.columns)
        rows = s.rows_until()
        assert o.rows_until().tolist() == rows.tolist()
        np.testing.assert_allclose(o.corruption[rows, :n], s.corruption[rows, :n], atol=1e-9)
        np.testing.assert_allclose(o.staleness[rows, :n], s.staleness[rows, :n], atol=1e-9)
    # the day after the rename 'Card' is still unseen: the renaming run taught nothing
    pay = column(daily, "ingest", "d.pay", at=str(13 * DAY))
    assert pay["corruption"] >= daily.params.z_threshold
    assert (
        column(daily, "ingest", "d.x", at=str(16 * DAY))["corruption"] >= daily.params.z_threshold
    )


def test_update_only_books_and_a_reader_refreshes_what_changed():
    a = pipeline(12, fault=corrupt_c3)
    assert a.pending_runs == 36  # nothing scored yet
    first = a.metrics()
    assert a.pending_runs == 0
    assert a.metrics() == first  # nothing changed: the same samples, not recomputed
    a.update(summary("ingest", "ingest12", 12 * DAY, ["c3"], np.array([6.0]), dataset="raw"))
    assert a.pending_runs == 1
    assert column(a, "ingest", "raw.c3")["corruption"] >= a.params.z_threshold
    assert a.pending_runs == 0


def test_a_snapshot_of_another_layout_is_refused_with_a_clear_error():
    a = RootCauseAnalyzer(Key(PIPELINE))
    with pytest.raises(ValueError, match="layout version None"):
        a.restore(pickle.dumps({"_series": {}}))
    assert a.metrics()  # the analyzer is untouched and still answers


def _flag_day(p: float, d: int, rng: np.random.Generator) -> tuple[int, float]:
    """A fresh day of a 0/1 column with share ``p`` over a Poisson number of rows."""
    rows = int(rng.poisson(4700))
    return rows, rng.binomial(rows, p) / rows


def test_a_steady_flag_is_not_stale_a_frozen_one_is():
    # A near-constant flag (2% ones) changes from day to day by about its binomial noise,
    # however small that is against its own history; a frozen table repeats it exactly.
    rng = np.random.default_rng(11)
    a = RootCauseAnalyzer(Key(PIPELINE))
    frozen: dict[str, tuple[int, float]] = {}
    for d in range(40):
        for comp in ("fresh", "stuck"):
            if comp == "stuck" and d >= 30:
                rows, share = frozen["v"]  # the extract stopped refreshing after day 29
            else:
                rows, share = _flag_day(0.02, d, rng)
                if comp == "stuck":
                    frozen["v"] = (rows, share)
            a.update(
                summary(
                    comp,
                    f"{comp}{d}",
                    d * DAY,
                    ["is_airport"],
                    np.array([share]),
                    np.array([np.sqrt(share * (1 - share))]),
                    rows=rows,
                )
            )
        a.refresh()
        fresh = a._series["fresh"]
        assert fresh.staleness[fresh.rows_until()[-1], 0] < 1.0, d
    stuck = column(a, "stuck", "d.is_airport")
    assert stuck["staleness"] >= a.params.stale_threshold
    assert "frozen" in " ".join(stuck["evidence"])


def test_a_column_constant_within_its_runs_is_never_stale():
    # snow on dry days: zero in every row, so fresh data would not move it either
    a = RootCauseAnalyzer(Key(PIPELINE))
    rng = np.random.default_rng(2)
    for d in range(30):
        snowy = d < 12 and d % 3 == 0
        mean = rng.uniform(0.1, 2.0) if snowy else 0.0
        a.update(
            summary(
                "weather",
                f"w{d}",
                d * DAY,
                ["snow_in"],
                np.array([mean]),
                np.array([mean / 2]),
                rows=24,
            )
        )
    s = a.query(view="scores")["components"][0]["columns"][0]
    assert s["staleness"] == 0.0
