"""``mlobs report``: one self-contained HTML page for people without Grafana.

    mlobs report                                   # asks http://127.0.0.1:9464, writes report.html
    mlobs report --url http://mlobs:9464 -o /tmp/taxi.html --pipeline taxi_tips

The page is built from the processor's JSON API (``--url``, else ``MLOBS_URL``; ``--token``, else
``MLOBS_TOKEN``, when the processor has auth on) and holds:

* per model, estimated, realized and combined accuracy per day of predictions, with 95% bands,
  and how many predictions and labels each day had;
* the alert timeline of the diagnose analyzers (constraints, likelihood, drift): when each
  alert started, whether it is still active, and what it says;
* the ranked root-cause suspects of every pipeline with their evidence;
* where feedback is stuck: overdue predictions and the patterns that explain them.

Charts are inline SVG; the file fetches nothing (no scripts, fonts or images), so it can be
mailed or attached to a ticket. Exit codes: 0 written, 1 the processor refused a query or the
file could not be written, 3 the processor is unreachable (as the other query commands).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from otel_mlobs import report_plots as plots
from otel_mlobs.query_cli import (
    EXIT_REFUSED,
    ROOT_CAUSES,
    STUCK_FEEDBACK,
    Client,
    QueryError,
    add_connection_options,
    client_from_args,
)

DEFAULT_OUTPUT = "report.html"
MODEL_ACCURACY = "model_accuracy"
DIAGNOSE = ("constraints", "likelihood", "drift")
METHODS = ("estimated", "realized", "combined")
MAX_TIMELINE = 40
MAX_SUSPECTS = 10


@dataclass
class ModelView:
    """What the model_accuracy analyzer says about one model."""

    pipeline: str
    model: str
    daily: list[dict[str, Any]]
    windows: dict[str, Any]
    feedback_delay_p95_s: float | None


@dataclass
class ReportData:
    """Everything the page shows, gathered before rendering."""

    url: str
    generated_at: float
    status: dict[str, Any]
    models: list[ModelView] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    suspects: list[dict[str, Any]] = field(default_factory=list)
    stuck: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # queries that failed, shown on the page


# --- gathering --------------------------------------------------------------------------------


def collect(client: Client, pipeline: str | None = None) -> ReportData:
    """Ask the processor for everything the report shows.

    An unreachable processor raises :class:`QueryError` (code 3); a single analyzer that
    refuses a query is noted in ``problems`` and the rest of the report still comes out.
    """
    data = ReportData(url=client.url, generated_at=time.time(), status=client.get("/api/v1/status"))
    listing = client.get("/api/v1/analyzers").get("analyzers", [])
    keys = {entry["name"]: entry.get("keys", []) for entry in listing}
    known = sorted({k.get("pipeline", "") for ks in keys.values() for k in ks})
    if pipeline is not None and pipeline not in known:
        raise QueryError(f"unknown pipeline {pipeline!r}; known pipelines: {known}")

    def wanted(analyzer: str) -> list[dict[str, str]]:
        return [
            k for k in keys.get(analyzer, []) if pipeline is None or k.get("pipeline") == pipeline
        ]

    def ask(analyzer: str, key: dict[str, str], **params: Any) -> dict[str, Any] | None:
        try:
            return client.query(analyzer, key, **params)
        except QueryError as exc:
            if exc.code != EXIT_REFUSED:
                raise
            data.problems.append(f"{analyzer} {key}: {exc}")
            return None

    for key in wanted(MODEL_ACCURACY):
        answer = ask(MODEL_ACCURACY, key, daily="true")
        if answer is not None:
            data.models.append(
                ModelView(
                    key.get("pipeline", ""),
                    key.get("model", ""),
                    answer.get("daily", []),
                    answer.get("windows", {}),
                    answer.get("feedback_delay_p95_s"),
                )
            )
    seen: set[str] = set()
    for analyzer in DIAGNOSE:
        for key in wanted(analyzer):
            answer = ask(analyzer, key, constraints="false")
            for alert in (answer or {}).get("alerts", []) + (answer or {}).get("recent_alerts", []):
                if alert.get("id") not in seen:
                    seen.add(alert.get("id"))
                    data.alerts.append(alert)
    data.alerts.sort(key=lambda a: (a.get("first_event_time") or 0, a.get("component", "")))
    for key in wanted(ROOT_CAUSES):
        answer = ask(ROOT_CAUSES, key, view="suspects", k=MAX_SUSPECTS)
        if answer is not None:
            data.suspects.append(answer)
    for key in wanted(STUCK_FEEDBACK):
        answer = ask(STUCK_FEEDBACK, key)
        if answer is not None:
            data.stuck.append(answer)
    return data


# --- rendering --------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;
  max-width:1000px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}.meta,.note{color:#666;font-size:12px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sev-critical{color:#b00020;font-weight:600}.sev-warning{color:#c25e00}.sev-info{color:#1f5fa0}
.plot{max-width:100%;height:auto;display:block;margin:4px 0 8px}
.plot .frame{stroke:#bbb}.plot .grid{stroke:#eee}.plot text{font-size:11px;fill:#555}
.plot .rowlabel{fill:#222}.plot .legend{fill:#222}
.problems{background:#fff4e5;border:1px solid #f0c27b;padding:6px 10px}
"""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _when(ts: float | None, with_time: bool = True) -> str:
    if ts is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d"
    return datetime.fromtimestamp(ts, tz=UTC).strftime(fmt)


