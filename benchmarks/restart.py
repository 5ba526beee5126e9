"""Restart cost of a processor holding 1,000,000 pending predictions.

What a crash costs in time: a processor (the default analyzers, as ``mlobs processor`` runs them)
is filled with predictions that wait for feedback — 10 models x 100,000 by default, each model's
join at its default budget — checkpointed, given some more batches that only reach the
write-ahead log, and killed with SIGKILL. Then ``mlobs processor`` is started on that state
directory as an operator would, and timed from launch to its "listening" line; its own recovery
figures (load the checkpoint, restore the analyzers, replay the log) come from the status API.
A clean restart (final checkpoint, nothing to replay) is timed the same way.

Run from the repository root::

    python benchmarks/restart.py                           # 10 models x 100,000 pending
    python benchmarks/restart.py --models 2 --per-model 5000 --repeats 1   # smoke size

Figures: checkpoint time and size at full load, restart wall time (process launch to listening,
Python imports included), recovery time inside the process, and the clean stop (its final
checkpoint). Target: a restart with 1,000,000 pending predictions within 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

TARGET_S = 10.0
BATCH_ROWS = 10_000
LISTENING = re.compile(
    r"OTLP/gRPC 127\.0\.0\.1:\d+, .* metrics https?://127\.0\.0\.1:(\d+)/metrics"
)
T0 = 1_760_000_000.0


# --- phase 1, in a child process: fill, checkpoint, log more, crash ------------------------------


def _batches(models: int, per_model: int, logged_models: int) -> tuple[list, list]:
    """Prediction batches: (checkpointed ones, log-only ones); log-only = the last models'."""
    from otel_mlobs.processor.records import Key, PredictionBatch

    rng = np.random.default_rng(7)
    checkpointed, logged = [], []
    for m in range(models):
        key = Key("bench", "serve", f"model_{m:02d}")
        for start in range(0, per_model, BATCH_ROWS):
            n = min(BATCH_ROWS, per_model - start)
            scores = rng.uniform(size=n)
            batch = PredictionBatch(
                key=key,
                model_version="v1",
                ids=np.char.add(f"m{m}-", np.arange(start, start + n).astype(str)),
                timestamps=T0 + np.sort(rng.uniform(0, 86_400, n)),
                scores=scores,
                classes=("0", "1"),
                labels=np.where(scores >= 0.5, "1", "0"),
                features={"distance": rng.exponential(3, n), "zone": rng.integers(0, 40, n)},
            )
            (logged if m >= models - logged_models else checkpointed).append(batch)
    return checkpointed, logged


def fill(state_dir: Path, models: int, per_model: int, logged_models: int, out: Path) -> None:
    """Fill a processor, checkpoint it (timed), log more batches, then die by SIGKILL."""
    from otel_mlobs.processor.config import ProcessorConfig
    from otel_mlobs.processor.ingest import Batch
    from otel_mlobs.processor.service import Processor

    checkpointed, logged = _batches(models, per_model, logged_models)
    config = ProcessorConfig(
        grpc_port=0, http_port=0, metrics_port=0, state_dir=str(state_dir),
        checkpoint_interval_s=86_400, refresh_interval_s=86_400,
    )  # fmt: skip
    proc = Processor(config).start()
    t0 = time.perf_counter()
    for batch in checkpointed:  # the receivers' path: journal (durable), queue, worker
        assert proc.queue.offer(Batch([batch])), "queue refused a batch"
    assert proc.wait_idle(timeout=3600)
    ingest_s = time.perf_counter() - t0
    persistence = proc.persistence
    assert persistence is not None
    t0 = time.perf_counter()
    assert persistence.checkpoint()
    checkpoint_s = time.perf_counter() - t0
    result = persistence.last_checkpoint
    assert result is not None
    for batch in logged:
        assert proc.queue.offer(Batch([batch]))
    assert proc.wait_idle(timeout=3600)
    figures = {
        "batches_checkpointed": len(checkpointed),
        "batches_logged": len(logged),
        "ingest_s": ingest_s,
        "checkpoint_s": checkpoint_s,
        "checkpoint_snapshot_s": persistence.snapshot_seconds,
        "checkpoint_write_s": result.seconds,
        "checkpoint_entries": result.entries,
        "checkpoint_size_bytes": result.size_bytes,
        "state_file_bytes": persistence.state_bytes(),
        "log_bytes": persistence.log_bytes(),
    }
    out.write_text(json.dumps(figures))
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no final checkpoint, no clean close


# --- phase 2: restart the command on the crashed state ------------------------------------------


def restart(state_dir: Path) -> dict[str, Any]:
    """Launch ``mlobs processor`` on ``state_dir``: time to listening, recovery, clean stop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOBS_")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "otel_mlobs.cli", "processor",
            "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
            "--state-dir", str(state_dir), "--refresh-interval", "86400",
        ],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            match = LISTENING.search(line)
            if match:
                break
        else:
            raise RuntimeError("processor did not start:\n" + "".join(lines))
        listening_s = time.perf_counter() - t0
        base = f"http://127.0.0.1:{match.group(1)}"
        status = _get_json(base + "/api/v1/status")
        pending = _pending(base)
        t1 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=600)
        stop_s = time.perf_counter() - t1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    recovery = status["persistence"]["recovery"]
    return {
        "listening_s": listening_s,
        "recovery_s": recovery["seconds"],
        "restored_entries": recovery["restored_entries"],
        "replayed_batches": recovery["replayed_batches"],
        "dropped": recovery["dropped"],
        "pending_predictions": pending,
        "stop_s": stop_s,
        "exit_code": proc.returncode,
    }


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=120) as resp:
        return json.loads(resp.read())


def _pending(base: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=300) as resp:
        text = resp.read().decode()
    values = re.findall(r"^mlobs_model_pending_predictions\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return sum(float(v) for v in values)


def _import_s() -> float:
    """What starting Python and importing the processor costs alone (part of every restart)."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import otel_mlobs.processor.service, otel_mlobs.cli"],
        check=True,
    )
    return time.perf_counter() - t0


