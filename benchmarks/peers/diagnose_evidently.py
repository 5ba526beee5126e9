"""Evidently's default data-drift preset on the diagnose benchmark's runs.

Runs inside benchmarks/.venvs/evidently (Evidently 0.7 needs pandas<3).

Usage: python diagnose_evidently.py DATA_DIR

DATA_DIR holds ``COMPONENT.ROLE.DATASET.ref.npz`` (the reference days, concatenated) and one
``COMPONENT.ROLE.DATASET.DATE.npz`` per judged run, listed in ``jobs.txt``. Each run gets
``Report([DataDriftPreset()])`` with the preset's defaults; the result is whether the preset calls
the dataset drifted (its share of drifted columns reaches 0.5) and which columns it calls drifted.
Prints one JSON object as its last line. Self-contained: this venv has no otel_mlobs.
"""

from __future__ import annotations

import argparse
import json
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

_P_VALUE_METHODS = (
    "K-S",
    "chi-square",
    "Z-test",
    "p_value",
    "Fisher",
    "Anderson",
    "Mann-Whitney",
    "Cramer-von Mises",
    "Epps-Singleton",
    "T-Test",
)


def load(path: Path) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as data:
        return pd.DataFrame({name: data[name] for name in data.files})


def drift_of(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    common = [c for c in reference.columns if c in current.columns]
    report = Report([DataDriftPreset()]).run(
        current_data=current[common], reference_data=reference[common]
    )
    out = {"dataset_drift": False, "drifted_columns": [], "share": 0.0}
    for metric in report.dict()["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith("DriftedColumnsCount"):
            out["share"] = float(value["share"])
            out["dataset_drift"] = bool(value["share"] >= config.get("drift_share", 0.5))
        elif config["type"].endswith("ValueDrift"):
            method, threshold = config.get("method", ""), config.get("threshold", 0.1)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            is_p = any(name.lower() in method.lower() for name in _P_VALUE_METHODS)
            if (value < threshold) if is_p else (value >= threshold):
                out["drifted_columns"].append(config["column"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", type=Path)
    args = ap.parse_args()
    jobs = [j for j in (args.data_dir / "jobs.txt").read_text().splitlines() if j]
    refs: dict[str, pd.DataFrame] = {}
    results = {}
    warnings.simplefilter("ignore")
    for job in jobs:
        component, role, dataset = job.split(".")[:3]
        stem = f"{component}.{role}.{dataset}"
        if stem not in refs:
            refs[stem] = load(args.data_dir / f"{stem}.ref.npz")
        try:
            results[job] = drift_of(refs[stem], load(args.data_dir / job))
        except ValueError as exc:  # e.g. a column that arrived all-null
            results[job] = {
                "error": str(exc)[:300],
                "dataset_drift": None,
                "drifted_columns": [],
                "share": None,
            }
    print(json.dumps({"evidently": metadata.version("evidently"), "results": results}))


if __name__ == "__main__":
    main()
