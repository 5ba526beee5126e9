"""observe() / @component runs: exact span attributes, events, checks, errors and chunking."""

from __future__ import annotations

import warnings
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from opentelemetry.trace import StatusCode

import otel_mlobs as mlobs
from otel_mlobs import semconv as sc
from otel_mlobs.packing import unpack
from otel_mlobs.sdk import stats


def _runs(exporter):
    return [s for s in exporter.get_finished_spans() if s.attributes[sc.SPAN_ROLE] == "run"]


def _events(span, name):
    return [e for e in span.events if e.name == name]


def test_run_span_attributes_and_summary_events(sdk_exporter, monkeypatch) -> None:
    monkeypatch.setenv("MLOBS_CODE_VERSION", "abc123")
    df = pd.DataFrame({"fare": [10.0, np.nan, 30.0], "zone": ["a", "b", "a"]})
    with mlobs.observe(
        "clean", stage="ETL", run_id="r1", event_time=pd.Timestamp("2024-03-01", tz="UTC")
    ) as run:
        assert mlobs.current_run() is run
        ptr = run.log_input("raw", df)
        run.add_output("s3://bucket/clean.parquet")
    assert mlobs.current_run() is None
    (span,) = sdk_exporter.get_finished_spans()
    assert dict(span.attributes) == {
        sc.SCHEMA: sc.SCHEMA_VERSION,
        sc.SPAN_ROLE: "run",
        sc.PIPELINE: "sdk-test",
        sc.COMPONENT: "clean",
        sc.STAGE: "etl",
        sc.RUN_ID: "r1",
        sc.RUN_EVENT_TIME: datetime(2024, 3, 1).timestamp() - _utc_offset(),
        sc.CODE_VERSION: "abc123",
        sc.RUN_INPUTS: (ptr,),
        sc.RUN_OUTPUTS: ("s3://bucket/clean.parquet",),
    }
    assert ptr.startswith("sha256:") and len(ptr) == 7 + 64
    assert span.status.status_code is StatusCode.UNSET
    (summary,) = _events(span, sc.EVENT_SUMMARY)
    a = summary.attributes
    assert (a[sc.DATA_ROLE], a[sc.DATA_NAME], a[sc.DATA_ROWS], a[sc.DATA_POINTER]) == (
        "input",
        "raw",
        3,
        ptr,
    )
    assert a[sc.SUMMARY_COLUMNS] == ("fare", "zone")
    assert a[sc.SUMMARY_KINDS] == ("numeric", "categorical")
    # per-column numbers travel packed (one bytes value each, not one OTel value per column)
    assert unpack(a[sc.SUMMARY_COUNT]).tolist() == [2, 3]
    assert unpack(a[sc.SUMMARY_NULLS]).tolist() == [1, 0]
    mean = unpack(a[sc.SUMMARY_MEAN])
    assert mean[0] == 20.0 and np.isnan(mean[1])
    assert unpack(a[sc.SUMMARY_STD])[0] == 10.0 and unpack(a[sc.SUMMARY_MIN])[0] == 10.0
    assert unpack(a[sc.SUMMARY_MAX])[0] == 30.0
    assert a[sc.SUMMARY_QUANTILE_LEVELS] == sc.DEFAULT_QUANTILE_LEVELS
    q = unpack(a[sc.SUMMARY_QUANTILES]).reshape(2, -1)
    assert q[0].tolist() == [10.0, 10.0, 10.0, 30.0, 30.0, 30.0, 30.0] and np.isnan(q[1]).all()
    assert a[sc.SUMMARY_SKETCHES][0][:3] == b"\x05\x01\x0f" and a[sc.SUMMARY_SKETCHES][1] == b""
    assert unpack(a[sc.SUMMARY_DISTINCT]).tolist() == [2.0, 2.0]
    assert a[sc.SUMMARY_TOP_VALUES] == ("", '{"a": 2, "b": 1}')
    (sample,) = _events(span, sc.EVENT_SAMPLE)
    assert sample.attributes[sc.SAMPLE_COLUMNS] == ("fare", "zone")
    fare, zone = (unpack(v) for v in sample.attributes[sc.SAMPLE_VALUES])
    np.testing.assert_array_equal(fare, [10.0, np.nan, 30.0])
    assert zone.tolist() == ["a", "b", "a"]


