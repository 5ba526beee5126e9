"""Column likelihood: the Chow-Liu tree, its coding, and the analyzer on synthetic runs."""

from __future__ import annotations

import numpy as np
import pytest

from otel_mlobs.processor.analyzers.base import BatchFailures
from otel_mlobs.processor.analyzers.diagnose import LikelihoodAnalyzer
from otel_mlobs.processor.analyzers.diagnose import discretize as discretize_module
from otel_mlobs.processor.analyzers.diagnose import likelihood as likelihood_module
from otel_mlobs.processor.analyzers.diagnose.discretize import (
    HIGH,
    LOW,
    NULL,
    RowCoder,
    encode_rows,
    fit_coder,
)
from otel_mlobs.processor.analyzers.diagnose.likelihood import (
    ChowLiuTree,
    CountLayout,
    TreeCounts,
    mutual_information,
)
from otel_mlobs.processor.analyzers.diagnose.tuning import RobustThreshold
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


def _reference_codes(coder, values: np.ndarray, event_time: float) -> np.ndarray:
    """Codes as the coding rules state them, one value at a time."""
    out = []
    for v in values.tolist():
        if coder.kind == "categorical":
            text = str(v)
            if text in ("", "nan", "None"):
                out.append(NULL)
            elif text in coder.values.tolist():
                out.append(3 + coder.values.tolist().index(text))
            else:
                out.append(3 + len(coder.values))
            continue
        x = float(v) - (event_time if coder.kind == "offset" else 0.0)
        if not np.isfinite(x):
            out.append(NULL)
        elif x < coder.lo:
            out.append(LOW)
        elif x > coder.hi:
            out.append(HIGH)
        elif len(coder.values):
            dist = np.abs(coder.values - x)
            out.append(3 + int(np.flatnonzero(dist == dist.min())[-1]))  # ties: the larger
        else:
            out.append(3 + int(np.sum(coder.edges <= x)))
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_coder_codes_every_column_as_its_coder_does(seed):
    rng = np.random.default_rng(seed)
    n = 400
    ref = {
        "skewed": rng.lognormal(0, 2, n),
        "normal": rng.normal(50, 10, n),
        "steps": np.tile([1.0, 1.0, 2.5, 4.0, 10.0], n // 5),
        "label": rng.choice(["north", "south", "a b", "日本", "nan", ""], n),
        "clock": T0 + rng.uniform(0, DAY, n),
    }
    runs = [{k: v[: n // 2] for k, v in ref.items()}, {k: v[n // 2 :] for k, v in ref.items()}]
    runs[1]["clock"] = runs[1]["clock"] + DAY
    times = [T0, T0 + DAY]
    coders = [fit_coder(k, [r[k] for r in runs], times) for k in ref]
    assert all(c is not None for c in coders) and coders[4].kind == "offset"
    samples = []
    for s in range(3):
        m = 300
        cols = {
            "skewed": np.concatenate([rng.lognormal(0, 2, m - 4), [np.nan, np.inf, -1.0, 1e9]]),
            "normal": np.concatenate([rng.normal(50, 10, m - 9), coders[1].edges]),
            "steps": rng.choice([1.0, 1.75, 2.5, 3.0, 4.0, 7.0, 10.0, 99.0], m),
            "label": rng.choice(["north", "south", "west", "日本", "", "None"], m).astype("<U7"),
            "clock": T0 + (s + 2) * DAY + rng.uniform(-3600, DAY + 3600, m),
        }
        if s == 1:
            cols["label"] = cols["label"].astype(object)  # another text layout, same codes
            del cols["steps"]
        samples.append((cols, T0 + (s + 2) * DAY))
    codes, present, bounds = RowCoder(coders).encode_many(samples)
    for s, (cols, t) in enumerate(samples):
        part = codes[bounds[s] : bounds[s + 1]]
        for j, coder in enumerate(coders):
            if coder.name not in cols:
                assert not present[s, j] and (part[:, j] == NULL).all()
                continue
            assert present[s, j]
            expected = _reference_codes(coder, cols[coder.name], t)
            np.testing.assert_array_equal(part[:, j], expected, err_msg=coder.name)
            np.testing.assert_array_equal(coder.encode(cols[coder.name], t), expected)


def test_tree_counts_add_and_subtract_like_refits():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 4, 3000)
    b = (a + (rng.random(3000) < 0.2)) % 4
    c = rng.integers(0, 5, 3000)
    codes = np.stack([a, b, c], 1)
    layout = CountLayout([4, 4, 5])
    parts = [TreeCounts.of(codes[i : i + 1000], layout) for i in range(0, 3000, 1000)]
    total = parts[0] + parts[1] + parts[2]
    whole = ChowLiuTree.fit(codes, [4, 4, 5])
    summed = ChowLiuTree.from_counts(total, layout)
    assert summed.parent.tolist() == whole.parent.tolist()
    np.testing.assert_allclose(summed.mi, whole.mi, atol=1e-12)
    left_out = ChowLiuTree.from_counts(total - parts[0], layout)
    refit = ChowLiuTree.fit(codes[1000:], [4, 4, 5])
    for x, y in zip(left_out.cpts, refit.cpts, strict=True):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x, y)
    noise = 3.0 * np.sqrt(2.0 * 9) / (2.0 * 3000)  # the fit's margin over chance, df = 3 * 3
    assert whole.mi[1] + whole.mi[0] == pytest.approx(mutual_information(a, b, 4, 4) - noise)


# score tables for every column, for none (row by row), and for some until the budget runs out
@pytest.mark.parametrize(("cells", "budget"), [(1 << 15, 1 << 18), (8, 1 << 18), (1 << 15, 12)])
def test_column_scores_are_conditional_log_probabilities(monkeypatch, cells, budget):
    monkeypatch.setattr(likelihood_module, "_TABLE_CELLS", cells)
    monkeypatch.setattr(likelihood_module, "_TREE_CELLS", budget)
    rng = np.random.default_rng(5)
    a = rng.integers(0, 3, 2000)
    b = (a + (rng.random(2000) < 0.1)) % 3
    c = (b + (rng.random(2000) < 0.1)) % 3
    codes = np.stack([a, b, c], 1)
    tree = ChowLiuTree.fit(codes, [3, 3, 3])
    rows = np.array([[0, 0, 0], [0, 1, 2], [2, 0, 1]])

    def joint(x):  # the tree's joint probability of one row
        logp = 0.0
        for j in range(3):
            p = tree.parent[j]
            logp += tree.root_log_p[j][x[j]] if p < 0 else tree.cpts[j][x[p], x[j]]
        return np.exp(logp)

    scores = tree.column_scores(rows)
    for r, x in enumerate(rows):
        for j in range(3):  # P(x_j | every other column) under the tree's joint
            others = sum(joint(np.where(np.arange(3) == j, v, x)) for v in range(3))
            assert scores[r, j] == pytest.approx(np.log(joint(x) / others), abs=1e-9)
    # b links a and c; without b, each of them is left with its own marginal
    assert sorted(tree.blanket(1)) == [0, 2]
    masked = tree.column_scores(rows, np.array([True, False, True]))
    assert np.isnan(masked[:, 1]).all()
    for j in (0, 2):
        np.testing.assert_allclose(masked[:, j], tree.root_log_p[j][rows[:, j]])


def test_batched_updates_match_single_updates():
    one, many = trained(), trained()
    batch = []
    for run in range(10, 16):
        cols = rows(run, n=200 if run % 2 else 600)
        if run == 12:
            cols["trip_distance"] = cols["trip_distance"] * 1.609
        if run == 14:
            cols.pop("zone")
        batch.append(SampleRecord(KEY, f"r{run}", T0 + run * DAY, "output", "features", 1, cols))
    for rec in batch:
        one.update(rec)
    many.update_many(batch)
    assert one.query() == many.query()
    assert [(a.id, a.explanation) for a in one.alerts()] == [
        (a.id, a.explanation) for a in many.alerts()
    ]


def test_a_malformed_sample_fails_alone_in_a_batch():
    one, many = trained(), trained()
    batch = [
        SampleRecord(KEY, f"r{run}", T0 + run * DAY, "output", "features", 1, rows(run))
        for run in range(10, 14)
    ]
    broken = rows(20)
    broken["trip_distance"] = np.ones((len(broken["trip_distance"]), 2))  # not one column
    bad = SampleRecord(KEY, "r20", T0 + 20 * DAY, "output", "features", 1, broken)
    with pytest.raises(BatchFailures) as raised:
        many.update_many([batch[0], batch[1], bad, batch[2], batch[3]])
    assert [record for record, _ in raised.value.failures] == [bad]
    for rec in batch:
        one.update(rec)
    assert many.query() == one.query()


def test_snapshot_leaves_out_scoring_caches_and_restores_the_same_scores():
    a = trained()
    feed(a, 10, rows(10))
    blob = a.snapshot()
    clone = LikelihoodAnalyzer(KEY, reference_runs=5)
    clone.restore(blob)
    bad = rows(11)
    bad["trip_distance"] = bad["trip_distance"] * 1.609
    feed(a, 11, bad)
    feed(clone, 11, bad)
    assert a.query() == clone.query() and len(blob) < 2_000_000


@pytest.mark.parametrize(
    "vocab",
    [
        ["c0_level_0", "c0_level_1", "c0_level_2"],  # one word tells the keys apart
        ["aaaa", "aabb", "bbaa", "bbbb"],  # no single word does
    ],
)
@pytest.mark.parametrize("hashed", [True, False])  # word lookup, or the string search
def test_text_codes_are_exact_for_near_misses(monkeypatch, vocab, hashed):
    if not hashed:
        monkeypatch.setattr(discretize_module._WordKeys, "of", classmethod(lambda *a: None))
    rng = np.random.default_rng(8)
    coder = fit_coder("t", [rng.choice(vocab, 300), rng.choice(vocab, 300)], [0.0, 0.0])
    misses = ["aaab", "bbba", "c0_level_9", "c0_level_10", "aa", "", "nan", "None", "日本"]
    values = rng.choice(vocab + misses, 2000)
    expected = _reference_codes(coder, values, 0.0)
    np.testing.assert_array_equal(coder.encode(values, 0.0), expected)
    np.testing.assert_array_equal(coder.encode(values.astype(object), 0.0), expected)
    shifted = np.frombuffer(b"\0" + values.tobytes(), dtype=values.dtype, offset=1)  # unaligned
    np.testing.assert_array_equal(coder.encode(shifted, 0.0), expected)


def test_snapshots_with_unbanked_thresholds_restore_and_score_the_same():
    a, old = trained(), trained()
    old._sync()
    for model in old._models.values():  # the layout snapshots had before thresholds were banked
        for col in model.columns:
            banked = col.threshold
            plain = RobustThreshold(
                "upper", old.min_drop, k=old.k, window=old.history, noise="mean",
                unit_sd=banked.unit_sd,
            )  # fmt: skip
            for value in banked.bank._values[banked.row, : banked.size]:
                plain.observe(float(value))
            col.threshold = plain
        model.bank = None
    old._fast = {}
    clone = LikelihoodAnalyzer(KEY, reference_runs=5)
    clone.restore(old.snapshot())
    assert clone.query() == a.query()
    bad = rows(10)
    bad["trip_distance"] = bad["trip_distance"] * 1.609
    feed(a, 10, bad)
    feed(clone, 10, bad)
    assert clone.query() == a.query() and [x.columns for x in clone.alerts()] == [
        ("trip_distance",)
    ]
