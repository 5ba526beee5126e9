"""The taxi tip pipeline, five instrumented components over the simulated days.

``clean`` (etl) → ``features`` → ``train`` → ``inference`` → ``feedback``, each one span per run
through :func:`otel_mlobs.observe`, with the simulated day as its event time. Pointers chain the
runs: the features run reads the clean run's output pointer, inference reads the features and
the model pointers, feedback points at the predictions it labels, so the processor can walk
lineage from a bad prediction back to the run that broke it.

The first ``scenario.train_days`` days only clean and build features; at the end of the last one
the forest is fitted on the labels that have arrived by then and its validation split is logged
as the reference set. Every later day is predicted, and each day's feedback run releases the
labels whose settlement time falls inside that day.

The caller configures the SDK (endpoint, protocol); this module only emits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

import otel_mlobs
from otel_mlobs.scenarios.taxi import LABEL, Day, TaxiScenario
from otel_mlobs.scenarios.transforms import (
    BUCKET_FEATURES,
    build_features,
    clean_trips,
    model_matrix,
)

PIPELINE = "taxi_tips"
MODEL = "tip_classifier"
_DAY_S = 86400.0
_MAX_DROPPED_SHARE = 0.05  # the clean step's after-check


@dataclass
class DayResult:
    """What the pipeline did on one simulated day (what ``progress`` receives)."""

    date: dt.date
    index: int
    rows: int  # raw trips in the feed
    clean_rows: int
    predictions: int  # 0 on training days
    feedback: int  # labels released this day
    trained: str  # model version fitted at the end of this day, "" if none
    model_version: str  # model serving this day's predictions, "" before the first fit
    incidents: tuple[str, ...]
    pointers: dict[str, str] = field(default_factory=dict)  # component -> output pointer
    event_time: float = 0.0  # the day's runs' event time (start of the day, UTC)


@dataclass
class PipelineResult:
    """The whole run: one :class:`DayResult` per day and the validation accuracy per model."""

    days: list[DayResult]
    validation_accuracy: dict[str, float]


@dataclass
class _Model:
    version: str
    pointer: str
    forest: RandomForestClassifier


@dataclass
class _State:
    """Everything carried from day to day."""

    features: list[tuple[Day, pd.DataFrame, str]] = field(default_factory=list)
    model: _Model | None = None
    pending: list[pd.DataFrame] = field(default_factory=list)  # predicted, label not released
    validation_accuracy: dict[str, float] = field(default_factory=dict)


def _epoch_seconds(values: pd.Series | np.ndarray) -> np.ndarray:
    """Naive timestamps read as UTC, to seconds since the epoch (NaT becomes NaN)."""
    arr = np.asarray(values, dtype="datetime64[us]")
    out = arr.astype(np.int64).astype(np.float64) / 1e6
    out[np.isnat(arr)] = np.nan
    return out


def run_pipeline(
    scenario: TaxiScenario,
    *,
    progress: Callable[[DayResult], None] | None = None,
    pipeline: str = PIPELINE,
    model: str = MODEL,
    n_estimators: int = 100,
    max_depth: int = 10,
    retrain_every: int | None = None,
    train_window: int | None = None,
    n_jobs: int | None = None,
    random_state: int = 0,
) -> PipelineResult:
    """Drive the five components over every day of ``scenario``.

    Parameters
    ----------
    progress
        Called after each day with its :class:`DayResult` (the demo flushes and reports there).
    retrain_every
        Refit the forest every this many live days (``None``: train once).
    train_window
        Days of history a refit uses (``None``: ``scenario.train_days``).
    """
    if retrain_every is not None and retrain_every < 1:
        raise ValueError(f"Invalid 'retrain_every' {retrain_every!r}: must be >= 1 or None")
    window = train_window or scenario.train_days
    if window < 1:
        raise ValueError(f"Invalid 'train_window' {train_window!r}: must be >= 1")
    state = _State()
    days: list[DayResult] = []
    for day in scenario:
        clean, clean_ptr, raw_rows = _clean(day, pipeline)
        features, features_ptr = _features(day, clean, clean_ptr, pipeline)
        state.features = [*state.features, (day, features, features_ptr)][-window:]
        serving = state.model
        result = DayResult(
            date=day.date,
            index=day.index,
            rows=raw_rows,
            clean_rows=len(clean),
            predictions=0,
            feedback=0,
            trained="",
            model_version=serving.version if serving else "",
            incidents=tuple(i.name for i in day.incidents),
            pointers={"clean": clean_ptr, "features": features_ptr},
            event_time=day.event_time,
        )
        if serving is not None:
            predictions, result.pointers["inference"] = _inference(
                day, features, features_ptr, serving, pipeline, model
            )
            result.predictions = len(predictions)
            labels = day.feedback.merge(predictions[["trip_id", "predictions_pointer"]])
            state.pending.append(labels)
        if state.pending:
            result.feedback, result.pointers["feedback"] = _feedback(day, state, pipeline, model)
        live_days = day.index - scenario.train_days + 1
        due = day.index == scenario.train_days - 1 or (
            retrain_every is not None and live_days > 0 and live_days % retrain_every == 0
        )
        if due:
            state.model = _train(
                day, state, pipeline, model, n_estimators, max_depth, n_jobs, random_state
            )
            result.trained = state.model.version
            result.pointers["train"] = state.model.pointer
        days.append(result)
        if progress is not None:
            progress(result)
    return PipelineResult(days=days, validation_accuracy=state.validation_accuracy)


def _clean(day: Day, pipeline: str) -> tuple[pd.DataFrame, str, int]:
    with otel_mlobs.observe(
        "clean", pipeline=pipeline, stage="etl", event_time=day.event_time
    ) as run:
        run.log_input("raw_trips", day.trips, sensitive=("rider_id",))
        result = clean_trips(day.trips)
        dropped = sum(result.dropped.values())
        share = dropped / max(len(day.trips), 1)
        run.check(
            "dropped_rows_below_5pct",
            share < _MAX_DROPPED_SHARE,
            "" if share < _MAX_DROPPED_SHARE else f"dropped {share:.1%}: {result.dropped}",
        )
        pointer = run.log_output("clean_trips", result.trips, sensitive=("rider_id",))
    return result.trips, pointer, len(day.trips)


def _features(
    day: Day, clean: pd.DataFrame, clean_ptr: str, pipeline: str
) -> tuple[pd.DataFrame, str]:
    with otel_mlobs.observe(
        "features", pipeline=pipeline, stage="features", event_time=day.event_time
    ) as run:
        run.log_input("clean_trips", clean, pointer=clean_ptr, sensitive=("rider_id",))
        run.log_input("rider_history", day.rider_history)
        run.log_input("weather", day.weather)
        features = build_features(clean, day.rider_history, day.weather)
        pointer = run.log_output("features", features)
    return features, pointer


def _train(
    day: Day,
    state: _State,
    pipeline: str,
    model: str,
    n_estimators: int,
    max_depth: int,
    n_jobs: int | None,
    random_state: int,
) -> _Model:
    """Fit on the window's trips whose labels have arrived by the end of ``day``."""
    cutoff = np.datetime64(day.date + dt.timedelta(days=1), "s")
    version = f"{model}-{day.date:%Y%m%d}"
    with otel_mlobs.observe(
        "train", pipeline=pipeline, stage="train", event_time=day.event_time, code_version=version
    ) as run:
        frames = []
        for past, features, pointer in state.features:
            run.add_input(pointer)
            arrived = past.feedback[past.feedback["label_time"] <= cutoff]
            frames.append(features.merge(arrived[["trip_id", LABEL]], on="trip_id"))
        data = pd.concat(frames, ignore_index=True)
        run.log_input("training_labels", data[["trip_id", LABEL]])
        # Validate on the latest fifth by pickup time, as the model will meet the future.
        order = np.argsort(data["tpep_pickup_datetime"].to_numpy(), kind="stable")
        split = int(len(order) * 0.8)
        fit, valid = data.iloc[order[:split]], data.iloc[order[split:]]
        forest = RandomForestClassifier(
            n_estimators=n_estimators,
            max_depth=max_depth,
            min_samples_leaf=5,
            n_jobs=n_jobs,
            random_state=random_state,
        ).fit(model_matrix(fit), fit[LABEL].to_numpy())
        scores = forest.predict_proba(model_matrix(valid))[:, 1]
        predicted = (scores >= 0.5).astype(np.int8)
        truth = valid[LABEL].to_numpy()
        accuracy = float((predicted == truth).mean()) if len(truth) else float("nan")
        state.validation_accuracy[version] = accuracy
        run.check("validation_accuracy_above_0.7", accuracy > 0.7, f"accuracy {accuracy:.3f}")
        otel_mlobs.log_reference(
            model,
            valid["trip_id"].to_numpy(),
            truth,
            scores=scores,
            labels=predicted,
            features={c: valid[c].to_numpy() for c in BUCKET_FEATURES},
            timestamps=_epoch_seconds(valid["tpep_pickup_datetime"]),
            model_version=version,
            pipeline=pipeline,
        )
        pointer = f"model://{pipeline}/{model}/{version}"
        run.add_output(pointer)
    return _Model(version=version, pointer=pointer, forest=forest)


