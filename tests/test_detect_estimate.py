"""Label-free estimates, their bands, bucket fallback, and the partial-label combination."""

from __future__ import annotations

import numpy as np
import pytest

from otel_mlobs.processor.analyzers.detect import ModelAccuracyAnalyzer
from otel_mlobs.processor.analyzers.detect.buckets import AccuracyTable, SingleScheme
from otel_mlobs.processor.analyzers.detect.combined import logit_shift, prior_strength
from otel_mlobs.processor.analyzers.detect.refdata import RefData
from otel_mlobs.processor.analyzers.detect.synthetic import (
    draw,
    feedback_batch,
    prediction_batch,
)
from otel_mlobs.processor.records import Key

T0 = 1_700_000_000.0
KEY = Key("p", "", "m")


def with_reference(seed=0, n=6000, **kw):
    rng = np.random.default_rng(seed)
    a = ModelAccuracyAnalyzer(KEY, **kw)
    ref = draw(rng, n, T0 - 10 * 86400, 5 * 86400, prefix="ref")
    a.update(prediction_batch(ref, reference=True))
    return a, rng


def feed(a, rows, size=5000):
    for i in range(0, len(rows.ids), size):
        a.update(prediction_batch(rows.take(np.arange(i, min(i + size, len(rows.ids))))))


def test_no_reference_means_no_estimate_and_says_why():
    a = ModelAccuracyAnalyzer(KEY)
    rng = np.random.default_rng(0)
    feed(a, draw(rng, 500, T0, 3600))
    q = a.query(window="1d")
    assert q["windows"]["1d"]["estimated"] is None and q["windows"]["1d"]["combined"] is None
    assert "no reference" in q["windows"]["1d"]["reason"]
    assert q["estimator"] == {"available": False, "reason": q["windows"]["1d"]["reason"]}
    names = {m.name for m in a.metrics() if m.name == "mlobs_model_accuracy"}
    assert names == set()
    small, _ = with_reference(n=50)
    feed(small, draw(rng, 100, T0, 3600))
    assert "50 labelled rows" in small.query()["estimator"]["reason"]


