"""Prometheus rules: valid, unit-tested, labelled for routing, and built on metrics that exist.

``promtool check rules`` and ``promtool test rules`` run the shipped files as they are. The
static checks hold every alert to the runbook contract (severity, a class that is an anchor of
docs/operations.md, the key labels of its class, summary, description, runbook link) and every
alert to a firing and a not-firing unit test. The live checks feed a processor a short taxi run
with incidents: every metric a rule reads must be in its exposition, every rule must evaluate
cleanly in a real Prometheus, and the incidents must set the matching alerts off.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from _fed_stack import FedStack, fed_stack
from _tools import need

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning", "info"}
MODEL_CLASSES = {"accuracy-drop", "realized-accuracy-drop", "feedback-overdue"}
COMPONENT_CLASSES = {"constraint-hard", "constraint-soft", "drift", "corruption"}
PIPELINE_CLASSES = {"staleness"}  # a component, or a whole pipeline that stopped
PROCESSOR_CLASSES = {
    "processor-rejected-spans",
    "processor-queue-full",
    "processor-state-damaged",
    "processor-state-write",
    "processor-down",
}


def runbook_anchors() -> set[str]:
    runbook = (ROOT / "docs" / "operations.md").read_text().split("\n## Runbook\n", 1)[1]
    return set(re.findall(r'<a id="([^"]+)"></a>', runbook))


def rules() -> list[dict]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def recorded() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def unit_tests() -> list[dict]:
    return [t for path in RULE_TESTS for t in yaml.safe_load(path.read_text())["tests"]]


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects (quoted label values removed first)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(mlobs_[a-zA-Z0-9_]+|[a-z_]+:[a-zA-Z0-9_:]+|up)\b", bare))


# --- promtool -------------------------------------------------------------------------------


def test_promtool_accepts_the_rule_files() -> None:
    promtool = need("promtool")
    assert RULES, "no rule files"
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = need("promtool")
    assert RULE_TESTS, "no rule unit tests"
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT / "prometheus" / "tests",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_rule_tests_load_every_rule_file() -> None:
    for path in RULE_TESTS:
        loaded = {
            (path.parent / f).resolve() for f in yaml.safe_load(path.read_text())["rule_files"]
        }
        missing = [r.name for r in RULES if r.resolve() not in loaded]
        if "alert_rule_test" in path.read_text():
            assert missing == [], f"{path.name} does not load {missing}"


# --- the runbook contract -------------------------------------------------------------------


def test_every_alert_carries_the_routing_labels_and_annotations() -> None:
    anchors = runbook_anchors()
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for alert in alerts():
        name, labels, notes = alert["alert"], alert.get("labels", {}), alert.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, name
        assert labels.get("class") in anchors, f"{name}: class {labels.get('class')!r}"
        assert notes.get("runbook_url") == f"docs/operations.md#{labels['class']}", name
        assert notes.get("summary", "").strip() and notes.get("description", "").strip(), name
        assert name.startswith("Mlobs"), name


def test_every_runbook_class_has_an_alert() -> None:
    classes = {a["labels"]["class"] for a in alerts()}
    assert (
        runbook_anchors()
        & (MODEL_CLASSES | COMPONENT_CLASSES | PIPELINE_CLASSES | PROCESSOR_CLASSES)
        == runbook_anchors()
    )
    assert runbook_anchors() - classes == set()


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a not-firing test"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_firing_alerts_name_the_key_they_concern() -> None:
    classes = {a["alert"]: a["labels"]["class"] for a in alerts()}
    checked = 0
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            for exp in case.get("exp_alerts") or []:
                cls, labels = classes[case["alertname"]], exp["exp_labels"]
                assert labels["class"] == cls and labels["severity"] in SEVERITIES
                if cls in MODEL_CLASSES:
                    required = {"pipeline", "model"}
                elif cls in COMPONENT_CLASSES:
                    required = {"pipeline", "component"}
                elif cls in PIPELINE_CLASSES:
                    required = {"pipeline"}
                else:
                    required = {"job", "instance"}
                assert required <= set(labels), f"{case['alertname']}: {labels}"
                notes = exp.get("exp_annotations", {})
                assert notes.get("runbook_url") == f"docs/operations.md#{cls}", case
                checked += 1
    assert checked >= len(alerts())


def test_alerts_only_use_recording_rules_that_exist() -> None:
    known = recorded()
    for rule in rules():
        used = {n for n in metric_names(rule["expr"]) if ":" in n}
        assert used - known == set(), rule.get("alert") or rule.get("record")


def test_metric_name_extraction() -> None:
    expr = 'sum by (pipeline) (rate(mlobs_a_total{reason="mlobs_not_a_metric"}[5m])) / x:y:z'
    assert metric_names(expr) == {"mlobs_a_total", "x:y:z"}


# --- against a processor fed by the taxi scenario ---------------------------------------------


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> FedStack:
    return fed_stack(request)


def test_every_metric_the_rules_read_is_exported(stack: FedStack) -> None:
    used = {n for r in rules() for n in metric_names(r["expr"]) if n.startswith("mlobs_")}
    assert len(used) > 20
    assert sorted(used - stack.families) == []


def test_rules_evaluate_cleanly_in_prometheus(stack: FedStack) -> None:
    need("prometheus")
    prom = stack.prometheus
    assert prom is not None
    groups = prom.api("/api/v1/rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r.get("alert") or r["record"] for r in rules()}
    broken = {n: r.get("lastError") for n, r in loaded.items() if r["health"] != "ok"}
    assert broken == {}
    # Every recording rule finds its inputs in what the processor exports.
    empty = sorted(name for name in recorded() if not prom.query(name))
    assert empty == []


def test_incidents_set_off_their_alerts(stack: FedStack) -> None:
    need("prometheus")
    prom = stack.prometheus
    assert prom is not None
    active = prom.wait_for('ALERTS{alertname="MlobsFeedbackStuckSegment"}', timeout_s=10)
    assert active, "the stuck East Village settlements raised no alert"
    assert {a["metric"]["pattern"] for a in active} >= {"pickup_zone = East Village"}
    hard = prom.query('ALERTS{alertname="MlobsHardConstraintFailed"}')
    # The weather source went null: its columns break hard constraints in features.
    assert "features" in {a["metric"]["component"] for a in hard}
    assert {a["metric"]["column"] for a in hard} >= {"temperature_f", "precipitation_in"}
    rejected = prom.query('ALERTS{alertname="MlobsProcessorRejectingSpans",alertstate="firing"}')
    assert [a["metric"]["reason"] for a in rejected] == ["unknown_schema_version"]
    assert prom.query("instance:mlobs_processor_spans_rejected:ratio_rate5m > 0")
    # One burst against a full queue is counted, but only a queue that keeps filling alerts.
    assert prom.query('sum(mlobs_processor_queue_full_total{transport="http"}) > 0')
    assert not prom.query('ALERTS{alertname="MlobsProcessorQueueFull"}')
    # The processor is up and being scraped.
    assert not prom.query('ALERTS{alertname="MlobsProcessorDown"}')
