"""Checks of the processor image recipe (Dockerfile, .dockerignore) without a Docker daemon.

What can run here runs for real: the HEALTHCHECK command is executed against a local HTTP server
that answers /healthz (healthy, failing, absent), and the RUN step that lists the dependencies is
executed on a copy of pyproject.toml.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return result


def only(keyword: str) -> str:
    found = [args for kw, args in instructions() if kw == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def test_base_image_user_ports_and_command() -> None:
    froms = [args for kw, args in instructions() if kw == "FROM"]
    assert froms == ["python:3.11-slim"]
    user = only("USER")
    assert user not in {"root", "0"} and not user.startswith("0:")
    # USER comes before the command and after every RUN (nothing runs as root at runtime).
    order = [kw for kw, _ in instructions()]
    assert max(i for i, kw in enumerate(order) if kw == "RUN") < order.index("USER")
    assert set(only("EXPOSE").split()) == {"4317", "4318", "9464"}
    assert exec_form(only("CMD")) == ["mlobs", "processor", "--host", "0.0.0.0"]


def test_package_installs_from_the_repository_root() -> None:
    runs = " && ".join(args for kw, args in instructions() if kw == "RUN")
    assert "pip install --no-deps ." in runs
    copies = [args.split() for kw, args in instructions() if kw == "COPY"]
    copied = {src for args in copies for src in args[:-1]}
    assert {"pyproject.toml", "otel_mlobs"} <= copied
    for src in copied:
        assert (ROOT / src).exists(), f"COPY source {src} missing"
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert script["mlobs"] == "otel_mlobs.cli:main"


def test_dependency_step_lists_every_runtime_dependency(tmp_path: Path) -> None:
    """Run the RUN step's Python one-liner on a copy of pyproject.toml."""
    first_run = next(args for kw, args in instructions() if kw == "RUN")
    command = first_run.split(" > ", 1)[0]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    out = subprocess.run(
        [sys.executable, "-c", argv[2]], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out == expected


# --- the HEALTHCHECK, run for real ------------------------------------------------------------
class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[http.server.HTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthcheck_argv() -> list[str]:
    args = only("HEALTHCHECK")
    options, _, command = args.partition("CMD ")
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in options
    argv = exec_form(command)
    assert argv == ["mlobs", "healthcheck"]
    executable = Path(sys.executable).parent / argv[0]
    assert executable.exists(), f"{argv[0]} is not installed in this environment"
    return [str(executable), *argv[1:]]


def run_healthcheck(port: int) -> int:
    env = {**os.environ, "MLOBS_METRICS_PORT": str(port)}
    return subprocess.run(healthcheck_argv(), env=env, capture_output=True, timeout=20).returncode


def test_healthcheck_passes_when_healthz_answers_200(health_server) -> None:
    server, _ = health_server
    assert run_healthcheck(server.server_address[1]) == 0


def test_healthcheck_fails_when_healthz_reports_unhealthy(health_server) -> None:
    server, handler = health_server
    handler.status = 503
    assert run_healthcheck(server.server_address[1]) != 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    assert run_healthcheck(free_port()) != 0


def test_image_command_serves_the_healthcheck_and_stops_on_sigterm() -> None:
    """The CMD, run from this checkout, passes the image's HEALTHCHECK and exits cleanly on
    SIGTERM (what `docker stop` sends). Loopback instead of 0.0.0.0, free ports instead of
    the defaults: the test must not collide with anything on the machine."""
    argv = exec_form(only("CMD"))
    executable = Path(sys.executable).parent / argv[0]
    assert executable.exists(), f"{argv[0]} is not installed in this environment"
    port = free_port()
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in argv[1:]]
    args += ["--grpc-port", "0", "--http-port", "0", "--metrics-port", str(port)]
    proc = subprocess.Popen(
        [str(executable), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "no /healthz within 30 s"
                time.sleep(0.2)
        assert run_healthcheck(port) == 0
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- .dockerignore ------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def in_build_context(path: str) -> bool:
    """Docker's rule: the last matching line wins; a line matching a directory covers its tree."""
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for rule in rules:
        negate = rule.startswith("!")
        regex = _pattern_regex(rule.lstrip("!").rstrip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = negate
    return included


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "otel_mlobs/__init__.py", "otel_mlobs/processor/records.py"],
)
def test_build_context_keeps_the_package(path: str) -> None:
    assert in_build_context(path)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_deploy_dockerfile.py",
        "otel_mlobs/__pycache__/semconv.cpython-311.pyc",
        "state.db",
        "otel_mlobs.egg-info/PKG-INFO",
        "docker-compose.yml",
    ],
)
def test_build_context_leaves_out_the_rest(path: str) -> None:
    assert not in_build_context(path)
