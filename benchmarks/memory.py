"""Processor memory over a long stream: resident memory while 10 million predictions go through.

Every analyzer promises bounded memory (reservoirs, sketches, fixed panes); this benchmark holds
the whole processor to it. ``mlobs processor`` runs in a child process, first with its defaults
(persistence on, in a temporary state directory), then in memory (``--no-persistence``). This
process logs prediction batches of
100,000 rows through the SDK, exports them with the OTLP/gRPC exporter and, one batch later,
the feedback for half of each batch (the other half never gets labels, so it waits in the
join until it ages out). After every million predictions it waits until the processor has
applied everything sent, then reads the child's resident set size from ``/proc/PID/status``
(and its anonymous and file-backed parts, which tell heap growth from mapped files).

Target: flat within +-10% from the first million on, i.e. ``(max - min) / (max + min) <= 0.10``
over those samples.

    python benchmarks/memory.py
    /usr/bin/time -v python benchmarks/memory.py     # "Maximum resident set size": this
                                                     # process or the processor, the larger
    python benchmarks/memory.py --predictions 2000000 --no-persistence   # in memory only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import ingest  # noqa: E402

TARGET_SPREAD = 0.10
T0 = ingest.T0


def _batch(memory: Any, b: int, rows: int, rng: np.random.Generator) -> tuple[list, list, int]:
    """Spans of live batch ``b`` and of the feedback for half of batch ``b - 1``."""
    import otel_mlobs

    when = T0 + 600.0 * b
    ids = np.char.add(f"b{b}-", np.arange(rows).astype(str))
    otel_mlobs.log_predictions(
        "tip", ids, scores=rng.uniform(size=rows),
        features={"distance": rng.exponential(3.0, rows)},
        timestamps=when + np.linspace(0, 599, rows),
    )  # fmt: skip
    predictions = list(memory.get_finished_spans())
    memory.clear()
    feedback: list = []
    labelled = 0
    if b:
        prev = np.char.add(f"b{b - 1}-", np.arange(0, rows, 2).astype(str))
        otel_mlobs.log_feedback(
            "tip", prev, rng.integers(0, 2, size=len(prev)), timestamps=np.full(len(prev), when)
        )
        feedback = list(memory.get_finished_spans())
        memory.clear()
        labelled = len(prev)
    return predictions, feedback, labelled


def run(args: argparse.Namespace, persistence: bool) -> dict[str, Any]:
    import otel_mlobs

    rng = np.random.default_rng(args.seed)
    n_batches = args.predictions // args.batch_rows
    every = max(1, args.sample_every // args.batch_rows)
    samples: list[dict[str, float]] = []
    with ingest.processor_child(persistence=persistence) as child, ingest.capture() as memory:
        exporter = ingest.exporter(child)
        ref = min(args.batch_rows, 20_000)
        truth = rng.integers(0, 2, size=ref)
        otel_mlobs.log_reference(
            "tip", np.char.add("ref-", np.arange(ref).astype(str)), truth,
            scores=np.clip(0.3 * truth + rng.uniform(0, 0.7, ref), 0, 1),
            features={"distance": rng.exponential(3.0, ref)}, timestamps=np.full(ref, T0),
        )  # fmt: skip
        sent_events = {"predictions": 0, "feedback": 0}
        spans = list(memory.get_finished_spans())
        memory.clear()
        _export(exporter, spans)
        sent_events["predictions"] += ingest.count_events(spans, "mlobs.predictions")
        idle_rss = child.memory()
        start, cpu0 = time.monotonic(), child.cpu_seconds()
        sent = labelled = 0
        for b in range(n_batches):
            predictions, feedback, n_labels = _batch(memory, b, args.batch_rows, rng)
            _export(exporter, predictions)
            _export(exporter, feedback)
            sent += args.batch_rows
            labelled += n_labels
            sent_events["predictions"] += ingest.count_events(predictions, "mlobs.predictions")
            sent_events["feedback"] += ingest.count_events(feedback, "mlobs.feedback")
            if (b + 1) % every == 0 or b + 1 == n_batches:
                for kind, n in sent_events.items():
                    child.wait_records(kind, n, timeout_s=1800)
                sample = {
                    "predictions": sent,
                    "feedback": labelled,
                    "rss_bytes": child.memory(),
                    "rss_anon_bytes": child.memory("RssAnon"),
                    "rss_file_bytes": child.memory("RssFile"),
                    "peak_rss_bytes": child.memory("VmHWM"),
                    "elapsed_s": time.monotonic() - start,
                    "processor_cpu_s": child.cpu_seconds() - cpu0,
                }
                samples.append(sample)
                print(
                    f"[memory] {sent:>11,} predictions: RSS {sample['rss_bytes'] / 2**20:,.0f} "
                    f"MiB (peak {sample['peak_rss_bytes'] / 2**20:,.0f} MiB)",
                    file=sys.stderr,
                )
        exporter.shutdown()
        counted = child.metrics_samples()
    live = sum(
        v
        for (name, labels), v in counted.items()
        if name == "mlobs_predictions_total" and ("set", "live") in labels
    )
    rss = [x["rss_bytes"] for x in samples]
    spread = (max(rss) - min(rss)) / (max(rss) + min(rss)) if rss else float("nan")
    return {
        "persistence": persistence,
        "idle_rss_bytes": idle_rss,
        "samples": samples,
        "spread": spread,
        "flat": bool(spread <= TARGET_SPREAD),
        "predictions_counted": live,
        "predictions_sent": sent,
        "feedback_sent": labelled,
    }


def _export(exporter: Any, spans: list) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    if spans and exporter.export(spans) is not SpanExportResult.SUCCESS:
        raise RuntimeError(f"export of {len(spans)} spans failed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", type=int, default=10_000_000)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument(
        "--sample-every",
        type=int,
        default=1_000_000,
        help="predictions between memory readings (default 1,000,000)",
    )
    ap.add_argument(
        "--no-persistence",
        action="store_true",
        help="only the in-memory processor (default: both configurations)",
    )
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out-dir", type=Path, default=None)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    machine = C.machine_info()
    configs = [False] if args.no_persistence else [True, False]
    payload = {
        "benchmark": "memory",
        "command": C.command_line(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "target_spread": TARGET_SPREAD,
        "runs": [run(args, persistence) for persistence in configs],
        "machine": machine,
        "code": C.code_version(),
    }
    C.write_results("memory", payload, render_markdown(payload), args.out_dir)
    return payload


def render_markdown(p: dict[str, Any]) -> str:
    s = p["settings"]
    mib = 2**20
    first = p["runs"][0]
    lines = ["# Processor memory over a long prediction stream", ""]
    lines.append(
        f"`mlobs processor` (every default analyzer) in a child process receives "
        f"{first['predictions_sent']:,} predictions of one model in {s['batch_rows']:,}-row "
        f"batches over OTLP/gRPC, and feedback for half of each batch one batch later "
        f"({first['feedback_sent']:,} labels); the other half is never labelled. Resident "
        "memory is read from /proc once everything sent has been applied."
    )
    for r in p["runs"]:
        name = "persistence on (default)" if r["persistence"] else "in memory (--no-persistence)"
        lines += ["", f"## {name}", ""]
        rows = [
            [
                x["predictions"],
                x["rss_bytes"] / mib,
                x["rss_anon_bytes"] / mib,
                x["rss_file_bytes"] / mib,
                x["peak_rss_bytes"] / mib,
                x["elapsed_s"],
                x["processor_cpu_s"],
            ]
            for x in r["samples"]
        ]
        lines.append(
            C.md_table(
                [
                    "predictions",
                    "RSS (MiB)",
                    "anonymous",
                    "file-backed",
                    "peak RSS (MiB)",
                    "elapsed (s)",
                    "processor CPU (s)",
                ],
                rows,
            )
        )
        lines.append("")
        rss = [x["rss_bytes"] / mib for x in r["samples"]]
        lines.append(
            f"Idle processor: {r['idle_rss_bytes'] / mib:,.0f} MiB. RSS from the first reading "
            f"on: {min(rss):,.0f} to {max(rss):,.0f} MiB, spread +-{r['spread']:.1%} (target "
            f"+-{p['target_spread']:.0%}: {'met' if r['flat'] else 'NOT met'}). The processor "
            f"counted {r['predictions_counted']:,.0f} live predictions of "
            f"{r['predictions_sent']:,} sent."
        )
    lines.append("")
    m = p["machine"]
    lines.append(
        f"Machine: {m['cpu_count']} CPUs ({m['processor']}), Python {m['python']}; "
        f"load average at start {m['load_avg_1m_5m_15m'][0]}."
    )
    lines.append("")
    lines.append(C.code_line(p["code"]))
    lines.append("")
    lines.append(f"Command: `{p['command']}`")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
