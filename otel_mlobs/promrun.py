"""Run a local Prometheus against a processor: used by `mlobs demo` and the live tests.

Prometheus is not a Python dependency; when its binary is on PATH we start it with the shipped
``prometheus/prometheus.yml`` rewritten to the processor's real metrics address, in a private
temporary directory (storage, config, a copy of the rules), on a free port.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG_DIR = REPO_ROOT / "prometheus"
INSTALL_HINT = (
    "Prometheus is not on PATH. Install it (Debian/Ubuntu: `apt-get install prometheus`, or a "
    "release tarball from the Prometheus project) to see the metrics in a real Prometheus."
)


class PrometheusError(RuntimeError):
    """Prometheus could not start or answered an error."""


def find_binary(name: str = "prometheus") -> str | None:
    """Path of ``name`` on PATH, or None."""
    return shutil.which(name)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def render_config(
    metrics_target: str, *, scrape_interval: str = "1s", rules_dir: Path | None = None
) -> str:
    """The shipped prometheus.yml with its target and scrape interval replaced.

    Only the scrape target and intervals change, so what the tests exercise is the shipped file.
    """
    text = (SHIPPED_CONFIG_DIR / "prometheus.yml").read_text(encoding="utf-8")
    text = text.replace('"localhost:9464"', f'"{metrics_target}"')
    text = text.replace("scrape_interval: 15s", f"scrape_interval: {scrape_interval}")
    text = text.replace("evaluation_interval: 15s", f"evaluation_interval: {scrape_interval}")
    text = text.replace("scrape_interval: 5s", f"scrape_interval: {scrape_interval}")
    if rules_dir is not None:
        text = text.replace("- rules/*.yml", f"- {rules_dir}/*.yml")
    return text


class PrometheusServer:
    """A throwaway Prometheus scraping ``metrics_target`` (``host:port``).

    Use as a context manager; ``query()`` runs an instant PromQL query through the HTTP API.
    """

    def __init__(
        self,
        metrics_target: str,
        *,
        binary: str | None = None,
        scrape_interval: str = "1s",
        port: int | None = None,
        with_rules: bool = True,
    ) -> None:
        self.binary = binary or find_binary()
        if self.binary is None:
            raise PrometheusError(INSTALL_HINT)
        self.metrics_target = metrics_target
        self.scrape_interval = scrape_interval
        self.port = port or free_port()
        self.with_rules = with_rules
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        self._dir = tempfile.TemporaryDirectory(prefix="mlobs-prom-")
        root = Path(self._dir.name)
        rules = root / "rules"
        rules.mkdir()
        if self.with_rules:
            for rule_file in (SHIPPED_CONFIG_DIR / "rules").glob("*.yml"):
                shutil.copy(rule_file, rules / rule_file.name)
        config = root / "prometheus.yml"
        config.write_text(
            render_config(
                self.metrics_target, scrape_interval=self.scrape_interval, rules_dir=rules
            ),
            encoding="utf-8",
        )
        log = (root / "prometheus.log").open("wb")
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise PrometheusError(f"prometheus exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "prometheus.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        """GET an API path (``/api/v1/...``) and return its ``data``; raise on an error status."""
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"{path}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the result vector (``[{"metric": {...}, "value": [t, v]}]``)."""
        return self.api("/api/v1/query", query=expr)["result"]

    def wait_for(self, expr: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns data (a scrape has landed) or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.3)

    def reload(self) -> None:
        """Ask Prometheus to reload its configuration and rules."""
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
