"""Time whylogs' ``why.log(df)`` on the benchmark frame; runs inside benchmarks/.venvs/whylogs.

Usage: python whylogs_summarize.py DATA_DIR --repeats N --warmup W

DATA_DIR holds ``floats.npy``, ``codes.npy`` and ``levels.json`` written by the parent benchmark.
The frame is rebuilt exactly as the parent builds it (float64 columns, string categoricals), and
the digest of the loaded arrays is printed back so the parent can prove equal content. Prints one
JSON object as its last line. Self-contained on purpose: this venv has numpy<2 and no otel_mlobs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import whylogs as why
from whylogs.core import configs as why_configs


def build_frame(data_dir: Path) -> tuple[pd.DataFrame, str]:
    floats = np.load(data_dir / "floats.npy")
    codes = np.load(data_dir / "codes.npy")
    levels = json.loads((data_dir / "levels.json").read_text())
    digest = hashlib.sha256(floats.tobytes() + codes.tobytes()).hexdigest()[:16]
    data = {f"f{i:02d}": floats[:, i] for i in range(floats.shape[1])}
    for j in range(codes.shape[1]):
        data[f"c{j}"] = np.array(levels[j], dtype=object)[codes[:, j]]
    return pd.DataFrame(data), digest


def content_of(view) -> dict:
    """What the profile holds per column, so the parent can report it beside the timing."""
    out = {}
    for name, col in view.get_columns().items():
        out[name] = sorted(col.get_metric_names())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()

    df, digest = build_frame(args.data_dir)
    for _ in range(args.warmup):
        why.log(df)
    seconds, cpu_seconds = [], []
    result = None
    for _ in range(args.repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        result = why.log(df)
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
    view = result.view()
    summary = view.to_pandas()
    kll_k = why_configs.kll_k_large if why_configs.large_kll_k else why_configs.kll_k
    print(
        json.dumps(
            {
                "rows": len(df),
                "columns": df.shape[1],
                "digest": digest,
                "repeats_s": seconds,
                "best_s": min(seconds),
                "repeats_cpu_s": cpu_seconds,
                "best_cpu_s": min(cpu_seconds),
                "metrics_per_column": content_of(view),
                "config": {
                    "kll_k": kll_k,
                    "hll_lg_k": why_configs.hll_lg_k,
                    "frequent_items_lg_max_k": why_configs.fi_lg_max_k,
                },
                "check": {
                    "f00_count": int(summary.loc["f00", "counts/n"]),
                    "f00_nulls": int(summary.loc["f00", "counts/null"]),
                    "f00_median": float(summary.loc["f00", "distribution/median"]),
                    "c0_cardinality": float(summary.loc["c0", "cardinality/est"]),
                },
                "versions": {
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "pandas": pd.__version__,
                    "whylogs": why.__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
