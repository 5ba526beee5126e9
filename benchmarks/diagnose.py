"""Diagnose figures: every pipeline bug named, natural shifts left alone, at what cost.

Runs the taxi scenario (the demo's schedule of incidents) through the SDK and the processor's
decoder in one process (no sockets), feeds every component's records to the three diagnose
analyzers (constraints, likelihood, drift) day by day, and scores the alerts against the
incidents' ground truth:

* recall: on every day of every injected pipeline bug, is there a hard or soft alert naming the
  right component and one of the right columns?
* false alerts: of the component runs on days without a pipeline bug (clean days and the
  natural covariate and concept shifts), how many raise any hard or soft alert?
* drift: which columns the drift alerts name on the natural-shift days.

Side by side on the same component runs (clean and features, whose datasets can be rebuilt
without the model): a per-column two-sample test at p < 0.05 (KS for numbers and timestamps,
chi-squared for categories) against the reference days, and Evidently's default data-drift
preset (in its own venv, ``benchmarks/.venvs/evidently``: it needs pandas<3). Both see the full
datasets, as their users would run them.

Cost: constraint evaluation of one 20-column run, likelihood scoring of one run, and one
adversarial update per row.

Usage: ``python benchmarks/diagnose.py [--seeds 2] [--rows 5000] [--skip-peers]``. The tests
use seed 1; the committed figures are for seed 2. Writes ``benchmarks/results/diagnose.json``
and ``diagnose.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from otel_mlobs.processor.analyzers.diagnose import (  # noqa: E402
    ConstraintAnalyzer,
    DriftAnalyzer,
    LikelihoodAnalyzer,
)
from otel_mlobs.processor.analyzers.diagnose.frames import records as frame_records  # noqa: E402
from otel_mlobs.processor.records import Key, Record  # noqa: E402
from otel_mlobs.scenarios import DEFAULT_INCIDENTS, TaxiScenario  # noqa: E402
from otel_mlobs.scenarios.transforms import build_features, clean_trips  # noqa: E402

ANALYZERS = (ConstraintAnalyzer, LikelihoodAnalyzer, DriftAnalyzer)
PEER_COMPONENTS = ("clean", "features")
EVIDENTLY = ["evidently==0.7.23", "pandas<3"]


# --- running our analyzers over the scenario ------------------------------------------------------


@dataclass
class DayAlerts:
    """What the analyzers raised on one simulated day."""

    date: dt.date
    incidents: tuple[str, ...]
    alerts: list[dict[str, Any]] = field(default_factory=list)  # one per alert fired that day
    judged: set[str] = field(default_factory=set)  # components with a ready analyzer that day


def run_ours(
    seed: int, rows: int, n_estimators: int
) -> tuple[TaxiScenario, list[DayAlerts], dict[str, float]]:
    """Replay the scenario and collect, per day, every alert (re)fired by a day's runs."""
    from otel_mlobs.processor.analyzers.react.replay import replay

    scenario = TaxiScenario(seed=seed, rows_per_day=rows, incidents=DEFAULT_INCIDENTS)
    analyzers: dict[tuple[str, str], Any] = {}
    days: list[DayAlerts] = []
    cost: Counter[str] = Counter()

    def on_day(day: Any, recs: list[Record]) -> None:
        event_time = dt.datetime(
            day.date.year, day.date.month, day.date.day, tzinfo=dt.UTC
        ).timestamp()
        for record in recs:
            if not record.key.component or record.key.model:
                continue
            for cls in ANALYZERS:
                if isinstance(record, cls.accepts):
                    a = analyzers.get((cls.name, record.key.component))
                    if a is None:
                        a = analyzers[(cls.name, record.key.component)] = cls(record.key)
                    start = time.perf_counter()
                    a.update(record)
                    cost[cls.name] += time.perf_counter() - start
        out = DayAlerts(day.date, tuple(day.incidents))
        for (name, component), a in analyzers.items():
            if hasattr(a, "flush"):
                a.flush()
            if a.ready:
                out.judged.add(component)
            for alert in a.alerts():
                if alert.last_event_time == event_time:
                    out.alerts.append({**alert.to_json(), "analyzer": name})
        days.append(out)

    replay(scenario, on_day, n_estimators=n_estimators)
    return scenario, days, dict(cost)


