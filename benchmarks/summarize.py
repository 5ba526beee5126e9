"""Summarizing throughput: the SDK vs a bare pandas pass vs whylogs, on the same frame.

The frame: ``--rows`` rows (default 1,000,000) x 20 columns, 15 float64 columns with 5% NaN and 5
string categoricals with 6 levels each, generated deterministically (see ``_common.make_raw``).

What each side computes, per column:

* bare pandas pass -- floats: count, mean, std, min, max, 7 quantiles (exact);
  categoricals: ``value_counts`` (exact). No sketches, no distinct count for floats.
* SDK ``summarize_frame`` -- floats: count, nulls, mean, std, min, max, 7 quantiles read from a
  serialized KLL sketch (k=200), a distinct estimate; categoricals: count, nulls, distinct, top
  values with counts; plus a bounded uniform row sample. Timed twice: with ``sketch_rows=None``
  (sketches, distinct counts and top values over every row: the equal-content figure the targets
  are judged on) and with the SDK's defaults (those three from a bounded row sample while counts,
  nulls, moments and extremes stay exact; what ``log_input`` does unless told otherwise).
* whylogs ``why.log(df)`` (default schema) -- floats: counts (n, null, NaN, inf), type counts,
  KLL distribution (k=1024: mean, stddev, min, max, quantiles) and HLL cardinality;
  strings: counts, type counts, HLL cardinality and a frequent-items sketch.

whylogs needs numpy<2, so it runs in its own venv (``benchmarks/.venvs/whylogs``, built on first
use) and reads the frame from ``.npy`` files; it reports the digest of what it loaded, which must
match ours.

Targets: SDK rows/s >= 10x whylogs' rows/s; SDK time <= 2x the bare pandas pass.

    python benchmarks/summarize.py                 # full size, all peers
    python benchmarks/summarize.py --rows 100000 --skip-peers
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
WHYLOGS_REQUIREMENTS = ("whylogs==1.6.4", "numpy<2", "pandas<2.3")
TARGET_VS_WHYLOGS = 10.0
TARGET_VS_PANDAS = 2.0


def pandas_pass(df, float_cols: list[str], cat_cols: list[str]) -> dict[str, Any]:
    """The hand-written baseline a data scientist would type: describe-like stats + value_counts."""
    num = df[float_cols]
    out = {
        "count": num.count(),
        "mean": num.mean(),
        "std": num.std(ddof=0),
        "min": num.min(),
        "max": num.max(),
        "quantiles": num.quantile(list(QUANTILES)),
    }
    out["value_counts"] = {c: df[c].value_counts(dropna=False) for c in cat_cols}
    return out


def load_sdk_summarizer(*, every_row: bool) -> Callable[[Any], Any]:
    """The SDK's pure summarizing function.

    ``every_row=True`` builds each KLL sketch from every row (``sketch_rows=None``), the content
    whylogs computes; ``False`` keeps the SDK's default, which takes sketches, distinct estimates
    and text top values from a bounded row sample (``DEFAULT_SKETCH_ROWS``).
    """
    from otel_mlobs.sdk.summarize import summarize_frame

    if every_row:
        return lambda df: summarize_frame(df, sketch_rows=None)
    return lambda df: summarize_frame(df)


def sdk_default_sketch_rows() -> int | None:
    from otel_mlobs.sdk import summarize

    return getattr(summarize, "DEFAULT_SKETCH_ROWS", None)


def sdk_content(summary: Any) -> dict[str, Any]:
    """What the SDK's summary actually holds per column kind, read from its output."""
    content: dict[str, Any] = {}
    for i, kind in enumerate(summary.kinds):
        stats = ["count", "nulls"]
        if not math.isnan(summary.mean[i]):
            stats += ["mean", "std", "min", "max"]
        if not np.isnan(summary.quantiles[i]).all():
            stats.append(f"quantiles[{summary.quantiles.shape[1]}]")
        if summary.sketches[i]:
            stats.append("kll_sketch")
        stats.append("distinct")
        if summary.top_values[i]:
            stats.append(f"top_values[{len(summary.top_values[i])}]")
        content.setdefault(kind, stats)
    content["sample"] = f"{summary.sample_size} rows x {len(summary.sample_columns)} columns"
    sketched = [i for i, sk in enumerate(summary.sketches) if sk]
    if sketched:  # evidence of what the sketches saw: all finite values, or a subsample
        import datasketches

        i = sketched[0]
        n = datasketches.kll_doubles_sketch.deserialize(summary.sketches[i]).n
        content["first_sketch_n_over_count"] = f"{n}/{int(summary.count[i])}"
    return content


