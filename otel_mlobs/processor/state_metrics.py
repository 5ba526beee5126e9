"""Samples about the state directory: what recovery kept and dropped, checkpoints, the log.

A sample source for :class:`~otel_mlobs.processor.metrics.ProcessorCollector`, added only when
persistence is on, so an in-memory processor exposes none of these families.
"""

from __future__ import annotations

from otel_mlobs.processor.analyzers.base import Metric
from otel_mlobs.processor.persistence import DAMAGE_REASONS, Persistence

WRITE_OPS = ("log_append", "log_sync", "checkpoint")


def state_metrics(p: Persistence) -> list[Metric]:
    """Current figures (plain attribute reads and two directory listings; no state lock)."""
    rec = p.recovery
    last = p.last_checkpoint
    out = [
        Metric(
            "mlobs_processor_state_dropped_total",
            "counter",
            "Saved state dropped as damaged at start-up, by reason: log records (log_*), "
            "checkpoint entries (checkpoint_entry) or whole state files (checkpoint_file).",
            {"reason": reason},
            float(p.dropped.get(reason, 0)),
        )
        for reason in DAMAGE_REASONS
    ]
    out += [
        Metric(
            "mlobs_processor_state_write_errors_total",
            "counter",
            "Failed state writes, by operation (log_append, log_sync: the client was told to "
            "retry; checkpoint: the log keeps the batches until the next checkpoint).",
            {"op": op},
            float(p.write_errors.get(op, 0)),
        )
        for op in WRITE_OPS
    ]
    gauges = [
        (
            "mlobs_processor_state_restored_entries",
            "Analyzer snapshots restored from the checkpoint at start-up.",
            rec.restored_entries,
        ),
        (
            "mlobs_processor_state_replayed_batches",
            "Accepted export requests replayed from the write-ahead log at start-up.",
            rec.replayed_batches,
        ),
        (
            "mlobs_processor_state_replayed_records",
            "Records in the export requests replayed from the write-ahead log at start-up.",
            rec.replayed_records,
        ),
        (
            "mlobs_processor_state_recovery_seconds",
            "Time start-up spent loading the checkpoint and replaying the log.",
            rec.seconds,
        ),
        (
            "mlobs_processor_checkpoint_duration_seconds",
            "Time the last checkpoint took: snapshot under the state lock plus the write.",
            0.0 if last is None else last.seconds + p.snapshot_seconds,
        ),
        (
            "mlobs_processor_checkpoint_size_bytes",
            "Size of the analyzer snapshots in the last checkpoint written.",
            0.0 if last is None else last.size_bytes,
        ),
        (
            "mlobs_processor_checkpoint_timestamp_seconds",
            "Unix time of the last checkpoint written, or loaded at start-up (0: none yet).",
            p.last_checkpoint_at or rec.checkpoint_written_at or 0.0,
        ),
        (
            "mlobs_processor_state_log_bytes",
            "Bytes of write-ahead log on disk (batches accepted since the last checkpoint).",
            p.log_bytes(),
        ),
        (
            "mlobs_processor_state_log_batches",
            "Accepted export requests in the write-ahead log not yet covered by a checkpoint.",
            p.log_pending(),
        ),
        (
            "mlobs_processor_state_file_bytes",
            "Bytes of the checkpoint database on disk.",
            p.state_bytes(),
        ),
    ]
    out += [Metric(name, "gauge", text, {}, float(value)) for name, text, value in gauges]
    out.append(
        Metric(
            "mlobs_processor_checkpoints_total",
            "counter",
            "Checkpoints written since start.",
            {},
            float(p.checkpoints),
        )
    )
    return out
