"""Detect benchmark: how close the accuracy figures come to the truth, and what the join costs.

Part 1, quality, on the synthetic taxi scenario (``otel_mlobs.scenarios``): a random forest is
trained on the first days (the pipeline's recipe, validation split = reference set) and scores
every later day; the scenario's incidents bring covariate shift (New Year's Eve burst), concept
shift (riders tip less) and a feedback outage. Only about 10% of labels arrive, unevenly across
pickup zones (a lognormal share per zone), each when the scenario settles it. Per day we compare
against the true accuracy of all that day's predictions:

* ``estimated``: our label-free estimate;
* ``cbpe``: NannyML CBPE fitted on the same reference (in its own venv,
  ``benchmarks/.venvs/nannyml``, created on demand);
* ``realized``: accuracy of the labelled predictions alone;
* ``combined``: our partial-label combination.

Part 2, cost: 10 million predictions (half answered by feedback) through the analyzer with the
default budget of 100,000 pending predictions: throughput per core and memory (RSS and the
analyzer's snapshot size) at each million.

Run: ``.venv/bin/python benchmarks/detect.py`` (``--quick`` for a smoke run). Writes
``benchmarks/results/detect.json`` and ``detect.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from otel_mlobs.processor.analyzers.detect import ModelAccuracyAnalyzer
from otel_mlobs.processor.analyzers.detect.synthetic import draw, feedback_batch, prediction_batch
from otel_mlobs.processor.records import FeedbackBatch, Key, PredictionBatch
from otel_mlobs.scenarios import DEFAULT_INCIDENTS, LABEL, Incident, TaxiScenario
from otel_mlobs.scenarios.transforms import (
    BUCKET_FEATURES,
    build_features,
    clean_trips,
    model_matrix,
)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
NANNYML_VENV = BENCH / ".venvs" / "nannyml"
KEY = Key("taxi_tips", "", "tip_classifier")
DAY = 86400.0

SETTINGS: dict[str, dict[str, Any]] = {
    "default": {
        "incidents": DEFAULT_INCIDENTS,
        "label_share": 0.10,
        "zone_sigma": 1.0,
        "days": 21,
    },
    "early_shifts": {
        "incidents": (
            Incident("covariate_shift", "2025-12-27", "2025-12-28"),
            Incident("concept_shift", "2025-12-30"),
            Incident("feedback_outage", "2026-01-02", "2026-01-04"),
        ),
        "label_share": 0.10,
        "zone_sigma": 1.5,
        "days": 18,
    },
}

CBPE_SCRIPT = r"""
import json, sys
import numpy as np, pandas as pd, nannyml as nml
d = np.load(sys.argv[1])
def frame(p, truth):
    f = pd.DataFrame({"ts": pd.to_datetime(d[p + "_ts"], unit="s"),
                      "y_pred_proba": d[p + "_score"], "y_pred": d[p + "_pred"]})
    if truth:
        f["y_true"] = d[p + "_true"]
    return f
est = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
               timestamp_column_name="ts", metrics=["accuracy"], chunk_period="D",
               problem_type="classification_binary")
