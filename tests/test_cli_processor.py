"""`mlobs processor`: options, environment variables, clear errors, start-up line, signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from otel_mlobs import cli
from otel_mlobs.processor import command


@pytest.fixture
def captured(monkeypatch):
    """Run `mlobs processor ...` up to the point of starting, returning the parsed arguments."""
    for name in (
        "HOST",
        "GRPC_PORT",
        "HTTP_PORT",
        "METRICS_PORT",
        "MAX_REQUEST_BYTES",
        "QUEUE_SIZE",
        "LOG_LEVEL",
    ):
        monkeypatch.delenv(f"MLOBS_{name}", raising=False)
    seen = []
    monkeypatch.setattr(command, "run", lambda args: seen.append(args) or 0)

    def parse(*argv):
        assert cli.main(["processor", *argv]) == 0
        return seen[-1]

    return parse


def test_defaults(captured):
    args = captured()
    assert (args.host, args.grpc_port, args.http_port, args.metrics_port) == (
        "127.0.0.1",
        4317,
        4318,
        9464,
    )
    assert args.max_request_bytes == 64 * 1024 * 1024
    assert args.queue_size == 1000 and args.log_level == "INFO"


def test_environment_fills_in_and_flags_win(captured, monkeypatch):
    monkeypatch.setenv("MLOBS_GRPC_PORT", "1234")
    monkeypatch.setenv("MLOBS_HTTP_PORT", "2345")
    monkeypatch.setenv("MLOBS_MAX_REQUEST_BYTES", "8MiB")
    monkeypatch.setenv("MLOBS_LOG_LEVEL", "debug")
    args = captured("--grpc-port", "0")
    assert (args.grpc_port, args.http_port) == (0, 2345)
    assert args.max_request_bytes == 8 * 1024 * 1024
    assert args.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grpc-port", "70000"], "argument --grpc-port: 70000 is not in 0..65535"),
        (["--http-port", "http"], "argument --http-port: 'http' is not a port number"),
        (["--queue-size", "0"], "argument --queue-size: 0 is not a positive integer"),
        (["--max-request-bytes", "lots"], "argument --max-request-bytes: 'lots' is not a size"),
        (["--log-level", "LOUD"], "argument --log-level: 'LOUD' is not one of DEBUG"),
        (["--host", " "], "argument --host: must not be empty"),
        (["--colour"], "unrecognized arguments: --colour"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(captured, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        captured(*argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_environment_variable_is_named(captured, capsys, monkeypatch):
    monkeypatch.setenv("MLOBS_QUEUE_SIZE", "many")
    with pytest.raises(SystemExit) as info:
        captured()
    assert info.value.code == 2
    assert "environment variable MLOBS_QUEUE_SIZE='many': 'many' is not an integer" in (
        capsys.readouterr().err
    )


def test_unknown_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


# --- the real process ---------------------------------------------------------------------------

LISTENING = re.compile(
    r"OTLP/gRPC 127\.0\.0\.1:(\d+), OTLP/HTTP http://127\.0\.0\.1:(\d+)/v1/traces, "
    r"metrics http://127\.0\.0\.1:(\d+)/metrics"
)


def _start(*argv, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "otel_mlobs.cli", "processor", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        # In memory: concurrent runs must not contend for one default state directory.
        env={**os.environ, "MLOBS_STATE_DIR": "", **(env or {})},
    )


def _wait_for_line(proc, pattern, timeout=60):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        match = pattern.search(line)
        if match:
            return match, lines
    raise AssertionError("".join(lines))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_processor_logs_its_addresses_serves_and_stops_on_signal(sig):
    proc = _start("--grpc-port", "0", "--http-port", "0", env={"MLOBS_METRICS_PORT": "0"})
    try:
        match, _ = _wait_for_line(proc, LISTENING)
        grpc_port, http_port, metrics_port = map(int, match.groups())
        assert 0 not in (grpc_port, http_port, metrics_port)
        assert requests.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).text == "ok"
        posted = requests.post(
            f"http://127.0.0.1:{http_port}/v1/traces",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert posted.status_code == 200
        proc.send_signal(sig)
        _wait_for_line(proc, re.compile("mlobs processor stopped"))
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_busy_port_exits_1_with_a_clear_message():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _start("--grpc-port", "0", "--http-port", str(port), "--metrics-port", "0")
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1
        assert f"cannot bind OTLP/HTTP on 127.0.0.1:{port}" in err
