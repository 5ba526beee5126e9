"""Column likelihood: the Chow-Liu tree, its coding, and the analyzer on synthetic runs."""

from __future__ import annotations

import numpy as np
import pytest

from otel_mlobs.processor.analyzers.diagnose import LikelihoodAnalyzer
from otel_mlobs.processor.analyzers.diagnose.discretize import (
    HIGH,
    LOW,
    NULL,
    encode_rows,
    fit_coder,
)
from otel_mlobs.processor.analyzers.diagnose.likelihood import ChowLiuTree, mutual_information
from otel_mlobs.processor.records import Key, SampleRecord

KEY = Key("shop", "features")
DAY = 86_400.0
T0 = 1_766_000_000.0


def rows(run: int, n: int = 600, **change) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + run)
    miles = rng.gamma(2.0, 1.5, n)
    zone = rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2])
    cols = {
        "trip_distance": miles.round(2),
        "fare": (3 + 2.5 * miles + rng.normal(0, 0.6, n)).round(2),
        "zone": zone,
        "zone_code": np.select([zone == "north", zone == "south"], [1, 2], 3).astype(float),
        "passengers": rng.choice([1, 2, 3, 4], n, p=[0.7, 0.15, 0.1, 0.05]).astype(float),
        "hour_s": T0 + run * DAY + rng.uniform(0, DAY, n),  # a clock: coded by offset
    }
    for name, values in change.items():
        if values is None:
            cols.pop(name)
        else:
            cols[name] = values
    return cols


def feed(a: LikelihoodAnalyzer, run: int, cols: dict, dataset: str = "features") -> None:
    n = len(next(iter(cols.values())))
    a.update(SampleRecord(a.key, f"r{run}", T0 + run * DAY, "output", dataset, n, cols))


def trained(runs: int = 6, **kw) -> LikelihoodAnalyzer:
    a = LikelihoodAnalyzer(KEY, reference_runs=5, **kw)
    for run in range(runs):
        feed(a, run, rows(run))
    return a


def test_mutual_information_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, 5000)
    y = (x + (rng.random(5000) < 0.2)) % 3
    joint = np.histogram2d(x, y, bins=[3, 3])[0] / 5000
    px, py = joint.sum(1), joint.sum(0)
    nz = joint > 0
    direct = (joint[nz] * np.log(joint[nz] / np.outer(px, py)[nz])).sum()
    assert mutual_information(x, y, 3, 3) == pytest.approx(direct - 4 / (2 * 5000))
    assert mutual_information(x, rng.integers(0, 3, 5000), 3, 3) < 0.002


def test_tree_links_dependent_columns_and_leaves_noise_alone():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, 4000)
    b = (a + (rng.random(4000) < 0.1)) % 5
    c = (b + (rng.random(4000) < 0.1)) % 5
    noise = rng.integers(0, 5, 4000)
    tree = ChowLiuTree.fit(np.stack([a, b, c, noise], 1), [5, 5, 5, 5])
    edges = {frozenset((j, int(p))) for j, p in enumerate(tree.parent) if p >= 0}
    assert edges == {frozenset((0, 1)), frozenset((1, 2))}
    assert tree.blanket(3) == []


def test_coder_handles_nulls_out_of_range_and_clocks():
    per_run = [np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0])] * 2
    coder = fit_coder("x", per_run, [0.0, 0.0], bins=4)
    codes = coder.encode(np.array([np.nan, -5.0, 99.0, 6.0]), 0.0)
    assert codes[0] == NULL and codes[1] == LOW and codes[2] == HIGH and codes[3] > HIGH
    clock = fit_coder(
        "t", [np.arange(0.0, DAY, 3600.0) + d * DAY for d in range(3)], [d * DAY for d in range(3)]
    )
    assert clock.kind == "offset"
    ids = fit_coder("id", [np.arange(100) + 1000 * d for d in range(3)], [0.0, 1.0, 2.0])
    assert ids is None  # a new range every run, even relative to the run's time
    day_of_week = fit_coder("dow", [np.full(50, d) for d in range(3)], [0.0, 1.0, 2.0])
    assert day_of_week is None


def test_clean_runs_raise_nothing():
    a = trained(runs=12)
    assert a.ready and a.alerts() == []
    q = a.query()
    scored = {c["column"] for d in q["datasets"] for c in d["columns"]}
    assert {"trip_distance", "fare", "zone", "hour_s"} <= scored


def test_unit_change_names_the_column_that_changed_not_its_partner():
    a = trained()
    bad = rows(10)
    bad["trip_distance"] = (bad["trip_distance"] * 1.609).round(2)
    feed(a, 10, bad)
    alerts = a.alerts()
    assert [(x.cls, x.columns) for x in alerts] == [("soft", ("trip_distance",))]
    text = alerts[0].explanation
    assert "less likely given fare" in text and "most surprising" in text
    feed(a, 11, rows(11))
    assert a.alerts() == []