est.fit(frame("ref", True))
res = est.estimate(frame("live", False)).filter(period="analysis").to_df()
cols = {c: c for c in res.columns}
start = [c for c in res.columns if c[0] == "chunk" and c[1] == "start_date"][0]
value = [c for c in res.columns if c[0] == "accuracy" and c[1] == "value"][0]
out = {str(pd.Timestamp(s).date()): float(v) for s, v in zip(res[start], res[value])}
print(json.dumps(out))
"""


# ---- the taxi scenario, as the pipeline would run it -------------------------------------------
def _epoch(values) -> np.ndarray:
    arr = np.asarray(values, dtype="datetime64[us]")
    out = arr.astype(np.int64).astype(np.float64) / 1e6
    out[np.isnat(arr)] = np.nan
    return out


def taxi_run(seed: int, setting: dict[str, Any], rows_per_day: int) -> dict[str, Any]:
    """Reference set and per-day live predictions with their true labels and label times."""
    scenario = TaxiScenario(
        seed=seed, days=setting["days"], rows_per_day=rows_per_day, incidents=setting["incidents"]
    )
    history: list[tuple[Any, pd.DataFrame]] = []
    forest = None
    ref: dict[str, np.ndarray] = {}
    live: list[dict[str, Any]] = []
    for day in scenario:
        clean = clean_trips(day.trips).trips
        feats = build_features(clean, day.rider_history, day.weather)
        labelled = feats.merge(day.feedback[["trip_id", LABEL, "label_time"]], on="trip_id")
        if forest is None:
            history.append((day, labelled))
            if day.index == scenario.train_days - 1:
                cutoff = np.datetime64(day.date + dt.timedelta(days=1), "s")
                data = pd.concat([f[f["label_time"] <= cutoff] for _, f in history])
                order = np.argsort(data["tpep_pickup_datetime"].to_numpy(), kind="stable")
                split = int(len(order) * 0.8)
                fit, valid = data.iloc[order[:split]], data.iloc[order[split:]]
                forest = RandomForestClassifier(
                    n_estimators=100, max_depth=10, min_samples_leaf=5, n_jobs=1, random_state=0
                ).fit(model_matrix(fit), fit[LABEL].to_numpy())
                ref = _rows(valid, forest)
            continue
        rows = _rows(labelled, forest)
        rows["date"] = str(day.date)
        live.append(rows)
    return {"reference": ref, "live": live}


def _rows(frame: pd.DataFrame, forest: RandomForestClassifier) -> dict[str, Any]:
    score = forest.predict_proba(model_matrix(frame))[:, 1]
    return {
        "ids": frame["trip_id"].to_numpy().astype(str),
        "ts": _epoch(frame["tpep_pickup_datetime"]),
        "score": score,
        "pred": (score >= 0.5).astype(np.int64),
        "true": frame[LABEL].to_numpy().astype(np.int64),
        "label_time": _epoch(frame["label_time"]),
        "features": {c: frame[c].to_numpy() for c in BUCKET_FEATURES},
    }


def _batch(rows: dict[str, Any], reference: bool = False) -> PredictionBatch:
    return PredictionBatch(
        key=Key(KEY.pipeline, "inference", KEY.model),
        model_version="v1",
        ids=rows["ids"],
        timestamps=rows["ts"],
        scores=rows["score"],
        classes=("0", "1"),
        labels=rows["pred"].astype(str),
        features=rows["features"],
        reference=reference,
        true_labels=rows["true"].astype(str) if reference else None,
    )


def quality(seed: int, name: str, rows_per_day: int, cbpe: bool) -> dict[str, Any]:
    """Daily MAE of each method on one scenario run."""
    setting = SETTINGS[name]
    run = taxi_run(seed, setting, rows_per_day)
    rng = np.random.default_rng(seed + 1000)
    zones = np.unique(np.concatenate([d["features"]["pickup_zone"] for d in run["live"]]))
    zone_weight = dict(zip(zones, rng.lognormal(0.0, setting["zone_sigma"], zones.size),
                           strict=True))  # fmt: skip
    a = ModelAccuracyAnalyzer(KEY)
    a.update(_batch(run["reference"], reference=True))
    truth: dict[str, float] = {}
    pending: list[dict[str, np.ndarray]] = []
    labelled = total = 0
    for day in run["live"]:
        n = day["ids"].size
        for i in range(0, n, 10_000):
            part = {k: (v[i : i + 10_000] if isinstance(v, np.ndarray) else v)
                    for k, v in day.items() if k != "features"}  # fmt: skip
            part["features"] = {k: v[i : i + 10_000] for k, v in day["features"].items()}
            a.update(_batch(part))
        truth[day["date"]] = float((day["pred"] == day["true"]).mean())
        w = np.array([zone_weight[z] for z in day["features"]["pickup_zone"]])
        share = np.clip(setting["label_share"] * w / w.mean(), 0.0, 1.0)
        chosen = (rng.random(n) < share) & np.isfinite(day["label_time"])
        pending.append({k: day[k][chosen] for k in ("ids", "true", "label_time")})
        labelled += int(chosen.sum())
        total += n
        end = dt.datetime.fromisoformat(day["date"]).replace(tzinfo=dt.UTC).timestamp() + DAY
        pending = _release(a, pending, end)  # labels settled by the end of the day
    while pending:  # later labels, still in event-time order, a day at a time
        end += DAY
        pending = _release(a, pending, end)
    daily = {str(dt.datetime.fromtimestamp(d["day_start"], dt.UTC).date()): d for d in a.daily()}
    methods: dict[str, dict[str, float]] = {"estimated": {}, "combined": {}, "realized": {}}
    covered: dict[str, list[bool]] = {m: [] for m in methods}
    for date, f in daily.items():
        if date not in truth:
            continue
        for m in methods:
            if f.get(m):
                methods[m][date] = f[m]["value"]
                covered[m].append(f[m]["lower"] <= truth[date] <= f[m]["upper"])
    if cbpe:
        methods["cbpe"] = run_cbpe(run)
    errors = {
        m: {d: v - truth[d] for d, v in per_day.items() if d in truth}
        for m, per_day in methods.items()
    }
    return {
        "seed": seed,
        "setting": name,
        "live_days": len(truth),
        "predictions": total,
        "label_share": labelled / total,
        "sample_rate": a.sample_rate,
        "scheme": a.query()["estimator"].get("scheme"),
        "blend_weight_buckets": a.query()["estimator"].get("blend_weight_buckets"),
        "mae": {
            m: float(np.mean(np.abs(list(e.values())))) if e else None for m, e in errors.items()
        },  # fmt: skip
        "max_abs_error": {
            m: float(np.max(np.abs(list(e.values())))) if e else None for m, e in errors.items()
        },  # fmt: skip
        "band_coverage": {m: float(np.mean(c)) if c else None for m, c in covered.items()},
        "truth": truth,
        "daily": methods,
    }


def _release(a: ModelAccuracyAnalyzer, pending: list[dict], until: float) -> list[dict]:
    """Deliver the chosen labels settled before ``until``; keep the others."""
    rest = []
    for p in pending:
        due = p["label_time"] < until
        if due.any():
            a.update(FeedbackBatch(KEY, p["ids"][due], p["true"][due].astype(str),
                                   p["label_time"][due]))  # fmt: skip
        if (~due).any():
            rest.append({k: v[~due] for k, v in p.items()})
    return rest


# ---- NannyML CBPE in its own venv --------------------------------------------------------------
def _nannyml_python() -> Path:
    py = NANNYML_VENV / "bin" / "python"
    if not py.exists():
        venv.create(NANNYML_VENV, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "nannyml", "statsmodels"],
                       check=True)  # fmt: skip
    return py


def run_cbpe(run: dict[str, Any]) -> dict[str, float]:
    ref = run["reference"]
    live = {k: np.concatenate([d[k] for d in run["live"]]) for k in ("ts", "score", "pred")}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, ref_ts=ref["ts"], ref_score=ref["score"], ref_pred=ref["pred"],
                 ref_true=ref["true"], live_ts=live["ts"], live_score=live["score"],
                 live_pred=live["pred"])  # fmt: skip
        script = Path(tmp) / "cbpe.py"
        script.write_text(CBPE_SCRIPT)
        out = subprocess.run([str(_nannyml_python()), str(script), str(data)],
                             check=True, capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- join cost -----------------------------------------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def join_cost(total: int, batch: int = 10_000, budget: int = 100_000) -> dict[str, Any]:
    """Throughput and memory of the analyzer over ``total`` predictions."""
    rng = np.random.default_rng(7)
    a = ModelAccuracyAnalyzer(KEY, max_pending=budget)
    t0 = 1.75e9
    a.update(prediction_batch(draw(rng, 5000, t0 - 5 * DAY, DAY, prefix="ref"), reference=True,
                              model=KEY.model))  # fmt: skip
    a.refresh()
    busy = 0.0
    checkpoints = []
    n = 0
    step = max(total // 10, batch)
    while n < total:
        rows = draw(rng, batch, t0 + n / 200.0, batch / 200.0, prefix=f"j{n}")  # 200 predictions/s
        p = prediction_batch(rows, model=KEY.model)
        answered = rows.take(rng.random(batch) < 0.5)
        f = feedback_batch(answered, rng.exponential(3600.0, answered.ids.size), model=KEY.model)
        start = time.perf_counter()
        a.update(p)
        a.update(f)
        busy += time.perf_counter() - start
        n += batch
        if n % step == 0:
            checkpoints.append({
                "predictions": n, "rss_mib": round(_rss_mib(), 1),
                "snapshot_mib": round(len(a.snapshot()) / 2**20, 2),
                "sample_rate": a.sample_rate, "pending": a.query()["join"]["pending"],
            })  # fmt: skip
    later = [c for c in checkpoints if c["predictions"] > step]
    rss = [c["rss_mib"] for c in later] or [checkpoints[-1]["rss_mib"]]
    snap = [c["snapshot_mib"] for c in later] or [checkpoints[-1]["snapshot_mib"]]
    return {
        "predictions": n,
        "batch": batch,
        "budget": budget,
        "seconds_in_analyzer": round(busy, 2),
        "predictions_per_s": round(n / busy),
        "rss_spread": round(max(rss) / min(rss) - 1, 4),
        "snapshot_spread": round(max(snap) / min(snap) - 1, 4),
        "checkpoints": checkpoints,
    }


# ---- report ----------------------------------------------------------------------------------
def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Detect benchmark",
        "",
        f"Command: `{res['command']}` on {res['machine']}.",
        "",
        "## Daily accuracy error on the taxi scenario (mean absolute error over live days)",
        "",
        "| setting | seed | days | labels | estimated | NannyML CBPE | realized (labelled) "
        "| combined | combined band coverage |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for q in res["quality"]:
        m = q["mae"]

        def f(k, m=m):
            return "n/a" if m.get(k) is None else f"{m[k]:.4f}"

        lines.append(
            f"| {q['setting']} | {q['seed']} | {q['live_days']} | {q['label_share']:.1%} "
            f"| {f('estimated')} | {f('cbpe')} | {f('realized')} | **{f('combined')}** "
            f"| {q['band_coverage']['combined']:.0%} |"
        )
    lines += [
        "",
        "Band coverage: share of days whose true accuracy lies inside the combined figure's 95% "
        "band.",
    ]
    c = res["join"]
    lines += [
        "",
        "## Join cost",
        "",
        f"{c['predictions']:,} predictions in batches of {c['batch']:,}, half answered by "
        f"feedback, budget {c['budget']:,} pending: **{c['predictions_per_s']:,} predictions/s** "
        f"on one core ({c['seconds_in_analyzer']} s in the analyzer); final sample rate "
        f"{c['checkpoints'][-1]['sample_rate']}. Memory after the first checkpoint: RSS spread "
        f"{c['rss_spread']:.1%}, snapshot spread {c['snapshot_spread']:.1%}.",
        "",
        "| predictions | RSS MiB | snapshot MiB | sample rate | pending |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in c["checkpoints"]:
        lines.append(f"| {p['predictions']:,} | {p['rss_mib']} | {p['snapshot_mib']} "
                     f"| {p['sample_rate']} | {p['pending']:,} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--no-cbpe", action="store_true", help="skip NannyML")
    ap.add_argument("--out", default="detect", help="result file stem under benchmarks/results")
    ap.add_argument("--rows", type=int, default=0, help="mean trips per simulated day")
    args = ap.parse_args(argv)
    rows = args.rows or (2000 if args.quick else 20000)
    runs = [(0, "default"), (2, "default"), (0, "early_shifts")]  # seed 2, early_shifts: no test
    if args.quick:
        runs = runs[:1]
    res: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "rows_per_day": rows,
        "quality": [quality(s, n, rows, cbpe=not args.no_cbpe) for s, n in runs],
        "join": join_cost(200_000 if args.quick else 10_000_000),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
