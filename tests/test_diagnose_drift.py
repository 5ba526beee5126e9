"""Drift: effect sizes against reference implementations, the adversarial classifier, alerts."""

from __future__ import annotations

import numpy as np
import pytest
from datasketches import kll_doubles_sketch
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from sklearn.metrics import roc_auc_score

from otel_mlobs.processor.analyzers.diagnose import DriftAnalyzer
from otel_mlobs.processor.analyzers.diagnose import effect_sizes as es
from otel_mlobs.processor.analyzers.diagnose.adversarial import auc, log_loss
from otel_mlobs.processor.analyzers.diagnose.frames import records
from otel_mlobs.processor.records import Key

KEY = Key("shop", "clean")
DAY = 86_400.0
T0 = 1_766_000_000.0


def _sketch(x: np.ndarray, k: int = 200) -> bytes:
    s = kll_doubles_sketch(k)
    s.update(x)
    return s.serialize()


def table(run: int, n: int = 800, shift: float = 0.0, zones=(0.5, 0.3, 0.2)):
    rng = np.random.default_rng(run)
    return {
        "fare": rng.normal(20 + shift, 5, n).round(2),
        "miles": rng.gamma(2.0, 1.5, n).round(2),
        "zone": rng.choice(["north", "south", "east"], n, p=list(zones)),
    }


def feed(a: DriftAnalyzer, run: int, cols: dict, sample: bool = True) -> None:
    summary, smp = records(a.key, f"r{run}", T0 + run * DAY, cols, seed=run, dataset="trips")
    a.update(summary)
    if sample and smp is not None:
        a.update(smp)


def trained(runs: int = 10, **kw) -> DriftAnalyzer:
    a = DriftAnalyzer(KEY, reference_runs=5, **kw)
    for run in range(runs):
        feed(a, run, table(run))
    return a


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_wasserstein_from_sketches_matches_scipy(shift):
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 4000), rng.normal(shift, 1, 4000)
    # k above the item count: the sketches hold every value, so only the method is compared
    ours = es.wasserstein_normalized(_sketch(ref, 8192), _sketch(cur, 8192), float(ref.std()))
    assert ours == pytest.approx(wasserstein_distance(ref, cur) / ref.std(), abs=0.03)


def test_jensen_shannon_and_psi_match_their_definitions():
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    assert es.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert es.psi(p, q) == pytest.approx(((q - p) * np.log(q / p)).sum())
    assert es.psi(p, p) == 0.0 and es.jensen_shannon(p, p) == 0.0


def test_numeric_effect_sizes_grow_with_the_shift():
    rng = np.random.default_rng(2)
    ref = _sketch(rng.normal(0, 1, 5000))
    small = es.effect_sizes_numeric(ref, 1.0, _sketch(rng.normal(0.1, 1, 5000)))
    large = es.effect_sizes_numeric(ref, 1.0, _sketch(rng.normal(1.0, 1, 5000)))
    for name in ("psi", "wasserstein", "jensen_shannon"):
        assert large[name] > small[name] >= 0
    assert large["wasserstein"] == pytest.approx(1.0, abs=0.1)


def test_categorical_effect_sizes_pool_unlisted_values():
    sizes = es.effect_sizes_categorical({"a": 0.5, "b": 0.5}, {"a": 50, "c": 50}, 100)
    assert sizes["jensen_shannon"] > 0.5 and "wasserstein" not in sizes


def test_auc_and_log_loss_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.5
    s = np.round(rng.random(300) + 0.3 * y, 1)  # ties included
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(auc(s, np.ones(300, bool)))
    assert log_loss(np.array([0.5]), np.array([1.0]))[0] == pytest.approx(np.log(2))


def test_no_drift_no_alert_and_auc_near_half():
    a = trained(14)
    assert a.alerts() == []
    q = a.query()["datasets"][0]
    assert 0.4 < q["auc"] < 0.62 and q["log_loss"] == pytest.approx(np.log(2), abs=0.08)


def test_shift_raises_a_drift_alert_naming_the_column():
    a = trained()
    feed(a, 20, table(20, shift=6.0))
    alerts = a.alerts()
    assert [(x.cls, x.severity, x.columns[0]) for x in alerts] == [("drift", "info", "fare")]
    text = alerts[0].explanation
    assert "AUC" in text and "fare" in text and "PSI" in text
    assert "no constraint says a component broke" in text
    weights = {
        m.labels["column"]: m.value for m in a.metrics() if m.name == "mlobs_drift_feature_weight"
    }
    assert max(weights, key=weights.get) == "fare"
    feed(a, 21, table(21))
    feed(a, 22, table(22))
    assert a.alerts() == []  # back to normal: resolved


def test_category_mix_shift_is_found_without_a_numeric_change():
    a = trained()
    feed(a, 20, table(20, zones=(0.1, 0.2, 0.7)))
    assert a.alerts() and a.alerts()[0].columns[0] == "zone"