def score(scenario: TaxiScenario, days: list[DayAlerts]) -> dict[str, Any]:
    """Recall on pipeline bugs, false hard/soft alerts elsewhere, drift on natural shifts.

    A clean unit is one component's run on a day without a data pipeline bug (clean days, the
    natural shifts, and the feedback outage's days for every component but feedback).
    """
    truths = {t.incident: t for t in scenario.ground_truth()}
    detections = []
    clean_units = []
    natural = []
    for day in days:
        bugs = [truths[i] for i in day.incidents if truths[i].kind == "pipeline_bug"]
        data_bugs = [t for t in bugs if t.columns]
        broken = [a for a in day.alerts if a["class"] in ("hard", "soft")]
        for t in data_bugs:
            hits = [
                a
                for a in broken
                if a["component"] == t.component and set(a["columns"]) & set(t.columns)
            ]
            detections.append(
                {
                    "incident": t.incident,
                    "date": str(day.date),
                    "component": t.component,
                    "columns": list(t.columns),
                    "detected": bool(hits),
                    "by": sorted({f"{a['analyzer']}:{a['check']}" for a in hits}),
                    "example": hits[0]["explanation"] if hits else "",
                }
            )
        # A bug in the data reaches every component downstream of it, so its days are not clean
        # for any component; a bug in the label feed (no data columns) only touches its own.
        if data_bugs:
            continue
        kind = ",".join(day.incidents) or "none"
        touched = {t.component for t in bugs}
        for component in sorted(day.judged - touched):
            own = [a for a in broken if a["component"] == component]
            clean_units.append(
                {
                    "date": str(day.date),
                    "component": component,
                    "day": kind,
                    "alerts": [
                        f"{a['analyzer']}:{a['check']}:{','.join(a['columns'])}" for a in own
                    ],
                }
            )
        for i in day.incidents:
            if truths[i].kind == "natural_shift":
                drift = [a for a in day.alerts if a["class"] == "drift"]
                natural.append(
                    {
                        "incident": i,
                        "date": str(day.date),
                        "drift_alerts": len(drift),
                        "columns_named": sorted({c for a in drift for c in a["columns"]}),
                        "truth_columns": list(truths[i].columns),
                        "calls_component_broken": any(
                            "broke"
                            in a["explanation"].replace("no constraint says a component broke", "")
                            for a in drift
                        ),
                    }
                )
    false_units = [u for u in clean_units if u["alerts"]]
    return {
        "recall": sum(d["detected"] for d in detections) / max(len(detections), 1),
        "detections": detections,
        "clean_units": len(clean_units),
        "false_alert_units": len(false_units),
        "false_alert_rate": len(false_units) / max(len(clean_units), 1),
        "false_alerts": false_units,
        "natural_shift_drift": natural,
    }


# --- peers: per-column tests and Evidently on the same runs -------------------------------------


