"""Alerts per incident: which Prometheus alert fires for each injected taxi incident, and when.

Runs ``mlobs demo`` (the default schedule: 21 days x 5,000 trips, one incident after another
from 2025-12-27) once per seed, through real OTLP into a real processor, with Prometheus. After
the run the shipped alert rules are evaluated over the simulated timeline in a backfilled
Prometheus (:mod:`otel_mlobs.scenarios.alert_replay`) and held against the incidents' ground
truth (:mod:`otel_mlobs.alerts_report`). For each incident: the first alert that fired for it,
its class and severity, the simulated minutes from the incident's first batch (its start day's
runs) to firing, and the other alerts it raised; then the incidents no alert caught and the
alerts no incident explains.

A day's state lands when the day is over (a nightly batch), so no alert can fire earlier than
one day (1,440 minutes) plus the rule's ``for:`` after an incident's first batch.

Usage: ``python benchmarks/alerts.py [--seeds 0,1] [--rows 5000] [--days 21]``. Needs
``prometheus`` and ``promtool`` on PATH. Writes ``benchmarks/results/alerts.json`` and
``alerts.md``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from otel_mlobs import demo  # noqa: E402
from otel_mlobs.alerts_report import AlertsReport  # noqa: E402
from otel_mlobs.cli import build_parser  # noqa: E402
from otel_mlobs.promrun import find_binary  # noqa: E402
from otel_mlobs.scenarios.alert_replay import INSTALL_HINT  # noqa: E402


def run_seed(seed: int, rows: int, days: int) -> tuple[AlertsReport, float, str]:
    """One demo run with Prometheus; its alerts report, wall seconds and printed output."""
    args = build_parser().parse_args(
        ["demo", "--once", "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
         "--seed", str(seed), "--rows-per-day", str(rows), "--days", str(days)]
    )  # fmt: skip
    out = io.StringIO()
    started = time.perf_counter()
    result = demo.run_demo(args, out)
    wall = time.perf_counter() - started
    if result.alerts is None:
        raise SystemExit(f"seed {seed}: no alerts report:\n{out.getvalue()[-3000:]}")
    return result.alerts, wall, out.getvalue()


def seed_markdown(seed: int, rows: int, days: int, report: AlertsReport) -> str:
    """The per-seed section: one row per incident, then what no incident explains."""
    rows_md = []
    for inc in report.incidents:
        t, first = inc.truth, inc.first
        when = f"{t.start}" + (f"..{t.end}" if t.end and t.end != t.start else "")
        if first is None:
            rows_md.append([t.incident, when, t.kind.replace("_", " "), "**missed**", "", "", ""])
            continue
        f = first.firing
        where = f.labels.get("column") or f.labels.get("pattern") or f.labels.get("model", "")
        others = sorted({h.firing.alert for h in inc.hits} - {f.alert})
        rows_md.append(
            [
                t.incident,
                when,
                t.kind.replace("_", " "),
                f"{f.alert} ({where})",
                f"{f.cls}, {f.severity}",
                f"{first.minutes:,.0f}",
                ", ".join(others),
            ]
        )
    table = _common.md_table(
        ["incident", "days", "kind", "first alert (on)", "class, severity", "minutes", "also"],
        rows_md,
    )
    detected = sum(i.detected for i in report.incidents)
    lines = [
        f"## Seed {seed} ({rows:,} trips/day, {days} days)",
        "",
        f"- Incidents that raised an alert: **{detected}/{len(report.incidents)}**; missed: "
        f"{', '.join(report.missed) or 'none'}",
        f"- Alerts no incident explains: **{len(report.unexplained)}** firing episodes — "
        f"{len(report.false_alarms)} while no incident was under way (false alarms), "
        f"{len(report.off_target)} during an incident but on a column or key its ground truth "
        "does not name",
        "",
        table,
        "",
    ]
    if report.unexplained:
        lines += ["Alerts no incident explains, by alert (columns named):", ""]
        lines += [f"- {line}" for line in report.unexplained_by_alert()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds [0,1]")
    parser.add_argument("--rows", type=int, default=demo.DEFAULT_ROWS, help="trips per day")
    parser.add_argument("--days", type=int, default=demo.DEFAULT_DAYS, help="simulated days")
    parser.add_argument("--out-dir", type=Path, default=None, help="results directory")
    opts = parser.parse_args(argv)
    if find_binary("prometheus") is None or find_binary("promtool") is None:
        raise SystemExit(INSTALL_HINT)
    seeds = [int(s) for s in opts.seeds.split(",") if s.strip()]
    payload: dict[str, Any] = {
        "benchmark": "alerts",
        "command": _common.command_line(),
        "code": _common.code_version(),
        "machine": _common.machine_info(),
        "rows_per_day": opts.rows,
        "days": opts.days,
        "seeds": {},
    }
    sections = []
    for seed in seeds:
        print(f"[bench] alerts: seed {seed} ...", file=sys.stderr, flush=True)
        report, wall, _ = run_seed(seed, opts.rows, opts.days)
        payload["seeds"][str(seed)] = {**report.as_dict(), "demo_wall_s": round(wall, 1)}
        sections.append(seed_markdown(seed, opts.rows, opts.days, report))
        for line in report.lines():
            print(line, file=sys.stderr)
    first = payload["seeds"][str(seeds[0])]
    intro = [
        "# Alerts per injected incident",
        "",
        f"Command: `{payload['command']}`",
        "",
        _common.code_line(payload["code"]),
        "",
        "The demo's default schedule runs through a real processor; the shipped alert rules "
        "are then evaluated over the simulated timeline in a backfilled Prometheus, one "
        f"simulated scrape every {first['scrape_interval_s'] // 60} minutes and rule "
        "evaluation every minute (`otel_mlobs/scenarios/alert_replay.py`). *Minutes* run from "
        "the incident's first batch (its first day's runs) to the alert firing. A day's state "
        "lands when the day is over, as a nightly batch's would, so the floor is 1,440 minutes "
        "plus the rule's `for:`. An alert belongs to an incident when it fits the incident's "
        "ground truth (the column it changed; feedback alerts for feedback incidents; accuracy "
        "alerts for incidents that change inputs or labels) and went pending between the "
        "landing of the incident's first state and 2 days (data) or 7 days (labels, feedback) "
        "after its last. Processor self-monitoring alerts watch the live process in wall time "
        f"and are not replayed: {', '.join(first['left_to_live_prometheus'])}.",
        "",
    ]
    _common.write_results("alerts", payload, "\n".join(intro + sections), opts.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
