"""Prediction, reference and feedback batches: the rows the processor joins to measure a model.

``log_predictions`` sends what a model said (ids, scores and/or labels, timestamps, a few features
for bucketing); ``log_reference`` sends a labelled batch (typically the validation split) that the
label-free accuracy estimators learn from; ``log_feedback`` sends true labels whenever they arrive,
joined to predictions by id. Each call emits spans of role ``predictions`` or ``feedback`` whose
events carry packed arrays of at most :data:`~otel_mlobs.semconv.MAX_ROWS_PER_EVENT` rows (fewer
when rows are wide), at most :data:`~otel_mlobs.semconv.MAX_EVENTS_PER_BATCH_SPAN` events and
about 3 MiB per span, so a batch of any size arrives whole.

Labels are canonical strings (:func:`otel_mlobs.packing.label_strings`), so ``True``, ``1`` and
``"1"`` join. Inside a run, pipeline and component default to the run's and timestamps to the
run's event time; outside, to the configured pipeline and the current time.

Arguments are checked on the caller's thread (a mismatch raises there). With background work on
(see :mod:`otel_mlobs.sdk.setup`) the arrays are copied and turned into packed events on the
SDK's worker, in the caller's trace context and timed at the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from opentelemetry import context, trace
from opentelemetry.context import Context

from otel_mlobs import semconv
from otel_mlobs.packing import label_strings
from otel_mlobs.sdk import _emit, _worker
from otel_mlobs.sdk._columns import TextColumn, classify
from otel_mlobs.sdk._snapshot import snapshot
from otel_mlobs.sdk._strings import as_text, category_text, factorize_strings, fixed_width
from otel_mlobs.sdk._tabular import Table, as_table
from otel_mlobs.sdk.run import current_run, to_event_time
from otel_mlobs.sdk.setup import background, get_tracer, pipeline_name
from otel_mlobs.sdk.summarize import _factorize

_LOG = logging.getLogger(__name__)


def log_predictions(
    model: str,
    ids: Any,
    scores: Any = None,
    labels: Any = None,
    *,
    features: Any = None,
    timestamps: Any = None,
    classes: Sequence[Any] | None = None,
    model_version: str | None = None,
    pipeline: str | None = None,
    component: str | None = None,
) -> None:
    """Send one batch of live predictions of ``model``.

    ``scores`` is 1-D (positive-class probability) or 2-D ``(n, k)`` with ``classes`` naming the
    k columns (default ``"0"``..``"k-1"``); ``labels`` are the predicted labels; ``features`` is a
    dict of arrays or a DataFrame holding the few columns used for bucketing. Every array must
    have one entry per id (:class:`ValueError` names the one that does not).
    """
    _log_batch(
        model,
        ids,
        scores,
        labels,
        features=features,
        timestamps=timestamps,
        classes=classes,
        model_version=model_version,
        pipeline=pipeline,
        component=component,
        true_labels=None,
    )


def log_reference(
    model: str,
    ids: Any,
    true_labels: Any,
    scores: Any = None,
    labels: Any = None,
    *,
    features: Any = None,
    timestamps: Any = None,
    classes: Sequence[Any] | None = None,
    model_version: str | None = None,
    pipeline: str | None = None,
    component: str | None = None,
) -> None:
    """Send a labelled reference batch (``mlobs.predictions.set = "reference"``), typically the
    validation split scored by the model, with its true labels."""
    if true_labels is None:
        raise ValueError("a reference batch needs true_labels")
    _log_batch(
        model,
        ids,
        scores,
        labels,
        features=features,
        timestamps=timestamps,
        classes=classes,
        model_version=model_version,
        pipeline=pipeline,
        component=component,
        true_labels=true_labels,
    )


def log_feedback(
    model: str, ids: Any, labels: Any, *, timestamps: Any = None, pipeline: str | None = None
) -> None:
    """Send true labels for earlier predictions of ``model``, joined by id. ``timestamps`` are
    when each label became known."""
    _check_model(model)
    id_arr = _one_d("ids", ids)
    n = len(id_arr)
    label_raw = _one_d("labels", labels, n)
    ts = _timestamps(timestamps, n)
    run = current_run()
    head = _span_head(
        semconv.SPAN_ROLE_FEEDBACK,
        model,
        pipeline,
        run.component if run is not None else None,
        None,
    )

    def emit(where: Context | None = None, stamp: int | None = None) -> Iterator[None]:
        columns = {
            semconv.FB_IDS: _id_text(id_arr),
            semconv.FB_LABELS: _label_text(label_raw),
            semconv.FB_TIMESTAMPS: ts,
        }
        yield
        yield from _emit_batch(
            semconv.EVENT_FEEDBACK,
            f"feedback {model}",
            head,
            columns,
            {},
            n,
            where=where,
            stamp=stamp,
        )

    if n and background():
        id_arr, label_raw, ts = id_arr.copy(), label_raw.copy(), _own(ts, timestamps)
        _defer(emit, f"feedback of {model!r}")
    else:
        _run(emit())


def _log_batch(
    model: str,
    ids: Any,
    scores: Any,
    labels: Any,
    *,
    features: Any,
    timestamps: Any,
    classes: Sequence[Any] | None,
    model_version: str | None,
    pipeline: str | None,
    component: str | None,
    true_labels: Any,
) -> None:
    _check_model(model)
    id_arr = _one_d("ids", ids)
    n = len(id_arr)
    if scores is None and labels is None:
        raise ValueError("predictions need scores, labels or both")
    ts = _timestamps(timestamps, n)
    fixed: dict[str, Any] = {
        semconv.PRED_SET: semconv.PRED_SET_LIVE
        if true_labels is None
        else semconv.PRED_SET_REFERENCE
    }
    score_arr = None
    if scores is not None:
        score_arr, class_names = _scores(scores, n, classes)
        if class_names is not None:
            fixed[semconv.PRED_CLASSES] = class_names
    elif classes is not None:
        fixed[semconv.PRED_CLASSES] = _class_names(classes)
    label_raw = None if labels is None else _one_d("labels", labels, n)
    true_raw = None if true_labels is None else _one_d("true_labels", true_labels, n)
    deferred = n > 0 and background()
    if deferred:  # the worker reads copies: the caller may reuse its arrays at once
        id_arr, ts = id_arr.copy(), _own(ts, timestamps)
        score_arr = None if score_arr is None else score_arr.copy()
        label_raw = None if label_raw is None else label_raw.copy()
        true_raw = None if true_raw is None else true_raw.copy()
        features = None if features is None else snapshot(features)
    # The table reads the snapshot's blocks; holding the snapshot too keeps pandas copying
    # them before the caller writes to its frame, until the worker has read them.
    held = (features, _feature_table(features, n))
    run = current_run()
    comp = component if component is not None else (run.component if run is not None else None)
    head = _span_head(semconv.SPAN_ROLE_PREDICTIONS, model, pipeline, comp, model_version)

    def emit(where: Context | None = None, stamp: int | None = None) -> Iterator[None]:
        columns: dict[str, np.ndarray] = {
            semconv.PRED_IDS: _id_text(id_arr),
            semconv.PRED_TIMESTAMPS: ts,
        }
        yield
        if score_arr is not None:
            columns[semconv.PRED_SCORES] = score_arr
        if label_raw is not None:
            columns[semconv.PRED_LABELS] = _label_text(label_raw)
        if true_raw is not None:
            columns[semconv.PRED_TRUE_LABELS] = _label_text(true_raw)
        yield
        names, arrays = [], []
        feature_table = held[1]
        if feature_table is not None:
            for name, col in zip(feature_table.names, feature_table.columns, strict=True):
                names.append(name)
                arrays.append(_feature(col))
                yield
        yield from _emit_batch(
            semconv.EVENT_PREDICTIONS,
            f"predictions {model}",
            head,
            columns,
            fixed,
            n,
            names,
            arrays,
            where=where,
            stamp=stamp,
        )

    if deferred:
        _defer(emit, f"predictions of {model!r}")
    else:
        _run(emit())


def _run(steps: Iterator[None]) -> None:
    for _ in steps:
        pass


def _defer(emit: Callable[[Context, int], Iterator[None]], what: str) -> None:
    """Run ``emit`` on the SDK's worker, in the caller's trace context (so the batch spans are
    children of the active run) and timed at the call."""
    where, stamp = context.get_current(), time.time_ns()

    def fault(exc: BaseException) -> None:
        _emit.count("errors")
        _LOG.error("could not send the %s", what, exc_info=exc)

    _worker.submit(lambda: emit(where, stamp), fault)


# --- validation and conversion ----------------------------------------------------------------


def _check_model(model: Any) -> None:
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, got {model!r}")


def _id_text(arr: np.ndarray) -> np.ndarray:
    """Ids as fixed-width strings: ``|S`` (1 byte a character) when ASCII, else ``<U``."""
    if arr.dtype.kind == "S":
        return arr
    if arr.dtype.kind == "O":
        try:  # the common case, Python strings: each read once (see _strings)
            return fixed_width(arr)
        except TypeError:  # not all strings: their text
            arr = arr.astype(str)
    if arr.dtype.kind != "U":
        arr = arr.astype(str)
    arr = _tight(arr)
    if arr.size and int(arr.view(np.uint32).max()) < 128:
        return arr.astype(f"S{arr.dtype.itemsize // 4}")
    return arr


def _tight(arr: np.ndarray) -> np.ndarray:
    """A ``<U`` array at the width of its longest string (``astype(str)`` of ints gives U21)."""
    width = int(np.char.str_len(arr).max()) if arr.size else 1
    return np.ascontiguousarray(arr.astype(f"<U{max(width, 1)}", copy=False))


def _one_d(what: str, values: Any, n: int | None = None) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index) or type(values).__module__.startswith("polars"):
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{what} has {len(arr)} rows but ids has {n}")
    return arr


def _label_text(arr: np.ndarray) -> np.ndarray:
    """Labels as canonical strings (``""`` for nulls)."""
    if arr.dtype.kind == "O":
        missing = pd.isna(arr)
        if missing.any():
            arr = arr.copy()
            arr[missing] = ""
    return canonical_labels(arr)


def canonical_labels(arr: np.ndarray) -> np.ndarray:
    """:func:`~otel_mlobs.packing.label_strings`, with a lookup-table fast path for integer,
    boolean and whole-float labels of a small range (the common classifier case)."""
    kind = arr.dtype.kind
    if arr.size and kind in "biuf":
        values = arr
        if kind == "f":
            if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
                return _tight(label_strings(arr))
            values = arr.astype(np.int64)
        elif kind == "b":
            values = arr.view(np.uint8)
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 4096:
            table = np.array([str(i) for i in range(lo, hi + 1)])
            return table[values.astype(np.int64) - lo]
    return _tight(label_strings(arr))


def _scores(
    scores: Any, n: int, classes: Sequence[Any] | None
) -> tuple[np.ndarray, list[str] | None]:
    if isinstance(scores, pd.DataFrame | pd.Series):
        scores = scores.to_numpy()
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"scores must be 1-D or 2-D (n, k), got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"scores has {len(arr)} rows but ids has {n}")
    names = None if classes is None else _class_names(classes)
    if arr.ndim == 2:
        k = arr.shape[1]
        if names is None:
            names = [str(i) for i in range(k)]
        if len(names) != k:
            raise ValueError(f"scores have {k} columns but classes has {len(names)} names")
    return arr, names


def _class_names(classes: Sequence[Any]) -> list[str]:
    """Canonical label strings, element by element so ``["a", 2.0]`` gives ``["a", "2"]``."""
    return [str(label_strings(np.asarray([c]))[0]) for c in classes]


def _timestamps(timestamps: Any, n: int) -> np.ndarray:
    if timestamps is None:
        run = current_run()
        timestamps = run.event_time if run is not None else time.time()
    if np.ndim(timestamps) == 0:
        return np.full(n, to_event_time(timestamps), dtype=np.float64)
    arr = _one_d("timestamps", timestamps, n)
    if arr.dtype.kind in "Mm" or isinstance(getattr(timestamps, "dtype", None), pd.DatetimeTZDtype):
        return classify(timestamps.array if isinstance(timestamps, pd.Series) else arr)[1]
    if arr.dtype.kind == "O":
        stamps = pd.to_datetime(pd.Series(arr), utc=True)
        return classify(stamps.array)[1]
    return np.asarray(arr, dtype=np.float64)  # float64 already: read where it lies


def _own(ts: np.ndarray, timestamps: Any) -> np.ndarray:
    """``ts`` itself when :func:`_timestamps` built it, else a copy: the worker must not read
    memory the caller may still change (its array, or a view of its buffer)."""
    return ts if ts.base is None and ts is not timestamps else ts.copy()


def _feature_table(features: Any, n: int) -> Table | None:
    if features is None:
        return None
    table = as_table(features, "feature")
    if table.rows != n:
        raise ValueError(f"features have {table.rows} rows but ids has {n}")
    return table


def _feature(col: Any) -> np.ndarray:
    """One feature's values: float64 (NaN nulls) for numbers, booleans and datetimes (seconds);
    fixed-width text (``""`` for nulls) otherwise."""
    if isinstance(col, np.ndarray) and col.dtype.kind == "O":
        text = factorize_strings(col)  # the common case, strings only: one pass
        if text is not None:
            codes, uniques = text
            return category_text(codes, [as_text(u) for u in uniques.tolist()])
    if (isinstance(col, np.ndarray) and col.dtype.kind == "O") or isinstance(
        getattr(col, "dtype", None), pd.StringDtype
    ):
        # Factorize first: one pass over the objects, after which only the distinct values
        # are inspected (numbers stored as objects become floats, text a lookup table).
        codes, uniques = _factorize(col)
        _, values = classify(uniques)
        if isinstance(values, TextColumn):
            return category_text(codes, [as_text(u) for u in uniques.tolist()])
        return np.append(values, np.nan)[codes]  # code -1 (null) picks the trailing NaN
    kind, values = classify(col)
    if isinstance(values, TextColumn):
        codes, uniques = _factorize(values.values)
        return category_text(codes, [as_text(u) for u in uniques.tolist()])
    if kind == semconv.KIND_CATEGORICAL:
        codes, categories = values
        return category_text(codes, [as_text(c) for c in categories.tolist()])
    return values


# --- emission ---------------------------------------------------------------------------------


def _span_head(
    role: str, model: str, pipeline: str | None, component: str | None, model_version: str | None
) -> dict[str, Any]:
    run = current_run()
    head: dict[str, Any] = {
        semconv.SCHEMA: semconv.SCHEMA_VERSION,
        semconv.SPAN_ROLE: role,
        semconv.PIPELINE: pipeline_name(pipeline or (run.pipeline if run is not None else None)),
        semconv.MODEL: model,
    }
    if component:
        head[semconv.COMPONENT] = component
    if model_version:
        head[semconv.MODEL_VERSION] = str(model_version)
    return head


def _emit_batch(
    event_name: str,
    span_name: str,
    head: dict[str, Any],
    columns: Mapping[str, np.ndarray],
    fixed: dict[str, Any],
    n: int,
    feature_names: Sequence[str] = (),
    feature_arrays: Sequence[np.ndarray] = (),
    *,
    where: Context | None = None,
    stamp: int | None = None,
) -> Iterator[None]:
    """The batch's spans, yielding after each event; ``where`` and ``stamp`` are the caller's
    context and time when this runs later on the SDK's worker."""
    if n == 0:
        return
    tracer = get_tracer()

    def start(index: int) -> trace.Span:
        # Every span of the batch starts in the caller's context: a child of the active run.
        _emit.count("spans")
        return tracer.start_span(span_name, context=where, attributes=head, start_time=stamp)

    first = start(0)
    if not first.is_recording():
        first.end(end_time=stamp)
        return
    row_bytes = sum(a.dtype.itemsize * (a.shape[1] if a.ndim == 2 else 1) for a in columns.values())
    row_bytes += sum(a.dtype.itemsize for a in feature_arrays)
    rows_per_event = max(
        1, min(semconv.MAX_ROWS_PER_EVENT, _emit.MAX_EVENT_BYTES // max(row_bytes, 1))
    )
    sink = _emit.SpanSink(
        first, start, max_events=semconv.MAX_EVENTS_PER_BATCH_SPAN, own_first=True, end_time=stamp
    )
    fixed_bytes = _emit.attributes_bytes(fixed) + sum(len(f) + 4 for f in feature_names)
    try:
        for lo in range(0, n, rows_per_event):
            hi = min(lo + rows_per_event, n)
            attrs: dict[str, Any] = {
                key: _emit.packed(arr[lo:hi].reshape(-1)) for key, arr in columns.items()
            }
            attrs.update(fixed)
            if feature_names:
                attrs[semconv.PRED_FEATURE_NAMES] = list(feature_names)
                attrs[semconv.PRED_FEATURES] = [_emit.packed(a[lo:hi]) for a in feature_arrays]
            sink.add(event_name, attrs, (hi - lo) * row_bytes + fixed_bytes, stamp)
            yield
    finally:
        sink.close()
    _emit.count("rows_sent", n)