def test_without_samples_effect_sizes_decide():
    a = DriftAnalyzer(KEY, reference_runs=5)
    for run in range(8):
        feed(a, run, table(run), sample=False)
    assert a.alerts() == []
    feed(a, 20, table(20, shift=8.0), sample=False)
    alert = a.alerts()[0]
    assert alert.check == "effect_size" and alert.columns[0] == "fare"
    assert "no row sample" in alert.explanation
    assert "W " in alert.explanation and "JS " in alert.explanation  # every size, not PSI alone


def test_psi_alone_equals_the_psi_of_all_sizes():
    rng = np.random.default_rng(5)
    ref = es.NumericReference.of(_sketch(rng.normal(0, 1, 5000)), 1.0)
    for shift in (0.0, 0.3, 2.0):
        cur = _sketch(rng.normal(shift, 1, 3000))
        assert ref.psi(cur) == ref.sizes(cur)["psi"]
    assert ref.psi(b"") is None and ref.sizes(b"") == {}
    shares, top = {"a": 0.5, "b": 0.3}, {"a": 40, "c": 30}
    assert (
        es.psi_categorical(shares, top, 100) == es.effect_sizes_categorical(shares, top, 100)["psi"]
    )
    assert es.psi_categorical(shares, {}, 100) is None


def test_metrics_waiting_state_feedback_and_snapshot():
    empty = DriftAnalyzer(KEY, reference_runs=5)
    feed(empty, 0, table(0))
    assert {m.name: m.value for m in empty.metrics()}["mlobs_drift_ready"] == 0.0
    assert empty.query()["waiting"][0]["runs"] == 1
    a = trained()
    feed(a, 20, table(20, shift=6.0))
    names = {m.name for m in a.metrics()}
    assert {
        "mlobs_drift_auc",
        "mlobs_drift_log_loss",
        "mlobs_drift_rows_total",
        "mlobs_drift_feature_weight",
        "mlobs_column_psi",
        "mlobs_column_wasserstein",
        "mlobs_column_jensen_shannon",
        "mlobs_alerts_active",
    } <= names
    assert sum(m.name == "mlobs_drift_feature_weight" for m in a.metrics()) <= a.top_k
    clone = DriftAnalyzer(KEY, reference_runs=5)
    clone.restore(a.snapshot())
    # one set of records for both: KLL sketches of the same data differ between builds
    same = [
        r
        for r in records(KEY, "r21", T0 + 21 * DAY, table(21, shift=6.0), seed=21, dataset="trips")
        if r is not None
    ]
    for analyzer in (a, clone):
        for record in same:
            analyzer.update(record)
    assert sorted((m.name, tuple(sorted(m.labels.items())), m.value) for m in a.metrics()) == (
        sorted((m.name, tuple(sorted(m.labels.items())), m.value) for m in clone.metrics())
    )
    alert = a.alerts()[0]
    out = a.mark_alert(alert.id, true_positive=False)
    assert out["precision"] < 0.5 and a.alerts() == []
    with pytest.raises(KeyError):
        a.mark_alert("nope", True)


def test_new_and_vanished_columns_do_not_crash():
    a = trained()
    cols = table(20)
    cols.pop("zone")
    cols["coupon"] = np.full(800, "X")
    feed(a, 20, cols)
    feed(a, 21, {k: v[:1] for k, v in table(21).items()})  # a single-row run
    assert all(x.cls == "drift" for x in a.alerts())


def test_update_cost_per_row_is_small():
    import time

    a = trained()
    summary, sample = records(
        a.key, "r99", T0 + 99 * DAY, table(99, n=4000), seed=99, dataset="trips", sample_rows=4000
    )
    start = time.perf_counter()
    a.update(sample)
    per_row = (time.perf_counter() - start) / 4000
    assert per_row < 1e-3


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        DriftAnalyzer(KEY, min_auc=0.4)


def _per_coder_encoding(encoder, columns, event_time):
    """The encoding spelled out column by column with each coder's own ``encode``."""
    from otel_mlobs.processor.analyzers.diagnose.adversarial import _raw

    n = len(next(iter(columns.values())))
    out = np.zeros((n, encoder.n_features))
    for j, coder in enumerate(encoder.coders):
        values = columns.get(coder.name)
        if values is None or len(values) != n:
            continue
        base = encoder.offsets[j]
        out[np.arange(n), base + coder.encode(values, event_time)] = 1.0
        if coder.kind != "categorical":
            z = (_raw(coder, values, event_time) - encoder.means[j]) / encoder.stds[j]
            out[:, base + coder.n_codes] = np.clip(np.nan_to_num(z, nan=0.0), -5.0, 5.0)
    return out


def _mixed(rng, n: int, t: float, shift: float = 0.0) -> dict:
    return {
        "fare": rng.normal(20 + shift, 5, n),
        "seats": rng.integers(1, 5, n).astype(float),  # few values: coded by nearest value
        "pickup": t + rng.uniform(0, 3600, n),  # a clock: coded by offset from the run
        "zone": rng.choice(["north", "south", "east", "", "nan"], n),
        "vendor": rng.choice(np.array(["a", "bb", None], dtype=object), n),
        "flag": rng.random(n) < 0.3,
    }


