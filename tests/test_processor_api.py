"""The metrics/API port: /metrics, /healthz and the read-only JSON API."""

from __future__ import annotations

from typing import ClassVar

import pytest
from _otlp import check_event, feedback_span, predictions_span, request, run_span, summary_event
from _processor import api, grpc_export, running, scrape, value

from otel_mlobs.processor.analyzers import DEFAULT_ANALYZERS
from otel_mlobs.processor.analyzers.runs import RunsAnalyzer


@pytest.fixture(scope="module")
def proc():
    with running() as p:
        grpc_export(
            p,
            request(
                run_span(events=[summary_event(3), check_event()]),
                run_span(run_id="run-2", error="it broke"),
                predictions_span(50),
                feedback_span(20),
            ),
        )
        assert p.wait_idle(5)
        yield p


def test_metrics_parse_with_the_prometheus_parser(proc):
    response = api(proc, "/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    fams = scrape(proc)
    assert fams["mlobs_component_runs"].type == "counter"
    assert value(fams, "mlobs_component_runs_total", component="features", status="error") == 1
    assert value(fams, "mlobs_column_null_ratio", column="c1") == pytest.approx(0.01)
    assert value(fams, "mlobs_predictions_total", model="tip", set="live") == 50
    assert value(fams, "mlobs_feedback_total", model="tip") == 20
    assert value(fams, "mlobs_processor_spans_accepted_total") == 4
    assert fams["mlobs_prediction_score"].type == "histogram"
    assert all(name.startswith("mlobs_") for name in fams)


def test_metrics_speak_openmetrics_when_asked(proc):
    response = api(proc, "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_healthz(proc):
    response = api(proc, "/healthz")
    assert (response.status_code, response.text) == (200, "ok")


def test_status_lists_counters_queue_and_keys(proc):
    status = api(proc, "/api/v1/status").json()
    assert status["state"] == "running"
    assert status["ports"]["grpc"] == proc.ports.grpc
    assert status["counters"]["spans_accepted"] == 4
    assert status["counters"]["records"]["predictions"] == 1
    assert status["queue"] == {"depth": 0, "records": 0, "capacity": 1000, "full_total": 0}
    assert status["analyzers"]["runs"] == [{"pipeline": "taxi", "component": "features"}]
    assert status["analyzers"]["traffic"] == [{"pipeline": "taxi", "model": "tip"}]


def test_analyzers_listing(proc):
    listing = api(proc, "/api/v1/analyzers").json()["analyzers"]
    assert [a["name"] for a in listing] == [cls.name for cls in DEFAULT_ANALYZERS]
    runs = next(a for a in listing if a["name"] == "runs")
    assert runs["accepts"] == ["RunRecord", "CheckRecord"]
    assert runs["keys"] == [{"pipeline": "taxi", "component": "features"}]


def test_analyzer_query_for_a_key(proc):
    response = api(proc, "/api/v1/analyzers/runs?pipeline=taxi&component=features")
    assert response.status_code == 200
    body = response.json()
    assert body["runs"] == 2
    assert {r["error"] for r in body["recent"]} == {"", "it broke"}
    columns = api(proc, "/api/v1/analyzers/columns?pipeline=taxi&component=features&column=c0")
    assert [c["column"] for c in columns.json()["columns"]] == ["c0"]
    traffic = api(proc, "/api/v1/analyzers/traffic?pipeline=taxi&model=tip").json()
    assert traffic["predictions"] == {"live": 50, "reference": 0}


def test_unknown_analyzer_is_404_listing_known_ones(proc):
    response = api(proc, "/api/v1/analyzers/nope")
    assert response.status_code == 404
    body = response.json()
    assert "unknown analyzer 'nope'" in body["error"]
    assert set(body["known_analyzers"]) == {cls.name for cls in DEFAULT_ANALYZERS}


def test_unknown_key_is_404_listing_known_keys(proc):
    response = api(proc, "/api/v1/analyzers/runs?pipeline=taxi&component=ghost")
    assert response.status_code == 404
    assert response.json()["known_keys"] == [{"pipeline": "taxi", "component": "features"}]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/metrics"), ("DELETE", "/api/v1/status"), ("PUT", "/api/v1/analyzers/runs")],
)
def test_the_api_is_read_only(proc, method, path):
    assert api(proc, path, method=method).status_code == 405


class Picky(RunsAnalyzer):
    name: ClassVar[str] = "picky"

    def query(self, **params):
        if "window" in params and params["window"] not in ("1h", "1d"):
            raise ValueError(f"window must be 1h or 1d, not {params['window']!r}")
        return {**super().query(), "window": params.get("window", "1h")}


def test_extra_parameters_reach_query_and_its_errors_are_400():
    with running(analyzers=[Picky]) as p:
        grpc_export(p, request(run_span()))
        assert p.wait_idle(5)
        path = "/api/v1/analyzers/picky?pipeline=taxi&component=features"
        assert api(p, path + "&window=1d").json()["window"] == "1d"
        bad = api(p, path + "&window=1y")
        assert bad.status_code == 400 and "window must be 1h or 1d" in bad.json()["error"]
