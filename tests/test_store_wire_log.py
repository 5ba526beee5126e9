"""Batches logged as the request bytes they came in: what is logged that way, what is not,
and that a restart replays either kind to the same analyzer state.

A request is logged as it arrived only when those bytes decode to exactly its records: every
span accepted, and identifier hashing replaced nothing (else raw ids would sit in the log).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from _otlp import array, event, foreign_span, request, run_span, summary_event
from _processor import grpc_export, post_traces

from otel_mlobs import semconv as sc
from otel_mlobs.processor.analyzers.base import Histogram
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.decode import decode_request
from otel_mlobs.processor.ingest import redacted
from otel_mlobs.processor.persistence import LOCK_FILE, LOG_DIR
from otel_mlobs.processor.privacy import IdHasher
from otel_mlobs.processor.records import SampleRecord
from otel_mlobs.processor.service import Processor
from otel_mlobs.processor.wal import LogScan, WriteAheadLog

KEY = b"k" * 32


def _sample(columns: dict[str, np.ndarray]) -> object:
    return event(
        sc.EVENT_SAMPLE,
        {
            sc.DATA_ROLE: "input",
            sc.DATA_NAME: "trips",
            sc.DATA_ROWS: 1000,
            sc.SAMPLE_COLUMNS: list(columns),
            sc.SAMPLE_VALUES: [array(v, packed=True) for v in columns.values()],
        },
    )


def _plain_run(i: int) -> object:
    rng = np.random.default_rng(i)
    zones = np.array(["north", "south", "east"])[rng.integers(0, 3, 100)]
    return run_span(
        run_id=f"r{i}",
        event_time=1_700_000_000.0 + 3600 * i,
        events=[
            summary_event(4, seed=i, role="input"),
            _sample({"fare": rng.exponential(10.0, 100), "zone": zones}),
        ],
    )


def _id_run(i: int) -> object:
    ids = np.char.add(f"trip-{i}-", np.arange(100).astype(str))
    return run_span(run_id=f"ids{i}", events=[_sample({"trip_id": ids, "fare": np.ones(100)})])


def _running(state_dir: Path) -> Processor:
    """A processor on ``state_dir``: ``with`` starts it and stops it on leaving the block."""
    config = ProcessorConfig(
        grpc_port=0, http_port=0, metrics_port=0, state_dir=str(state_dir),
        refresh_interval_s=3600,
    )  # fmt: skip
    config.security.id_hash_key = KEY
    return Processor(config)


def _logged(state_dir: Path) -> list[bytes]:
    return [payload for _, payload in LogScan(state_dir / LOG_DIR, after=0)]


def _held(proc: Processor) -> list[tuple]:
    def value(v: object) -> object:
        if isinstance(v, Histogram):
            return (tuple(v.buckets), v.sum)
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    with proc.lock:
        metrics = proc.router.metrics()
    return sorted((m.name, tuple(sorted(m.labels.items())), value(m.value)) for m in metrics)


def _crash_copy(state_dir: Path, target: Path) -> Path:
    """The state directory as a kill -9 would leave it now (every ack is already on disk)."""
    shutil.copytree(state_dir, target)
    (target / LOCK_FILE).unlink()
    return target


def test_requests_are_logged_as_sent_and_replay_to_the_same_state(tmp_path):
    with _running(tmp_path / "state") as proc:
        sent = [request(_plain_run(i), _plain_run(i + 10)) for i in range(3)]
        for req in sent[:2]:
            grpc_export(proc, req)
        assert post_traces(proc, sent[2].SerializeToString()).status_code == 200
        logged = _logged(tmp_path / "state")
        assert logged == [b"\x02" + req.SerializeToString() for req in sent]
        assert proc.wait_idle(10)
        expected = _held(proc)
        copy = _crash_copy(tmp_path / "state", tmp_path / "copy")
    with _running(copy) as restarted:
        assert restarted.persistence.recovery.replayed_batches == 3
        assert _held(restarted) == expected


def test_hashed_identifiers_never_reach_the_log_raw(tmp_path):
    with _running(tmp_path / "state") as proc:
        grpc_export(proc, request(_id_run(0)))
        grpc_export(proc, request(_plain_run(1)))
        logged = _logged(tmp_path / "state")
        assert [p[:1] for p in logged] == [b"\x01", b"\x02"]  # records, then the request
        assert b"trip-0-" not in logged[0]
        assert proc.wait_idle(10)
        expected = _held(proc)
        copy = _crash_copy(tmp_path / "state", tmp_path / "copy")
    with _running(copy) as restarted:
        assert _held(restarted) == expected


def test_requests_with_foreign_or_rejected_spans_log_their_records(tmp_path):
    with _running(tmp_path / "state") as proc:
        grpc_export(proc, request(_plain_run(0), foreign_span()))
        broken = run_span(run_id="bad", extra={sc.SCHEMA: "99.0"})
        grpc_export(proc, request(_plain_run(1), broken))
        assert [p[:1] for p in _logged(tmp_path / "state")] == [b"\x01", b"\x01"]


def test_redacted_keeps_the_bytes_only_when_nothing_was_replaced():
    plain = request(_plain_run(0))
    body = plain.SerializeToString()
    hasher = IdHasher(KEY)
    assert redacted(decode_request(plain), body, hasher.apply).wire is body
    assert redacted(decode_request(plain), body, None).wire is body
    assert redacted(decode_request(plain), None, hasher.apply).wire is None

    with_ids = redacted(decode_request(request(_id_run(0))), b"raw", hasher.apply)
    assert with_ids.wire is None
    sample = next(r for r in with_ids.records if isinstance(r, SampleRecord))
    assert str(sample.columns["trip_id"][0]).startswith("h:")

    mixed = request(_plain_run(1), foreign_span())
    assert redacted(decode_request(mixed), mixed.SerializeToString(), None).wire is None


@pytest.mark.parametrize("parts", [(b"\x02", b"body" * 1000), (b"",), (b"a", b"", b"bc")])
def test_a_payload_in_parts_reads_back_whole(tmp_path, parts):
    log = WriteAheadLog(tmp_path, next_seq=1)
    log.sync(log.append(parts))
    log.sync(log.append(b"".join(parts)))
    log.close()
    scan = LogScan(tmp_path, after=0)
    assert [p for _, p in scan] == [b"".join(parts)] * 2
    assert scan.damage == []


def test_identifier_decisions_survive_a_restart_and_replay_never_rehashes(tmp_path):
    """A column judged categorical before a checkpoint stays so after a restart, and a batch
    logged as sent (nothing hashed) replays as it was applied. Without the saved decision the
    restarted processor would judge a few distinct ``zone_id`` values by their name alone and
    hash them: the replayed state would differ from the one acknowledged."""
    zones = np.array(["north", "south", "east"] * 40)  # 120 values, 3 distinct: categorical
    with _running(tmp_path / "state") as proc:
        grpc_export(proc, request(run_span(run_id="many", events=[_sample({"zone_id": zones})])))
        assert proc.wait_idle(10)
        pipeline = proc.router.keys()["runs"][0].pipeline
        assert proc.id_hasher.decided(pipeline, "zone_id") is False
        assert proc.persistence.checkpoint(force=True)
        few = np.array(["north", "south", "east", "west", "bronx"])  # all distinct, id-like name
        grpc_export(proc, request(run_span(run_id="few", events=[_sample({"zone_id": few})])))
        assert proc.wait_idle(10)
        assert _logged(tmp_path / "state")[-1][:1] == b"\x02"  # nothing hashed: logged as sent
        expected = _held(proc)
        copy = _crash_copy(tmp_path / "state", tmp_path / "copy")
    with _running(copy) as restarted:
        assert restarted.id_hasher.decided(pipeline, "zone_id") is False  # from the checkpoint
        assert restarted.persistence.recovery.replayed_batches == 1
        assert _held(restarted) == expected
        # New traffic after the restart is judged as before it, not by the name alone.
        later = run_span(run_id="later", events=[_sample({"zone_id": few[:3]})])
        grpc_export(restarted, request(later))
        assert restarted.wait_idle(10)
        assert _logged(copy)[-1][:1] == b"\x02"


def test_hasher_decisions_round_trip_and_bad_blobs_are_refused():
    hasher = IdHasher(KEY)
    hasher.is_identifier("p", "trip_id", np.char.add("t", np.arange(100).astype(str)))
    hasher.is_identifier("p", "zone", np.array(["a", "b"] * 50))
    other = IdHasher(KEY)
    other.is_identifier("p", "zone", np.char.add("z", np.arange(100).astype(str)))  # its own
    assert other.import_decisions(hasher.export_decisions()) == 2
    assert other.decided("p", "trip_id") is True
    assert other.decided("p", "zone") is True  # what this process decided itself wins
    for bad in (b"{}", b'[["p", "c"]]', b'[["p", 1, true]]'):
        with pytest.raises(ValueError):
            other.import_decisions(bad)
