"""docs/operations.md keeps the anchors that alerts link to, and its links and paths resolve.

Alert annotations link to ``docs/operations.md#<class>``; a renamed heading would silently break
every such link, so the anchors are explicit and checked here, against the alert classes, the
Alertmanager example and whatever alert rules prometheus/rules/ holds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ROOT / "docs" / "operations.md"
ALERT_CLASSES = [
    "accuracy-drop",
    "realized-accuracy-drop",
    "constraint-hard",
    "constraint-soft",
    "drift",
    "corruption",
    "staleness",
    "feedback-overdue",
    "processor-rejected-spans",
    "processor-queue-full",
    "processor-state-damaged",
    "processor-state-write",
    "processor-down",
]


def text() -> str:
    return OPERATIONS.read_text()


def explicit_anchors() -> list[str]:
    return re.findall(r'<a id="([^"]+)"></a>', text())


def heading_slugs() -> set[str]:
    """GitHub's slugs: lower case, punctuation dropped, spaces to hyphens."""
    slugs = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text(), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def test_every_alert_class_has_an_explicit_runbook_anchor() -> None:
    anchors = explicit_anchors()
    assert len(anchors) == len(set(anchors)), "duplicate anchors"
    assert [a for a in ALERT_CLASSES if a not in anchors] == []
    runbook = text().split("\n## Runbook\n", 1)[1]
    for anchor in ALERT_CLASSES:
        # Each anchor sits right above its own section heading, inside the runbook.
        assert re.search(rf'<a id="{anchor}"></a>\n### {re.escape(anchor)}\n', runbook), anchor


def test_internal_links_resolve() -> None:
    targets = set(explicit_anchors()) | heading_slugs()
    links = re.findall(r"\]\(#([^)]+)\)", text())
    assert links, "the guide cross-links its sections"
    assert sorted({link for link in links if link not in targets}) == []


def test_files_named_in_the_overview_exist() -> None:
    table = text().split("\n## Deploy\n", 1)[0]
    paths = re.findall(r"^\| `([^`]+)`", table, flags=re.MULTILINE)
    paths += re.findall(r"^\| `[^`]+`, `([^`]+)`", table, flags=re.MULTILINE)
    assert len(paths) >= 8
    assert [p for p in paths if not (ROOT / p).exists()] == []


def test_alertmanager_classes_are_runbook_anchors() -> None:
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    matchers = [
        m
        for rule in config["inhibit_rules"]
        for m in rule["source_matchers"] + rule["target_matchers"]
        if m.startswith("class")
    ]
    assert matchers
    classes = set()
    for matcher in matchers:
        value = re.fullmatch(r'class=~?"([^"]+)"', matcher).group(1)
        classes.update(value.split("|"))
    assert classes - set(ALERT_CLASSES) == set()


def test_alert_rules_link_to_existing_runbook_sections() -> None:
    rules = [
        rule
        for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", [])
        for rule in group.get("rules", [])
        if "alert" in rule
    ]
    if not rules:
        pytest.skip("prometheus/rules/ holds no alert rules yet")
    anchors = set(explicit_anchors())
    broken = []
    for rule in rules:
        url = (rule.get("annotations") or {}).get("runbook_url", "")
        if "operations.md#" in url and url.rsplit("#", 1)[1] not in anchors:
            broken.append((rule["alert"], url))
        alert_class = (rule.get("labels") or {}).get("class")
        if alert_class is not None and alert_class not in anchors:
            broken.append((rule["alert"], f"class={alert_class}"))
    assert broken == []
