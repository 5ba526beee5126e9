"""``mlobs demo``: end to end through real OTLP, the per-day report, flags and failures."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _tools import need

from otel_mlobs import demo
from otel_mlobs.cli import build_parser, main
from otel_mlobs.scenarios import report

FREE = ["--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"]
SMALL = ["--days", "7", "--train-days", "5", "--rows-per-day", "600", "--start", "2025-12-20"]
DATE_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}) \w{3}  trips")


def run_demo(*flags: str) -> tuple[demo.DemoResult, str]:
    args = build_parser().parse_args(["demo", "--once", *FREE, *SMALL, *flags])
    out = io.StringIO()
    result = demo.run_demo(args, out)
    return result, out.getvalue()


def test_once_end_to_end_over_grpc():
    result, text = run_demo("--no-prometheus", "--incidents", "corruption@2025-12-26")
    dates = [m.group(1) for line in text.splitlines() if (m := DATE_LINE.match(line))]
    assert dates == [f"2025-12-{d}" for d in range(20, 27)]
    # The processor received every run of every component.
    assert result.runs_received == {
        "clean": 7,
        "features": 7,
        "train": 1,
        "inference": 2,
        "feedback": 2,
    }
    assert "corruption" in text and "(SDK exports over grpc)" in text
    realized = re.findall(r"realized (\d\.\d{3}) on ([\d,]+) labels", text)
    assert realized and all(0.5 < float(acc) <= 1.0 for acc, _ in realized)
    # The kilometre bug shows as a moved trip_distance on its day, placed at the raw feed.
    before, day = text[: text.index("2025-12-26 Fri")], text[text.index("2025-12-26 Fri") :]
    assert "moved:" not in before
    moved = r"moved: trip_distance mean [\d.]+->[\d.]+ \(\+[\d.]+ sd\) \[clean/raw_trips"
    assert re.search(moved, day)
    assert "Prometheus" not in text
    assert result.ports.grpc > 0 and result.ports.metrics > 0


def test_once_over_http_without_incidents_or_prometheus(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no prometheus binary to be found
    result, text = run_demo("--days", "3", "--train-days", "2", "--incidents", "none",
                            "--protocol", "http")  # fmt: skip
    assert "Incidents: none." in text and "(SDK exports over http)" in text
    assert result.runs_received == {
        "clean": 3,
        "features": 3,
        "train": 1,
        "inference": 1,
        "feedback": 1,
    }
    assert "<-" not in text  # no day is tagged with an incident
    assert "apt-get install prometheus" in text  # says how to get it, and carries on


@pytest.mark.prometheus
def test_with_prometheus_prints_promql():
    need("prometheus")
    result, text = run_demo("--days", "3", "--incidents", "none")
    assert "PromQL (from the local Prometheus)" in text
    block = text[text.index("runs by component") :]
    assert re.search(r"\{component=clean\} 3\b", block)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--days", "1"], "at least 2"),
        (["--rows-per-day", "x"], "not an integer"),
        (["--incidents", "meltdown@2025-12-24"], "unknown incident 'meltdown'"),
        (["--incidents", "corruption@24-12-2025"], "bad start date"),
        (["--protocol", "smoke"], "invalid choice"),
        (["--grpc-port", "70000"], "not in 0..65535"),
        (["--start", "yesterday"], "not a date"),
    ],
)
def test_bad_flags_are_clear_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", *flags])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_port_in_use_is_reported(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = ["--grpc-port", "0", "--http-port", "0", "--metrics-port", str(port)]
        code = main(["demo", "--once", "--no-prometheus", *SMALL, *ports])
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot start the processor" in err and str(port) in err


def test_keeps_serving_until_interrupted(tmp_path: Path):
    """Without --once the metrics stay up after the run; Ctrl-C ends it cleanly."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "otel_mlobs.demo", *FREE, "--no-prometheus", "--days", "3",
           "--train-days", "2", "--rows-per-day", "100", "--incidents", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)  # fmt: skip
    try:
        url, deadline, seen = None, time.monotonic() + 60, []
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if m := re.search(r"Serving (http://\S+/metrics)", line):
                url = m.group(1)
                break
        assert url, "".join(seen)
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert b"mlobs_component_runs_total" in resp.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_movement_tracker_flags_moves_nulls_and_frozen_columns():
    P = report._Profile  # noqa: N806
    key = ("clean", "input", "raw_trips", "trip_distance")
    down = ("features", "output", "features", "trip_distance")
    feed = ("features", "input", "rider_history", "rider_avg_tip_pct")
    const = ("features", "input", "weather", "snow_in")
    tracker = report.MovementTracker(baseline_days=3)
    for i in range(3):
        day = {
            key: P(2.7 + 0.02 * i, 3.0, 0.0),
            down: P(2.7 + 0.02 * i, 3.0, 0.0),
            feed: P(0.18 + 0.001 * i, 0.07, 0.0),
            const: P(0.0, 0.0, 0.0),
        }
        assert tracker.update(day) == ([], [])
    ordinary = {key: P(2.73, 3.0, 0.0), down: P(2.73, 3.0, 0.0), feed: P(0.181, 0.07, 0.0),
                const: P(0.0, 0.0, 0.0)}  # fmt: skip
    # A day of few rows may wobble more before its mean counts as moved.
    assert tracker.update({key: P(3.6, 3.0, 0.0, values_total=100.0)}) == ([], [])
    assert [m.key for m in tracker.update({key: P(3.6, 3.0, 0.0)})[0]] == [key]
    assert tracker.update(ordinary) == ([], [])
    bad = {key: P(4.4, 4.8, 0.0), down: P(4.4, 4.8, 0.0), feed: P(0.181, 0.07, 0.0),
           const: P(0.0, 0.0, 0.0)}  # fmt: skip
    moves, frozen = tracker.update(bad)
    assert {m.key for m in moves} == {key, down}
    # Reported once, where it first shows; the constant column is not called frozen.
    assert report.summarize_moves(moves) == [
        "trip_distance mean 2.72->4.4 (+11.2 sd) [clean/raw_trips, +1 downstream]"
    ]
    assert frozen == [feed]
    nulls, _ = tracker.update({key: P(float("nan"), float("nan"), 1.0)})
    assert [m.detail for m in nulls] == ["nulls 0%->100%"]
