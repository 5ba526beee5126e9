"""The write-ahead log: framing, numbering, group commit, truncation, and reading past damage."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from otel_mlobs.processor import wal
from otel_mlobs.processor.wal import FRAME, SEGMENT_HEADER, LogScan, WriteAheadLog, segments


def _payloads(n: int, size: int = 100) -> list[bytes]:
    return [bytes([i % 251]) * (size + i) for i in range(n)]


def _write(directory: Path, payloads: list[bytes], next_seq: int = 1) -> WriteAheadLog:
    log = WriteAheadLog(directory, next_seq=next_seq)
    for p in payloads:
        log.sync(log.append(p))
    return log


def _read(directory: Path, after: int = 0) -> tuple[list[tuple[int, bytes]], LogScan]:
    scan = LogScan(directory, after=after)
    return list(scan), scan


def _reasons(scan: LogScan) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in scan.damage:
        out[d.reason] = out.get(d.reason, 0) + d.count
    return out


def _record_offsets(path: Path) -> list[int]:
    """Byte offset of every record in a segment (walking the frames)."""
    data = path.read_bytes()
    offsets, pos = [], SEGMENT_HEADER.size
    while pos < len(data):
        offsets.append(pos)
        length = FRAME.unpack_from(data, pos)[0]
        pos += FRAME.size + length
    return offsets


def test_records_come_back_in_order_numbered_from_one(tmp_path):
    payloads = _payloads(5)
    log = _write(tmp_path, payloads)
    assert log.last_seq == 5
    log.close()
    records, scan = _read(tmp_path)
    assert records == list(enumerate(payloads, start=1))
    assert scan.damage == [] and scan.last_seq == 5


def test_reading_skips_what_the_checkpoint_covers(tmp_path):
    payloads = _payloads(6)
    _write(tmp_path, payloads).close()
    records, scan = _read(tmp_path, after=4)
    assert [seq for seq, _ in records] == [5, 6]
    assert scan.damage == []


def test_numbering_continues_in_a_new_segment_and_covered_segments_are_dropped(tmp_path):
    log = _write(tmp_path, _payloads(3))
    log.rotate()
    for p in _payloads(2):
        log.append(p)
    log.rotate()
    assert [first for first, _ in segments(tmp_path)] == [1, 4, 6]
    assert log.drop_through(3) > 0  # the first segment holds 1..3 only
    assert [first for first, _ in segments(tmp_path)] == [4, 6]
    assert log.drop_through(4) == 0  # 5 is not covered: the segment 4..5 stays
    assert [first for first, _ in segments(tmp_path)] == [4, 6]
    log.close()
    records, scan = _read(tmp_path, after=3)
    assert [seq for seq, _ in records] == [4, 5] and scan.damage == []


def test_rotating_an_empty_segment_does_nothing(tmp_path):
    log = WriteAheadLog(tmp_path, next_seq=7)
    log.rotate()
    assert [first for first, _ in segments(tmp_path)] == [7]
    log.close()


def test_concurrent_appenders_share_fsyncs(tmp_path, monkeypatch):
    calls = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(wal.os, "fdatasync", counting)
    log = WriteAheadLog(tmp_path, next_seq=1)
    barrier = threading.Barrier(8)
    seqs: list[int] = []

    def writer() -> None:
        barrier.wait()
        for p in _payloads(25, size=2000):
            seq = log.append(p)
            log.sync(seq)
            seqs.append(seq)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert sorted(seqs) == list(range(1, 201))
    assert len(calls) < 200  # group commit: fewer fsyncs than records
    records, scan = _read(tmp_path)
    assert len(records) == 200 and scan.damage == []


def test_a_failed_write_leaves_no_partial_record(tmp_path, monkeypatch):
    log = _write(tmp_path, _payloads(2))
    real_writev = os.writev

    def half_then_full(fd: int, parts) -> int:  # noqa: ANN001
        data = b"".join(bytes(p) for p in parts)
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal.os, "writev", half_then_full)
    with pytest.raises(OSError, match="No space"):
        log.append(b"x" * 500)
    monkeypatch.setattr(wal.os, "writev", real_writev)
    log.sync(log.append(b"after the disk was freed"))
    log.close()
    records, scan = _read(tmp_path)
    assert [seq for seq, _ in records] == [1, 2, 3]
    assert records[-1][1] == b"after the disk was freed"
    assert scan.damage == []


def test_appending_after_close_raises(tmp_path):
    log = WriteAheadLog(tmp_path, next_seq=1)
    log.close()
    with pytest.raises(OSError):
        log.append(b"late")


# --- damage -------------------------------------------------------------------------------------


def test_torn_last_record_is_dropped_and_the_rest_kept(tmp_path):
    payloads = _payloads(4)
    _write(tmp_path, payloads).close()
    [(_, path)] = segments(tmp_path)
    os.truncate(path, path.stat().st_size - 10)
    records, scan = _read(tmp_path)
    assert records == list(enumerate(payloads[:3], start=1))
    assert _reasons(scan) == {"log_torn": 1}


def test_record_header_cut_short_is_torn(tmp_path):
    _write(tmp_path, _payloads(2)).close()
    [(_, path)] = segments(tmp_path)
    last = _record_offsets(path)[-1]
    os.truncate(path, last + FRAME.size - 3)
    records, scan = _read(tmp_path)
    assert [seq for seq, _ in records] == [1]
    assert _reasons(scan) == {"log_torn": 1}


def test_bad_payload_checksum_drops_that_record_only(tmp_path):
    payloads = _payloads(5)
    _write(tmp_path, payloads).close()
    [(_, path)] = segments(tmp_path)
    third = _record_offsets(path)[2]
    data = bytearray(path.read_bytes())
    data[third + FRAME.size + 7] ^= 0xFF
    path.write_bytes(bytes(data))
    records, scan = _read(tmp_path)
    assert [seq for seq, _ in records] == [1, 2, 4, 5]
    assert _reasons(scan) == {"log_checksum": 1}
    assert "record 3 checksum mismatch" in scan.damage[0].detail


def test_bad_header_checksum_ends_the_segment_but_not_the_log(tmp_path):
    log = _write(tmp_path, _payloads(4))
    log.rotate()
    log.sync(log.append(b"next segment"))
    log.close()
    first = segments(tmp_path)[0][1]
    second = _record_offsets(first)[1]
    data = bytearray(first.read_bytes())
    data[second + 2] ^= 0x01  # the length field of record 2
    first.write_bytes(bytes(data))
    records, scan = _read(tmp_path)
    assert [seq for seq, _ in records] == [1, 5]
    assert _reasons(scan) == {"log_checksum": 1, "log_gap": 2}  # record 2, then 3..4


def test_zero_filled_tail_is_a_torn_write(tmp_path):
    _write(tmp_path, _payloads(2)).close()
    [(_, path)] = segments(tmp_path)
    with path.open("ab") as f:
        f.write(b"\0" * 4096)
    records, scan = _read(tmp_path)
    assert [seq for seq, _ in records] == [1, 2]
    assert _reasons(scan) == {"log_torn": 1}


@pytest.mark.parametrize("keep", [0, 5, SEGMENT_HEADER.size - 1])
def test_segment_truncated_inside_its_header_is_dropped_whole(tmp_path, keep):
    log = _write(tmp_path, _payloads(3))
    log.rotate()
    for p in _payloads(2):
        log.sync(log.append(p))
    log.close()
    first = segments(tmp_path)[0][1]
    os.truncate(first, keep)
    records, scan = _read(tmp_path)
    assert [seq for seq, _ in records] == [4, 5]
    assert _reasons(scan) == {"log_segment": 1, "log_gap": 3}


def test_truncated_segment_loses_its_tail_and_the_gap_is_counted(tmp_path):
    log = _write(tmp_path, _payloads(6))
    log.rotate()
    log.sync(log.append(b"later"))
    log.close()
    first = segments(tmp_path)[0][1]
    os.truncate(first, _record_offsets(first)[2] + 40)  # inside record 3
    records, scan = _read(tmp_path)
    assert [seq for seq, _ in records] == [1, 2, 7]
    assert _reasons(scan) == {"log_torn": 1, "log_gap": 3}


def test_foreign_file_with_a_segment_name_is_dropped(tmp_path):
    _write(tmp_path, _payloads(2)).close()
    (tmp_path / wal.segment_name(3)).write_bytes(b"not a log segment at all, just text\n")
    records, scan = _read(tmp_path)
    assert [seq for seq, _ in records] == [1, 2]
    assert _reasons(scan) == {"log_segment": 1}


def test_damage_inside_covered_records_costs_nothing(tmp_path):
    _write(tmp_path, _payloads(4)).close()
    [(_, path)] = segments(tmp_path)
    second = _record_offsets(path)[1]
    data = bytearray(path.read_bytes())
    data[second + FRAME.size + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    records, scan = _read(tmp_path, after=2)
    assert [seq for seq, _ in records] == [3, 4]
    assert scan.damage == []


def test_a_new_log_never_reuses_a_damaged_segment_name(tmp_path):
    (tmp_path / wal.segment_name(5)).write_bytes(b"garbage that is longer than a header....")
    log = WriteAheadLog(tmp_path, next_seq=5)
    log.sync(log.append(b"fresh"))
    log.close()
    assert (tmp_path / (wal.segment_name(5) + ".damaged")).exists()
    records, _ = _read(tmp_path, after=4)
    assert records == [(5, b"fresh")]
