"""Prediction, reference and feedback batches: exact events, chunking, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import otel_mlobs as mlobs
from otel_mlobs import semconv as sc
from otel_mlobs.packing import unpack
from otel_mlobs.sdk import _emit, stats


def _batch_spans(exporter, role):
    return [s for s in exporter.get_finished_spans() if s.attributes[sc.SPAN_ROLE] == role]


def _column(spans, key):
    return np.concatenate([unpack(e.attributes[key]) for s in spans for e in s.events])


def test_hundred_thousand_rows_arrive_whole(sdk_exporter) -> None:
    n = 100_000
    ids = np.array([f"p{i}" for i in range(n)], dtype=object)
    scores = np.random.default_rng(0).random(n)
    ts = 1_700_000_000.0 + np.arange(n, dtype=float)
    mlobs.log_predictions("fraud", ids, scores=scores, timestamps=ts, model_version="7")
    spans = _batch_spans(sdk_exporter, "predictions")
    assert len(spans) == 2
    assert [len(s.events) for s in spans] == [8, 2]
    rows = [len(unpack(e.attributes[sc.PRED_IDS])) for s in spans for e in s.events]
    assert rows == [10_000] * 10
    for span in spans:
        assert dict(span.attributes) == {
            sc.SCHEMA: sc.SCHEMA_VERSION,
            sc.SPAN_ROLE: "predictions",
            sc.PIPELINE: "sdk-test",
            sc.MODEL: "fraud",
            sc.MODEL_VERSION: "7",
        }
        assert (
            _emit.attributes_bytes({})
            + sum(_emit.attributes_bytes(e.attributes) for e in span.events)
            <= _emit.MAX_SPAN_BYTES
        )
    got_ids = np.char.decode(_column(spans, sc.PRED_IDS))
    np.testing.assert_array_equal(got_ids, ids.astype(str))
    np.testing.assert_array_equal(_column(spans, sc.PRED_SCORES), scores)
    np.testing.assert_array_equal(_column(spans, sc.PRED_TIMESTAMPS), ts)
    assert {e.attributes[sc.PRED_SET] for s in spans for e in s.events} == {"live"}
    assert stats()["rows_sent"] == n


def test_multiclass_scores_labels_and_features(sdk_exporter) -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    feats = pd.DataFrame(
        {
            "zone": pd.Categorical(["a", None]),
            "hour": [3, 4],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
        }
    )
    mlobs.log_predictions(
        "m",
        [10, 11],
        scores=proba,
        labels=[True, False],
        classes=["cat", "dog", 2.0],
        features=feats,
        timestamps=5.0,
    )
    (span,) = _batch_spans(sdk_exporter, "predictions")
    (event,) = span.events
    a = event.attributes
    assert unpack(a[sc.PRED_IDS]).tolist() == [b"10", b"11"]
    np.testing.assert_array_equal(unpack(a[sc.PRED_SCORES]), proba.reshape(-1))
    assert a[sc.PRED_CLASSES] == ("cat", "dog", "2")
    assert unpack(a[sc.PRED_LABELS]).tolist() == ["1", "0"]
    assert unpack(a[sc.PRED_TIMESTAMPS]).tolist() == [5.0, 5.0]
    assert a[sc.PRED_FEATURE_NAMES] == ("zone", "hour", "when")
    zone, hour, when = (unpack(v) for v in a[sc.PRED_FEATURES])
    assert zone.dtype.kind == "S"  # ASCII text travels one byte a character
    assert zone.tolist() == [b"a", b""] and hour.tolist() == [3.0, 4.0]
    assert when.tolist() == [1_704_067_200.0, 1_704_153_600.0]


def test_reference_set_and_feedback(sdk_exporter) -> None:
    mlobs.log_reference("m", ["a", "b"], true_labels=np.array([1.0, 0.0]), scores=[0.9, 0.2])
    mlobs.log_feedback("m", ["a"], ["yes"], timestamps=[7.0])
    (ref,) = _batch_spans(sdk_exporter, "predictions")
    a = ref.events[0].attributes
    assert a[sc.PRED_SET] == "reference"
    assert unpack(a[sc.PRED_TRUE_LABELS]).tolist() == ["1", "0"]
    (fb,) = _batch_spans(sdk_exporter, "feedback")
    assert dict(fb.attributes) == {
        sc.SCHEMA: sc.SCHEMA_VERSION,
        sc.SPAN_ROLE: "feedback",
        sc.PIPELINE: "sdk-test",
        sc.MODEL: "m",
    }
    (event,) = fb.events
    assert event.name == sc.EVENT_FEEDBACK
    assert unpack(event.attributes[sc.FB_IDS]).tolist() == [b"a"]
    assert unpack(event.attributes[sc.FB_LABELS]).tolist() == ["yes"]
    assert unpack(event.attributes[sc.FB_TIMESTAMPS]).tolist() == [7.0]
    with pytest.raises(ValueError, match="true_labels"):
        mlobs.log_reference("m", ["a"], true_labels=None, scores=[0.1])


def test_inside_a_run_defaults_come_from_the_run(sdk_exporter) -> None:
    with mlobs.observe("score", pipeline="taxi", event_time=123.0):
        mlobs.log_predictions("m", ["x", "y"], scores=[0.1, 0.2])
        mlobs.log_feedback("m", ["x"], [1])
    run = next(s for s in sdk_exporter.get_finished_spans() if s.attributes[sc.SPAN_ROLE] == "run")
    (pred,) = _batch_spans(sdk_exporter, "predictions")
    (fb,) = _batch_spans(sdk_exporter, "feedback")
    for span in (pred, fb):
        assert span.attributes[sc.PIPELINE] == "taxi" and span.attributes[sc.COMPONENT] == "score"
        assert span.parent.span_id == run.context.span_id
    assert unpack(pred.events[0].attributes[sc.PRED_TIMESTAMPS]).tolist() == [123.0, 123.0]


def test_wide_rows_use_smaller_events(sdk_exporter) -> None:
    n, k = 20_000, 20
    proba = np.full((n, k), 1.0 / k)
    mlobs.log_predictions("wide", np.arange(n), scores=proba)
    spans = _batch_spans(sdk_exporter, "predictions")
    sizes = [len(unpack(e.attributes[sc.PRED_IDS])) for s in spans for e in s.events]
    assert sum(sizes) == n and max(sizes) < sc.MAX_ROWS_PER_EVENT
    for span in spans:
        assert len(span.events) <= sc.MAX_EVENTS_PER_BATCH_SPAN
        for event in span.events:
            assert len(event.attributes[sc.PRED_SCORES]) <= _emit.MAX_EVENT_BYTES + 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": [0.1, 0.2, 0.3]}, "scores has 3 rows but ids has 2"),
        ({"labels": [1]}, "labels has 1 rows but ids has 2"),
        ({"scores": [0.1, 0.2], "timestamps": [1.0]}, "timestamps has 1 rows but ids has 2"),
        ({"scores": [[0.1, 0.9], [0.5, 0.5]], "classes": ["a"]}, "classes has 1 names"),
        ({"scores": [0.1, 0.2], "features": {"f": [1, 2, 3]}}, "features have 3 rows"),
        ({}, "scores, labels or both"),
    ],
)
def test_validation_names_the_mismatch(sdk_exporter, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        mlobs.log_predictions("m", ["a", "b"], **kwargs)
    assert sdk_exporter.get_finished_spans() == ()


def test_bad_model_and_empty_batch(sdk_exporter) -> None:
    with pytest.raises(TypeError, match="model"):
        mlobs.log_predictions("", ["a"], scores=[0.5])
    mlobs.log_predictions("m", [], scores=[])
    assert sdk_exporter.get_finished_spans() == ()


def test_ids_and_text_features_in_every_form(sdk_exporter) -> None:
    n = 6
    forms = {
        "equal": np.array([f"id-{i:03d}" for i in range(n)], dtype=object),
        "ragged": np.array([f"p{i}" * (i + 1) for i in range(n)], dtype=object),
        "unicode": np.array([f"é{i}" for i in range(n)], dtype=object),
        "ints": np.arange(n) * 7,
        "mixed": np.array(["a", 1, 2.5, "b", None, "c"], dtype=object),
    }
    features = {
        "zone": np.array(["north", None, "south", "north", np.nan, "é"], dtype=object),
        "numbers_as_objects": np.array([1, 2.5, None, 4, 5, 6], dtype=object),
        "text": pd.Series(["a", "b", None, "a", "b", "c"], dtype="str"),
        "category": pd.Categorical(["x", "y", None, "x", "x", "y"]),
    }
    for name, ids in forms.items():
        mlobs.log_predictions(name, ids, scores=np.linspace(0, 1, n), features=features)
    events = {
        s.attributes[sc.MODEL]: s.events[0].attributes
        for s in _batch_spans(sdk_exporter, "predictions")
    }
    for name, ids in forms.items():
        got = unpack(events[name][sc.PRED_IDS])
        want = [str(v) for v in ids.tolist()]
        assert got.dtype.kind in "SU" and (got.dtype.kind == "S") == all(w.isascii() for w in want)
        assert [v.decode() if isinstance(v, bytes) else v for v in got.tolist()] == want
    zone, numbers, text, category = (unpack(v) for v in events["equal"][sc.PRED_FEATURES])
    assert zone.dtype.kind == "U"  # not all ASCII
    assert zone.tolist() == ["north", "", "south", "north", "", "é"]
    np.testing.assert_array_equal(numbers, [1.0, 2.5, np.nan, 4.0, 5.0, 6.0])
    assert text.tolist() == [b"a", b"b", b"", b"a", b"b", b"c"]
    assert category.tolist() == [b"x", b"y", b"", b"x", b"x", b"y"]


def test_fixed_width_strings() -> None:
    from otel_mlobs.sdk._strings import fixed_width

    same = np.array(["abc", "def", "ghi"], dtype=object)
    assert fixed_width(same).dtype == np.dtype("S3")
    assert fixed_width(same).tolist() == [b"abc", b"def", b"ghi"]
    nul = np.array(["a\x00c", "def", "ghi"], dtype=object)  # a NUL inside: no reshape shortcut
    assert fixed_width(nul).tolist() == nul.astype("S3").tolist()
    ragged = np.array(["a", "", "abcd"], dtype=object)
    assert fixed_width(ragged).dtype == np.dtype("S4")
    assert fixed_width(ragged).tolist() == [b"a", b"", b"abcd"]
    assert fixed_width(np.array(["ü", "ab"], dtype=object)).dtype == np.dtype("<U2")
    assert fixed_width(np.array([], dtype=object)).tolist() == []
    with pytest.raises(TypeError):
        fixed_width(np.array(["a", None], dtype=object))


@pytest.mark.parametrize(
    "values",
    [
        ["north", "south", "north", "é", "south"],  # plain strings, not all ASCII
        ["ab", "c", "ab", "", "c"],  # ragged ASCII with an empty string
        ["a", None, "b", "a", np.nan],  # nulls: the general path
        ["a", 1, 2.5, "b", "a"],  # mixed objects: the general path
        [1, 2.5, None, 4, 5],  # numbers stored as objects: floats
        ["a\udc80", "b", "a\udc80", "c", "b"],  # a lone surrogate (no UTF-8): the general path
    ],
)
def test_string_features_match_the_general_path(monkeypatch, values) -> None:
    """The one-pass factorization of plain strings gives the same bytes as the general path."""
    from otel_mlobs.sdk import _strings, predictions

    col = np.array(values, dtype=object)
    fast = predictions._feature(col)
    monkeypatch.setattr(_strings, "_StringHashTable", None)
    general = predictions._feature(col)
    assert fast.dtype == general.dtype
    assert fast.tobytes() == general.tobytes()


def test_factorize_strings_only_takes_plain_strings() -> None:
    from otel_mlobs.sdk._strings import factorize_strings

    codes, uniques = factorize_strings(np.array(["b", "a", "b", "c"], dtype=object))
    assert codes.tolist() == [0, 1, 0, 2]
    assert uniques.tolist() == ["b", "a", "c"]
    assert factorize_strings(np.array(["a", None], dtype=object)) is None
    assert factorize_strings(np.array(["a", 1], dtype=object)) is None
    assert factorize_strings(np.array(["a", "b"])) is None  # fixed-width: not an object array
    codes, uniques = factorize_strings(np.array([], dtype=object))
    assert len(codes) == 0 and len(uniques) == 0