def _inference(
    day: Day,
    features: pd.DataFrame,
    features_ptr: str,
    serving: _Model,
    pipeline: str,
    model: str,
) -> tuple[pd.DataFrame, str]:
    with otel_mlobs.observe(
        "inference",
        pipeline=pipeline,
        stage="inference",
        event_time=day.event_time,
        code_version=serving.version,
    ) as run:
        run.add_input(features_ptr)
        run.add_input(serving.pointer)
        scores = serving.forest.predict_proba(model_matrix(features))[:, 1]
        labels = (scores >= 0.5).astype(np.int8)
        ids = features["trip_id"].to_numpy()
        otel_mlobs.log_predictions(
            model,
            ids,
            scores=scores,
            labels=labels,
            features={c: features[c].to_numpy() for c in BUCKET_FEATURES},
            timestamps=_epoch_seconds(features["tpep_pickup_datetime"]),
            model_version=serving.version,
            pipeline=pipeline,
            component="inference",
        )
        predictions = pd.DataFrame({"trip_id": ids, "score": scores, "predicted": labels})
        pointer = run.log_output("predictions", predictions)
    predictions["predictions_pointer"] = pointer
    return predictions, pointer


def _feedback(day: Day, state: _State, pipeline: str, model: str) -> tuple[int, str]:
    """Release the labels that settle during ``day``; keep the rest pending."""
    end = np.datetime64(day.date + dt.timedelta(days=1), "s")
    pending = pd.concat(state.pending, ignore_index=True)
    arrived = pending["label_time"].to_numpy() < end
    never = pending["label_time"].isna().to_numpy()
    released = pending.loc[arrived & ~never]
    state.pending = [pending.loc[~arrived & ~never]]
    with otel_mlobs.observe(
        "feedback", pipeline=pipeline, stage="feedback", event_time=day.event_time
    ) as run:
        for pointer in released["predictions_pointer"].unique():
            run.add_input(str(pointer))
        settlements = released[["trip_id", LABEL, "label_time"]]
        run.log_input("tip_settlements", settlements)
        if len(released):
            otel_mlobs.log_feedback(
                model,
                released["trip_id"].to_numpy(),
                released[LABEL].to_numpy(),
                timestamps=_epoch_seconds(released["label_time"]),
                pipeline=pipeline,
            )
        pointer = run.log_output("labels", settlements)
    return len(released), pointer