def peer_frames(scenario: TaxiScenario) -> dict[tuple[str, str, str], list[pd.DataFrame]]:
    """Every dataset of the clean and features components, per day, as their users hold them."""
    out: dict[tuple[str, str, str], list[pd.DataFrame]] = defaultdict(list)
    for day in scenario:
        clean = clean_trips(day.trips).trips
        features = build_features(clean, day.rider_history, day.weather)
        for key, frame in (
            (("clean", "input", "raw_trips"), day.trips.drop(columns="rider_id")),
            (("clean", "output", "clean_trips"), clean.drop(columns="rider_id")),
            (("features", "input", "clean_trips"), clean.drop(columns="rider_id")),
            (("features", "input", "rider_history"), day.rider_history),
            (("features", "input", "weather"), day.weather),
            (("features", "output", "features"), features),
        ):
            out[key].append(_flat(frame))
    return out


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as epoch seconds, identifiers dropped: what a drift tool is pointed at."""
    cols = {}
    for name, s in frame.items():
        if name == "trip_id":
            continue
        if pd.api.types.is_datetime64_any_dtype(s):
            cols[name] = s.astype("datetime64[us]").astype(np.int64).to_numpy() / 1e6 % 86400
        elif pd.api.types.is_numeric_dtype(s):
            cols[name] = s.to_numpy(dtype=float)
        else:
            cols[name] = s.astype(str).to_numpy()
    return pd.DataFrame(cols)


def per_column_tests(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """Columns a textbook two-sample test at p < 0.05 calls drifted."""
    from scipy.stats import chi2_contingency, ks_2samp

    drifted = []
    for name in reference.columns:
        if name not in current.columns:
            drifted.append(name)
            continue
        ref, cur = reference[name], current[name]
        if ref.dtype.kind == "f":
            a, b = ref.dropna().to_numpy(), cur.dropna().to_numpy()
            if len(a) == 0 or len(b) == 0:
                if len(a) != len(b):
                    drifted.append(name)
                continue
            if ks_2samp(a, b).pvalue < 0.05:
                drifted.append(name)
        else:
            cats = sorted(set(ref) | set(cur))
            table = np.array(
                [[int((ref == c).sum()) for c in cats], [int((cur == c).sum()) for c in cats]]
            )
            table = table[:, table.sum(0) > 0]
            if table.shape[1] > 1 and chi2_contingency(table).pvalue < 0.05:
                drifted.append(name)
    return drifted


def run_peers(
    scenario: TaxiScenario, days: list[DayAlerts], reference_runs: int, skip_evidently: bool
) -> dict[str, Any]:
    frames = peer_frames(scenario)
    judged = [d for d in days if d.date >= scenario.dates[reference_runs]]
    ks: dict[tuple[str, str], list[str]] = {}
    for key, per_day in frames.items():
        ref = pd.concat(per_day[:reference_runs], ignore_index=True)
        for d in judged:
            i = scenario.dates.index(d.date)
            cols = per_column_tests(ref, per_day[i])
            ks.setdefault((key[0], str(d.date)), []).extend(f"{key[2]}.{c}" for c in cols)
    out: dict[str, Any] = {"ks": {f"{c}@{d}": v for (c, d), v in ks.items()}}
    if not skip_evidently:
        out["evidently"] = _evidently(frames, scenario, judged, reference_runs)
    return out


def _evidently(frames, scenario, judged, reference_runs: int) -> dict[str, Any]:
    python = _common.ensure_venv("evidently", EVIDENTLY)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        jobs = []
        for (component, role, dataset), per_day in frames.items():
            ref = pd.concat(per_day[:reference_runs], ignore_index=True)
            _save(ref, root / f"{component}.{role}.{dataset}.ref.npz")
            for d in judged:
                i = scenario.dates.index(d.date)
                name = f"{component}.{role}.{dataset}.{d.date}.npz"
                _save(per_day[i], root / name)
                jobs.append(name)
        (root / "jobs.txt").write_text("\n".join(jobs))
        result = _common.run_peer(python, "diagnose_evidently.py", [str(root)], timeout=3600)
    per_unit: dict[str, dict[str, Any]] = {}
    for name, res in result["results"].items():
        component, _role, dataset, date, _ = name.split(".")
        unit = per_unit.setdefault(
            f"{component}@{date}", {"dataset_drift": False, "drifted_columns": [], "errors": []}
        )
        if res.get("error"):
            unit["errors"].append(f"{dataset}: {res['error']}")
            continue
        unit["dataset_drift"] |= res["dataset_drift"]
        unit["drifted_columns"] += [f"{dataset}.{c}" for c in res["drifted_columns"]]
    return {"version": result["evidently"], "units": per_unit}


def _save(frame: pd.DataFrame, path: Path) -> None:
    arrays = {}
    for name, s in frame.items():
        arrays[name] = (
            s.to_numpy(dtype=float)
            if s.dtype.kind == "f"
            else np.asarray(s.astype(str).tolist(), dtype=str)
        )
    np.savez(path, **arrays)


def compare(
    days: list[DayAlerts], truths: dict, peers: dict[str, Any], reference_start: dt.date
) -> list[dict[str, Any]]:
    """Per (component, day) on the peer components: who raised what."""
    rows = []
    for d in days:
        if d.date < reference_start:
            continue
        bug = any(truths[i].kind == "pipeline_bug" and truths[i].columns for i in d.incidents)
        for component in PEER_COMPONENTS:
            unit = f"{component}@{d.date}"
            ours = [a for a in d.alerts if a["component"] == component]
            evid = peers.get("evidently", {}).get("units", {}).get(unit)
            rows.append(
                {
                    "unit": unit,
                    "day": ",".join(d.incidents) or "none",
                    "pipeline_bug": bug,
                    "ours_hard_soft": sum(a["class"] in ("hard", "soft") for a in ours),
                    "ours_drift": sum(a["class"] == "drift" for a in ours),
                    "ks_columns": len(peers["ks"].get(unit, [])),
                    "evidently_dataset_drift": None if evid is None else evid["dataset_drift"],
                    "evidently_columns": None if evid is None else len(evid["drifted_columns"]),
                    "evidently_errors": [] if evid is None else evid["errors"],
                }
            )
    return rows


# --- cost ----------------------------------------------------------------------------------------


def cost(repeats: int = 30) -> dict[str, Any]:
    """Milliseconds to judge one 20-column run, to score one sample, per adversarial row."""
    raw = _common.make_raw(5000, seed=7)
    frame = _common.to_pandas(raw)
    key = Key("bench", "c")
    summaries, samples = [], []
    for run in range(8 + repeats):
        rng = np.random.default_rng(run)
        day = frame.sample(frac=1.0, replace=True, random_state=run).reset_index(drop=True)
        day.iloc[:, 0] = day.iloc[:, 0] + rng.normal(0, 0.01)
        s, smp = frame_records(key, f"r{run}", run * 86400.0, day, seed=run)
        summaries.append(s)
        samples.append(smp)
    constraint = ConstraintAnalyzer(key, reference_runs=5)
    likelihood = LikelihoodAnalyzer(key, reference_runs=5)
    drift = DriftAnalyzer(key, reference_runs=5)
    for s, smp in zip(summaries[:8], samples[:8], strict=True):
        for a in (constraint, likelihood, drift):
            for r in (s, smp):
                if isinstance(r, a.accepts):
                    a.update(r)
        constraint.flush()
    judge, sample_ms, score_ms, adv_ms = [], [], [], []
    for s, smp in zip(summaries[8:], samples[8:], strict=True):
        c0 = time.process_time()
        constraint.update(s)
        c1 = time.process_time()
        constraint.update(smp)  # the stale-rows check on the run's sample
        c2 = time.process_time()
        constraint.flush()  # close the run: missing columns, learning
        c3 = time.process_time()
        judge.append((c1 - c0 + c3 - c2) * 1000)
        sample_ms.append((c2 - c1) * 1000)
        c0 = time.process_time()
        likelihood.update(smp)
        score_ms.append((time.process_time() - c0) * 1000)
        n = len(next(iter(smp.columns.values())))
        drift.update(s)
        c0 = time.process_time()
        drift.update(smp)
        adv_ms.append((time.process_time() - c0) * 1000 / n)
    return {
        "columns": frame.shape[1],
        "constraint_judge_ms_median": statistics.median(judge),
        "constraint_judge_ms_p90": float(np.quantile(judge, 0.9)),
        "constraint_sample_check_ms_median": statistics.median(sample_ms),
        "likelihood_score_ms_median": statistics.median(score_ms),
        "sample_rows": len(next(iter(samples[0].columns.values()))),
        "adversarial_ms_per_row_median": statistics.median(adv_ms),
        "adversarial_ms_per_row_max": max(adv_ms),
        "timer": "process CPU time (time.process_time), one thread",
    }


# --- report --------------------------------------------------------------------------------------


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Diagnose: naming broken components without alert fatigue",
        "",
        f"Command: `{payload['command']}`",
        "",
    ]
    for seed, res in payload["seeds"].items():
        s = res["score"]
        lines += [
            f"## Seed {seed} ({res['rows_per_day']} trips/day, {len(res['days'])} days)",
            "",
            f"- Recall on injected pipeline bugs (hard or soft alert naming the right "
            f"component and column, every bug day): **{s['recall']:.0%}** "
            f"({sum(d['detected'] for d in s['detections'])}/{len(s['detections'])})",
            f"- Component runs without a pipeline bug that raised a hard or soft alert: "
            f"**{s['false_alert_units']}/{s['clean_units']} "
            f"({s['false_alert_rate']:.1%})**, natural covariate and concept shifts "
            f"included",
            "",
        ]
        lines.append(
            _common.md_table(
                ["incident", "date", "component", "detected", "by"],
                [
                    [
                        d["incident"],
                        d["date"],
                        d["component"],
                        "yes" if d["detected"] else "NO",
                        ", ".join(d["by"]),
                    ]
                    for d in s["detections"]
                ],
            )
        )
        lines += ["", "Natural shifts (drift class only, never a broken component):", ""]
        lines.append(
            _common.md_table(
                ["shift", "date", "drift alerts", "columns named"],
                [
                    [
                        n["incident"],
                        n["date"],
                        n["drift_alerts"],
                        ", ".join(n["columns_named"][:8])
                        + (" ..." if len(n["columns_named"]) > 8 else ""),
                    ]
                    for n in s["natural_shift_drift"]
                ],
            )
        )
        if s["false_alerts"]:
            lines += ["", "False hard/soft alerts:", ""]
            lines += [
                f"- {u['component']}@{u['date']} ({u['day']}): {'; '.join(u['alerts'])}"
                for u in s["false_alerts"]
            ]
        if res.get("comparison"):
            rows = res["comparison"]
            clean = [r for r in rows if not r["pipeline_bug"]]
            evid = [r for r in clean if r["evidently_dataset_drift"] is not None]
            lines += [
                "",
                "Alert fatigue on the clean and features runs without a data pipeline bug "
                f"({len(clean)} component runs):",
                "",
            ]
            table = [
                [
                    "otel-mlobs hard/soft alerts",
                    sum(r["ours_hard_soft"] > 0 for r in clean),
                    sum(r["ours_hard_soft"] for r in clean),
                ],
                [
                    "otel-mlobs drift alerts (info)",
                    sum(r["ours_drift"] > 0 for r in clean),
                    sum(r["ours_drift"] for r in clean),
                ],
                [
                    "per-column KS / chi-squared, p < 0.05",
                    sum(r["ks_columns"] > 0 for r in clean),
                    sum(r["ks_columns"] for r in clean),
                ],
            ]
            if evid:
                table.append(
                    [
                        "Evidently data-drift preset",
                        sum(bool(r["evidently_dataset_drift"]) for r in evid),
                        sum(r["evidently_columns"] for r in evid),
                    ]
                )
            lines.append(_common.md_table(["method", "runs flagged", "column alerts"], table))
            lines += ["", "Per run (runs with a data pipeline bug marked *):", ""]
            lines.append(
                _common.md_table(
                    [
                        "run",
                        "day",
                        "ours hard/soft",
                        "ours drift",
                        "KS columns",
                        "Evidently drift",
                        "Evidently columns",
                    ],
                    [
                        [
                            r["unit"] + ("*" if r["pipeline_bug"] else ""),
                            r["day"],
                            r["ours_hard_soft"],
                            r["ours_drift"],
                            r["ks_columns"],
                            "-"
                            if r["evidently_dataset_drift"] is None
                            else ("yes" if r["evidently_dataset_drift"] else "no")
                            + (" (error)" if r["evidently_errors"] else ""),
                            "-" if r["evidently_columns"] is None else r["evidently_columns"],
                        ]
                        for r in rows
                    ],
                )
            )
    c = payload["cost"]
    lines += [
        "",
        "## Cost",
        "",
        _common.md_table(
            ["what", "figure", "budget"],
            [
                [
                    f"judge one {c['columns']}-column run's summaries (constraints)",
                    f"{c['constraint_judge_ms_median']:.2f} ms median, "
                    f"{c['constraint_judge_ms_p90']:.2f} ms p90",
                    "5 ms",
                ],
                [
                    f"stale-rows check of one {c['sample_rows']}-row sample (constraints)",
                    f"{c['constraint_sample_check_ms_median']:.2f} ms",
                    "-",
                ],
                [
                    f"score one {c['sample_rows']}-row sample (likelihood)",
                    f"{c['likelihood_score_ms_median']:.2f} ms",
                    "-",
                ],
                [
                    "adversarial update, per row",
                    f"{c['adversarial_ms_per_row_median'] * 1000:.1f} us "
                    f"median ({c['adversarial_ms_per_row_max'] * 1000:.1f} us max)",
                    "1 ms",
                ],
            ],
        ),
        "",
        f"Timer: {c['timer']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[2])
    ap.add_argument("--rows", type=int, default=5000, help="mean trips per simulated day")
    ap.add_argument("--trees", type=int, default=50, help="forest size of the scenario's model")
    ap.add_argument("--skip-peers", action="store_true", help="no KS tests and no Evidently")
    ap.add_argument("--skip-evidently", action="store_true", help="KS tests only")
    ap.add_argument("--repeats", type=int, default=30, help="runs timed for the cost figures")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    payload: dict[str, Any] = {
        "command": _common.command_line(),
        "machine": _common.machine_info(),
        "seeds": {},
    }
    for seed in args.seeds:
        start = time.perf_counter()
        scenario, days, analyzer_s = run_ours(seed, args.rows, args.trees)
        result: dict[str, Any] = {
            "rows_per_day": args.rows,
            "days": [str(d.date) for d in days],
            "score": score(scenario, days),
            "analyzer_seconds": analyzer_s,
        }
        if not args.skip_peers:
            reference_runs = ConstraintAnalyzer(Key("x")).reference_runs
            peers = run_peers(scenario, days, reference_runs, args.skip_evidently)
            truths = {t.incident: t for t in scenario.ground_truth()}
            result["comparison"] = compare(days, truths, peers, scenario.dates[reference_runs])
            result["peers"] = peers
        result["seconds"] = time.perf_counter() - start
        payload["seeds"][str(seed)] = result
        s = result["score"]
        print(
            f"[diagnose] seed {seed}: recall {s['recall']:.0%}, false hard/soft "
            f"{s['false_alert_units']}/{s['clean_units']}",
            file=sys.stderr,
        )
    payload["cost"] = cost(args.repeats)
    _common.write_results("diagnose", payload, markdown(payload), args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