# --- driver -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument(
        "--per-model",
        type=int,
        default=100_000,
        help="pending predictions per model (the join's default budget)",
    )
    parser.add_argument(
        "--logged-models",
        type=int,
        default=1,
        help="models whose predictions reach only the log before the crash",
    )
    parser.add_argument("--repeats", type=int, default=3, help="clean restarts timed")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--_fill", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_figures", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._fill is not None:
        fill(args._fill, args.models, args.per_model, args.logged_models, args._figures)
        return 0  # not reached: fill() ends the process
    if not 0 <= args.logged_models < args.models or args.per_model < 1 or args.repeats < 1:
        parser.error("need 0 <= --logged-models < --models, --per-model >= 1, --repeats >= 1")

    info, code = _common.machine_info(), _common.code_version()
    with tempfile.TemporaryDirectory(prefix="mlobs-restart-") as tmp:
        state_dir, figures_path = Path(tmp) / "state", Path(tmp) / "fill.json"
        child = subprocess.run(
            [sys.executable, __file__, "--models", str(args.models),
             "--per-model", str(args.per_model), "--logged-models", str(args.logged_models),
             "--_fill", str(state_dir), "--_figures", str(figures_path)],
        )  # fmt: skip
        if child.returncode != -signal.SIGKILL or not figures_path.exists():
            raise SystemExit(f"filling the processor failed (exit {child.returncode})")
        filled = json.loads(figures_path.read_text())
        after_crash = restart(state_dir)
        clean = []
        for _ in range(args.repeats):  # imports timed next to each restart: load comes and goes
            import_s = _import_s()
            clean.append({**restart(state_dir), "python_import_s": import_s})
    import_s = min(r["python_import_s"] for r in clean)

    pending = args.models * args.per_model
    best_clean = min(clean, key=lambda r: r["listening_s"])
    payload = {
        "benchmark": "restart",
        "command": _common.command_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "machine": info,
        "code": code,
        "pending_predictions": pending,
        "models": args.models,
        "per_model": args.per_model,
        "fill": filled,
        "restart_after_crash": after_crash,
        "restarts_clean": clean,
        "python_import_s": import_s,
        "target_s": TARGET_S,
        # Launch to listening, best clean run (the crash restart is a single run): what a
        # restarted processor costs when the machine is not busy with something else.
        "meets_target": best_clean["listening_s"] <= TARGET_S,
    }
    md = _markdown(payload)
    jpath, mpath = _common.write_results("restart", payload, md, args.out_dir)
    print(md)
    print(f"\nwrote {jpath} and {mpath}")
    return 0


def _markdown(p: dict[str, Any]) -> str:
    f, crash = p["fill"], p["restart_after_crash"]
    clean = p["restarts_clean"]
    mib = 1024 * 1024
    best = min(clean, key=lambda r: r["listening_s"])
    rows = [
        (
            "checkpoint at full load (snapshot + write)",
            f"{f['checkpoint_s']:.2f} s",
            f"snapshot {f['checkpoint_snapshot_s']:.2f} s under the state lock, "
            f"write {f['checkpoint_write_s']:.2f} s; {f['checkpoint_entries']} analyzer entries",
        ),
        (
            "checkpoint size",
            f"{f['checkpoint_size_bytes'] / mib:.1f} MiB",
            f"state.db on disk {f['state_file_bytes'] / mib:.1f} MiB",
        ),
        (
            "write-ahead log at the crash",
            f"{f['log_bytes'] / mib:.1f} MiB",
            f"{f['batches_logged']} batches after the checkpoint",
        ),
        (
            "restart after SIGKILL: launch to listening",
            f"{crash['listening_s']:.2f} s",
            f"recovery {crash['recovery_s']:.2f} s: {crash['restored_entries']} snapshots "
            f"restored, {crash['replayed_batches']} batches replayed; "
            f"{crash['pending_predictions']:,.0f} pending predictions afterwards",
        ),
        (
            "clean restart: launch to listening",
            f"{best['listening_s']:.2f} s",
            f"best of {len(clean)}; recovery {best['recovery_s']:.2f} s; "
            f"median {sorted(r['listening_s'] for r in clean)[len(clean) // 2]:.2f} s",
        ),
        (
            "Python start + imports alone",
            f"{p['python_import_s']:.2f} s",
            "best of the runs timed just before each clean restart; part of every launch",
        ),
        (
            "clean stop (SIGTERM to exit, final checkpoint)",
            f"{best['stop_s']:.2f} s",
            f"nothing changed since the start; {crash['stop_s']:.2f} s after the crash restart, "
            "whose first checkpoint (the replayed model) runs meanwhile",
        ),
    ]
    verdict = "met" if p["meets_target"] else "NOT met"
    lines = [
        "# Restart benchmark",
        "",
        f"Command: `{p['command']}` on {p['date']}, load average "
        f"{p['machine']['load_avg_1m_5m_15m']}. {_common.code_line(p['code'])}",
        "",
        f"{p['pending_predictions']:,} pending predictions ({p['models']} models x "
        f"{p['per_model']:,}), default analyzers, state in SQLite plus the write-ahead log. "
        f"Target: restart within {p['target_s']:.0f} s — {verdict}.",
        "",
        _common.md_table(["what", "figure", "detail"], rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
