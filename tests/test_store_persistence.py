"""A processor with a state directory: it acknowledges only durable batches, resumes after a
crash from the checkpoint plus the log, and starts whatever the damage, saying what it dropped.

The crashed state directories are built from the real pieces (the checkpoint store, the log,
the analyzers fed with a fixed record stream), so what the restarted processor should hold is
known exactly: the analyzers fed with every batch that survived.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from pathlib import Path

import _records
import grpc
import pytest
from _otlp import request, run_span
from _processor import grpc_stub, running

from otel_mlobs import cli
from otel_mlobs.processor import command
from otel_mlobs.processor.analyzers import DEFAULT_ANALYZERS
from otel_mlobs.processor.analyzers.base import Histogram
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.persistence import LOG_DIR, STATE_FILE, encode_records
from otel_mlobs.processor.router import Router
from otel_mlobs.processor.service import Processor
from otel_mlobs.processor.store import CheckpointStore
from otel_mlobs.processor.wal import FRAME, SEGMENT_HEADER, WriteAheadLog, segments

BATCHES = [[r] for r in _records.stream() + _records.extra()]  # one record per batch
CHECKPOINTED = 8  # batches 1..8 in the checkpoint
SEGMENT_SPLIT = 16  # log segments hold batches 9..16 and 17..24


def _crashed_state(state_dir: Path) -> None:
    """What a processor killed after accepting every batch leaves behind."""
    router = Router(DEFAULT_ANALYZERS)
    for batch in BATCHES[:CHECKPOINTED]:
        for record in batch:
            router.dispatch(record)
    store = CheckpointStore(state_dir / STATE_FILE)
    store.load()
    store.write(router.snapshot(), covers=CHECKPOINTED)
    store.close()
    log = WriteAheadLog(state_dir / LOG_DIR, next_seq=CHECKPOINTED + 1)
    for seq, batch in enumerate(BATCHES[CHECKPOINTED:], start=CHECKPOINTED + 1):
        log.append(encode_records(batch))
        if seq == SEGMENT_SPLIT:
            log.rotate()
    log.close()


def _expected(batches: list[int], restored_from: dict | None = None) -> list[tuple]:
    """Metrics of the analyzers fed with the given batch numbers (1-based), in order."""
    router = Router(DEFAULT_ANALYZERS)
    if restored_from:
        router.restore(restored_from)
    for n in batches:
        for record in BATCHES[n - 1]:
            router.dispatch(record)
    return _normalized(router.metrics())


def _normalized(metrics) -> list[tuple]:
    def value(v):
        if isinstance(v, Histogram):
            return (tuple(v.buckets), v.sum)
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return sorted((m.name, tuple(sorted(m.labels.items())), value(m.value)) for m in metrics)


def _start(state_dir: Path) -> Processor:
    config = ProcessorConfig(
        grpc_port=0, http_port=0, metrics_port=0, state_dir=str(state_dir),
        refresh_interval_s=3600,
    )  # fmt: skip
    return Processor(config).start()


def _held(proc: Processor) -> list[tuple]:
    with proc.lock:
        return _normalized(proc.router.metrics())


def _dropped(proc: Processor) -> dict[str, float]:
    out = {}
    for reason in ("log_torn", "log_checksum", "log_segment", "log_gap", "log_undecodable",
                   "checkpoint_file", "checkpoint_entry"):  # fmt: skip
        value = proc.registry.get_sample_value(
            "mlobs_processor_state_dropped_total", {"reason": reason}
        )
        if value:
            out[reason] = value
    return out


def _segment(state_dir: Path, index: int) -> Path:
    return segments(state_dir / LOG_DIR)[index][1]


def _record_offset(path: Path, n: int) -> int:
    """Byte offset of the n-th record (0-based) of a segment."""
    data, pos = path.read_bytes(), SEGMENT_HEADER.size
    for _ in range(n):
        pos += FRAME.size + FRAME.unpack_from(data, pos)[0]
    return pos


ALL = list(range(1, len(BATCHES) + 1))


@pytest.fixture
def crashed(tmp_path) -> Path:
    _crashed_state(tmp_path)
    return tmp_path


def test_restart_after_a_crash_resumes_from_checkpoint_plus_log(crashed, caplog):
    caplog.set_level(logging.INFO, logger="otel_mlobs.processor.persistence")
    proc = _start(crashed)
    try:
        assert _held(proc) == _expected(ALL)
        rec = proc.persistence.recovery
        assert rec.replayed_batches == len(BATCHES) - CHECKPOINTED
        assert (
            rec.restored_entries
            == proc.registry.get_sample_value("mlobs_processor_state_restored_entries")
            > 0
        )
        assert _dropped(proc) == {}
        assert f"{len(BATCHES) - CHECKPOINTED} batches (" in caplog.text
    finally:
        proc.stop()
    # The clean stop checkpointed everything: the next start replays nothing.
    proc = _start(crashed)
    try:
        assert proc.persistence.recovery.replayed_batches == 0
        assert _held(proc) == _expected(ALL)
    finally:
        proc.stop()


# --- one test per kind of damage ------------------------------------------------------------


def test_torn_last_record(crashed, caplog):
    last = _segment(crashed, -1)
    os.truncate(last, last.stat().st_size - 10)
    with _started(crashed) as proc:
        assert _held(proc) == _expected(ALL[:-1])
        assert _dropped(proc) == {"log_torn": 1}
    assert "write-ahead log damage (log_torn)" in caplog.text


def test_bad_checksum_drops_one_record(crashed, caplog):
    first = _segment(crashed, 0)
    at = _record_offset(first, 3) + FRAME.size + 20  # inside batch 12's payload
    data = bytearray(first.read_bytes())
    data[at] ^= 0xFF
    first.write_bytes(bytes(data))
    with _started(crashed) as proc:
        assert _held(proc) == _expected([n for n in ALL if n != 12])
        assert _dropped(proc) == {"log_checksum": 1}
    assert "record 12 checksum mismatch" in caplog.text


def test_truncated_log_file(crashed, caplog):
    first = _segment(crashed, 0)
    os.truncate(first, _record_offset(first, 3) + 30)  # inside batch 12: 12..16 are lost
    with _started(crashed) as proc:
        assert _held(proc) == _expected([n for n in ALL if not 12 <= n <= 16])
        assert _dropped(proc) == {"log_torn": 1, "log_gap": 4}
    assert "records 13..16 missing" in caplog.text


def test_corrupt_checkpoint_entry(crashed, caplog):
    with sqlite3.connect(crashed / STATE_FILE) as conn:
        conn.execute(
            "UPDATE entries SET blob = zeroblob(length(blob)) WHERE analyzer = 'model_accuracy'"
        )
    survivor = CheckpointStore(crashed / STATE_FILE)
    checkpoint = survivor.load()  # what survives, for _expected
    survivor.close()
    assert all(name != "model_accuracy" for name, _ in checkpoint.entries)
    with _started(crashed) as proc:
        # The model's accuracy is rebuilt from the log alone; every other analyzer is whole.
        assert _held(proc) == _expected(ALL[CHECKPOINTED:], restored_from=checkpoint.entries)
        assert _dropped(proc) == {"checkpoint_entry": 1}
    assert "model_accuracy" in caplog.text and "digest mismatch" in caplog.text


def test_checkpoint_entry_that_does_not_restore(crashed, caplog):
    from otel_mlobs.processor.store import digest

    garbage = b"not a snapshot of anything"
    with sqlite3.connect(crashed / STATE_FILE) as conn:
        conn.execute(
            "UPDATE entries SET blob = ?, digest = ? WHERE analyzer = 'traffic'",
            (garbage, digest(garbage)),
        )
    with _started(crashed) as proc:
        assert _dropped(proc) == {"checkpoint_entry": 1}
        assert proc.persistence.recovery.replayed_batches == len(BATCHES) - CHECKPOINTED
    assert "does not restore" in caplog.text


def test_state_file_that_is_not_a_database(crashed, caplog):
    (crashed / STATE_FILE).write_bytes(b"\x00garbage" * 1000)
    for side in ("-wal", "-shm"):
        (crashed / (STATE_FILE + side)).unlink(missing_ok=True)
    with _started(crashed) as proc:
        assert _held(proc) == _expected(ALL[CHECKPOINTED:])  # the log is all that is left
        assert _dropped(proc) == {"checkpoint_file": 1, "log_gap": CHECKPOINTED}
    assert len(list(crashed.glob(STATE_FILE + ".damaged-*"))) == 1
    assert "checkpoint dropped" in caplog.text


def test_log_record_that_does_not_decode(crashed, caplog):
    log_dir = crashed / LOG_DIR
    log = WriteAheadLog(log_dir, next_seq=len(BATCHES) + 1)
    log.append(b"\x01 well framed, checksummed, but not pickled records")
    log.close()
    with _started(crashed) as proc:
        assert _held(proc) == _expected(ALL)
        assert _dropped(proc) == {"log_undecodable": 1}
    assert f"record {len(BATCHES) + 1} does not decode" in caplog.text


class _started:
    """``with _started(dir) as proc``: a processor on ``dir``, stopped on exit."""

    def __init__(self, state_dir: Path) -> None:
        self.proc = _start(state_dir)

    def __enter__(self) -> Processor:
        return self.proc

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()


# --- durability of acknowledgements -------------------------------------------------------------


def test_nothing_is_acknowledged_before_it_is_on_disk(tmp_path):
    proc = _start(tmp_path)
    try:
        release = threading.Event()
        wal = proc.persistence._wal
        real_sync = wal.sync

        def slow_disk(seq: int) -> None:
            assert release.wait(30)
            real_sync(seq)

        wal.sync = slow_disk
        with grpc_stub(proc) as stub:
            call = stub.Export.future(request(run_span(run_id="r1")), timeout=30)
            time.sleep(0.5)
            assert not call.done(), "acknowledged before the batch reached the disk"
            release.set()
            call.result()
        assert wal.last_seq == 1
    finally:
        proc.stop()


def test_a_failing_disk_means_retry_not_ok(tmp_path):
    proc = _start(tmp_path)
    try:
        wal = proc.persistence._wal

        def broken(seq: int) -> None:
            raise OSError(5, "Input/output error")

        wal.sync = broken
        with grpc_stub(proc) as stub, pytest.raises(grpc.RpcError) as info:
            stub.Export(request(run_span(run_id="r1")), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # OTLP clients retry this
        assert (
            proc.registry.get_sample_value(
                "mlobs_processor_state_write_errors_total", {"op": "log_sync"}
            )
            == 1
        )
    finally:
        proc.stop()


def test_a_failed_checkpoint_keeps_the_log(tmp_path, monkeypatch):
    proc = _start(tmp_path)
    try:
        with grpc_stub(proc) as stub:
            stub.Export(request(run_span(run_id="r1")), timeout=30)
        assert proc.wait_idle(10)
        real = proc.router.snapshot

        def broken() -> dict:
            raise RuntimeError("an analyzer that cannot snapshot")

        monkeypatch.setattr(proc.router, "snapshot", broken)
        assert proc.persistence.checkpoint() is False
        assert (
            proc.registry.get_sample_value(
                "mlobs_processor_state_write_errors_total", {"op": "checkpoint"}
            )
            == 1
        )
        assert proc.persistence.log_pending() == 1
        monkeypatch.setattr(proc.router, "snapshot", real)
        with grpc_stub(proc) as stub:
            stub.Export(request(run_span(run_id="r2")), timeout=30)
        assert proc.wait_idle(10)
        assert proc.persistence.checkpoint() is True
        assert proc.persistence.log_pending() == 0
        held = _held(proc)
    finally:
        proc.stop()
    with _started(tmp_path) as again:
        assert _held(again) == held


def test_a_second_processor_cannot_share_the_state_directory(tmp_path):
    with running(state_dir=str(tmp_path)):
        other = Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0,
                                          state_dir=str(tmp_path)))  # fmt: skip
        with pytest.raises(OSError, match="in use by another processor"):
            other.start()
    with running(state_dir=str(tmp_path)) as proc:  # released on stop
        assert proc.healthy


def test_programmatic_default_is_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with running() as proc:
        assert proc.persistence is None
        assert proc.status()["persistence"] is None
    assert list(tmp_path.iterdir()) == []


# --- the command's options ----------------------------------------------------------------------


@pytest.fixture
def parsed(monkeypatch):
    for name in ("STATE_DIR", "NO_PERSISTENCE", "CHECKPOINT_INTERVAL", "REFRESH_INTERVAL"):
        monkeypatch.delenv(f"MLOBS_{name}", raising=False)
    seen = []
    monkeypatch.setattr(command, "run", lambda args: seen.append(args) or 0)

    def parse(*argv):
        assert cli.main(["processor", *argv]) == 0
        return seen[-1]

    return parse


def test_command_persists_by_default_in_the_working_directory(parsed):
    args = parsed()
    assert (args.state_dir, args.no_persistence, args.checkpoint_interval) == (
        "mlobs-state", None, 30.0,
    )  # fmt: skip


def test_command_state_options_and_environment(parsed, monkeypatch):
    monkeypatch.setenv("MLOBS_STATE_DIR", "/var/lib/mlobs/state")
    monkeypatch.setenv("MLOBS_CHECKPOINT_INTERVAL", "5")
    args = parsed("--checkpoint-interval", "0.5")
    assert (args.state_dir, args.checkpoint_interval) == ("/var/lib/mlobs/state", 0.5)
    assert parsed("--state-dir", "").state_dir == ""
    assert parsed("--no-persistence").no_persistence is True


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_command_rejects_a_bad_checkpoint_interval(parsed, capsys, value):
    with pytest.raises(SystemExit) as info:
        parsed("--checkpoint-interval", value)
    assert info.value.code == 2
    assert "argument --checkpoint-interval" in capsys.readouterr().err
