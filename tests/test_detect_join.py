"""The bounded prediction/feedback join: exactness, uniform sampling, bad input, event time."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from otel_mlobs.processor.analyzers.detect import ModelAccuracyAnalyzer
from otel_mlobs.processor.analyzers.detect.hashing import hash_band, hash_ids
from otel_mlobs.processor.analyzers.detect.join import PredictionJoin
from otel_mlobs.processor.analyzers.detect.slotindex import SlotIndex
from otel_mlobs.processor.records import FeedbackBatch, Key, PredictionBatch

T0 = 1_700_000_000.0
KEY = Key("taxi", "", "tips")


def preds(ids, ts, labels, component="inference"):
    return PredictionBatch(
        Key("taxi", component, "tips"), "v1", np.asarray(ids), np.asarray(ts, dtype=float),
        None, ("0", "1"), np.asarray(labels).astype(str),
    )  # fmt: skip


def feedback(ids, labels, ts):
    return FeedbackBatch(
        Key("taxi", "", "tips"), np.asarray(ids), np.asarray(labels).astype(str),
        np.asarray(ts, dtype=float),
    )  # fmt: skip


def stream(seed, n_batches=20, batch=1000, acc=0.8, fb_share=0.6):
    """Prediction batches, each followed by feedback for a share of them."""
    rng = np.random.default_rng(seed)
    for i in range(n_batches):
        ids = np.char.add(f"s{seed}-b{i}-", np.arange(batch).astype(str))
        ts = T0 + i * 300 + rng.uniform(0, 300, batch)
        pred = rng.integers(0, 2, batch)
        true = np.where(rng.random(batch) < acc, pred, 1 - pred)
        yield preds(ids, ts, pred)
        m = rng.random(batch) < fb_share
        yield feedback(ids[m], true[m], ts[m] + rng.exponential(600, m.sum()))


def test_hash_is_independent_of_string_width_and_type():
    a = hash_ids(np.array(["abc", "a"]))
    b = hash_ids(np.array(["abc", "a-much-longer-id"]))
    assert a[0] == b[0]
    assert hash_ids(np.array([b"abc"]))[0] == a[0]
    assert hash_ids(np.array([12]))[0] == hash_ids(np.array(["12"]))[0]
    assert len(np.unique(hash_ids(np.arange(200_000).astype(str)))) == 200_000


def test_inclusion_is_uniform_chi_square():
    """Sequential ids fall into hash bands with probability 2**-(b+1) and low bits uniformly."""
    h = hash_ids(np.char.add("order-", np.arange(400_000).astype(str)))
    bands = hash_band(h, 6)
    observed = np.bincount(bands, minlength=7)
    expected = np.array([2.0 ** -(b + 1) for b in range(6)] + [2.0**-6]) * h.size
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    low = np.bincount((h & np.uint64(63)).astype(np.int64), minlength=64)
    assert stats.chisquare(low).pvalue > 1e-3
    # a sampled id set is uniform over id order too (no prefix or length bias)
    kept = np.flatnonzero(bands >= 3)
    deciles = np.bincount(kept * 10 // h.size, minlength=10)
    assert stats.chisquare(deciles).pvalue > 1e-3


def test_slot_index_matches_a_dict():
    rng = np.random.default_rng(1)
    idx, ref = SlotIndex(5000), {}
    keys = hash_ids(np.arange(40_000).astype(str))
    nxt = 0
    for _ in range(60):
        k = keys[nxt : nxt + rng.integers(1, 800)]
        nxt += k.size
        slots = rng.integers(0, 5000, k.size)
        idx.insert(k, slots)
        ref.update(zip(k.tolist(), slots.tolist(), strict=True))
        gone = rng.choice(np.array(list(ref), dtype=np.uint64), size=len(ref) // 2, replace=False)
        assert idx.delete(np.concatenate([gone, keys[-5:]])) == gone.size
        for g in gone.tolist():
            del ref[g]
        probe = np.concatenate([np.array(list(ref), dtype=np.uint64), gone])
        want = np.array([ref.get(p, -1) for p in probe.tolist()])
        assert (idx.lookup(probe) == want).all()
        assert len(idx) == len(ref)


def test_exact_join_under_budget():
    a = ModelAccuracyAnalyzer(KEY, max_pending=100_000)
    joined = correct = 0
    for rec in stream(0):
        a.update(rec)
        if isinstance(rec, FeedbackBatch):
            joined += len(rec)
    for rec in stream(0):  # recompute the truth from the same stream
        if isinstance(rec, PredictionBatch):
            truth = dict(zip(rec.ids.tolist(), rec.labels.tolist(), strict=True))
        else:
            correct += sum(truth[i] == lab for i, lab in zip(rec.ids, rec.labels, strict=True))
    q = a.query()
    assert q["join"]["sample_rate"] == 1.0
    assert q["join"]["joined_total"] == joined and q["join"]["correct_total"] == correct
    assert q["windows"]["7d"]["realized"]["value"] == pytest.approx(correct / joined)


def test_sampled_join_is_unbiased_against_exact():
    """Over many streams the sampled realized accuracy centres on the exact one."""
    z = []
    for seed in range(12):
        exact = ModelAccuracyAnalyzer(KEY, max_pending=100_000)
        small = ModelAccuracyAnalyzer(KEY, max_pending=1500)
        for rec in stream(seed, acc=0.7):
            exact.update(rec)
            small.update(rec)
        e, s = exact.window("7d"), small.window("7d")
        assert small.sample_rate < 1.0
        assert s.joined < e.joined
        assert small.query()["join"]["pending"] <= 1500
        se = np.sqrt(e.realized.value * (1 - e.realized.value) / s.joined)
        z.append((s.realized.value - e.realized.value) / se)
        assert s.realized.lower <= e.realized.value <= s.realized.upper or abs(z[-1]) < 3.5
    assert abs(np.mean(z)) < 3 / np.sqrt(len(z))


def test_level_rises_only_and_drops_whole_bands():
    j = PredictionJoin(200, n_levels=8)
    levels = []
    keys = hash_ids(np.arange(5000).astype(str))
    for i in range(0, 5000, 250):
        j.add_predictions(keys[i : i + 250], np.full(250, T0 + i), np.zeros(250, np.int32))
        levels.append(j.level)
        used, _ = j.pending_view()
        assert used.sum() <= 200
        assert (j._band[used] >= j.level).all()
    assert levels == sorted(levels) and levels[-1] > 0
    # feedback outside the sample is dropped on arrival, counted
    j.add_feedback(keys[:100], np.zeros(100, np.int32), np.full(100, T0 + 5000))
    outside = int((hash_band(keys[:100], 8) < j.level).sum())
    assert j.dropped["unsampled"] == outside


def test_late_prediction_meets_held_feedback_then_orphans_expire():
    a = ModelAccuracyAnalyzer(KEY, orphan_ttl_s=600)
    a.update(feedback(["x1", "x2"], ["1", "0"], [T0 + 100, T0 + 100]))
    assert a.query()["join"]["held_feedback"] == 2
    a.update(preds(["x1"], [T0], ["1"]))
    q = a.query()["join"]
    assert q["joined_total"] == 1 and q["correct_total"] == 1 and q["held_feedback"] == 1
    a.update(preds(["y"], [T0 + 2000], ["1"]))  # event time moves past x2's hold
    q = a.query()["join"]
    assert q["held_feedback"] == 0 and q["dropped"]["orphaned"] == 1


def test_orphan_buffer_is_bounded():
    a = ModelAccuracyAnalyzer(KEY, orphan_capacity=50)
    a.update(preds(["p"], [T0], ["1"]))
    ids = np.char.add("ghost", np.arange(80).astype(str))
    a.update(feedback(ids, np.ones(80, int), np.full(80, T0 + 5)))
    q = a.query()["join"]
    assert q["held_feedback"] == 50 and q["dropped"]["orphaned"] == 30


def test_duplicate_prediction_later_wins():
    a = ModelAccuracyAnalyzer(KEY)
    a.update(preds(["a", "b", "a"], [T0, T0, T0 + 1], ["0", "1", "1"]))
    a.update(preds(["b"], [T0 + 2], ["0"]))
    a.update(feedback(["a", "b"], ["1", "0"], [T0 + 10, T0 + 10]))
    q = a.query()["join"]
    assert q["duplicates"] == 2
    assert q["joined_total"] == 2 and q["correct_total"] == 2


def test_labels_outside_the_model_classes_are_rejected():
    a = ModelAccuracyAnalyzer(KEY)
    a.update(preds(["a", "b", "c"], [T0] * 3, ["0", "1", "1"]))
    a.update(feedback(["a", "b", "c"], ["1", "maybe", "7"], [T0 + 1] * 3))
    q = a.query()["join"]
    assert q["dropped"]["invalid_label"] == 2 and q["joined_total"] == 1
    # feedback that arrived before any class was known is checked when it joins
    b = ModelAccuracyAnalyzer(KEY)
    b.update(feedback(["a", "b"], ["0", "bogus"], [T0 + 1] * 2))
    b.update(preds(["a", "b"], [T0] * 2, ["0", "1"]))
    q = b.query()["join"]
    assert q["joined_total"] == 1 and q["dropped"]["invalid_label"] == 1


def test_malformed_batch_raises_and_loses_nothing():
    a = ModelAccuracyAnalyzer(KEY)
    a.update(preds(["a"], [T0], ["1"]))
    bad = preds(["b", "c"], [T0, T0], ["1", "0"])
    bad.timestamps = np.array([T0])
    with pytest.raises(ValueError, match="timestamps has 1 rows"):
        a.update(bad)
    a.update(feedback(["a"], ["1"], [T0 + 1]))
    assert a.query()["join"]["joined_total"] == 1
    a.update(preds(["n"], [np.nan], ["1"]))
    assert a.query()["join"]["pending"] == 0


def test_windows_follow_event_time_not_arrival():
    a = ModelAccuracyAnalyzer(KEY)
    # arrival order: recent predictions first, then a backfill from two days earlier
    a.update(preds(["new1", "new2"], [T0 + 2 * 86400, T0 + 2 * 86400 + 60], ["1", "1"]))
    a.update(preds(["old1", "old2"], [T0, T0 + 60], ["1", "1"]))
    a.update(feedback(["old1", "old2", "new1", "new2"], ["1", "1", "0", "0"], [T0 + 3 * 86400] * 4))
    w1h, w1d, w7d = a.window("1h"), a.window("1d"), a.window("7d")
    assert (w1h.joined, w1h.realized.value) == (2, 0.0)
    assert (w1d.joined, w1d.realized.value) == (2, 0.0)
    assert (w7d.joined, w7d.realized.value) == (4, 0.5)
    days = a.daily()
    assert [d["joined"] for d in days] == [2, 2]
    with pytest.raises(ValueError, match="Invalid window"):
        a.window("2h")


def test_pending_predictions_expire_and_memory_stays_flat():
    a = ModelAccuracyAnalyzer(KEY, max_pending=1000, pending_ttl_s=3600)
    a.update(preds(np.char.add("q", np.arange(500).astype(str)), np.full(500, T0), np.ones(500)))
    a.update(preds(["later"], [T0 + 7200], ["1"]))
    q = a.query()["join"]
    assert q["pending"] == 1 and q["unjoined"]["expired"] == 500 and q["sample_rate"] == 1.0
