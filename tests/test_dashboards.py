"""Grafana dashboards: well-formed, generated from grafana/build_dashboards.py, and every query
returns data from a Prometheus that scraped a processor fed by the taxi scenario.

Variables are substituted the way Grafana does with "All" selected: each ``label_values``
variable is asked of Prometheus (so the variable queries are tested too) and becomes the regex
alternation of its values. A panel that reads a metric the processor does not export, or a
recording rule that does not exist, fails both the name check and the data check.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _fed_stack import FedStack, fed_stack
from _tools import need

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "mlobs-prometheus"}
GRID = 24
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
NOT_MLOBS = {"up", "ALERTS"}  # series Prometheus itself makes


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def targets(board: dict) -> list[tuple[dict, dict]]:
    return [(panel, t) for panel in board["panels"] for t in panel.get("targets", [])]


def variable_query(var: dict) -> str:
    query = var.get("query")
    return query["query"] if isinstance(query, dict) else str(query or "")


def recorded() -> set[str]:
    return {
        rule["record"]
        for path in (ROOT / "prometheus" / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def series_names(expr: str) -> set[str]:
    """Series an expression reads: mlobs_*, recording rules (a:b:c), up, ALERTS."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    names = set(re.findall(r"\b(mlobs_\w+|[a-z_]+:[\w:]+)\b", bare))
    return names | {n for n in NOT_MLOBS if re.search(rf"\b{n}\b", bare)}


def unknown_names(board: dict, exported: set[str], rules: set[str]) -> set[str]:
    """Series names the dashboard reads that neither the processor nor the rules provide."""
    exprs = [t["expr"] for _, t in targets(board)]
    exprs += [variable_query(v) for v in board["templating"]["list"] if v["type"] == "query"]
    used = set().union(*(series_names(e) for e in exprs))
    return {n for n in used if n not in exported and n not in rules and n not in NOT_MLOBS}


# --- structure --------------------------------------------------------------------------------


def test_the_committed_json_is_what_the_generator_builds() -> None:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", ROOT / "grafana" / "build_dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert sorted(rendered) == sorted(dashboards())
    stale = [n for n, text in rendered.items() if (DASHBOARD_DIR / n).read_text() != text]
    assert stale == [], "run python grafana/build_dashboards.py and commit the JSON"


def test_the_five_dashboards_exist_with_their_variables() -> None:
    boards = {b["uid"]: b for b in dashboards().values()}
    assert set(boards) == {
        "mlobs-overview",
        "mlobs-model",
        "mlobs-data",
        "mlobs-root-causes",
        "mlobs-processor",
    }
    names = {uid: [v["name"] for v in b["templating"]["list"]] for uid, b in boards.items()}
    assert names["mlobs-model"][:2] == ["pipeline", "model"]
    assert names["mlobs-data"][:2] == ["pipeline", "component"]
    assert names["mlobs-root-causes"] == ["pipeline", "component", "model"]
    model = json.dumps(boards["mlobs-model"])
    for method in ("estimated", "realized", "combined"):
        assert f'method=\\"{method}\\"' in model
    assert "mlobs_model_accuracy_lower" in model and "mlobs_model_accuracy_upper" in model
    assert "feedback_delay" in model


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_structure(name: str) -> None:
    board = dashboards()[name]
    assert re.fullmatch(r"mlobs-[a-z-]+", board["uid"]) and len(board["uid"]) <= 40
    assert board["title"].startswith("otel-mlobs / ")
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert set(pos) == {"x", "y", "w", "h"} and all(isinstance(v, int) for v in pos.values())
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID and pos["w"] > 0 and pos["h"] > 0
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["title"].strip() and panel.get("description", "").strip()
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), panel["title"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE
            assert re.fullmatch(r"label_values\(.+, *\w+\)", variable_query(var)), var["name"]


def test_unknown_series_are_caught() -> None:
    board = {
        "panels": [
            {
                "targets": [
                    {"expr": 'rate(mlobs_no_such_total{a="mlobs_x"}[5m])'},
                    {"expr": "job:not_recorded:ratio + up"},
                ]
            }
        ],
        "templating": {"list": []},
    }
    assert unknown_names(board, {"mlobs_other"}, set()) == {
        "mlobs_no_such_total",
        "job:not_recorded:ratio",
    }


# --- against the fed processor and Prometheus -------------------------------------------------


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> FedStack:
    return fed_stack(request)


def test_every_series_a_dashboard_reads_exists(stack: FedStack) -> None:
    rules = recorded()
    missing = {
        name: sorted(unknown_names(b, stack.families, rules)) for name, b in dashboards().items()
    }
    assert {k: v for k, v in missing.items() if v} == {}


def resolve_variables(board: dict, prom: Any) -> dict[str, str]:
    """Variable name -> what Grafana substitutes with the default selection."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        if var["type"] == "custom":
            values[var["name"]] = var["current"]["value"]
            continue
        match = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable_query(var))
        assert match, var["name"]
        selector = substitute(match.group(1), values)
        found = prom.api(f"/api/v1/label/{match.group(2)}/values", **{"match[]": selector})
        assert found, f"variable {var['name']} has no values ({selector})"
        escaped = [re.escape(v).replace("\\", "\\\\") for v in found]
        values[var["name"]] = "(" + "|".join(escaped) + ")" if var.get("multi") else found[0]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **{f"${k}": v for k, v in values.items()}}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unresolved variable in {expr}"
    return expr


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_panel_query_returns_data(stack: FedStack, name: str) -> None:
    need("prometheus")
    prom = stack.prometheus
    assert prom is not None
    board = dashboards()[name]
    values = resolve_variables(board, prom)
    empty = []
    for panel, t in targets(board):
        expr = substitute(t["expr"], values)
        if not prom.query(expr):
            empty.append(f"{panel['title']} [{t['refId']}]: {expr}")
    assert empty == []
