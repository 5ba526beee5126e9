"""A person's verdict on an alert, posted to the API, reaches the analyzer that raised it."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import requests
from _processor import running
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import otel_mlobs as mlobs
from otel_mlobs.processor.persistence import LOCK_FILE

DAY = 86_400.0


def _feed(proc) -> TracerProvider:
    """Eight daily runs of a shop's clean step; on the last one the fare column is all null."""
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{proc.ports.grpc}", insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mlobs.configure(tracer_provider=provider)
    rng = np.random.default_rng(5)
    for day in range(8):
        fare = rng.gamma(3.0, 4.0, 800)
        if day == 7:
            fare[:] = np.nan
        frame = pd.DataFrame({"fare": fare, "zone": rng.choice(["a", "b", "c"], 800)})
        with mlobs.observe("clean", pipeline="shop", event_time=1.7e9 + day * DAY) as run:
            run.log_output("trips", frame)
    provider.force_flush()
    assert proc.wait_idle(timeout=30)
    return provider


def _base(proc) -> str:
    return f"http://127.0.0.1:{proc.ports.metrics}/api/v1/analyzers/constraints"


@pytest.fixture(scope="module")
def alerted():
    """A processor whose constraints analyzer raised alerts on a run whose column went null."""
    with running() as proc:
        provider = _feed(proc)
        yield proc, _base(proc)
        provider.shutdown()


def _alerts(base: str) -> list[dict]:
    answer = requests.get(base, params={"pipeline": "shop", "component": "clean"}, timeout=10)
    answer.raise_for_status()
    return answer.json()["alerts"]


def test_false_positive_verdict_resolves_the_alert(alerted) -> None:
    _, base = alerted
    alerts = _alerts(base)
    assert alerts, "a column that went all-null must raise an alert"
    target = alerts[0]
    answer = requests.post(
        f"{base}/alerts/{target['id']}",
        params={"pipeline": "shop", "component": "clean"},
        json={"true_positive": False},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["alert"]["verdict"] is not None
    assert answer.json()["durable"] is False  # no state directory: memory only
    assert target["id"] not in {a["id"] for a in _alerts(base)}


@pytest.mark.parametrize(
    ("pipeline", "body", "status"),
    [
        ("shop", {"true_positive": True}, 404),  # unknown alert id
        ("nope", {"true_positive": True}, 404),  # unknown key
        ("shop", {"true_positive": "no"}, 400),
        ("shop", {}, 400),
    ],
)
def test_bad_verdicts_are_refused_with_a_reason(alerted, pipeline, body, status) -> None:
    _, base = alerted
    params = {"pipeline": pipeline, "component": "clean"}
    answer = requests.post(f"{base}/alerts/000000", params=params, json=body, timeout=10)
    assert answer.status_code == status
    assert answer.json()["error"]


def test_an_answered_verdict_survives_a_crash(tmp_path) -> None:
    """Verdicts are not in the write-ahead log; the answer comes once a checkpoint holds it."""
    with running(state_dir=str(tmp_path / "state")) as proc:
        provider = _feed(proc)
        target = _alerts(_base(proc))[0]
        answer = requests.post(
            f"{_base(proc)}/alerts/{target['id']}",
            params={"pipeline": "shop", "component": "clean"},
            json={"true_positive": False},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["durable"] is True
        crashed = shutil.copytree(tmp_path / "state", tmp_path / "crashed")  # as kill -9 leaves it
        (crashed / LOCK_FILE).unlink()
        provider.shutdown()
    with running(state_dir=str(crashed)) as restarted:
        assert target["id"] not in {a["id"] for a in _alerts(_base(restarted))}
