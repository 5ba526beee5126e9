"""The benchmarks still run end to end at a tiny size, so they cannot rot between full runs.

Each benchmark runs as a subprocess, exactly as a person runs it (``python benchmarks/NAME.py``),
with its results written to a temporary directory; the committed full-size results are untouched.
Peers in their own venvs (whylogs) are skipped here: building that venv takes minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

sys.path.insert(0, str(BENCH))
import _common  # noqa: E402


def _run(script: str, *args: str, out_dir: Path, stem: str | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out-dir", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = stem or script.removesuffix(".py")
    md = (out_dir / f"{stem}.md").read_text()
    assert md.startswith("# ") and "Command: `python benchmarks/" in md
    return json.loads((out_dir / f"{stem}.json").read_text())


def test_frame_is_deterministic_and_shaped_as_documented():
    a, b = _common.make_raw(5000, seed=3), _common.make_raw(5000, seed=3)
    assert _common.content_digest(a) == _common.content_digest(b)
    assert _common.content_digest(a) != _common.content_digest(_common.make_raw(5000, seed=4))
    assert a.floats.shape == (5000, _common.N_FLOAT) and a.codes.shape == (5000, _common.N_CAT)
    null_rate = np.isnan(a.floats).mean()
    assert abs(null_rate - _common.NULL_RATE) < 0.01
    df = _common.to_pandas(a)
    assert df.shape == (5000, 20)
    assert all(df[c].nunique() == _common.N_LEVELS for c in a.cat_names)
    assert df[a.cat_names[0]].iloc[0] in _common.CAT_LEVELS[0]


def test_time_call_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        _common.time_call(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="repeats"):
        _common.time_interleaved({"a": lambda: None}, repeats=0)


def test_time_interleaved_takes_turns():
    order: list[str] = []
    timings = _common.time_interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=1
    )
    assert order == ["a", "b"] * 4  # one warm-up round, then three timed rounds
    assert set(timings) == {"a", "b"}
    assert all(len(t.seconds) == len(t.cpu_seconds) == 3 for t in timings.values())


def test_summarize_benchmark_runs_small(tmp_path):
    payload = _run(
        "summarize.py", "--rows", "3000", "--repeats", "1", "--skip-peers", out_dir=tmp_path
    )
    assert payload["data"]["rows"] == 3000
    res = payload["results"]
    assert set(res) == {"pandas", "sdk", "sdk_default"}
    assert res["sdk"]["rows_per_s"] > 0 and res["pandas"]["rows_per_s"] > 0
    # The equal-content run sketches every row; the default one a bounded subsample.
    assert res["sdk"]["sketch_rows"] is None
    assert res["sdk_default"]["sketch_rows"] >= 1
    n, count = map(int, res["sdk"]["content"]["first_sketch_n_over_count"].split("/"))
    assert n == count > 2500
    # The SDK side must really compute the content it is compared on.
    assert "kll_sketch" in res["sdk"]["content"]["numeric"]
    assert "distinct" in res["sdk"]["content"]["numeric"]
    assert any(s.startswith("top_values") for s in res["sdk"]["content"]["categorical"])
    ratio = payload["ratios"]["sdk_time_over_pandas"]
    assert ratio == pytest.approx(res["sdk"]["best_s"] / res["pandas"]["best_s"])
    assert payload["machine"]["cpu_count"] >= 1


def test_summarize_benchmark_rejects_tiny_rows(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "summarize.py"), "--rows", "1", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "--rows" in proc.stderr
    assert not (tmp_path / "summarize.json").exists()


def test_sdk_overhead_benchmark_exports_to_a_real_processor(tmp_path):
    payload = _run(
        "sdk_overhead.py",
        *("--rows", "300", "--repeats", "2", "--warmup", "0", "--scaling-calls", "3"),
        out_dir=tmp_path,
    )
    assert payload["workload"].startswith("taxi scenario forest")
    scaling = payload["results"]["scaling"]
    assert [x["rows"] for x in scaling] == [10, 100, 300]  # and the full call
    assert all(x["sdk_median_ms"] > 0 and x["bare_median_ms"] > 0 for x in scaling[:2])
    # OpenTelemetry's own share of the same spans and events: real, and below the SDK's steps
    assert all(0 < x["otel_median_ms"] < x["sdk_median_ms"] for x in scaling[:2])
    text = payload["results"]["text_pass"]
    assert text["columns"] == 3 and text["objects"] == 3 * 300  # ids, zone, payment type
    assert text["isna_ms"] > 0 and text["factorize_ms"] > 0
    assert "## What every call pays" in (tmp_path / "sdk_overhead.md").read_text()
    export = payload["export"]
    assert export["exporter"] == "otlp-grpc"
    assert export["background"] is False  # the SDK's default
    # Each observed call makes a run span and a predictions span; all must arrive, none rejected.
    assert export["processor_spans_accepted"] >= 2 * 2
    assert not export["processor_spans_rejected"]
    res = payload["results"]
    for clock in ("cpu", "wall"):
        r = res[clock]
        assert r["bare_median_ms"] > 0 and r["observed_median_ms"] > r["sdk_median_ms"] > 0
        assert set(r["steps_median_ms"]) == {
            "log_input",
            "predict_proba",
            "log_output",
            "log_predictions",
            "span_end",
        }
        assert r["overhead_ratio"] == pytest.approx(r["sdk_median_ms"] / r["bare_median_ms"])
    assert res["overhead_ratio"] == res["cpu"]["overhead_ratio"]
    assert res["background"]["cpu_median_ms"] >= 0
    assert res["background"]["flush_wall_median_ms"] >= 0


def test_sdk_overhead_benchmark_in_memory_with_standin_model(tmp_path):
    payload = _run(
        "sdk_overhead.py",
        *("--rows", "300", "--repeats", "1", "--warmup", "0"),
        *("--exporter", "memory", "--model", "standin", "--background"),
        out_dir=tmp_path,
        stem="sdk_overhead_background",
    )
    assert payload["export"]["background"] is True
    assert payload["results"]["background"]["summarize_cpu_median_ms"] > 0  # the worker did it
    assert payload["export"]["spans_exported"] >= 2
    assert payload["workload"].startswith("stand-in forest")