def test_broken_link_between_columns_is_caught_even_with_healthy_marginals():
    a = trained()
    bad = rows(10)
    bad["zone_code"] = np.random.default_rng(5).permutation(bad["zone_code"])  # a bad join
    feed(a, 10, bad)
    assert {x.columns[0] for x in a.alerts()} & {"zone", "zone_code"}


def test_a_new_mix_of_an_unlinked_column_is_not_breakage():
    a = trained()
    feed(
        a,
        10,
        rows(
            10,
            passengers=np.random.default_rng(3).choice(
                [1.0, 2.0, 3.0, 4.0], 600, p=[0.25, 0.25, 0.25, 0.25]
            ),
        ),
    )
    assert a.alerts() == []


def test_missing_column_is_not_evidence_against_its_neighbours():
    a = trained()
    feed(a, 10, rows(10, trip_distance=None))
    assert a.alerts() == []
    fare = next(c for d in a.query()["datasets"] for c in d["columns"] if c["column"] == "fare")
    assert fare["run"] is not None


def test_nulls_in_a_linked_column_drop_its_likelihood():
    a = trained()
    feed(a, 10, rows(10, fare=np.full(600, np.nan)))
    assert ("fare",) in {x.columns for x in a.alerts()}


def test_single_row_and_empty_samples_are_handled():
    a = trained()
    one = {k: v[:1] for k, v in rows(10).items()}
    one["trip_distance"] = one["trip_distance"] * 100
    feed(a, 10, one)
    assert a.alerts() == []  # one row is too little to judge a run by
    feed(a, 11, {k: v[:0] for k, v in rows(11).items()})
    assert a.alerts() == []


def test_window_catches_a_fault_spread_over_small_runs():
    a = trained()
    for run in range(10, 22):
        small = rows(run, n=12)
        small["trip_distance"] = small["trip_distance"] * 2.5
        feed(a, run, small)
    window = [x for x in a.alerts() if x.check == "likelihood_window"]
    assert window and window[0].columns == ("trip_distance",)
    assert not [x for x in a.alerts() if x.check == "likelihood_run"]


def test_waits_for_reference():
    a = LikelihoodAnalyzer(KEY, reference_runs=5)
    for run in range(4):
        feed(a, run, rows(run, fare=np.full(600, np.nan) if run == 3 else rows(run)["fare"]))
    assert not a.ready and a.alerts() == []
    assert a.query()["waiting"] == [
        {"role": "output", "dataset": "features", "runs": 4, "needed": 5}
    ]
    assert {m.name: m.value for m in a.metrics()}["mlobs_likelihood_ready"] == 0.0


def test_metrics_feedback_and_snapshot():
    a = trained()
    bad = rows(10)
    bad["trip_distance"] = bad["trip_distance"] * 1.609
    feed(a, 10, bad)
    values = {
        (m.name, m.labels.get("column"), m.labels.get("window")): m.value for m in a.metrics()
    }
    assert (
        values[("mlobs_column_likelihood", "trip_distance", "run")]
        < values[("mlobs_column_likelihood", "trip_distance", "reference")] - 1.0
    )
    clone = LikelihoodAnalyzer(KEY, reference_runs=5)
    clone.restore(a.snapshot())
    alert = a.alerts()[0]
    out = a.mark_alert(alert.id, true_positive=False)
    assert out["precision"] < 0.5 and a.alerts() == []
    feed(a, 11, bad)
    assert ("trip_distance",) not in {x.columns for x in a.alerts()}  # its band accepts it
    feed(clone, 11, bad)
    assert clone.alerts()  # the restored copy never got the verdict
    with pytest.raises(KeyError):
        a.mark_alert("missing", True)


def test_encode_rows_marks_absent_columns():
    coder = fit_coder("x", [np.arange(20.0)] * 2, [0.0, 0.0])
    codes, present = encode_rows([coder], {"y": np.arange(5.0)}, 0.0)
    assert codes.shape == (5, 1) and not present[0]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        LikelihoodAnalyzer(KEY, roles=("sideways",))
    with pytest.raises(ValueError):
        LikelihoodAnalyzer(KEY, min_drop=0)


def test_wide_datasets_model_a_bounded_number_of_columns():
    a = LikelihoodAnalyzer(KEY, reference_runs=2, max_columns=8)
    rng = np.random.default_rng(0)
    for run in range(3):
        feed(a, run, {f"c{i:03d}": rng.normal(0, 1, 200) for i in range(40)})
    model = next(d for d in a.query()["datasets"])
    assert len(model["columns"]) == 8
    assert sum("max_columns" in why for why in model["skipped"].values()) == 32
