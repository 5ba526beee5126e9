"""React figures: root-cause rank per incident, stuck-feedback detection, staleness, speed.

Runs the taxi scenario (the demo's schedule of incidents) through the SDK and the processor's
decoder in one process (no sockets), feeds the records to the react analyzers day by day and
scores them against each incident's ground truth:

* rank of the injected (component, column) among the suspects at the end of the onset day and
  of the day after;
* the day the feedback-outage neighbourhood appears as a predicate with coverage >= 0.9;
* the staleness score of the frozen columns;
* the time to rank 50 components × 100 columns (graph walk alone, and with scores and groups).

Usage: ``python benchmarks/react.py [--seeds 0 11] [--rows 5000]``. Writes
``benchmarks/results/react.json`` and ``react.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from otel_mlobs.processor.analyzers.react import RootCauseAnalyzer, StuckFeedbackAnalyzer
from otel_mlobs.processor.analyzers.react.ranking import Node, rank
from otel_mlobs.processor.analyzers.react.replay import replay
from otel_mlobs.processor.records import (
    FeedbackBatch,
    Key,
    PredictionBatch,
    RunRecord,
    SummaryRecord,
)
from otel_mlobs.scenarios import DEFAULT_INCIDENTS, TaxiScenario
from otel_mlobs.scenarios.pipeline import MODEL, PIPELINE

RESULTS = Path(__file__).resolve().parent / "results"


def _rank_of(suspects: list[dict[str, Any]], component: str, columns: tuple[str, ...]) -> int:
    for s in suspects:
        names = {c.split(".", 1)[-1].split(":", 1)[-1] for c in s["all_columns"]}
        if s["component"] == component and names & set(columns):
            return s["rank"]
    return 0  # not among the suspects


def run_seed(seed: int, rows: int) -> dict[str, Any]:
    scenario = TaxiScenario(seed=seed, rows_per_day=rows, incidents=DEFAULT_INCIDENTS)
    truths = scenario.ground_truth()
    rc = RootCauseAnalyzer(Key(PIPELINE))
    fb = StuckFeedbackAnalyzer(Key(PIPELINE, "", MODEL))
    ranks: dict[str, dict[str, int]] = {t.incident: {} for t in truths if t.columns}
    stale: dict[str, float] = {}
    outage: dict[str, Any] = {}

    def on_day(day: Any, records: list[Any]) -> None:
        for r in records:
            if isinstance(r, RunRecord | SummaryRecord):
                rc.update(r)
            elif isinstance(r, PredictionBatch | FeedbackBatch):
                fb.update(r)
        for t in truths:
            offset = (day.date - t.start).days
            if t.columns and offset in (0, 1):
                a = rc.analysis()
                suspects = [{"rank": s.rank, "component": s.component, "all_columns": s.columns}
                            for s in a.ranking.suspects[:20]]
                ranks[t.incident]["onset" if offset == 0 else "onset+1"] = _rank_of(
                    suspects, t.component, t.columns)
                if t.incident == "staleness":
                    v = a.views[t.component]
                    idx = [i for i, (_, ds, c) in enumerate(v.scores.ids)
                           if ds == t.dataset and c in t.columns]
                    stale[str(day.date)] = float(v.scores.staleness[idx].max())
            if t.effect == "feedback" and 0 <= offset <= 3 and "found_day" not in outage:
                zone = t.segment.get("pickup_zone", "")
                for p in fb.patterns():
                    preds = p["predicates"]
                    if (p["coverage"] >= 0.9 and len(preds) == 1
                            and preds[0]["value"] == zone):
                        outage.update(found_day=offset, pattern=p["pattern"],
                                      coverage=p["coverage"], lift=p["lift"])
                        break

    t0 = time.perf_counter()
    replay(scenario, on_day, n_estimators=30, n_jobs=1)
    elapsed = time.perf_counter() - t0
    incidents = []
    for name, r in ranks.items():
        best = min((v for v in r.values() if v), default=0)
        incidents.append({"incident": name, "rank_onset": r.get("onset", 0),
                          "rank_onset_plus_1": r.get("onset+1", 0), "best_within_1_day": best})
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
    }


def _timed(fn: Any, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def feed_synthetic(a: RootCauseAnalyzer, names: list[str], edges: list[tuple[str, str]],
                   columns: int, runs: int, rng: np.random.Generator) -> None:
    """Daily runs of every component with provenance along ``edges`` and noisy summaries."""
    cols = [f"x{j}" for j in range(columns)]
    levels = np.array([0.25, 0.5, 0.75])
    parents = {c: [a_ for a_, b in edges if b == c] for c in names}
    for d in range(runs):
        t = d * 86_400.0
        for i, c in enumerate(names):
            a.update(RunRecord(Key("bench", c), f"{c}-{d}", "features", t + i, 1.0, True, "",
                               tuple(f"{p}-{d}" for p in parents[c]), (f"{c}-{d}",), "v",
                               "", f"{c}-{d}", ""))
            mean = 10 + rng.normal(0, 0.1, columns)
            std = 1 + rng.normal(0, 0.01, columns)
            a.update(SummaryRecord(
                Key("bench", c), f"{c}-{d}", t + i, "output", "d", 1000, f"{c}-{d}", cols,
                ["numeric"] * columns, np.full(columns, 1000), np.zeros(columns, np.int64),
                mean, std, mean - 3, mean + 3, levels,
                mean[:, None] + std[:, None] * np.array([-0.67, 0.0, 0.67]), [b""] * columns,
                np.full(columns, 100.0), [{}] * columns))


def ranking_speed(components: int = 50, columns: int = 100) -> dict[str, Any]:
    """Time the graph walk alone and a full analysis (scores, groups, ranking)."""
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(components)]
    edges = [(names[i], names[j]) for i in range(components)
             for j in range(i + 1, min(components, i + 4))]
    nodes = [Node(c, f"g{j}", float(z)) for c in names
             for j, z in enumerate(0.5 + rng.random(columns))]
    walk_ms = _timed(lambda: rank(nodes, edges, sinks=[names[-1]], k=10))

    a = RootCauseAnalyzer(Key("bench"))
    feed_synthetic(a, names, edges, columns, runs=20, rng=rng)

    def full() -> None:
        a._cache = None
        a.analysis()

    full_ms = _timed(full, repeat=5)
    return {"components": components, "columns": columns, "edges": len(edges),
            "rank_walk_ms": round(walk_ms, 2), "full_analysis_ms": round(full_ms, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 11])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args(argv)
    seeds = [run_seed(s, args.rows) for s in args.seeds]
    speed = ranking_speed()
    result = {
        "benchmark": "react",
        "command": "python benchmarks/react.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "seeds": seeds,
        "ranking_speed": speed,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "react.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "react.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    lines = ["# React benchmark", "", f"`{result['command'].strip()}` on {result['date']}", ""]
    for s in result["seeds"]:
        lines += [f"## Taxi scenario, seed {s['seed']} ({s['rows_per_day']} trips/day)", "",
                  "| incident | rank at onset day | rank day after | best within 1 day |",
                  "| --- | --- | --- | --- |"]
        for i in s["incidents"]:
            lines.append(f"| {i['incident']} | {i['rank_onset'] or '-'} | "
                         f"{i['rank_onset_plus_1'] or '-'} | {i['best_within_1_day'] or '-'} |")
        o = s["feedback_outage"]
        found = ("not found" if o.get("found_day") is None else
                 f"`{o['pattern']}` coverage {o['coverage']:.2f}, lift {o['lift']:.1f}, "
                 f"{o['found_day']} day(s) after onset")
        stale = ", ".join(f"{d}: {v:.1f}" for d, v in s["staleness_score_frozen_columns"].items())
        lines += ["", f"- ranked first: {s['ranked_first_share']:.0%}; within top 3: "
                      f"{s['top3_share']:.0%} (rank 0/'-' = not among the suspects)",
                  f"- feedback outage: {found}",
                  f"- staleness score of the frozen rider-history columns (threshold "
                  f"{s['staleness_threshold']}): {stale}", ""]
    sp = result["ranking_speed"]
    lines += ["## Ranking speed", "",
              f"{sp['components']} components × {sp['columns']} columns, {sp['edges']} edges: "
              f"graph walk {sp['rank_walk_ms']} ms, full analysis (scores, groups, ranking) "
              f"{sp['full_analysis_ms']} ms (median).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