def _utc_offset() -> float:
    return datetime(2024, 3, 1).timestamp() - pd.Timestamp("2024-03-01", tz="UTC").timestamp()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (1_700_000_000, 1_700_000_000.0),
        (datetime(2024, 1, 1), 1_704_067_200.0),  # naive means UTC
        (np.datetime64("2024-01-01T00:00:00"), 1_704_067_200.0),
        ("2024-01-01T01:00:00+01:00", 1_704_067_200.0),
    ],
)
def test_event_time_forms(sdk_exporter, given, expected) -> None:
    with mlobs.observe("c", event_time=given) as run:
        assert run.event_time == expected
    assert _runs(sdk_exporter)[0].attributes[sc.RUN_EVENT_TIME] == expected


def test_defaults_stage_normalization_and_pipeline(sdk_exporter) -> None:
    with mlobs.observe("c", stage="Scoring!", pipeline="other-pipe") as run:
        pass
    span = _runs(sdk_exporter)[0]
    assert span.attributes[sc.STAGE] == "other" and span.attributes[sc.PIPELINE] == "other-pipe"
    assert len(run.run_id) == 32 and span.attributes[sc.RUN_INPUTS] == ()


def test_exception_is_recorded_and_reraised_unchanged(sdk_exporter) -> None:
    boom = KeyError("missing column")
    with pytest.raises(KeyError) as info, mlobs.observe("c") as run:
        run.log_input("x", {"a": [1.0]})
        raise boom
    assert info.value is boom
    span = _runs(sdk_exporter)[0]
    assert span.status.status_code is StatusCode.ERROR
    assert "KeyError" in span.status.description
    assert [e.name for e in span.events][-1] == "exception"
    assert span.attributes[sc.RUN_INPUTS]  # pointers still recorded


def test_checks_pass_fail_and_messages(sdk_exporter) -> None:
    def has_rows(data):
        return len(data["x"]) > 0

    def no_nulls(data):
        assert data["y"].notna().all().all(), "nulls in y"

    def pair(data):
        return False, "too few rows"

    with (
        pytest.warns(mlobs.CheckFailedWarning) as caught,
        mlobs.observe("c", before=[has_rows, lambda data: None], after=[no_nulls, pair]) as run,
    ):
        run.log_input("x", {"a": [1.0, 2.0]})
        run.log_output("y", pd.DataFrame({"b": [1.0, None]}))
        run.check("manual", True, "ignored when passing")
    assert len(caught) == 2
    span = _runs(sdk_exporter)[0]
    checks = [
        (
            e.attributes[sc.CHECK_NAME],
            e.attributes[sc.CHECK_PHASE],
            e.attributes[sc.CHECK_PASSED],
            e.attributes[sc.CHECK_MESSAGE],
        )
        for e in _events(span, sc.EVENT_CHECK)
    ]
    names = [c[0] for c in checks]
    assert names[:2] == [
        has_rows.__qualname__,
        "test_checks_pass_fail_and_messages.<locals>.<lambda>",
    ]
    assert checks[0][1:] == ("before", True, "")
    assert checks[2] == ("manual", "after", True, "")  # before the block ended
    assert checks[3][1:3] == ("after", False)
    assert checks[3][3].startswith("AssertionError: nulls in y")
    assert checks[4][1:] == ("after", False, "too few rows")
    assert span.status.status_code is StatusCode.UNSET  # warned, not stopped
    assert stats()["checks_failed"] == 2


def test_observe_before_checks_run_at_first_output(sdk_exporter) -> None:
    seen = []
    with mlobs.observe("c", before=[lambda d: seen.append(sorted(d)) or True]) as run:
        run.log_input("a", {"x": [1]})
        run.log_input("b", {"x": [2]})
        assert seen == []
        run.log_output("out", {"x": [3]})
        assert seen == [["a", "b"]]
    assert len(seen) == 1


