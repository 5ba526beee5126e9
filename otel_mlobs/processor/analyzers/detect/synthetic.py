"""A small synthetic classification stream with covariate and concept shift, for the detect tests
and benchmark: every row's true P(label) is known, so every figure can be checked exactly.

Rows have a zone (categorical), a distance and an hour. The label is 1 with probability
``sigmoid(f(x))``; the model scores ``sigmoid(f(x) + its own error)`` and predicts ``score >= .5``.
Covariate shift moves the zone and distance mix towards the hard cases; concept shift changes
``f`` in some zones (the model does not notice), which no label-free estimator can see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otel_mlobs.processor.records import FeedbackBatch, Key, PredictionBatch

N_ZONES = 12
ZONE_NAMES = np.array([f"zone{z:02d}" for z in range(N_ZONES)])
_ZONE_EFFECT = np.linspace(-1.5, 1.5, N_ZONES)


@dataclass(slots=True)
class Rows:
    ids: np.ndarray
    ts: np.ndarray
    zone: np.ndarray  # int
    distance: np.ndarray
    hour: np.ndarray
    score: np.ndarray
    predicted: np.ndarray  # int 0/1
    label: np.ndarray  # int 0/1

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.label

    def features(self) -> dict[str, np.ndarray]:
        return {"zone": ZONE_NAMES[self.zone], "distance": self.distance, "hour": self.hour}

    def take(self, m: np.ndarray) -> Rows:
        return Rows(*(getattr(self, f)[m] for f in Rows.__slots__))


def draw(
    rng: np.random.Generator,
    n: int,
    t0: float,
    span_s: float,
    *,
    covariate: float = 0.0,
    concept: float = 0.0,
    prefix: str = "r",
) -> Rows:
    """``n`` rows with event times in ``[t0, t0 + span_s)``.

    ``covariate`` in [0, 1] tilts zones and distances towards the model's hard cases;
    ``concept`` adds to the label's log-odds in the upper third of the zones only.
    """
    w = np.exp(-covariate * 3.0 * np.abs(_ZONE_EFFECT))  # hard zones have effects near 0
    zone = rng.choice(N_ZONES, size=n, p=w / w.sum())
    distance = rng.gamma(2.0 + 2.0 * covariate, 1.5, n)
    hour = rng.integers(0, 24, n).astype(np.float64)
    f = _ZONE_EFFECT[zone] + 0.6 * (distance - 3.0) - 0.5 * np.cos(hour / 24 * 2 * np.pi)
    score = 1 / (1 + np.exp(-(f + rng.normal(0, 0.7, n))))
    f_true = f + concept * (zone >= 2 * N_ZONES // 3) * 2.5
    label = (rng.random(n) < 1 / (1 + np.exp(-f_true))).astype(np.int64)
    ids = np.char.add(f"{prefix}-{int(t0)}-", np.arange(n).astype(str))
    ts = t0 + rng.uniform(0, span_s, n)
    return Rows(ids, ts, zone, distance, hour, score, (score >= 0.5).astype(np.int64), label)


def prediction_batch(rows: Rows, *, reference: bool = False, model: str = "m") -> PredictionBatch:
    return PredictionBatch(
        key=Key("p", "inference", model),
        model_version="v1",
        ids=rows.ids,
        timestamps=rows.ts,
        scores=rows.score,
        classes=("0", "1"),
        labels=rows.predicted.astype(str),
        features=rows.features(),
        reference=reference,
        true_labels=rows.label.astype(str) if reference else None,
    )


def feedback_batch(rows: Rows, delay_s: np.ndarray | float = 0.0, model: str = "m"):
    return FeedbackBatch(
        key=Key("p", "", model),
        ids=rows.ids,
        labels=rows.label.astype(str),
        timestamps=rows.ts + delay_s,
    )
