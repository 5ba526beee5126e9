"""End to end on the taxi scenario: SDK -> OTLP spans -> decoder -> diagnose analyzers.

Every injected pipeline bug must raise a hard or soft alert naming the right component and
column; runs without a pipeline bug (natural covariate and concept shifts included) may raise
drift alerts only, and those never call a component broken. Seed 1 here; the committed figures
in benchmarks/results/diagnose.md are for seed 2, which no test uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import diagnose as bench  # noqa: E402


@pytest.fixture(scope="module")
def scored():
    scenario, days, _ = bench.run_ours(seed=1, rows=3000, n_estimators=10)
    return bench.score(scenario, days), days


def test_every_pipeline_bug_names_its_component_and_column(scored):
    score, _ = scored
    incidents = {d["incident"] for d in score["detections"]}
    assert incidents == {"corruption", "staleness", "schema_change", "missing_values"}
    missed = [d for d in score["detections"] if not d["detected"]]
    assert missed == [], missed
    assert score["recall"] == 1.0


def test_runs_without_a_pipeline_bug_stay_quiet(scored):
    score, _ = scored
    assert score["clean_units"] >= 20
    assert score["false_alert_rate"] <= 0.05, score["false_alerts"]


def test_natural_shifts_are_drift_at_most_and_name_columns(scored):
    score, days = scored
    shifts = score["natural_shift_drift"]
    assert {s["incident"] for s in shifts} == {"covariate_shift", "concept_shift"}
    for s in shifts:
        assert not s["calls_component_broken"]
        assert (s["drift_alerts"] == 0) == (s["columns_named"] == [])
    covariate = next(d for d in days if "covariate_shift" in d.incidents)
    assert not [a for a in covariate.alerts if a["class"] in ("hard", "soft")]
