"""Build the provisioned Grafana dashboards of otel-mlobs as code.

    python grafana/build_dashboards.py          # rewrite grafana/dashboards/*.json
    python grafana/build_dashboards.py --check  # exit 1 if the committed JSON is out of date

The JSON files are generated, committed, and provisioned by grafana/provisioning/dashboards/.
Edit the panels here, run the script, commit both; tests/test_dashboards.py fails when the two
disagree and runs every panel's query against a Prometheus that scraped a real processor.

Every panel reads the datasource with uid ``mlobs-prometheus``. Ratios come from the recording
rules in prometheus/rules/ (sums of numerators over sums of denominators, right across shards);
panels only select and arrange. Template variables ``pipeline``, ``component`` and ``model``
are multi-valued label_values queries, so one dashboard serves any number of pipelines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "mlobs-prometheus"}
SCHEMA_VERSION = 39
TAG = "otel-mlobs"
GRID_WIDTH = 24

Panel = dict[str, Any]

# Selectors shared by the panels; the variables expand to regex alternations of their values.
P = 'pipeline=~"$pipeline"'
PC = f'{P}, component=~"$component"'
PM = f'{P}, model=~"$model"'
PCC = f'{PC}, column=~"$column"'


# --- building blocks --------------------------------------------------------------------------


def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> dict:
    """One PromQL query of a panel (refIds are assigned by the panel)."""
    out: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
    if instant or table:
        out["instant"] = True
        out["range"] = False
    if table:
        out["format"] = "table"
    return out


def _panel(kind: str, title: str, targets: Iterable[dict], description: str, w: int, h: int,
           **extra: Any) -> Panel:
    refs = "ABCDEFGHIJ"
    items = [{**t, "refId": refs[i]} for i, t in enumerate(targets)]
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": items,
        "gridPos": {"w": w, "h": h},
        **extra,
    }


def _defaults(unit: str | None, lo: float | None, hi: float | None,
              thresholds: list[tuple[float | None, str]] | None = None,
              custom: dict | None = None) -> dict:
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    out: dict[str, Any] = {"thresholds": {"mode": "absolute", "steps": steps}}
    if unit:
        out["unit"] = unit
    if lo is not None:
        out["min"] = lo
    if hi is not None:
        out["max"] = hi
    if custom:
        out["custom"] = custom
    return out


def timeseries(title: str, targets: Iterable[dict], description: str, *, unit: str | None = None,
               lo: float | None = None, hi: float | None = None, w: int = 12, h: int = 8,
               overrides: list[dict] | None = None, stack: bool = False) -> Panel:
    custom: dict[str, Any] = {"lineWidth": 1, "fillOpacity": 10 if stack else 0,
                              "showPoints": "never", "spanNulls": True}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return _panel(
        "timeseries", title, targets, description, w, h,
        fieldConfig={"defaults": _defaults(unit, lo, hi, custom=custom),
                     "overrides": overrides or []},
        options={"legend": {"displayMode": "table", "placement": "bottom",
                            "calcs": ["lastNotNull"]},
                 "tooltip": {"mode": "multi", "sort": "desc"}},
    )


def stat(title: str, targets: Iterable[dict], description: str, *, unit: str | None = None,
         thresholds: list[tuple[float | None, str]] | None = None, w: int = 6,
         h: int = 4, lo: float | None = None, hi: float | None = None) -> Panel:
    return _panel(
        "stat", title, [{**t, "instant": True, "range": False} for t in targets], description,
        w, h,
        fieldConfig={"defaults": _defaults(unit, lo, hi, thresholds), "overrides": []},
        options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                 "colorMode": "background", "graphMode": "none", "textMode": "auto",
                 "justifyMode": "auto", "orientation": "auto"},
    )


def bargauge(title: str, targets: Iterable[dict], description: str, *, unit: str | None = None,
             lo: float | None = 0, hi: float | None = None,
             thresholds: list[tuple[float | None, str]] | None = None,
             w: int = 12, h: int = 8) -> Panel:
    return _panel(
        "bargauge", title, [{**t, "instant": True, "range": False} for t in targets],
        description, w, h,
        fieldConfig={"defaults": _defaults(unit, lo, hi, thresholds), "overrides": []},
        options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                 "orientation": "horizontal", "displayMode": "gradient",
                 "showUnfilled": True, "valueMode": "color"},
    )


def table(title: str, targets: Iterable[dict], description: str, *,
          rename: dict[str, str] | None = None, hide: Iterable[str] = (),
          sort_by: str | None = None, descending: bool = True, merge: bool = False,
          unit: str | None = None, w: int = 24, h: int = 8) -> Panel:
    """An instant-query table: one row per series, its labels as columns."""
    hidden = {"Time": True, "__name__": True, "job": True, "instance": True,
              **{name: True for name in hide}}
    transformations: list[dict] = []
    if merge:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {
        "excludeByName": hidden, "renameByName": rename or {}, "indexByName": {}}})
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm",
                               "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": descending}]
    return _panel(
        "table", title, [{**t, "instant": True, "range": False, "format": "table"}
                         for t in targets], description, w, h,
        fieldConfig={"defaults": _defaults(unit, None, None), "overrides": []},
        options=options, transformations=transformations,
    )


def band(title: str, method: str, description: str, w: int = 8) -> Panel:
    """Accuracy of one method with its 95% band shaded between lower and upper."""
    sel = f'{PM}, method="{method}", window="$window"'
    return timeseries(
        title,
        [target(f"mlobs_model_accuracy{{{sel}}}", "{{model}}"),
         target(f"mlobs_model_accuracy_lower{{{sel}}}", "{{model}} lower"),
         target(f"mlobs_model_accuracy_upper{{{sel}}}", "{{model}} upper")],
        description, unit="percentunit", lo=0, hi=1, w=w,
        overrides=[
            {"matcher": {"id": "byRegexp", "options": ".* upper"},
             "properties": [{"id": "custom.fillBelowTo", "value": "lower"},
                            {"id": "custom.lineWidth", "value": 0},
                            {"id": "custom.fillOpacity", "value": 20}]},
            {"matcher": {"id": "byRegexp", "options": ".* lower"},
             "properties": [{"id": "custom.lineWidth", "value": 0}]},
        ],
    )


def query_var(name: str, label: str, query: str, *, multi: bool = True) -> dict:
    """A template variable filled by a ``label_values`` query, "All" selected by default."""
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"}, "definition": query,
        "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi, "regex": "",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "options": [], "hide": 0,
    }


def custom_var(name: str, label: str, values: list[str], default: str) -> dict:
    return {
        "name": name, "label": label, "type": "custom", "query": ",".join(values),
        "current": {"selected": True, "text": default, "value": default},
        "options": [{"selected": v == default, "text": v, "value": v} for v in values],
        "multi": False, "includeAll": False, "hide": 0,
    }


PIPELINE_VAR = query_var(
    "pipeline", "Pipeline", "label_values(mlobs_component_runs_total, pipeline)")
COMPONENT_VAR = query_var(
    "component", "Component",
    'label_values(mlobs_component_runs_total{pipeline=~"$pipeline"}, component)')
MODEL_VAR = query_var(
    "model", "Model",
    'label_values(mlobs_predictions_total{pipeline=~"$pipeline", set="live"}, model)')
COLUMN_VAR = query_var(
    "column", "Column",
    'label_values(mlobs_column_values_total{pipeline=~"$pipeline", component=~"$component"}, '
    "column)")
WINDOW_VAR = custom_var("window", "Window (event time)", ["1h", "1d", "7d"], "1d")
INSTANCE_VAR = query_var("instance", "Processor", 'label_values(up{job="mlobs"}, instance)')


def layout(panels: list[Panel]) -> list[Panel]:
    """Place panels left to right, wrapping at the grid width; number them."""
    x = y = row_h = 0
    out = []
    for i, panel in enumerate(panels, start=1):
        w, h = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if x + w > GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        out.append({"id": i, **panel, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x += w
        row_h = max(row_h, h)
    return out


def dashboard(uid: str, title: str, description: str, variables: list[dict],
              panels: list[Panel], *, time_from: str = "now-6h") -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": True,
                   "title": "otel-mlobs", "includeVars": True, "keepTime": True}],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": variables},
        "panels": layout(panels),
    }


RED_BELOW = [(None, "red"), (0.7, "orange"), (0.8, "green")]
RED_ABOVE = [(None, "green"), (1, "red")]


# --- the dashboards ---------------------------------------------------------------------------


def overview() -> dict:
    panels = [
        stat("Pipelines reporting",
             [target("count(count by (pipeline) (mlobs_component_runs_total))")],
             "Pipelines whose component runs this Prometheus has seen."),
        stat("Processors up", [target('sum(up{job="mlobs"})')],
             "Processor shards Prometheus scrapes successfully.",
             thresholds=[(None, "red"), (1, "green")]),
        stat("Alerts firing",
             [target('count(ALERTS{alertstate="firing", class!=""}) or vector(0)')],
             "otel-mlobs alerts firing now (any pipeline).", thresholds=RED_ABOVE),
        stat("Active findings", [target(f"sum(pipeline_component:mlobs_alerts_active:sum{{{P}}})")],
             "Checks of the selected pipelines failing on their latest run.",
             thresholds=RED_ABOVE),
        table("Alerts firing",
              [target('sum by (alertname, severity, class, pipeline, component, model) '
                      '(ALERTS{alertstate="firing", class!=""})')],
              "Firing alerts with their runbook class (docs/operations.md#<class>).",
              hide=["Value"], h=7),
        bargauge("Model accuracy (combined, last day of predictions)",
                 [target(f'max by (pipeline, model) (mlobs_model_accuracy{{{P}, method="combined", '
                         'window="1d"})', "{{pipeline}} / {{model}}")],
                 "Realized where labels arrived, label-free estimate elsewhere.",
                 unit="percentunit", lo=0, hi=1, thresholds=RED_BELOW, w=8),
        bargauge("Feedback overdue",
                 [target(f"pipeline_model:mlobs_model_overdue_predictions:ratio{{{P}}}",
                         "{{pipeline}} / {{model}}")],
                 "Share of the last 7 days' predictions waiting for feedback past the usual "
                 "delay.", unit="percentunit", lo=0, hi=1,
                 thresholds=[(None, "green"), (0.1, "orange"), (0.15, "red")], w=8),
        bargauge("Active findings by class",
                 [target("sum by (pipeline, class) "
                         f"(pipeline_component:mlobs_alerts_active:sum{{{P}}})",
                         "{{pipeline}} {{class}}")],
                 "Failing checks on the latest runs: hard and soft constraints, drift.",
                 thresholds=RED_ABOVE, w=8),
        timeseries("Component runs per hour",
                   [target(f"3600 * sum by (pipeline, component) "
                           f"(pipeline_component:mlobs_component_runs:rate1h{{{P}}})",
                           "{{pipeline}} / {{component}}")],
                   "Runs received per hour of wall-clock time, by component.", unit="short"),
        bargauge("Component lag behind its pipeline (event time)",
                 [target(f"pipeline_component:mlobs_component_lag_seconds{{{P}}}",
                         "{{pipeline}} / {{component}}")],
                 "How far each component's latest run trails the newest run of its pipeline.",
                 unit="s"),
        bargauge("Failed runs (last day)",
                 [target(f"pipeline_component:mlobs_component_run_failures:ratio_rate1d{{{P}}}",
                         "{{pipeline}} / {{component}}")],
                 "Share of runs that raised, per component.", unit="percentunit", hi=1,
                 thresholds=[(None, "green"), (0.01, "red")]),
        table("Top suspects",
              [target(f"topk(5, mlobs_root_cause_score{{{P}}})")],
              "Root causes ranked by the processor (path score; see Root causes).",
              rename={"Value": "score"}, sort_by="score", w=12),
    ]
    return dashboard("mlobs-overview", "otel-mlobs / Overview",
                     "Health of every pipeline: alerts, models, components, the processors.",
                     [PIPELINE_VAR], panels)


def model_performance() -> dict:
    panels = [
        timeseries("Accuracy by method (window $window)",
                   [target(f'mlobs_model_accuracy{{{PM}, window="$window"}}',
                           "{{model}} {{method}}")],
                   "Estimated: label-free. Realized: predictions joined with their feedback. "
                   "Combined: realized where labelled, estimated elsewhere.",
                   unit="percentunit", lo=0, hi=1, w=24),
        band("Estimated accuracy, 95% band", "estimated",
             "Label-free estimate of the window's predictions and its 95% band."),
        band("Realized accuracy, 95% band", "realized",
             "Accuracy of the window's predictions whose feedback arrived (Wilson band)."),
        band("Combined accuracy, 95% band", "combined",
             "Realized where labelled, estimated elsewhere, with its 95% band."),
        timeseries("Realized accuracy of recent labels (wall clock)",
                   [target(f"pipeline_model:mlobs_model_realized_accuracy:ratio_rate1h{{{PM}}}",
                           "{{model}} last hour"),
                    target(f"pipeline_model:mlobs_model_realized_accuracy:ratio_rate1d{{{PM}}}",
                           "{{model}} last day")],
                   "Correct over joined predictions among the feedback that arrived in the last "
                   "hour / day, summed over shards.", unit="percentunit", lo=0, hi=1),
        timeseries("Labelled predictions in the window",
                   [target(f"pipeline_model_window:mlobs_model_window_joined:sum{{{PM}}}",
                           "{{model}} joined {{window}}"),
                    target(f"sum by (model, window) (mlobs_model_window_predictions{{{PM}}})",
                           "{{model}} predicted {{window}}")],
                   "How much the realized figures rest on: joined vs all predictions per window.",
                   unit="short"),
        timeseries("Feedback delay",
                   [target(f"pipeline_model:mlobs_model_feedback_delay_seconds:p50_rate1d{{{PM}}}",
                           "{{model}} p50"),
                    target(f"pipeline_model:mlobs_model_feedback_delay_seconds:p95_rate1d{{{PM}}}",
                           "{{model}} p95"),
                    target(f"max by (model) (mlobs_model_feedback_delay_p95_seconds{{{PM}}})",
                           "{{model}} overdue after")],
                   "Event time from prediction to feedback of joined pairs (last day), and the "
                   "historical p95 after which a prediction counts as overdue.", unit="s"),
        timeseries("Waiting for feedback",
                   [target(f"sum by (model) (mlobs_model_pending_predictions{{{PM}}})",
                           "{{model}} pending"),
                    target(f"sum by (model) (mlobs_model_overdue_predictions{{{PM}}})",
                           "{{model}} overdue")],
                   "Predictions waiting for their feedback, and those past the usual delay.",
                   unit="short"),
        timeseries("Overdue share",
                   [target(f"pipeline_model:mlobs_model_overdue_predictions:ratio{{{PM}}}",
                           "{{model}}")],
                   "Overdue over the last 7 days' predictions (alert above 15%).",
                   unit="percentunit", lo=0),
        timeseries("Predictions and feedback per second",
                   [target(f"pipeline_model:mlobs_predictions:rate5m{{{PM}}}",
                           "{{model}} predictions"),
                    target(f"pipeline_model:mlobs_feedback:rate5m{{{PM}}}", "{{model}} feedback")],
                   "Live prediction and feedback rows received.", unit="short"),
        timeseries("Feedback that joined nothing",
                   [target(f"pipeline_model:mlobs_model_feedback_orphaned:ratio_rate1h{{{PM}}}",
                           "{{model}} orphaned share"),
                    target(f"sum by (model, reason) (rate(mlobs_model_unjoined_predictions_total"
                           f"{{{PM}}}[$__rate_interval]))", "{{model}} unjoined {{reason}}/s")],
                   "Feedback whose prediction never arrived; predictions that left the join "
                   "unanswered.", unit="short"),
        timeseries("Score distribution (live)",
                   [target(f"sum by (le) (rate(mlobs_prediction_score_bucket"
                           f"{{{PM}, set=\"live\"}}[$__rate_interval]))", "{{le}}")],
                   "Predicted scores received per second by histogram bucket.",
                   unit="short", stack=True),
    ]
    return dashboard("mlobs-model", "otel-mlobs / Model performance",
                     "Estimated, realized and combined accuracy with their bands; feedback "
                     "delay and the join.", [PIPELINE_VAR, MODEL_VAR, WINDOW_VAR], panels,
                     time_from="now-24h")


def data_quality() -> dict:
    panels = [
        table("Active findings",
              [target(f"sum by (pipeline, component, class, method, severity, column) "
                      f"(mlobs_alerts_active{{{PC}}})")],
              "Checks failing on the latest run, by class (hard, soft, drift) and method.",
              rename={"Value": "alerts"}, sort_by="severity", descending=False, h=7),
        timeseries("Constraint violations (share of evaluations, last day)",
                   [target(f"pipeline_component:mlobs_constraint_violations:ratio_rate1d{{{PC}}}",
                           "{{component}} {{class}}")],
                   "Violated over evaluated constraints per component and class.",
                   unit="percentunit", lo=0),
        timeseries("Rows per second by dataset",
                   [target(f"sum by (component, role, dataset) (rate(mlobs_dataset_rows_total"
                           f"{{{PC}}}[$__rate_interval]))", "{{component}} {{role}} {{dataset}}")],
                   "Rows each component read (input) or wrote (output).", unit="short"),
        timeseries("Null share (latest run)",
                   [target(f"mlobs_column_null_ratio{{{PCC}}} > 0",
                           "{{component}} {{dataset}}.{{column}}")],
                   "Share of nulls of each column in its latest run (columns with nulls only).",
                   unit="percentunit", lo=0, hi=1),
        timeseries("Null share (values of the last hour)",
                   [target(f"pipeline_component_column:mlobs_column_null_ratio:ratio_rate1h{{{PCC}}}"
                           " > 0", "{{component}} {{dataset}}.{{column}}")],
                   "Nulls over values received in the last hour (counters, summed over shards).",
                   unit="percentunit", lo=0, hi=1),
        timeseries("Mean (latest run)",
                   [target(f"mlobs_column_mean{{{PCC}}}", "{{component}} {{dataset}}.{{column}}")],
                   "Mean of each numeric column in its latest run."),
        timeseries("Standard deviation (latest run)",
                   [target(f"mlobs_column_std{{{PCC}}}", "{{component}} {{dataset}}.{{column}}")],
                   "Population standard deviation of each numeric column in its latest run."),
        timeseries("Drift classifier AUC",
                   [target(f"mlobs_drift_auc{{{PC}}}", "{{component}} {{role}} {{dataset}}")],
                   "How well a classifier tells the latest run from the reference (0.5: no "
                   "drift).", lo=0.4, hi=1),
        bargauge("Drift effect size: Wasserstein (latest run)",
                 [target(f"topk(15, mlobs_column_wasserstein{{{PCC}}})",
                         "{{component}} {{dataset}}.{{column}}")],
                 "Earth mover's distance of each numeric column from its reference, in "
                 "reference standard deviations.", thresholds=[(None, "green"), (0.1, "orange"),
                                                               (0.25, "red")]),
        bargauge("Drift effect size: PSI (latest run)",
                 [target(f"topk(15, mlobs_column_psi{{{PCC}}})",
                         "{{component}} {{dataset}}.{{column}}")],
                 "Population stability index of each column against its reference.",
                 thresholds=[(None, "green"), (0.1, "orange"), (0.25, "red")]),
        bargauge("Drift effect size: Jensen-Shannon (latest run)",
                 [target(f"topk(15, mlobs_column_jensen_shannon{{{PCC}}})",
                         "{{component}} {{dataset}}.{{column}}")],
                 "Jensen-Shannon distance of each column's distribution from its reference.",
                 hi=1, thresholds=[(None, "green"), (0.1, "orange"), (0.2, "red")]),
        bargauge("Joint distribution: log-likelihood lost (nats per row)",
                 [target(f"topk(15, pipeline_component_column:mlobs_column_likelihood_drop:nats"
                         f"{{{PCC}}})", "{{component}} {{dataset}}.{{column}}")],
                 "How much less each column fits its neighbours than in the reference "
                 "(sliding window of runs).", lo=None),
        timeseries("Run duration p95",
                   [target(f"histogram_quantile(0.95, sum by (component, le) (rate("
                           f"mlobs_component_run_duration_seconds_bucket{{{PC}}}[$__rate_interval])))",
                           "{{component}}")],
                   "Wall-clock duration of component runs.", unit="s"),
        table("User checks (last day)",
              [target(f"sum by (pipeline, component, check, phase, outcome) (increase("
                      f"mlobs_component_checks_total{{{PC}}}[1d]))")],
              "Outcomes of the before/after checks components declare.",
              rename={"Value": "count"}, w=12),
    ]
    return dashboard("mlobs-data", "otel-mlobs / Data quality and drift",
                     "Per component and column: constraints, nulls, moments, drift, likelihood.",
                     [PIPELINE_VAR, COMPONENT_VAR, COLUMN_VAR], panels)


def root_causes() -> dict:
    panels = [
        table("Ranked suspects",
              [target(f"mlobs_root_cause_score{{{P}}}")],
              "Components and column groups ranked by path score phi: error scores multiplied "
              "along lineage towards the model's outputs (`mlobs suspects` for evidence).",
              rename={"Value": "score"}, sort_by="score", w=12),
        bargauge("Column error score zeta (top 15)",
                 [target(f"topk(15, mlobs_column_error_score{{{PC}}})",
                         "{{component}} {{dataset}}.{{column}}")],
                 "1 at the alarm threshold: corruption or staleness of the latest run.",
                 thresholds=[(None, "green"), (0.9, "orange"), (1, "red")]),
        table("Co-erroneous column groups",
              [target(f"mlobs_column_group{{{PC}}}")],
              "Columns that go wrong together, grouped; a group is one suspect.",
              hide=["Value"], w=12),
        bargauge("Corruption score (top 15)",
                 [target(f"topk(15, mlobs_column_corruption_score{{{PC}}})",
                         "{{component}} {{dataset}}.{{column}}")],
                 "Standard deviations of the column's scalar estimates from their rolling "
                 "baseline (alarm at 4).", thresholds=[(None, "green"), (4, "red")]),
        bargauge("Staleness score (top 15)",
                 [target(f"topk(15, mlobs_column_staleness_score{{{PC}}})",
                         "{{component}} {{dataset}}.{{column}}")],
                 "Orders of magnitude by which run-to-run variation fell below its history "
                 "(alarm at 2.5).", thresholds=[(None, "green"), (2.5, "red")]),
        table("Latest run read stale inputs",
              [target(f"mlobs_run_stale{{{PC}}}")],
              "1 when a component's latest run read inputs older than allowed or superseded.",
              rename={"Value": "stale"}, w=12),
        table("Stuck feedback patterns",
              [target(f"mlobs_stuck_feedback_pattern_lift{{{PM}}}"),
               target(f"mlobs_stuck_feedback_pattern_coverage{{{PM}}}")],
              "Segments whose predictions are overdue far more often than usual for their age "
              "(lift) and how much of the overdue they explain (coverage).",
              merge=True, rename={"Value #A": "lift", "Value #B": "coverage"},
              sort_by="rank", descending=False),
        timeseries("Overdue in the stuck-feedback sample",
                   [target(f"sum by (model) (mlobs_stuck_feedback_overdue_sampled{{{PM}}}) / "
                           f"sum by (model) (mlobs_stuck_feedback_sampled{{{PM}}})", "{{model}}")],
                   "Share of sampled predictions overdue for feedback.",
                   unit="percentunit", lo=0),
        timeseries("Late feedback per second",
                   [target(f"sum by (model) (rate(mlobs_stuck_feedback_late_total{{{PM}}}"
                           "[$__rate_interval]))", "{{model}}")],
                   "Feedback that arrived after its prediction was already overdue.",
                   unit="short"),
        stat("Flagged outputs", [target(f"sum(mlobs_flagged_outputs{{{P}}})")],
             "Outputs people flagged as bad (`mlobs flag`); `mlobs review` ranks the runs "
             "behind them."),
        stat("Lineage cycles", [target(f"sum(mlobs_lineage_cycles{{{P}}})")],
             "Cycles in the declared lineage (ignored for ranking).", thresholds=RED_ABOVE),
    ]
    return dashboard("mlobs-root-causes", "otel-mlobs / Root causes",
                     "What to fix first: ranked suspects, column groups, stuck feedback.",
                     [PIPELINE_VAR, COMPONENT_VAR, MODEL_VAR], panels)


def processor() -> dict:
    inst = 'instance=~"$instance"'
    panels = [
        stat("Up", [target(f'up{{job="mlobs", {inst}}}', "{{instance}}")],
             "1 while Prometheus scrapes the processor.", thresholds=[(None, "red"), (1, "green")]),
        stat("Spans rejected (share, 5m)",
             [target(f"max(instance:mlobs_processor_spans_rejected:ratio_rate5m{{{inst}}})")],
             "Rejected over received spans; any is data lost.", unit="percentunit",
             thresholds=[(None, "green"), (0.000001, "red")]),
        stat("Queue use",
             [target(f"max(instance:mlobs_processor_queue_utilization:ratio{{{inst}}})")],
             "Ingest queue depth over capacity.", unit="percentunit", lo=0, hi=1,
             thresholds=[(None, "green"), (0.5, "orange"), (0.8, "red")]),
        stat("Analyzer instances",
             [target(f"sum(mlobs_processor_analyzer_instances{{{inst}}})")],
             "Analyzer instances, one per key (pipeline, component, model)."),
        timeseries("Spans per second",
                   [target(f"instance:mlobs_processor_spans_received:rate5m{{{inst}}}",
                           "{{instance}} received"),
                    target(f"instance:mlobs_processor_spans_accepted:rate5m{{{inst}}}",
                           "{{instance}} accepted"),
                    target(f"sum by (instance, reason) (rate(mlobs_processor_spans_rejected_total"
                           f"{{{inst}}}[$__rate_interval]))", "{{instance}} rejected {{reason}}"),
                    target(f"sum by (instance) (rate(mlobs_processor_spans_ignored_total"
                           f"{{{inst}}}[$__rate_interval]))", "{{instance}} ignored")],
                   "Received, decoded into records, rejected as malformed, or ignored (no mlobs "
                   "attributes).", unit="short"),
        timeseries("Requests per second by status",
                   [target(f"sum by (instance, transport, code) (rate("
                           f"mlobs_processor_requests_total{{{inst}}}[$__rate_interval]))",
                           "{{instance}} {{transport}} {{code}}")],
                   "Export requests answered, by transport and status code.", unit="short"),
        timeseries("Ingest queue",
                   [target(f"mlobs_processor_queue_depth{{{inst}}}", "{{instance}} depth"),
                    target(f"mlobs_processor_queue_capacity{{{inst}}}", "{{instance}} capacity")],
                   "Export requests waiting for the worker.", unit="short"),
        timeseries("Refused: queue full",
                   [target(f"sum by (instance, transport) (rate(mlobs_processor_queue_full_total"
                           f"{{{inst}}}[$__rate_interval]))",
                           "{{instance}} {{transport}} requests"),
                    target(f"sum by (instance, transport) (rate(mlobs_processor_spans_refused_total"
                           f"{{{inst}}}[$__rate_interval]))", "{{instance}} {{transport}} spans")],
                   "Requests and spans refused while the queue was full (clients retry).",
                   unit="short"),
        timeseries("Processing latency",
                   [target(f"instance:mlobs_processor_processing_latency_seconds:p99_rate5m{{{inst}}}",
                           "{{instance}} p99"),
                    target(f"histogram_quantile(0.5, sum by (instance, le) (rate("
                           f"mlobs_processor_processing_latency_seconds_bucket{{{inst}}}"
                           "[$__rate_interval])))", "{{instance}} p50")],
                   "From a request's arrival to its records applied to the analyzers.", unit="s"),
        timeseries("Records applied per second",
                   [target(f"instance:mlobs_processor_records:rate5m{{{inst}}}",
                           "{{instance}} {{type}}")],
                   "Typed records routed to analyzers, by type.", unit="short", stack=True),
        timeseries("Analyzer errors and SDK shedding",
                   [target(f"sum by (instance, analyzer) (rate("
                           f"mlobs_processor_analyzer_errors_total{{{inst}}}[$__rate_interval])) "
                           f"or sum by (instance) (rate(mlobs_processor_sdk_shed_total{{{inst}}}"
                           "[$__rate_interval])) * 0", "{{instance}} errors {{analyzer}}"),
                    target(f"sum by (instance) (rate(mlobs_processor_sdk_shed_total{{{inst}}}"
                           "[$__rate_interval]))", "{{instance}} shed by producers")],
                   "Analyzer failures (logged by the processor) and items producers reported "
                   "dropping before export.", unit="short"),
        table("Build", [target(f"mlobs_processor_build_info{{{inst}}}")],
              "Processor versions running.", hide=["Value"], w=12, h=5),
    ]
    return dashboard("mlobs-processor", "otel-mlobs / Processor",
                     "Self-monitoring of the processor shards: intake, queue, latency, errors.",
                     [INSTANCE_VAR], panels, time_from="now-1h")


DASHBOARDS = {
    "overview.json": overview,
    "model-performance.json": model_performance,
    "data-quality.json": data_quality,
    "root-causes.json": root_causes,
    "processor.json": processor,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that the committed JSON matches; exit 1 if not")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        OUT.mkdir(exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python grafana/build_dashboards.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
