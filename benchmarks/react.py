"""React figures: root-cause rank per incident, stuck-feedback detection, staleness, speed.

Runs the taxi scenario (the demo's schedule of incidents, and the same days without incidents)
through the SDK and the processor's decoder in one process (no sockets), feeds the records to
the react analyzers day by day, refreshing them at the end of each day as the processor's worker
would, and scores them against each incident's ground truth:

* rank of the injected (component, column) among the suspects at the end of the onset day and
  of the day after;
* the day the feedback-outage neighbourhood appears as a predicate with coverage >= 0.9;
* the staleness score of the frozen columns;
* on the clean run (no incident), after a week of history: the highest staleness score of any
  column (and of the near-constant ``features.is_airport``), column-runs at or over the
  staleness threshold, and the days each component's latest run was reported stale.

Speed, on synthetic records:

* ``update()`` throughput: runs of 10 components, each run one run record and one 20-column
  summary, booked back to back (CPU time; wall time beside it); then the refresh that scores
  them, per run;
* ranking refresh for 50 components x 100 columns: one new run per component then a refresh
  (scores, groups of every component, graph walk), a cold rebuild of every view and the ranking,
  the walk alone, and ``metrics()`` built and cached.

Usage: ``python benchmarks/react.py [--seeds 0 11] [--rows 5000]``. Writes
``benchmarks/results/react.json`` and ``react.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import code_line, code_version, machine_info

from otel_mlobs.processor.analyzers.react import RootCauseAnalyzer, StuckFeedbackAnalyzer
from otel_mlobs.processor.analyzers.react.ranking import Node, rank
from otel_mlobs.processor.analyzers.react.replay import replay
from otel_mlobs.processor.records import (
    FeedbackBatch,
    Key,
    PredictionBatch,
    Record,
    RunRecord,
    SummaryRecord,
)
from otel_mlobs.scenarios import DEFAULT_INCIDENTS, TaxiScenario
from otel_mlobs.scenarios.pipeline import MODEL, PIPELINE

RESULTS = Path(__file__).resolve().parent / "results"
CLEAN_AFTER_DAYS = 7  # a week of history before clean-run scores are judged
CODE_PATHS = (
    "otel_mlobs/processor/analyzers/react",
    "otel_mlobs/processor/records.py",
    "otel_mlobs/processor/decode.py",
    "otel_mlobs/sdk",
    "otel_mlobs/scenarios",
)
"""What the figures exercise: the analyzers, and the replay's SDK, scenario and decoder."""


def _rank_of(suspects: list[dict[str, Any]], component: str, columns: tuple[str, ...]) -> int:
    for s in suspects:
        names = {c.split(".", 1)[-1].split(":", 1)[-1] for c in s["all_columns"]}
        if s["component"] == component and names & set(columns):
            return s["rank"]
    return 0  # not among the suspects


def _feed(rc: RootCauseAnalyzer, fb: StuckFeedbackAnalyzer, records: list[Record]) -> None:
    for r in records:
        if isinstance(r, RunRecord | SummaryRecord):
            rc.update(r)
        elif isinstance(r, PredictionBatch | FeedbackBatch):
            fb.update(r)
    rc.refresh()  # what the processor's worker does every few seconds
    fb.refresh()


