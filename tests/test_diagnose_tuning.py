"""Thresholds learned from healthy history and precision learned from verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from otel_mlobs.processor.analyzers.diagnose.tuning import (
    Precision,
    RobustThreshold,
    ThresholdBank,
)


def _trained(values, **kw) -> RobustThreshold:
    t = RobustThreshold(kw.pop("side", "upper"), kw.pop("floor", 0.0), **kw)
    for v in values:
        t.observe(v)
    return t


def test_band_is_median_plus_k_robust_sd():
    history = [0.10, 0.11, 0.09, 0.10, 0.12, 0.08, 0.10]
    t = _trained(history, k=4.0, noise="none")
    mad_sd = 1.4826 * np.median(np.abs(np.array(history) - np.median(history)))
    assert t.center == pytest.approx(np.median(history))
    assert t.spread == pytest.approx(mad_sd)
    assert t.bounds(1000) == (-np.inf, pytest.approx(np.median(history) + 4 * mad_sd))


def test_an_outlier_in_history_barely_moves_the_band():
    clean = _trained([0.1] * 6 + [0.11] * 6, k=4.0, noise="none")
    dirty = _trained([0.1] * 6 + [0.11] * 5 + [0.9], k=4.0, noise="none")
    assert abs(dirty.bounds(1)[1] - clean.bounds(1)[1]) < 0.02


def test_small_runs_get_wider_bands_than_large_ones():
    t = _trained([0.01] * 10, k=5.0, noise="share")
    assert t.margin(30) > t.margin(3000) > 0
    assert t.violated(0.05, n=100_000)
    assert not t.violated(0.05, n=30)


def test_floor_keeps_a_perfectly_stable_history_from_alarming_on_a_wobble():
    t = _trained([0.0] * 20, floor=0.02, noise="none")
    assert not t.violated(0.015, n=10_000)
    assert t.violated(0.03, n=10_000)


def test_sides():
    both = _trained([0.5] * 5, side="both", floor=0.1, noise="none")
    assert both.violated(0.35, 100) and both.violated(0.65, 100) and not both.violated(0.55, 100)
    lower = _trained([0.5] * 5, side="lower", floor=0.1, noise="none")
    assert lower.violated(0.35, 100) and not lower.violated(0.9, 100)


def test_no_history_never_fires_and_nan_is_ignored():
    t = RobustThreshold("upper", 0.01)
    assert not t.ready and not t.violated(1e9, 10)
    t.observe(float("nan"))
    assert not t.ready


def test_false_positive_widens_and_true_positive_narrows():
    t = _trained([0.01] * 10, floor=0.02, noise="none")
    before = t.margin(1000)
    t.widen(at=0.05)
    assert t.margin(1000) > before and t.sensitivity > 1
    assert not t.violated(0.05, 1000), "the value marked a false positive now passes"
    assert t.violated(0.2, 1000), "but the band did not open wide"
    widened = t.sensitivity
    t.narrow()
    assert t.sensitivity < widened


def test_window_forgets_old_history():
    t = _trained([1.0] * 5 + [0.0] * 5, window=5, noise="none")
    assert t.center == 0.0


def test_mean_noise_uses_unit_sd():
    t = _trained([0.0] * 10, k=2.0, noise="mean", unit_sd=3.0)
    assert t.margin(9) == pytest.approx(2.0 * 3.0 / 3.0)


@pytest.mark.parametrize(
    "kw", [{"side": "up"}, {"noise": "gauss"}, {"floor": -1.0}, {"k": 0.0}, {"window": 0}]
)
def test_bad_parameters_are_refused(kw):
    args = {"side": "upper", "floor": 0.0, **kw}
    with pytest.raises(ValueError):
        RobustThreshold(args.pop("side"), args.pop("floor"), **args)


def test_precision_is_beta_posterior_mean():
    p = Precision(2.0, 2.0)
    assert p.mean == 0.5
    for verdict in (True, True, True, False):
        p.update(verdict)
    assert p.mean == pytest.approx((2 + 3) / (2 + 3 + 2 + 1))
    with pytest.raises(ValueError):
        Precision(0.0, 1.0)


def test_robust_spread_matches_numpy_mad_on_ties_and_odd_even_lengths():
    rng = np.random.default_rng(5)
    for n in range(1, 40):
        values = rng.choice([0.0, 0.1, 0.2, rng.random()], size=n)
        t = _trained(values, noise="none")
        mad = np.median(np.abs(values - np.median(values)))
        assert t.center == pytest.approx(np.median(values), abs=1e-15)
        assert t.spread == pytest.approx(1.4826 * mad if n > 1 else 0.0, abs=1e-15)


@pytest.mark.parametrize("side", ["upper", "lower", "both"])
@pytest.mark.parametrize("noise", ["share", "distance", "mean", "none"])
def test_bank_rows_judge_exactly_like_their_thresholds(side, noise):
    rng = np.random.default_rng(len(side) + len(noise))
    bank = ThresholdBank(window=20)
    singles = [RobustThreshold(side, 0.01, k=4.0, window=20, noise=noise, unit_sd=0.3)]
    singles.append(_trained(rng.random(5) * 0.1, side=side, floor=0.02, window=20, noise=noise))
    singles.append(RobustThreshold(side, 0.0, window=20, noise=noise))
    rows = np.array([bank.adopt(t).row for t in singles])
    for _ in range(45):  # more than the window: old values fall out of both
        values = np.where(rng.random(3) < 0.1, np.nan, rng.random(3) * 0.2)
        bank.observe(rows, values)
        for t, v in zip(singles, values, strict=True):
            t.observe(v)
        n = rng.integers(1, 5000, 3)
        low, high = bank.bounds(rows, n)
        for i, t in enumerate(singles):
            if t.ready:
                assert (low[i], high[i]) == pytest.approx(t.bounds(int(n[i])), rel=1e-12)
        probe = rng.random(3) * 0.3
        expected = [t.violated(p, int(m)) for t, p, m in zip(singles, probe, n, strict=True)]
        assert bank.violated(rows, probe, n).tolist() == expected


def test_banked_threshold_feedback_widens_narrows_and_learns():
    bank = ThresholdBank(window=60)
    single = _trained([0.01] * 10, floor=0.02, noise="none")
    banked = bank.adopt(_trained([0.01] * 10, floor=0.02, noise="none"))
    for t in (single, banked):
        t.widen(at=0.05)
    assert banked.sensitivity == single.sensitivity > 1
    assert banked.size == single.size == 11 and not banked.violated(0.05, 1000)
    banked.narrow()
    assert banked.sensitivity < single.sensitivity
    banked.floor = 0.5
    assert not banked.violated(0.4, 1000)