def run_whylogs(raw: C.RawFrame, repeats: int, warmup: int) -> dict[str, Any]:
    python = C.ensure_venv("whylogs", WHYLOGS_REQUIREMENTS)
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-") as tmp:
        C.save_raw(raw, Path(tmp))
        result = C.run_peer(
            python,
            "whylogs_summarize.py",
            [tmp, "--repeats", str(repeats), "--warmup", str(warmup)],
            timeout=3600,
        )
    expected = C.content_digest(raw)
    if result.get("digest") != expected:
        raise C.PeerError(f"whylogs saw different data: {result.get('digest')} != {expected}")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the frame")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (best is reported)")
    ap.add_argument("--peer-repeats", type=int, default=3, help="timed repeats for whylogs")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--skip-peers", action="store_true", help="do not run whylogs")
    ap.add_argument("--out-dir", type=Path, default=C.RESULTS_DIR)
    args = ap.parse_args(argv)
    if args.rows < 10:
        ap.error("--rows must be at least 10")
    if args.repeats < 1 or args.peer_repeats < 1:
        ap.error("repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    machine = C.machine_info()  # before our own load moves the load average
    raw = C.make_raw(args.rows, args.seed)
    df = C.to_pandas(raw)
    rows = len(df)
    results: dict[str, Any] = {}

    every_row = load_sdk_summarizer(every_row=True)
    default = load_sdk_summarizer(every_row=False)
    timings = C.time_interleaved(
        {
            "pandas": lambda: pandas_pass(df, raw.float_names, raw.cat_names),
            "sdk": lambda: every_row(df),
            "sdk_default": lambda: default(df),
        },
        repeats=args.repeats,
    )
    results["pandas"] = {**timings["pandas"].as_dict(), "rows_per_s": rows / timings["pandas"].best}
    for key, fn, sketch_rows in (
        ("sdk", every_row, None),
        ("sdk_default", default, sdk_default_sketch_rows()),
    ):
        t = timings[key]
        results[key] = {
            **t.as_dict(),
            "rows_per_s": rows / t.best,
            "sketch_rows": sketch_rows,
            "content": sdk_content(fn(df)),
        }
    for key, t in timings.items():
        print(f"[bench] {key:12s} best {t.best:.3f}s (cpu {t.best_cpu:.3f}s)", file=sys.stderr)

    if not args.skip_peers:
        wl = run_whylogs(raw, args.peer_repeats, warmup=1)
        results["whylogs"] = {
            "best_s": wl["best_s"],
            "best_cpu_s": wl["best_cpu_s"],
            "repeats_s": wl["repeats_s"],
            "repeats_cpu_s": wl["repeats_cpu_s"],
            "rows_per_s": rows / wl["best_s"],
            "content": wl["metrics_per_column"],
            "config": wl["config"],
            "versions": wl["versions"],
        }
        print(f"[bench] whylogs best {wl['best_s']:.3f}s", file=sys.stderr)

    ratios: dict[str, Any] = {
        "sdk_time_over_pandas": results["sdk"]["best_s"] / results["pandas"]["best_s"],
        "target_sdk_time_over_pandas_max": TARGET_VS_PANDAS,
    }
    ratios["meets_pandas_target"] = ratios["sdk_time_over_pandas"] <= TARGET_VS_PANDAS
    ratios["sdk_cpu_over_pandas_cpu"] = (
        results["sdk"]["best_cpu_s"] / results["pandas"]["best_cpu_s"]
    )
    ratios["sdk_default_time_over_pandas"] = (
        results["sdk_default"]["best_s"] / results["pandas"]["best_s"]
    )
    if "whylogs" in results:
        ratios["sdk_rows_per_s_over_whylogs"] = (
            results["sdk"]["rows_per_s"] / results["whylogs"]["rows_per_s"]
        )
        ratios["target_sdk_over_whylogs_min"] = TARGET_VS_WHYLOGS
        ratios["meets_whylogs_target"] = ratios["sdk_rows_per_s_over_whylogs"] >= TARGET_VS_WHYLOGS
        ratios["whylogs_cpu_over_sdk_cpu"] = (
            results["whylogs"]["best_cpu_s"] / results["sdk"]["best_cpu_s"]
        )

    payload = {
        "benchmark": "summarize",
        "command": C.command_line(),
        "data": {
            "rows": rows,
            "float_columns": len(raw.float_names),
            "categorical_columns": len(raw.cat_names),
            "categorical_levels": C.N_LEVELS,
            "float_null_rate": C.NULL_RATE,
            "seed": args.seed,
            "digest": C.content_digest(raw),
        },
        "timing": (
            "best of N after 1 warm-up, pandas and SDK taking turns within each repeat (whylogs "
            "in its own process after them); wall = time.perf_counter (targets are judged on "
            "it), cpu = time.process_time (steadier when the machine is shared)"
        ),
        "results": results,
        "ratios": ratios,
        "code": C.code_version(
            ("otel_mlobs/sdk", "otel_mlobs/packing.py", "otel_mlobs/semconv.py")
        ),
        "machine": machine,
    }
    C.write_results("summarize", payload, render_markdown(payload), args.out_dir)
    return payload


def render_markdown(p: dict[str, Any]) -> str:
    res, rat, m, d = p["results"], p["ratios"], p["machine"], p["data"]
    labels = {
        "sdk": "otel-mlobs `summarize_frame(sketch_rows=None)` (equal content)",
        "sdk_default": "otel-mlobs `summarize_frame` defaults (sketches from a row sample)",
        "pandas": "bare pandas pass",
        "whylogs": "whylogs `why.log`",
    }
    rows = []
    for key in ("sdk", "sdk_default", "pandas", "whylogs"):
        if key in res:
            r = res[key]
            vs_sdk = r["rows_per_s"] / res["sdk"]["rows_per_s"]
            rows.append(
                [
                    labels[key],
                    r["best_s"],
                    r["best_cpu_s"],
                    f"{r['rows_per_s']:,.0f}",
                    f"{vs_sdk:.3g}x",
                ]
            )
    out = [
        "# Summarizing throughput",
        "",
        f"{d['rows']:,} rows x {d['float_columns'] + d['categorical_columns']} columns "
        f"({d['float_columns']} floats with {d['float_null_rate']:.0%} NaN, "
        f"{d['categorical_columns']} string categoricals with {d['categorical_levels']} levels).",
        "",
        C.md_table(
            ["tool", "best wall (s)", "best CPU (s)", "rows/s (wall)", "rows/s relative to SDK"],
            rows,
        ),
        "",
        f"- SDK time / pandas time: **{rat['sdk_time_over_pandas']:.2f}** "
        f"(target <= {rat['target_sdk_time_over_pandas_max']:g}: "
        f"{'met' if rat['meets_pandas_target'] else 'NOT met'}); "
        f"on CPU time: {rat['sdk_cpu_over_pandas_cpu']:.2f}",
    ]
    if "sdk_rows_per_s_over_whylogs" in rat:
        out.append(
            f"- SDK rows/s / whylogs rows/s: **{rat['sdk_rows_per_s_over_whylogs']:.1f}x** "
            f"(target >= {rat['target_sdk_over_whylogs_min']:g}x: "
            f"{'met' if rat['meets_whylogs_target'] else 'NOT met'}); "
            f"on CPU time: {rat['whylogs_cpu_over_sdk_cpu']:.1f}x"
        )
    out += [
        f"- Targets are judged on the equal-content SDK row, whose sketches, distinct counts "
        f"and top values see every row. With its defaults the SDK takes those from a "
        f"{res['sdk_default']['sketch_rows']:,}-row sample (counts, nulls, moments and extremes "
        f"stay exact): {rat['sdk_default_time_over_pandas']:.2f}x the pandas time.",
        "",
        "What each computes: pandas -- count, mean, std, min, max, 7 exact quantiles for floats, "
        "`value_counts` for categoricals. SDK -- count, nulls, mean, std, min, max, 7 quantiles "
        "read from a serialized KLL sketch (k=200) and a distinct estimate per float column; "
        "count, nulls, distinct and top values with counts per categorical; a row sample. "
        "whylogs -- counts, types, KLL distribution (k=1024) and HLL per float "
        "column; counts, types, HLL and frequent items per string column.",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['processor']}), Python {m['python']}, "
        f"numpy {m['numpy']}, pandas {m['pandas']}; load average at start "
        f"{m['load_avg_1m_5m_15m'][0]:g}.",
        "",
        C.code_line(p["code"]),
        "",
        f"Command: `{p['command']}`",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