def run_seed(seed: int, rows: int) -> dict[str, Any]:
    scenario = TaxiScenario(seed=seed, rows_per_day=rows, incidents=DEFAULT_INCIDENTS)
    truths = scenario.ground_truth()
    rc = RootCauseAnalyzer(Key(PIPELINE))
    fb = StuckFeedbackAnalyzer(Key(PIPELINE, "", MODEL))
    ranks: dict[str, dict[str, int]] = {t.incident: {} for t in truths if t.columns}
    stale: dict[str, float] = {}
    outage: dict[str, Any] = {}

    def on_day(day: Any, records: list[Record]) -> None:
        _feed(rc, fb, records)
        for t in truths:
            offset = (day.date - t.start).days
            if t.columns and offset in (0, 1):
                a = rc.analysis()
                suspects = [
                    {"rank": s.rank, "component": s.component, "all_columns": s.columns}
                    for s in a.ranking.suspects[:20]
                ]
                ranks[t.incident]["onset" if offset == 0 else "onset+1"] = _rank_of(
                    suspects, t.component, t.columns
                )
                if t.incident == "staleness":
                    v = a.views[t.component]
                    idx = [
                        i
                        for i, (_, ds, c) in enumerate(v.scores.ids)
                        if ds == t.dataset and c in t.columns
                    ]
                    stale[str(day.date)] = round(float(v.scores.staleness[idx].max()), 2)
            if t.effect == "feedback" and 0 <= offset <= 3 and "found_day" not in outage:
                zone = t.segment.get("pickup_zone", "")
                for p in fb.patterns():
                    preds = p["predicates"]
                    if p["coverage"] >= 0.9 and len(preds) == 1 and preds[0]["value"] == zone:
                        outage.update(
                            found_day=offset,
                            pattern=p["pattern"],
                            coverage=p["coverage"],
                            lift=p["lift"],
                        )
                        break

    t0 = time.perf_counter()
    replay(scenario, on_day, n_estimators=30, n_jobs=1)
    elapsed = time.perf_counter() - t0
    incidents = []
    for name, r in ranks.items():
        best = min((v for v in r.values() if v), default=0)
        incidents.append(
            {
                "incident": name,
                "rank_onset": r.get("onset", 0),
                "rank_onset_plus_1": r.get("onset+1", 0),
                "best_within_1_day": best,
            }
        )
    firsts = sum(1 for i in incidents if i["best_within_1_day"] == 1)
    top3 = sum(1 for i in incidents if 1 <= i["best_within_1_day"] <= 3)
    return {
        "seed": seed,
        "rows_per_day": rows,
        "replay_seconds": round(elapsed, 1),
        "incidents": incidents,
        "ranked_first_share": firsts / len(incidents),
        "top3_share": top3 / len(incidents),
        "staleness_score_frozen_columns": stale,
        "staleness_threshold": rc.params.stale_threshold,
        "feedback_outage": outage or {"found_day": None},
        "clean": run_clean(seed, rows),
    }


def run_clean(seed: int, rows: int) -> dict[str, Any]:
    """False alarms of the staleness score and of stale runs on the same days, no incident."""
    scenario = TaxiScenario(seed=seed, rows_per_day=rows, incidents=())
    rc = RootCauseAnalyzer(Key(PIPELINE))
    fb = StuckFeedbackAnalyzer(Key(PIPELINE, "", MODEL))
    worst = {"score": 0.0, "column": ""}
    airport = [0.0]
    over = [0, 0]  # column-runs at or over the threshold, column-runs judged
    stale_days: dict[str, int] = {}

    def on_day(day: Any, records: list[Record]) -> None:
        _feed(rc, fb, records)
        if day.index < CLEAN_AFTER_DAYS:
            return
        for comp, v in rc.analysis().views.items():
            st = v.scores.staleness
            over[0] += int((st >= rc.params.stale_threshold).sum())
            over[1] += len(st)
            i = int(np.argmax(st)) if len(st) else 0
            if len(st) and st[i] > worst["score"]:
                worst.update(score=round(float(st[i]), 2), column=f"{comp}/{v.scores.columns[i]}")
            for j, col in enumerate(v.scores.columns):
                if col.endswith("is_airport"):
                    airport[0] = max(airport[0], round(float(st[j]), 2))
        for m in rc.metrics():
            if m.name == "mlobs_run_stale":
                comp = m.labels["component"]
                stale_days[comp] = stale_days.get(comp, 0) + int(m.value)

    replay(scenario, on_day, n_estimators=30, n_jobs=1)
    return {
        "days_judged": len(scenario) - CLEAN_AFTER_DAYS,
        "max_staleness": worst["score"],
        "max_staleness_column": worst["column"],
        "is_airport_max_staleness": airport[0],
        "column_runs_over_threshold": over[0],
        "column_runs_judged": over[1],
        "days_run_stale": stale_days,
    }


# --- speed ---------------------------------------------------------------------------------------