def test_stop_on_check_failure_raises_after_recording(sdk_exporter) -> None:
    def positive(data):
        return bool((data["out"]["v"] > 0).all())

    with (
        pytest.raises(mlobs.CheckFailed) as info,
        mlobs.observe("c", after=[positive], stop_on_check_failure=True) as run,
    ):
        run.log_output("out", pd.DataFrame({"v": [1.0, -1.0]}))
    assert info.value.phase == "after" and info.value.name.endswith("positive")
    span = _runs(sdk_exporter)[0]
    (check,) = _events(span, sc.EVENT_CHECK)
    assert check.attributes[sc.CHECK_PASSED] is False
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.RUN_OUTPUTS]


def test_component_decorator_logs_arguments_and_outputs(sdk_exporter) -> None:
    @mlobs.component(
        "split",
        stage="features",
        output_names=["train", "test"],
        before=[lambda args: args["frac"] < 1],
        after=[lambda outs: len(outs) == 2],
    )
    def split(frame: pd.DataFrame, frac: float = 0.5):
        run = mlobs.current_run()
        assert run is not None and run.component == "split"
        cut = int(len(frame) * frac)
        return frame.iloc[:cut], frame.iloc[cut:]

    df = pd.DataFrame({"a": np.arange(10.0)})
    train, test = split(df, mlobs_event_time=1_000.0)
    assert len(train) == 5 and len(test) == 5
    span = _runs(sdk_exporter)[0]
    assert span.attributes[sc.COMPONENT] == "split" and span.attributes[sc.STAGE] == "features"
    assert span.attributes[sc.RUN_EVENT_TIME] == 1_000.0
    summaries = [
        (e.attributes[sc.DATA_ROLE], e.attributes[sc.DATA_NAME], e.attributes[sc.DATA_ROWS])
        for e in _events(span, sc.EVENT_SUMMARY)
    ]
    assert summaries == [("input", "frame", 10), ("output", "train", 5), ("output", "test", 5)]
    checks = [
        (e.attributes[sc.CHECK_PHASE], e.attributes[sc.CHECK_PASSED])
        for e in _events(span, sc.EVENT_CHECK)
    ]
    assert checks == [("before", True), ("after", True)]
    assert len(span.attributes[sc.RUN_OUTPUTS]) == 2


def test_bare_decorator_dict_result_and_errors(sdk_exporter) -> None:
    @mlobs.component
    def build():
        return {"features": pd.DataFrame({"a": [1, 2]}), "meta": "not tabular"}

    assert build()["meta"] == "not tabular"

    @mlobs.component("fails", before=[lambda args: False], stop_on_check_failure=True)
    def fails(x):
        raise AssertionError("never called")

    with pytest.raises(mlobs.CheckFailed):
        fails(np.arange(3.0))
    first, second = _runs(sdk_exporter)
    assert first.attributes[sc.COMPONENT] == "build"
    assert [e.attributes[sc.DATA_NAME] for e in _events(first, sc.EVENT_SUMMARY)] == ["features"]
    assert second.status.status_code is StatusCode.ERROR


def test_lineage_pointers_match_and_link(sdk_exporter) -> None:
    df = pd.DataFrame({"a": [1.0, 2.0]})
    with mlobs.observe("producer") as run:
        out = run.log_output("table", df)
    with mlobs.observe("consumer") as run:
        inp = run.log_input("table", df.copy())
        uri = run.log_input("ext", df, pointer="s3://x/y")
    assert inp == out and uri == "s3://x/y"
    producer, consumer = _runs(sdk_exporter)
    assert consumer.attributes[sc.RUN_INPUTS] == (out, "s3://x/y")
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]


