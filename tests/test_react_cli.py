"""The query commands against a running processor, and against none."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from _processor import api, running
from test_react_support import DAY, pipeline

from otel_mlobs.cli import _apply_env, build_parser
from otel_mlobs.processor.analyzers.react import RootCauseAnalyzer
from otel_mlobs.processor.records import FeedbackBatch, Key, PredictionBatch


def mlobs(*argv: str) -> int:
    parser = build_parser(["otel_mlobs.query_cli"])
    args = parser.parse_args(list(argv))
    _apply_env(args)
    return args.func(args)


def corrupt(comp: str, d: int, m: np.ndarray) -> np.ndarray:
    if comp == "ingest" and d >= 13:
        m[3] *= 0.6
    return m


@pytest.fixture(scope="module")
def proc():
    with running() as p:
        records = []

        class Sink(RootCauseAnalyzer):  # collects what the synthetic pipeline emits
            def update(self, record):
                records.append(record)

        pipeline(14, fault=corrupt, analyzer=Sink(Key("p")))
        ids = np.arange(400).astype(str)
        zone = np.array(["A", "B", "C", "D"] * 100)
        records.append(
            PredictionBatch(
                Key("p", "serve", "m"),
                "1",
                ids,
                np.full(400, 13 * DAY),
                None,
                (),
                None,
                {"zone": zone},
            )
        )
        records.append(
            FeedbackBatch(
                Key("p", "", "m"), ids[zone != "B"], ids[zone != "B"], np.full(300, 13 * DAY + 600)
            )
        )
        with p.lock:
            for r in records:
                p.router.dispatch(r)
        yield p


def url(p) -> str:
    return f"http://127.0.0.1:{p.ports.metrics}"


def test_suspects_table_and_json(proc, capsys):
    assert mlobs("suspects", "--url", url(proc)) == 0
    out = capsys.readouterr().out
    assert "rank" in out and "ingest" in out.splitlines()[3] and "raw.c3" in out
    assert mlobs("suspects", "--url", url(proc), "--json", "--at", str(13 * DAY + 100)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["suspects"][0]["component"] == "ingest"


def test_trace_history_flag_review(proc, capsys, monkeypatch):
    monkeypatch.setenv("MLOBS_URL", url(proc))
    assert mlobs("trace", "ptr-2-13") == 0
    out = capsys.readouterr().out
    assert "serve run serve13" in out and "ingest run ingest13" in out
    assert mlobs("history", "features") == 0
    assert "features12" in capsys.readouterr().out
    assert mlobs("flag", "ptr-2-13") == 0
    assert "flagged" in capsys.readouterr().out
    assert mlobs("review", "--json") == 0
    review = json.loads(capsys.readouterr().out)["review"]
    assert {r["run_id"] for r in review} >= {"serve13", "features13", "ingest13"}


def test_unknown_names_list_what_is_known(proc, capsys):
    assert mlobs("trace", "--url", url(proc), "ptr-nope") == 1
    err = capsys.readouterr().err
    assert "unknown pointer 'ptr-nope'" in err and "ptr-2-13" in err
    assert mlobs("history", "--url", url(proc), "nope") == 1
    assert "known" in capsys.readouterr().err
    assert mlobs("flag", "--url", url(proc), "ptr-nope") == 1
    assert "unknown pointer" in capsys.readouterr().err
    r = api(proc, "/api/v1/flags", method="POST", data=b"not json")
    assert r.status_code == 400


def test_delays_and_alerts(proc, capsys):
    assert mlobs("delays", "--url", url(proc), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "m" and data["sampled"] == 400
    assert mlobs("alerts", "--url", url(proc)) == 0
    capsys.readouterr()


def test_processor_down_is_a_clear_message_and_exit_code(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        code = mlobs("suspects", "--url", f"http://127.0.0.1:{port}")
    assert code == 3
    assert "cannot reach the processor" in capsys.readouterr().err