def test_grouped_encoding_matches_each_coder():
    from otel_mlobs.processor.analyzers.diagnose.adversarial import RowEncoder
    from otel_mlobs.processor.analyzers.diagnose.discretize import fit_coder

    rng = np.random.default_rng(5)
    ref = [(T0 + i * DAY, _mixed(rng, 400, T0 + i * DAY)) for i in range(5)]
    coders = [fit_coder(name, [c[name] for _, c in ref], [t for t, _ in ref]) for name in ref[0][1]]
    assert {c.kind for c in coders} == {"numeric", "offset", "categorical"}
    encoder = RowEncoder.fit(coders, ref)
    t = T0 + 9 * DAY
    live = _mixed(rng, 300, t, shift=30.0)  # above the reference range
    live["fare"][:4] = [np.nan, np.inf, -np.inf, 1e9]
    live["zone"][:2] = ["west", "None"]  # unseen, null spelling
    assert np.array_equal(encoder.encode(live, t), _per_coder_encoding(encoder, live, t))
    live.pop("seats")
    live["zone"] = live["zone"][:5]  # wrong length: left out like a missing column
    assert np.array_equal(encoder.encode(live, t), _per_coder_encoding(encoder, live, t))


def test_prequential_pass_is_the_minibatch_sgd():
    from otel_mlobs.processor.analyzers.diagnose.adversarial import OnlineLogit

    rng = np.random.default_rng(6)
    batch, slots, width = 8, 5, 6
    batches = np.zeros((slots, 3 * batch, width + 1), np.float32)
    batches[:, :, :width] = rng.normal(0, 1, (slots, 3 * batch, width))
    batches[:, :batch, 0] += 1.0  # live rows moved along the first feature
    batches[:, :, width] = 1.0
    n, slot = 4 * batch - 3, 3  # wraps around the slots, ends with a short batch
    fast, slow = OnlineLogit(width, lr=0.5), OnlineLogit(width, lr=0.5)
    s_live, s_hold = fast.prequential(batches, n, slot)
    want_live, want_hold = [], []
    for b in range(-(-n // batch)):
        rows = batches[(slot + b) % slots].astype(float)[:, :width]
        m = min(batch, n - b * batch)
        live, ref, hold = rows[:m], rows[batch : batch + m], rows[2 * batch : 2 * batch + m]
        want_live.append(slow.predict(live))
        want_hold.append(slow.predict(hold))
        slow.step(np.vstack([live, ref]), np.r_[np.ones(m), np.zeros(m)])
    assert s_live == pytest.approx(np.concatenate(want_live), abs=1e-5)
    assert s_hold == pytest.approx(np.concatenate(want_hold), abs=1e-5)
    assert fast.weights == pytest.approx(slow.weights, abs=1e-5)
    assert fast.bias == pytest.approx(slow.bias, abs=1e-5) and fast.weights[0] > 0


def test_large_sample_runs_through_the_slots_in_turns():
    a = trained()
    summary, sample = records(
        a.key, "r30", T0 + 30 * DAY, table(30, n=5000), seed=30, dataset="trips", sample_rows=5000
    )
    adv = next(iter(a._adversaries.values()))
    assert len(sample.columns["fare"]) > adv.capacity
    before = adv.rows_total
    a.update(summary)
    a.update(sample)
    assert adv.rows_total - before == len(sample.columns["fare"])
    assert not adv.batches[:, :32, :-1].any()  # live parts cleared after the run
    assert a.alerts() == []


def test_snapshot_from_before_the_slots_restores_and_still_detects():
    import pickle
    from collections import deque

    a = trained()
    state = dict(a.__dict__)
    del state["_seen_set"]
    adversaries = {}
    for key, adv in a._adversaries.items():
        old = dict(adv.__dict__)
        batches = old.pop("batches")[:, :, :-1].astype(float)
        old.pop("hold_mean")
        old["ref_train"] = batches[:, 32:64].reshape(-1, batches.shape[2])
        old["ref_holdout"] = batches[:, 64:].reshape(-1, batches.shape[2])
        scores, labels = old.pop("window").rows()
        old["window"] = deque(zip(scores, labels.astype(float), scores, strict=True), maxlen=4096)
        clone = object.__new__(type(adv))
        clone.__dict__.update(old)
        adversaries[key] = clone
    state["_adversaries"] = adversaries
    for effects in a._effects.values():
        effects.__dict__.pop("refs")
        effects.__dict__.pop("todo")
    restored = DriftAnalyzer(KEY, reference_runs=5)
    restored.restore(pickle.dumps(state))
    assert restored.query()["datasets"][0]["window_auc"] is not None
    feed(restored, 20, table(20, shift=6.0))
    assert [x.columns[0] for x in restored.alerts()] == ["fare"]