def test_unsupported_input_is_a_type_error(sdk_exporter) -> None:
    with mlobs.observe("c") as run, pytest.raises(TypeError, match="DataFrame"):
        run.log_input("bad", [1, 2, 3])
    assert _runs(sdk_exporter)[0].status.status_code is StatusCode.UNSET


def test_thousand_columns_arrive_whole(sdk_exporter) -> None:
    rng = np.random.default_rng(0)
    names = [f"col_{i}" for i in range(1000)]
    frame = pd.DataFrame(rng.normal(size=(200, 1000)), columns=names)
    frame["cat"] = rng.choice(["a", "b"], size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be shed or dropped
        with mlobs.observe("wide", run_id="wide-run") as run:
            run.log_input("wide", frame)
            run.log_output("wide_out", frame)
    spans = sdk_exporter.get_finished_spans()
    run_span = next(s for s in spans if s.attributes[sc.SPAN_ROLE] == "run")
    parts = sorted(
        (s for s in spans if s.attributes[sc.SPAN_ROLE] == "part"),
        key=lambda s: s.attributes[sc.PART_INDEX],
    )
    assert parts, "a 1,001-column frame logged twice needs continuation spans"
    assert [p.attributes[sc.PART_INDEX] for p in parts] == list(range(1, len(parts) + 1))
    for part in parts:
        assert part.parent.span_id == run_span.context.span_id
        for key in (sc.SCHEMA, sc.PIPELINE, sc.COMPONENT, sc.RUN_ID, sc.RUN_EVENT_TIME, sc.STAGE):
            assert part.attributes[key] == run_span.attributes[key]
    expected = names + ["cat"]
    for role in ("input", "output"):
        got, sampled = [], []
        for span in [run_span, *parts]:
            assert len(span.events) <= sc.MAX_EVENTS_PER_SPAN
            for event in span.events:
                if event.attributes.get(sc.DATA_ROLE) != role:
                    continue
                cols = event.attributes.get(
                    sc.SUMMARY_COLUMNS, event.attributes.get(sc.SAMPLE_COLUMNS)
                )
                assert len(cols) <= sc.MAX_COLUMNS_PER_EVENT
                (got if event.name == sc.EVENT_SUMMARY else sampled).extend(cols)
        assert got == expected and sampled == expected
    assert stats()["shed"] == 0


def test_no_provider_means_no_work(monkeypatch) -> None:
    from otel_mlobs.sdk import setup

    monkeypatch.setattr(setup._state, "provider", None)
    with mlobs.observe("quiet") as run:  # the global no-op provider: nothing recorded
        ptr = run.log_input("x", {"a": [1.0]})
    assert ptr.startswith("sha256:") and run.inputs == [ptr]


def test_sdk_faults_and_unreadable_arguments_never_break_the_pipeline(
    sdk_exporter, monkeypatch
) -> None:
    @mlobs.component("tolerant")
    def tolerant(ragged):
        return len(ragged["a"])

    assert tolerant({"a": [1, 2], "b": [1]}) == 2  # unreadable as a table: skipped, counted
    assert stats()["errors"] == 1

    from otel_mlobs.sdk import run as run_module

    def broken(*args, **kwargs):
        raise RuntimeError("summarizer bug")

    monkeypatch.setattr(run_module, "summarize_steps", broken)
    with mlobs.observe("c") as run:
        ptr = run.log_input("x", {"a": [1.0]})
    assert ptr.startswith("sha256:") and stats()["errors"] == 2
    assert _runs(sdk_exporter)[-1].attributes[sc.RUN_INPUTS] == (ptr,)


def test_bad_sampling_arguments_are_counted_not_raised(sdk_exporter) -> None:
    df = pd.DataFrame({"a": np.arange(1000.0)})
    with mlobs.observe("c") as run:
        ptr = run.log_input("x", df, sketch_rows=0)
        assert run.log_input("y", df, sample_rows=-1) == ptr  # the pointer is still returned
    assert ptr.startswith("sha256:") and stats()["errors"] == 2
    assert not _events(_runs(sdk_exporter)[0], sc.EVENT_SUMMARY)
