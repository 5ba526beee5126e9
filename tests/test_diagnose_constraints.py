"""The constraints analyzer on synthetic runs: incidents caught, clean runs quiet, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from otel_mlobs.processor.analyzers.base import BatchFailures
from otel_mlobs.processor.analyzers.diagnose import ConstraintAnalyzer
from otel_mlobs.processor.analyzers.diagnose.frames import records
from otel_mlobs.processor.records import Key, RunRecord

KEY = Key("shop", "clean")
DAY = 86_400.0
T0 = 1_766_000_000.0
REF = 5


def table(run: int, n: int = 800, **change) -> dict[str, np.ndarray]:
    """One healthy day of a small trips table; ``change`` replaces or drops columns."""
    rng = np.random.default_rng(run)
    miles = rng.gamma(2.0, 1.5, n).round(2)
    cols = {
        "order_id": np.array([f"{run}-{i}" for i in range(n)]),
        "trip_distance": miles,
        "fare": (3 + 2.5 * miles + rng.normal(0, 1, n)).round(2),
        "zone": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "paid": rng.random(n) < 0.7,
        "tip": np.where(rng.random(n) < 0.05, np.nan, rng.exponential(2.0, n).round(2)),
        "pickup": (
            np.datetime64("2025-12-20")
            + np.timedelta64(run, "D")
            + rng.integers(0, 86_400, n).astype("timedelta64[s]")
        ),
    }
    for name, values in change.items():
        if values is None:
            cols.pop(name)
        else:
            cols[name] = values
    return cols


def feed(
    analyzer: ConstraintAnalyzer,
    run: int,
    cols: dict,
    role: str = "output",
    dataset: str = "trips",
    close: bool = True,
) -> None:
    summary, sample = records(
        analyzer.key, f"r{run}", T0 + run * DAY, cols, role=role, dataset=dataset, seed=run
    )
    analyzer.update(summary)
    if sample is not None:
        analyzer.update(sample)
    if close:
        analyzer.flush()


def trained(n_runs: int = REF + 2, **kw) -> ConstraintAnalyzer:
    a = ConstraintAnalyzer(KEY, reference_runs=REF, **kw)
    for run in range(n_runs):
        feed(a, run, table(run))
    return a


def broken(a: ConstraintAnalyzer) -> list:
    return [x for x in a.alerts() if x.cls in ("hard", "soft")]


def metric(a, name: str, **labels) -> float | None:
    for m in a.metrics():
        if m.name == name and all(m.labels.get(k) == v for k, v in labels.items()):
            return m.value
    return None


def test_waits_for_reference_and_says_so():
    a = ConstraintAnalyzer(KEY, reference_runs=REF)
    for run in range(REF - 1):
        feed(a, run, table(run, tip=np.full(800, np.nan)))  # even a broken run raises nothing
    assert not a.ready and a.alerts() == []
    assert metric(a, "mlobs_constraints_ready") == 0.0
    assert metric(a, "mlobs_constraint_reference_runs") == REF - 1
    assert "waiting for reference: 4 of 5" in a.query()["status"]


def test_clean_runs_raise_no_hard_or_soft_alert():
    a = trained(REF + 8)
    assert a.ready and metric(a, "mlobs_constraints_ready") == 1.0
    assert broken(a) == []
    assert metric(a, "mlobs_constraint_evaluations_total", **{"class": "soft"}) > 0


def test_all_null_column_is_a_hard_alert_naming_it():
    a = trained()
    feed(a, 20, table(20, fare=np.full(800, np.nan)))
    hard = [x for x in broken(a) if x.cls == "hard"]
    assert [(x.columns, x.check, x.component) for x in hard] == [
        (("fare",), "not_all_null", "clean")
    ]
    assert "all 800 values are null" in hard[0].explanation
    assert hard[0].severity == "critical"
    # the soft completeness check would only repeat the news
    assert not [x for x in a.alerts() if x.check == "completeness"]


def test_alert_resolves_when_the_column_recovers():
    a = trained()
    feed(a, 20, table(20, fare=np.full(800, np.nan)))
    assert broken(a)
    feed(a, 21, table(21))
    assert broken(a) == []
    assert a.query()["recent_alerts"][0]["columns"] == ["fare"]


def test_vanished_and_new_columns_are_schema_alerts_not_crashes():
    a = trained()
    feed(a, 20, table(20, zone=None, coupon=np.full(800, "SAVE10")))
    found = {(x.columns, x.check, x.severity) for x in broken(a)}
    assert (("zone",), "present", "critical") in found
    assert (("coupon",), "new_column", "warning") in found


def test_type_change_is_hard():
    a = trained()
    feed(a, 20, table(20, trip_distance=np.array([f"{v} mi" for v in range(800)])))
    assert ("trip_distance",) in {x.columns for x in broken(a) if x.check == "type"}


def test_values_beyond_the_reference_range_explain_themselves():
    a = trained()
    feed(a, 20, table(20, trip_distance=table(20)["trip_distance"] * 1000))
    high = [x for x in broken(a) if x.check == "range_high"]
    assert len(high) == 1 and high[0].columns == ("trip_distance",) and high[0].cls == "soft"
    assert "99% of reference values lie in [" in high[0].explanation
    assert "in this run" in high[0].explanation and "lie above" in high[0].explanation


def test_unseen_categories_name_the_new_value():
    a = trained()
    zone = table(20)["zone"]
    feed(a, 20, table(20, zone=np.where(zone == "north", "NORTH", zone)))
    domain = [x for x in broken(a) if x.check == "domain"]
    assert len(domain) == 1 and "'NORTH'" in domain[0].explanation
    assert "'north'" in domain[0].explanation  # the category that vanished


def test_creeping_nulls_are_soft():
    a = trained()
    fare = table(20)["fare"].copy()
    fare[:200] = np.nan
    feed(a, 20, table(20, fare=fare))
    soft = [x for x in broken(a) if x.check == "completeness"]
    assert (
        soft and soft[0].columns == ("fare",) and "25% of values are null" in (soft[0].explanation)
    )


def test_frozen_column_is_hard():
    a = trained()
    feed(a, 20, table(20, trip_distance=np.full(800, 2.5)))
    assert ("trip_distance",) in {x.columns for x in broken(a) if x.check == "not_constant"}


def test_repeated_delivery_is_caught_as_stale():
    a = trained()
    same = table(6)  # the last reference-era run delivered again, bit for bit
    feed(a, 20, same)
    feed(a, 21, same)
    fresh = {x.columns for x in broken(a) if x.check == "fresh"}
    assert ("fare",) in fresh and ("trip_distance",) in fresh
    repeated = [x for x in broken(a) if x.check == "repeated_rows"]
    assert repeated and "order_id" not in repeated[0].columns  # identifiers are not the key


def test_distribution_move_is_drift_not_breakage():
    a = trained()
    feed(a, 20, table(20, trip_distance=table(20)["trip_distance"] * 1.5))
    assert broken(a) == []
    drift = [x for x in a.alerts() if x.cls == "drift"]
    assert drift and drift[0].columns == ("trip_distance",) and drift[0].severity == "info"
    assert "broke" not in drift[0].explanation


def test_output_alert_on_a_column_broken_in_the_input_is_inherited():
    a = ConstraintAnalyzer(KEY, reference_runs=REF)
    for run in range(REF + 1):
        feed(a, run, table(run), role="input", dataset="raw", close=False)
        feed(a, run, table(run), role="output", dataset="clean")
    bad = table(20, fare=np.full(800, np.nan))
    feed(a, 20, bad, role="input", dataset="raw", close=False)
    feed(a, 20, bad, role="output", dataset="clean")
    origins = {(x.role, x.origin) for x in broken(a) if x.columns == ("fare",)}
    assert origins == {("input", "input"), ("output", "inherited")}


def test_constant_and_all_null_reference_columns_and_tiny_runs_are_handled():
    a = ConstraintAnalyzer(KEY, reference_runs=REF)
    for run in range(REF + 1):
        feed(a, run, table(run, flag=np.full(800, 1.0), empty=np.full(800, np.nan)))
    feed(a, 10, table(10, flag=np.full(800, 1.0), empty=np.full(800, np.nan)))
    assert broken(a) == []
    feed(
        a,
        11,
        {
            k: v[:1]
            for k, v in table(11, flag=np.full(800, 1.0), empty=np.full(800, np.nan)).items()
        },
    )
    assert [x.check for x in broken(a)] == []  # one row: nothing distributional to judge
    assert a.query()["runs_judged"] == 3


def test_failed_runs_are_left_out_of_the_reference():
    a = ConstraintAnalyzer(KEY, reference_runs=REF)
    a.update(RunRecord(KEY, "r0", "etl", T0, 1.0, False, "boom", (), (), "", "", "", ""))
    feed(a, 0, table(0, fare=np.full(800, np.nan)))
    for run in range(1, REF):
        feed(a, run, table(run))
    assert not a.ready  # r0 did not count
    feed(a, REF, table(REF))
    assert a.ready
    feed(a, REF + 1, table(REF + 1))
    assert broken(a) == []
    assert "fare" not in {
        c["column"] for c in a.query()["constraints"] if c["check"] == "not_all_null" and c["muted"]
    }


def test_false_positive_feedback_widens_and_lowers_precision():
    a = trained()
    fare = table(20)["fare"].copy()
    fare[:120] = np.nan  # 15%: say the business knows and accepts it
    feed(a, 20, table(20, fare=fare))
    alert = next(x for x in broken(a) if x.check == "completeness")
    before = next(c for c in a.query(column="fare", check="completeness")["constraints"])
    out = a.mark_alert(alert.id, true_positive=False)
    assert out["alert"]["verdict"] is False and out["constraint"]["sensitivity"] > 1
    assert out["constraint"]["precision"] < before["precision"]
    assert broken(a) == []  # resolved on the spot
    feed(a, 21, table(21, fare=fare))
    assert not [x for x in broken(a) if x.check == "completeness"]
    assert metric(a, "mlobs_alert_feedback_total", **{"verdict": "false_positive"}) == 1
    assert metric(a, "mlobs_constraint_precision", check="completeness", column="fare") < 0.5
    with pytest.raises(KeyError, match="no alert"):
        a.mark_alert("nope", True)


def test_true_positive_feedback_raises_precision():
    a = trained()
    feed(a, 20, table(20, fare=np.full(800, np.nan)))
    alert = broken(a)[0]
    out = a.mark_alert(alert.id, true_positive=True)
    assert out["constraint"]["precision"] > 0.8 and broken(a)  # still active: it is real


def test_accepting_a_new_column_stops_its_alert():
    a = trained()
    feed(a, 20, table(20, coupon=np.full(800, "X")))
    alert = next(x for x in broken(a) if x.check == "new_column")
    a.mark_alert(alert.id, true_positive=False)
    feed(a, 21, table(21, coupon=np.full(800, "X")))
    assert not [x for x in broken(a) if x.check == "new_column"]


def test_metrics_and_query_report_alerts():
    a = trained()
    feed(a, 20, table(20, fare=np.full(800, np.nan)))
    active = metric(
        a, "mlobs_alerts_active", column="fare", severity="critical", method="constraints"
    )
    assert active == 1.0
    assert metric(a, "mlobs_alerts_total", **{"class": "hard", "severity": "critical"}) == 1.0
    assert (
        metric(a, "mlobs_constraint_violations_total", check="not_all_null", column="fare") == 1.0
    )
    q = a.query()
    assert q["alerts"][0]["class"] == "hard" and q["alerts"][0]["component"] == "clean"
    checks = {c["check"] for c in q["constraints"]}
    assert {
        "present",
        "type",
        "completeness",
        "range_high",
        "domain",
        "uniqueness",
        "shape",
        "fresh",
        "time_offset",
    } <= checks
    assert all(c["description"] for c in q["constraints"])


def test_snapshot_restore_continues_identically():
    a = trained()
    clone = ConstraintAnalyzer(KEY, reference_runs=REF)
    clone.restore(a.snapshot())
    # one set of records for both: KLL sketches of the same data differ between builds
    later = [
        records(KEY, f"r{run}", T0 + run * DAY, cols, seed=run, dataset="trips")
        for run, cols in ((20, table(20, fare=np.full(800, np.nan))), (21, table(21, zone=None)))
    ]
    for analyzer in (a, clone):
        for summary, sample in later:
            analyzer.update(summary)
            analyzer.update(sample)
            analyzer.flush()

    def norm(x):
        return sorted((m.name, tuple(sorted(m.labels.items())), m.value) for m in x.metrics())

    assert norm(a) == norm(clone)
    assert [x.id for x in a.alerts()] == [x.id for x in clone.alerts()]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        ConstraintAnalyzer(KEY, reference_runs=0)
    with pytest.raises(ValueError):
        ConstraintAnalyzer(KEY, k=-1)


def test_ragged_summary_is_a_clear_error():
    a = trained()
    summary, _ = records(KEY, "r30", T0 + 30 * DAY, table(30), seed=30, dataset="trips")
    summary.count = summary.count[:-1]
    with pytest.raises(ValueError, match="'trips'.*differ in length"):
        a.update(summary)
    feed(a, 31, table(31))
    assert broken(a) == []  # the bad record left no half-open run behind


def test_a_new_dataset_warns_until_accepted():
    a = trained()
    feed(a, 20, table(20), close=False)
    feed(a, 20, table(20), dataset="coupons")
    alert = next(x for x in broken(a) if x.check == "new_dataset")
    assert alert.dataset == "coupons" and alert.severity == "warning"
    a.mark_alert(alert.id, true_positive=False)
    feed(a, 21, table(21), close=False)
    feed(a, 21, table(21), dataset="coupons")
    assert not [x for x in broken(a) if x.check == "new_dataset"]


# --- the compiled (vectorized) path --------------------------------------------------------


def _run_records(run: int, **change):
    return records(KEY, f"r{run}", T0 + run * DAY, table(run, **change), seed=run, dataset="trips")


VARIANTS = {
    "healthy": {},
    "all_null": {"fare": np.full(800, np.nan)},
    "scaled": {"trip_distance": table(20)["trip_distance"] * 1000},
    "shifted": {"trip_distance": table(20)["trip_distance"] * 1.5},
    "renamed_zone": {"zone": np.where(table(20)["zone"] == "north", "NORTH", table(20)["zone"])},
    "frozen": {"trip_distance": np.full(800, 2.5)},
    "type": {"trip_distance": np.array([f"{v} mi" for v in range(800)])},
    "some_nulls": {
        "tip": np.full(800, np.nan),
        "fare": np.where(np.arange(800) < 300, np.nan, 1.0),
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_compiled_plan_judges_exactly_like_each_constraint(variant):
    import copy

    from otel_mlobs.processor.analyzers.diagnose.columns import columns_of, summary_view

    a = trained(REF)  # the reference is built, nothing judged yet
    summary, _ = _run_records(20, **VARIANTS[variant])
    suite = a._suites[("output", "trips")]
    alone = copy.deepcopy(suite.plan)  # the same checks, judged one object at a time
    judged = suite.plan.judge([summary_view(summary)], [summary.event_time]).run(0)
    cols = {c.name: c for c in columns_of(summary)}
    compared = 0
    for slot, check in enumerate(alone.checks):
        outcome = check.evaluate(cols.get(check.column), summary.event_time)
        if outcome is None or check.check == "present":
            assert not judged.applied[slot] or check.check == "present", check.id
            continue
        broken_column = any(
            judged.fired[s] and alone.checks[s].cls == "hard"
            for s in np.flatnonzero(alone.col == alone.col[slot])
        )
        if check.cls != "hard" and broken_column:
            assert not judged.applied[slot], check.id  # skipped: would repeat the news
            continue
        assert judged.applied[slot], check.id
        assert bool(judged.fired[slot]) == outcome.fired, check.id
        assert judged.value[slot] == pytest.approx(outcome.value, rel=1e-12, abs=1e-15), check.id
        if np.isfinite(outcome.high):
            assert judged.high[slot] == pytest.approx(outcome.high, rel=1e-12), check.id
        compared += 1
    assert compared > 30


def test_update_many_raises_the_same_alerts_as_update():
    schedule = [table(r) for r in range(12)]
    schedule[8] = table(8, fare=np.full(800, np.nan))
    schedule[9] = table(9, trip_distance=table(9)["trip_distance"] * 1000)
    schedule[10] = schedule[9]  # a stale re-delivery
    one, many = (
        ConstraintAnalyzer(KEY, reference_runs=REF),
        ConstraintAnalyzer(KEY, reference_runs=REF),
    )
    batch = []
    for run, cols in enumerate(schedule):
        summary, sample = records(KEY, f"r{run}", T0 + run * DAY, cols, seed=run, dataset="trips")
        for rec in (summary, sample):
            one.update(rec)
            batch.append(rec)
        if len(batch) == 8 or run == len(schedule) - 1:  # four runs per ingest batch
            many.update_many(batch)
            batch = []
    one.flush()
    many.flush()

    def seen(a):
        alerts = [*a.alerts(), *a._book.recent()]
        return sorted((x.run_id, x.check, x.columns) for x in alerts if x.cls != "drift")

    assert seen(one) == seen(many)
    assert {"not_all_null", "range_high", "fresh"} <= {x[1] for x in seen(many)}
    assert metric(many, "mlobs_constraint_evaluations_total", **{"class": "hard"}) == metric(
        one, "mlobs_constraint_evaluations_total", **{"class": "hard"}
    )


def test_update_many_keeps_the_batch_when_one_record_is_malformed():
    a = trained()
    bad, _ = _run_records(30)
    bad.count = bad.count[:-1]
    good, sample = _run_records(31, fare=np.full(800, np.nan))
    with pytest.raises(BatchFailures) as raised:
        a.update_many([bad, good, sample])
    assert [record for record, _ in raised.value.failures] == [bad]
    assert "differ in length" in str(raised.value.failures[0][1])
    a.flush()
    assert [x.check for x in broken(a)] == ["not_all_null"]


def test_row_hashes_tell_rows_apart_exactly_whatever_the_dtype():
    from otel_mlobs.processor.analyzers.diagnose.repeats import overlap, row_hashes

    def sample(seed: int, n: int = 400) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {
            "miles": rng.gamma(2.0, 1.5, n).round(1),
            "zone": rng.choice(["n", "south", "east-west"], n),
            "paid": rng.random(n) < 0.5,
            "seats": rng.integers(1, 3, n),
        }

    names = ["miles", "zone", "paid", "seats"]
    for seed in range(20):
        a, b = sample(2 * seed), sample(2 * seed + 1)
        rows_a = set(zip(*(a[k].tolist() for k in names), strict=True))
        rows_b = list(zip(*(b[k].tolist() for k in names), strict=True))
        truth = np.mean([r in rows_a for r in rows_b])
        assert overlap(row_hashes(b, names), row_hashes(a, names)) == pytest.approx(truth)
        assert len(np.unique(row_hashes(a, names))) == len(rows_a)
    a = sample(0)
    a["miles"][:5] = 0.0
    recast = {
        "miles": np.where(a["miles"] == 0, -0.0, a["miles"]),
        "zone": a["zone"].astype("<U20").astype(object),
        "paid": a["paid"].astype(int),
        "seats": a["seats"].astype(float),
    }
    assert (row_hashes(recast, names) == row_hashes(a, names)).all()
    swapped = {**a, "paid": a["seats"] == 1, "seats": a["paid"].astype(int) + 1}
    assert (row_hashes(swapped, names) != row_hashes(a, names)).mean() > 0.3


def test_summary_view_reads_sketches_as_the_sketch_library_does():
    from otel_mlobs.processor.analyzers.diagnose import columns as colmod

    summary, _ = _run_records(3, tip=np.where(np.arange(800) < 500, np.nan, table(3)["tip"]))
    view = colmod.summary_view(summary)
    assert colmod.summary_view(summary) is view  # once per record
    levels = [float(x) for x in colmod.GRID_LEVELS]
    checked = 0
    for i, blob in enumerate(summary.sketches):
        if not blob:
            assert np.isnan(view.grid[i]).all() or summary.kinds[i] != "numeric"
            continue
        np.testing.assert_array_equal(view.grid[i], colmod.quantiles(blob, levels))
        for x in [*colmod.quantiles(blob, [0.1, 0.5, 0.9]), -1e9, 1e9]:
            above, below = view.outside(np.array([i]), np.array([x]), np.array([x]))
            assert above[0] == colmod.share_above(blob, x)
            assert below[0] == colmod.share_below(blob, x)
        checked += 1
    assert checked >= 3
