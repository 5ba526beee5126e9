"""The example Alertmanager configuration is valid and routes alerts by severity.

``amtool`` (Debian's prometheus-alertmanager package) checks the file and resolves the route
of sample alerts; without it those tests skip, or fail when MLOBS_REQUIRE_PROMETHEUS=1 (CI).
The structural checks below run everywhere.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from _tools import need

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
KEY_LABELS = ["pipeline", "component", "model"]


def config() -> dict[str, Any]:
    with CONFIG.open() as fh:
        return yaml.safe_load(fh)


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("amtool"), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.prometheus
def test_amtool_accepts_the_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical"], "pager"),
        (["severity=warning"], "chat"),
        (["severity=info"], "null"),
        ([], "chat"),  # an alert without severity still reaches a person
    ],
)
def test_alerts_route_by_severity(labels: list[str], receiver: str) -> None:
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        "alertname=MlobsAccuracyDrop",
        "pipeline=taxi",
        "model=fare",
        *labels,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [receiver]


def test_grouping_is_per_alert_and_key() -> None:
    route = config()["route"]
    assert route["group_by"] == ["alertname", *KEY_LABELS]
    for child in route["routes"]:
        assert "group_by" not in child, "children inherit the grouping"


def test_severity_routes_and_receivers() -> None:
    cfg = config()
    receivers = {r["name"]: r for r in cfg["receivers"]}
    by_severity = {}
    for child in cfg["route"]["routes"]:
        (matcher,) = child["matchers"]
        assert matcher.startswith('severity="') and matcher.endswith('"')
        by_severity[matcher[len('severity="') : -1]] = child["receiver"]
    assert by_severity == {"critical": "pager", "warning": "chat", "info": "null"}
    assert set(by_severity.values()) | {cfg["route"]["receiver"]} == set(receivers)
    assert set(receivers["null"]) == {"name"}, "the null receiver notifies nobody"
    # The example never sends anything anywhere until someone fills in real integrations.
    for name in ("pager", "chat"):
        for hook in receivers[name]["webhook_configs"]:
            assert urlparse(hook["url"]).hostname.endswith(".invalid")


def test_critical_inhibits_warning_for_the_same_key() -> None:
    rules = config()["inhibit_rules"]
    severity_rule = next(r for r in rules if r["source_matchers"] == ['severity="critical"'])
    assert severity_rule["target_matchers"] == ['severity="warning"']
    assert severity_rule["equal"] == KEY_LABELS
    for rule in rules:
        assert rule["source_matchers"] and rule["target_matchers"]
        assert not set(rule) & {"source_match", "target_match"}, (
            "use matchers, not deprecated match"
        )