def _median_ms(fn: Callable[[], Any], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def synthetic_day(
    names: list[str],
    edges: list[tuple[str, str]],
    columns: int,
    day: int,
    rng: np.random.Generator,
    spacing_s: float = 86_400.0,
) -> list[Record]:
    """One run of every component with provenance along ``edges`` and a noisy summary."""
    cols = [f"x{j}" for j in range(columns)]
    levels = np.array([0.25, 0.5, 0.75])
    parents = {c: [a_ for a_, b in edges if b == c] for c in names}
    t = day * spacing_s
    out: list[Record] = []
    for i, c in enumerate(names):
        rid = f"{c}-{day}"
        out.append(
            RunRecord(
                Key("bench", c),
                rid,
                "features",
                t + i,
                1.0,
                True,
                "",
                tuple(f"{p}-{day}" for p in parents[c]),
                (rid,),
                "v",
                "",
                rid,
                "",
            )
        )
        mean = 10 + rng.normal(0, 0.1, columns)
        std = 1 + rng.normal(0, 0.01, columns)
        out.append(
            SummaryRecord(
                Key("bench", c),
                rid,
                t + i,
                "output",
                "d",
                1000,
                rid,
                cols,
                ["numeric"] * columns,
                np.full(columns, 1000),
                np.zeros(columns, np.int64),
                mean,
                std,
                mean - 3,
                mean + 3,
                levels,
                mean[:, None] + std[:, None] * np.array([-0.67, 0.0, 0.67]),
                [b""] * columns,
                np.full(columns, 100.0),
                [{}] * columns,
            )
        )
    return out


def _chain(components: int) -> tuple[list[str], list[tuple[str, str]]]:
    names = [f"c{i}" for i in range(components)]
    edges = [
        (names[i], names[j])
        for i in range(components)
        for j in range(i + 1, min(components, i + 4))
    ]
    return names, edges


def update_speed(components: int = 10, columns: int = 20, runs: int = 3_000) -> dict[str, Any]:
    """Booking rate of ``update()`` and the per-run cost of the refresh that scores the runs.

    Runs are an hour apart in event time, so a week's window holds 168 of them: the refresh
    works on the full history it keeps, not on a short one.
    """
    rng = np.random.default_rng(1)
    names, edges = _chain(components)
    days = runs // components
    records = [
        r
        for d in range(days)
        for r in synthetic_day(names, edges, columns, d, rng, spacing_s=3600.0)
    ]
    best: dict[str, float] = {}
    for _ in range(3):
        a = RootCauseAnalyzer(Key("bench"))
        c0, t0 = time.process_time(), time.perf_counter()
        for r in records:
            a.update(r)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        scored = getattr(a, "pending_runs", None)
        c1 = time.process_time()
        a.refresh()
        a.metrics()
        refresh = time.process_time() - c1
        if not best or cpu < best["update_cpu_s"]:
            best = {
                "update_cpu_s": cpu,
                "update_wall_s": wall,
                "refresh_cpu_s": refresh,
                "runs_scored_by_refresh": scored,
            }
    n = days * components
    return {
        "components": components,
        "columns": columns,
        "runs": n,
        "records_per_run": 2,
        "update_runs_per_s_cpu": round(n / best["update_cpu_s"]),
        "update_runs_per_s_wall": round(n / best["update_wall_s"]),
        "update_us_per_run_cpu": round(best["update_cpu_s"] / n * 1e6, 1),
        "runs_scored_by_refresh": best["runs_scored_by_refresh"],
        "refresh_cpu_s": round(best["refresh_cpu_s"], 3),
        "refresh_us_per_run_cpu": round(best["refresh_cpu_s"] / n * 1e6, 1),
        "update_plus_refresh_runs_per_s_cpu": round(
            n / (best["update_cpu_s"] + best["refresh_cpu_s"])
        ),
    }


def ranking_speed(components: int = 50, columns: int = 100, history: int = 20) -> dict[str, Any]:
    """Full ranking refresh (scores, groups, walk), a cold rebuild, the walk alone, metrics."""
    rng = np.random.default_rng(0)
    names, edges = _chain(components)
    nodes = [
        Node(c, f"g{j}", float(z)) for c in names for j, z in enumerate(0.5 + rng.random(columns))
    ]
    walk_ms = _median_ms(lambda: rank(nodes, edges, sinks=[names[-1]], k=10))

    a = RootCauseAnalyzer(Key("bench"))
    for d in range(history):
        for r in synthetic_day(names, edges, columns, d, rng):
            a.update(r)
    c0 = time.perf_counter()
    a.refresh()
    first_ms = (time.perf_counter() - c0) * 1000
    day = [history]

    def one_more_day() -> tuple[float, float]:
        for r in synthetic_day(names, edges, columns, day[0], rng):
            a.update(r)
        day[0] += 1
        c0, t0 = time.process_time(), time.perf_counter()
        a.refresh()
        return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000

    days = [one_more_day() for _ in range(9)]
    refresh_ms = statistics.median(w for w, _ in days)
    refresh_cpu_ms = statistics.median(c for _, c in days)

    def cold() -> None:
        clear = getattr(a, "_clear_caches", None)
        if clear is not None:
            clear()
        a._cache = None  # noqa: SLF001 - the earlier analyzer's cache, for before/after figures
        a.refresh()
        a.analysis()

    cold_ms = _median_ms(cold, repeat=5)
    t0 = time.perf_counter()
    samples = len(a.metrics())
    metrics_ms = (time.perf_counter() - t0) * 1000
    metrics_cached_ms = _median_ms(a.metrics)
    return {
        "components": components,
        "columns": columns,
        "edges": len(edges),
        "history_runs": history,
        "rank_walk_ms": round(walk_ms, 2),
        "refresh_one_new_run_per_component_ms": round(refresh_ms, 1),
        "refresh_one_new_run_per_component_cpu_ms": round(refresh_cpu_ms, 1),
        "cold_rebuild_ms": round(cold_ms, 1),
        "first_refresh_all_runs_pending_ms": round(first_ms, 1),
        "metrics_build_ms": round(metrics_ms, 1),
        "metrics_samples": samples,
        "metrics_cached_ms": round(metrics_cached_ms, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 11])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--speed-only", action="store_true", help="skip the taxi scenario")
    args = parser.parse_args(argv)
    seeds = [] if args.speed_only else [run_seed(s, args.rows) for s in args.seeds]
    result = {
        "benchmark": "react",
        "command": "python benchmarks/react.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_version(CODE_PATHS),
        "seeds": seeds,
        "update_speed": update_speed(),
        "ranking_speed": ranking_speed(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "react.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "react.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# React benchmark",
        "",
        f"`{result['command'].strip()}` on {result['date']}, "
        f"load average {result['machine']['load_avg_1m_5m_15m']}. "
        f"{code_line(result['code'])}",
        "",
    ]
    for s in result["seeds"]:
        lines += [
            f"## Taxi scenario, seed {s['seed']} ({s['rows_per_day']} trips/day)",
            "",
            "| incident | rank at onset day | rank day after | best within 1 day |",
            "| --- | --- | --- | --- |",
        ]
        for i in s["incidents"]:
            lines.append(
                f"| {i['incident']} | {i['rank_onset'] or '-'} | "
                f"{i['rank_onset_plus_1'] or '-'} | {i['best_within_1_day'] or '-'} |"
            )
        o = s["feedback_outage"]
        found = (
            "not found"
            if o.get("found_day") is None
            else f"`{o['pattern']}` coverage {o['coverage']:.2f}, lift {o['lift']:.1f}, "
            f"{o['found_day']} day(s) after onset"
        )
        stale = ", ".join(f"{d}: {v:.1f}" for d, v in s["staleness_score_frozen_columns"].items())
        c = s["clean"]
        stale_runs = ", ".join(f"{k} {v}" for k, v in sorted(c["days_run_stale"].items()))
        lines += [
            "",
            f"- ranked first: {s['ranked_first_share']:.0%}; within top 3: "
            f"{s['top3_share']:.0%} (rank 0/'-' = not among the suspects)",
            f"- feedback outage: {found}",
            f"- staleness score of the frozen rider-history columns (threshold "
            f"{s['staleness_threshold']}): {stale}",
            f"- clean run, last {c['days_judged']} days: highest staleness "
            f"{c['max_staleness']} ({c['max_staleness_column']}), `is_airport` "
            f"{c['is_airport_max_staleness']}; column-runs at or over the threshold "
            f"{c['column_runs_over_threshold']} of {c['column_runs_judged']}; days a "
            f"component's latest run was stale: {stale_runs or 'none'}",
            "",
        ]
    u = result["update_speed"]
    lines += [
        "## Update throughput",
        "",
        f"{u['components']} components, runs of one run record and one {u['columns']}-"
        f"column summary, {u['runs']} runs an hour apart: `update()` "
        f"{u['update_runs_per_s_cpu']:,} runs/s CPU ({u['update_runs_per_s_wall']:,} wall; "
        f"{u['update_us_per_run_cpu']} µs per run); the refresh that scores them "
        f"{u['refresh_cpu_s']} s CPU, {u['refresh_us_per_run_cpu']} µs per run; both "
        f"together {u['update_plus_refresh_runs_per_s_cpu']:,} runs/s.",
        "",
    ]
    sp = result["ranking_speed"]
    lines += [
        "## Ranking speed",
        "",
        f"{sp['components']} components × {sp['columns']} columns, {sp['edges']} edges, "
        f"{sp['history_runs']} runs of history (medians, wall time):",
        "",
        "| step | ms |",
        "| --- | --- |",
        f"| refresh after one new run of every component (scores, groups, walk) | "
        f"{sp['refresh_one_new_run_per_component_ms']} "
        f"({sp['refresh_one_new_run_per_component_cpu_ms']} CPU) |",
        f"| cold rebuild of every view and the ranking | {sp['cold_rebuild_ms']} |",
        f"| first refresh, every run pending | {sp['first_refresh_all_runs_pending_ms']} |",
        f"| graph walk alone (5,000 nodes) | {sp['rank_walk_ms']} |",
        f"| `metrics()` built ({sp['metrics_samples']:,} samples) | {sp['metrics_build_ms']} |",
        f"| `metrics()` when nothing changed | {sp['metrics_cached_ms']} |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