def _estimate(window: dict[str, Any], method: str) -> dict[str, Any] | None:
    est = window.get(method)
    return est if isinstance(est, dict) and est.get("value") is not None else None


def _band_text(est: dict[str, Any] | None) -> str:
    if est is None:
        return "-"
    return f"{_pct(est['value'])} ({_pct(est.get('lower'))}&ndash;{_pct(est.get('upper'))})"


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """Rows of already-escaped cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(data: ReportData) -> str:
    rows = []
    for m in data.models:
        day = m.windows.get("1d", {})
        rows.append(
            [
                escape(m.pipeline),
                escape(m.model),
                _band_text(_estimate(day, "combined")),
                _band_text(_estimate(day, "realized")),
                _band_text(_estimate(day, "estimated")),
                f"{int(day.get('joined') or 0):,} / {int(day.get('predictions') or 0):,}",
            ]
        )
    active = [a for a in data.alerts if a.get("active")]
    by_severity = {
        s: sum(1 for a in active if a.get("severity") == s) for s in ("critical", "warning", "info")
    }
    top = [
        f"{escape(s['pipeline'])}: {escape(s['suspects'][0]['component'])} / "
        f"{escape(s['suspects'][0]['group'])}"
        for s in data.suspects
        if s.get("suspects")
    ]
    parts = ["<h2>Summary</h2>"]
    if rows:
        parts.append(
            _table(
                [
                    "pipeline",
                    "model",
                    "combined (last day)",
                    "realized",
                    "estimated",
                    "labelled / predictions",
                ],
                rows,
            )
        )
    else:
        parts.append('<p class="note">No model has reported predictions yet.</p>')
    parts.append(
        f'<p>Active alerts: <span class="sev-critical">{by_severity["critical"]} critical'
        f'</span>, <span class="sev-warning">{by_severity["warning"]} warning</span>, '
        f'<span class="sev-info">{by_severity["info"]} info</span>. Top suspect: '
        f"{'; '.join(top) or 'none'}.</p>"
    )
    return "".join(parts)


def _accuracy_section(data: ReportData) -> str:
    parts = [
        "<h2>Accuracy over time</h2>",
        '<p class="note">Per UTC day of prediction time. Realized: predictions whose '
        "feedback arrived. Estimated: label-free. Combined: realized where labelled, "
        "estimated elsewhere. Shaded: 95% bands.</p>",
    ]
    if not data.models:
        parts.append('<p class="note">No model data.</p>')
    for m in data.models:
        parts.append(
            f'<h3>{escape(m.model)} <span class="meta">pipeline {escape(m.pipeline)}</span></h3>'
        )
        days = [d for d in m.daily if d.get("predictions")]
        xs = [float(d["day_start"]) for d in days]
        series = []
        for method in METHODS:
            ests = [d.get(method) or {} for d in days]
            if any(e.get("value") is not None for e in ests):
                series.append(
                    plots.Series(
                        method,
                        plots.PALETTE[method],
                        xs,
                        [e.get("value") for e in ests],
                        [e.get("lower") for e in ests],
                        [e.get("upper") for e in ests],
                    )
                )
        if not series:
            parts.append(
                '<p class="note">No accuracy figure yet: no labels arrived and no '
                "reference set to estimate from.</p>"
            )
            continue
        parts.append(plots.line_chart(series, label=f"accuracy of {m.model} per day", y_unit="%"))
        volume = [
            plots.Series(
                "predictions", "#7f7f7f", xs, [float(d.get("predictions") or 0) for d in days]
            ),
            plots.Series(
                "labelled",
                plots.PALETTE["realized"],
                xs,
                [float(d.get("joined") or 0) for d in days],
            ),
        ]
        parts.append(
            plots.line_chart(volume, label=f"predictions and labels of {m.model}", height=170)
        )
        if m.feedback_delay_p95_s is not None:
            parts.append(
                f'<p class="note">Feedback arrives within '
                f"{m.feedback_delay_p95_s / 3600:.1f} h for 95% of labelled "
                "predictions.</p>"
            )
    return "".join(parts)


def _alerts_section(data: ReportData) -> str:
    parts = ["<h2>Alert timeline</h2>"]
    if not data.alerts:
        return "".join(parts) + '<p class="note">No alert was raised.</p>'
    shown = sorted(
        data.alerts, key=lambda a: (not a.get("active"), -(a.get("first_event_time") or 0))
    )[:MAX_TIMELINE]
    shown.sort(key=lambda a: (a.get("first_event_time") or 0, a.get("component", "")))
    ends = [a.get("resolved_event_time") or a.get("last_event_time") or 0 for a in data.alerts]
    now = max([*ends, *(a.get("first_event_time") or 0 for a in data.alerts)])
    bars = []
    for a in shown:
        cols = ",".join(a.get("columns", [])) or "*"
        label = f"{a.get('component', '')}/{a.get('dataset', '')}: {cols} ({a.get('check', '')})"
        end = (
            None if a.get("active") else (a.get("resolved_event_time") or a.get("last_event_time"))
        )
        title = (
            f"{a.get('severity')} {a.get('class')} ({a.get('method')}): {a.get('explanation', '')}"
        )
        bars.append(
            plots.Bar(
                label,
                float(a.get("first_event_time") or now),
                None if end is None else float(end),
                plots.PALETTE.get(a.get("severity", ""), "#888"),
                title,
            )
        )
    parts.append(plots.timeline(bars, now=now, label="alert timeline"))
    if len(data.alerts) > len(shown):
        parts.append(
            f'<p class="note">{len(data.alerts) - len(shown)} older resolved alerts not drawn.</p>'
        )
    rows = [
        [
            _when(a.get("first_event_time")),
            "active" if a.get("active") else f"resolved {_when(a.get('resolved_event_time'))}",
            f'<span class="sev-{escape(a.get("severity", ""))}">'
            f"{escape(a.get('severity', ''))}</span>",
            escape(f"{a.get('class', '')} / {a.get('method', '')}"),
            escape(a.get("component", "")),
            escape(f"{a.get('role', '')} {a.get('dataset', '')}"),
            escape(", ".join(a.get("columns", []))),
            escape(a.get("explanation", "")),
        ]
        for a in reversed(shown)
    ]
    parts.append(
        _table(
            [
                "since",
                "state",
                "severity",
                "class / method",
                "component",
                "dataset",
                "columns",
                "explanation",
            ],
            rows,
        )
    )
    return "".join(parts)


def _suspects_section(data: ReportData) -> str:
    parts = [
        "<h2>Ranked suspects</h2>",
        '<p class="note">Components and column groups ranked by path score: column error '
        "scores multiplied along lineage towards the model's outputs.</p>",
    ]
    if not any(s.get("suspects") for s in data.suspects):
        return "".join(parts) + '<p class="note">No suspect: no column is off its baseline.</p>'
    for answer in data.suspects:
        suspects = answer.get("suspects", [])
        if not suspects:
            continue
        as_of = answer.get("at_iso") or answer.get("now_iso") or "-"
        parts.append(
            f"<h3>pipeline {escape(answer.get('pipeline', ''))} "
            f'<span class="meta">as of {escape(as_of)}</span></h3>'
        )
        items = [
            (
                f"{s['rank']}. {s['component']} / {s['group']}",
                float(s["score"]),
                f"score {s['score']:.3f}, zeta {s['zeta']:.2f}, {s['group_size']} column(s)",
            )
            for s in suspects
        ]
        top = max([1.0, *(value for _, value, _ in items)])
        parts.append(
            plots.bar_chart(items, label=f"suspects of {answer.get('pipeline', '')}", max_value=top)
        )
        rows = []
        for s in suspects:
            found = [e for c in s.get("columns", []) for e in c.get("evidence", [])[:1]]
            evidence = "; ".join(dict.fromkeys(found))  # a group's columns often agree
            cols = ", ".join(c.get("name", c.get("column", "")) for c in s.get("columns", [])[:6])
            rows.append(
                [
                    str(s["rank"]),
                    escape(s["component"]),
                    escape(s["group"]),
                    f"{s['score']:.3f}",
                    f"{s['zeta']:.2f}",
                    escape(cols),
                    escape(evidence or "-"),
                ]
            )
        parts.append(
            _table(
                ["rank", "component", "group", "score", "zeta", "columns", "evidence"],
                rows,
                numeric={0, 3, 4},
            )
        )
    return "".join(parts)


def _stuck_section(data: ReportData) -> str:
    parts = ["<h2>Stuck feedback</h2>"]
    if not data.stuck:
        return "".join(parts) + '<p class="note">No model has feedback to wait for.</p>'
    for answer in data.stuck:
        overdue, sampled = answer.get("overdue_sampled", 0), answer.get("sampled", 0)
        after = (answer.get("overdue_after_s") or 0) / 3600
        parts.append(
            f'<h3>{escape(answer.get("model", ""))} <span class="meta">pipeline '
            f"{escape(answer.get('pipeline', ''))}</span></h3>"
            f"<p>{overdue:,} of {sampled:,} sampled predictions are overdue (no "
            f"feedback after {after:.1f} h).</p>"
        )
        patterns = answer.get("patterns", [])
        if not patterns:
            parts.append('<p class="note">No pattern: overdue predictions are spread as usual.</p>')
            continue
        items = [
            (
                p["pattern"],
                float(p["lift"]),
                f"lift {p['lift']:.2f}, coverage {p['coverage'] * 100:.0f}%, "
                f"{p['overdue_sampled']} overdue",
            )
            for p in patterns
        ]
        parts.append(
            plots.bar_chart(items, label=f"stuck feedback of {answer.get('model')}", unit="x")
        )
        rows = [
            [
                str(p["rank"]),
                escape(p["pattern"]),
                f"{p['lift']:.2f}",
                f"{p['coverage'] * 100:.0f}%",
                str(p["overdue_sampled"]),
            ]
            for p in patterns
        ]
        parts.append(
            _table(
                ["rank", "pattern", "lift", "coverage of overdue", "overdue"],
                rows,
                numeric={0, 2, 3, 4},
            )
        )
    return "".join(parts)


def render(data: ReportData, title: str = "otel-mlobs report") -> str:
    """The whole page."""
    status = data.status or {}
    counters = status.get("counters", {})
    rejected = sum((counters.get("spans_rejected") or {}).values())
    problems = ""
    if data.problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in data.problems)
        problems = f'<div class="problems">Some queries failed:<ul>{items}</ul></div>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{escape(title)}</title><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><style>{_CSS}</style></head><body>'
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">Generated {_when(data.generated_at)} UTC from {escape(data.url)} '
        f"(processor {escape(str(status.get('version', '?')))}, up "
        f"{(status.get('uptime_s') or 0) / 3600:.1f} h, "
        f"{int(counters.get('spans_accepted') or 0):,} spans accepted, {rejected:,} rejected)"
        f".</p>{problems}"
        + _summary(data)
        + _accuracy_section(data)
        + _alerts_section(data)
        + _suspects_section(data)
        + _stuck_section(data)
        + "</body></html>\n"
    )


# --- command line -----------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mlobs report`` to the ``mlobs`` command."""
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report from a running processor",
        description="Write one HTML page (inline SVG charts, nothing fetched) with accuracy "
        "over time, the alert timeline, ranked suspects and stuck-feedback patterns, from the "
        "processor's JSON API.",
    )
    add_connection_options(parser)
    parser.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help=f"where to write the page [{DEFAULT_OUTPUT}]",
    )
    parser.add_argument("--pipeline", default=None, help="only this pipeline [all]")
    parser.add_argument("--title", default="otel-mlobs report", help="page title")
    parser.set_defaults(func=run)


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename: no half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    """The ``mlobs report`` command; returns the exit code."""
    try:
        data = collect(client_from_args(args), args.pipeline)
    except QueryError as exc:
        print(f"mlobs report: {exc}", file=sys.stderr)
        return exc.code
    path = Path(args.output)
    try:
        write_atomically(path, render(data, args.title))
    except OSError as exc:
        print(f"mlobs report: cannot write {path}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"wrote {path} ({len(data.models)} model(s), {len(data.alerts)} alert(s), "
        f"{sum(len(s.get('suspects', [])) for s in data.suspects)} suspect(s))"
    )
    return 0