@pytest.mark.parametrize("covariate", [0.0, 0.5])
def test_estimate_tracks_covariate_shift_within_its_band(covariate):
    errors = []
    for seed in range(3):
        a, rng = with_reference(seed)
        live = draw(rng, 20_000, T0, 86400, covariate=covariate)
        feed(a, live)
        est = a.window("1d").estimated
        truth = live.correct.mean()
        assert est.lower - 0.005 <= truth <= est.upper + 0.005
        errors.append(est.value - truth)
    assert abs(np.mean(errors)) < 0.015
    q = a.query()["estimator"]
    chosen = [c for c in q["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["feasible"]
    assert q["buckets"] <= a.max_buckets
    for c in q["candidates"]:
        assert {"buckets", "min_support", "variance", "brier"} <= set(c)


def test_shifted_estimate_moves_with_the_truth():
    a, rng = with_reference(1)
    b, _ = with_reference(1)
    calm, shifted = draw(rng, 20_000, T0, 86400), draw(rng, 20_000, T0, 86400, covariate=1.0)
    feed(a, calm)
    feed(b, shifted)
    moved = b.window("1d").estimated.value - a.window("1d").estimated.value
    truth = shifted.correct.mean() - calm.correct.mean()
    assert truth > 0.03
    assert moved == pytest.approx(truth, abs=0.02)


def test_unseen_bucket_falls_back_to_parent():
    rng = np.random.default_rng(3)
    zone = np.where(rng.random(2000) < 0.5, "a", "b")
    correct = np.where(zone == "a", rng.random(2000) < 0.9, rng.random(2000) < 0.5)
    data = RefData({"zone": zone}, correct, np.zeros(2000))
    scheme = SingleScheme("zone", False, 4, 30).fit(data)
    table = AccuracyTable.fit(scheme, data)
    cells, _ = scheme.cells({"zone": np.array(["a", "b", "never-seen", ""])})
    assert cells[2] == cells[3] == scheme.n_buckets - 1
    root = (correct.sum() + 1) / (correct.size + 2)
    assert table.acc[cells[2]] == pytest.approx(root)
    assert table.acc[cells[0]] > 0.85 and table.acc[cells[1]] < 0.55


def test_refit_on_new_reference_starts_new_bucket_generation():
    a, rng = with_reference(2)
    feed(a, draw(rng, 3000, T0, 3600))
    ref2 = draw(rng, 4000, T0 - 86400, 3600, prefix="ref2")
    batch = prediction_batch(ref2, reference=True)
    batch.model_version = "v2"
    a.update(batch)
    a.refresh()
    feed(a, draw(rng, 3000, T0 + 3600, 3600))
    w = a.window("1d")
    assert w.predictions == 6000 and w.coverage == 1.0
    assert a.query()["estimator"]["reference_rows"] == 4000


def uneven_day(seed, concept, outage=(2, 7), share=0.12):
    """A day whose label share varies by zone (0.3x to 1.7x) with two zones out entirely."""
    a, rng = with_reference(seed)
    live = draw(rng, 30_000, T0, 86400, concept=concept)
    feed(a, live)
    zone_share = share * np.linspace(0.3, 1.7, 12)[np.random.default_rng(seed).permutation(12)]
    zone_share[list(outage)] = 0.0
    m = rng.random(live.ids.size) < zone_share[live.zone]
    a.update(feedback_batch(live.take(m), rng.exponential(3600, m.sum())))
    return a.window("1d"), live.correct.mean()


def test_combined_beats_realized_and_estimate_on_uneven_labels():
    err = {"realized": [], "estimated": [], "combined": []}
    for seed in range(5):
        w, truth = uneven_day(seed, concept=1.0)
        for k in err:
            err[k].append(abs(getattr(w, k).value - truth))
        assert w.combined.lower - 0.005 <= truth <= w.combined.upper + 0.005
    mae = {k: float(np.mean(v)) for k, v in err.items()}
    assert mae["combined"] < mae["estimated"] and mae["combined"] < mae["realized"]
    assert mae["combined"] < 0.012 and mae["estimated"] > 0.015


def test_combined_without_shift_stays_on_the_truth():
    days = [uneven_day(s, 0.0) for s in range(4)]
    combined = np.mean([abs(w.combined.value - t) for w, t in days])
    realized = np.mean([abs(w.realized.value - t) for w, t in days])
    assert combined < 0.006 and combined < realized


def test_accuracy_metrics_by_method_and_window():
    w, _ = uneven_day(0, concept=0.5)
    a, rng = with_reference(0)
    live = draw(rng, 5000, T0, 3000)
    feed(a, live)
    a.update(feedback_batch(live.take(np.arange(1000)), 60.0))
    got = {(m.name, m.labels.get("method"), m.labels.get("window")): m.value for m in a.metrics()}
    for method in ("realized", "estimated", "combined"):
        for window in ("1h", "1d", "7d"):
            v = got[("mlobs_model_accuracy", method, window)]
            lo = got[("mlobs_model_accuracy_lower", method, window)]
            hi = got[("mlobs_model_accuracy_upper", method, window)]
            assert 0 <= lo <= v <= hi <= 1
    day = a.daily()[-1]
    assert day["combined"]["value"] == pytest.approx(a.window("1d").combined.value)


def test_snapshot_restore_keeps_everything():
    a, rng = with_reference(5)
    live = draw(rng, 4000, T0, 7200)
    feed(a, live)
    a.update(feedback_batch(live.take(np.arange(0, 4000, 3)), 900.0))
    b = ModelAccuracyAnalyzer(KEY)
    b.restore(a.snapshot())
    assert list(map(repr, a.metrics())) == list(map(repr, b.metrics()))
    more = draw(rng, 1000, T0 + 7200, 600, prefix="more")
    for x in (a, b):
        feed(x, more)
        x.update(feedback_batch(more, 60.0))
    assert a.query() == b.query()


def test_logit_shift_recovers_a_concept_shift_and_ignores_label_noise():
    rng = np.random.default_rng(8)
    est = np.linspace(0.55, 0.99, 12)
    x = np.log(est / (1 - est))
    j = np.full(12, 400.0)
    shifted = 1 / (1 + np.exp(-(x - 0.6)))
    delta, var = logit_shift(j, rng.binomial(400, shifted).astype(float), x)
    assert delta == pytest.approx(-0.6, abs=3 * np.sqrt(var) + 0.02)
    calm = [logit_shift(j, rng.binomial(400, est).astype(float), x)[0] for _ in range(50)]
    raw_sd = 1 / np.sqrt((j * est * (1 - est)).sum())
    assert np.mean(np.abs(calm)) < 0.8 * raw_sd  # noise is shrunk below its raw size
    assert logit_shift(np.zeros(12), np.zeros(12), x) == (0.0, 0.0)


def test_prior_strength_trusts_an_estimate_that_fits_and_drops_one_that_does_not():
    rng = np.random.default_rng(9)
    prior = np.linspace(0.6, 0.95, 10)
    j = np.full(10, 300.0)
    fits = [prior_strength(j, rng.binomial(300, prior).astype(float), prior) for _ in range(20)]
    assert np.median(fits) > 300  # mostly infinite: the buckets stray no more than noise
    wrong = rng.permutation(prior)  # the labels rank the buckets differently
    assert prior_strength(j, rng.binomial(300, wrong).astype(float), prior) < 20
    assert prior_strength(np.array([5.0, 0.0]), np.array([3.0, 0.0]), prior[:2]) == np.inf
