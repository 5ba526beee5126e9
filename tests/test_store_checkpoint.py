"""The SQLite checkpoint store: atomic replacement, unchanged entries kept, damage survived."""

from __future__ import annotations

import sqlite3

import pytest

from otel_mlobs.processor import store as store_mod
from otel_mlobs.processor.records import Key
from otel_mlobs.processor.store import CheckpointStore, StateFormatError

A = ("runs", Key("taxi", "clean"))
B = ("traffic", Key("taxi", "", "tips"))
C = ("model_accuracy", Key("taxi", "", "tips"))


def _open(path) -> CheckpointStore:
    s = CheckpointStore(path)
    s.load()
    return s


def test_empty_store_loads_as_nothing_covered(tmp_path):
    checkpoint = CheckpointStore(tmp_path / "state.db").load()
    assert (checkpoint.covers, checkpoint.entries, checkpoint.damage) == (0, {}, [])
    assert checkpoint.written_at is None


def test_write_then_load_round_trips(tmp_path):
    s = _open(tmp_path / "state.db")
    entries = {A: b"a" * 1000, B: bytes(range(256)), C: b""}
    result = s.write(entries, covers=42)
    assert (result.entries, result.rewritten, result.size_bytes) == (3, 3, 1256)
    s.close()
    checkpoint = CheckpointStore(tmp_path / "state.db").load()
    assert checkpoint.entries == entries
    assert checkpoint.covers == 42 and checkpoint.written_at is not None


def test_unchanged_entries_are_not_rewritten_and_gone_ones_are_deleted(tmp_path):
    s = _open(tmp_path / "state.db")
    s.write({A: b"one", B: b"two"}, covers=1)
    result = s.write({A: b"one", C: b"three"}, covers=2)
    assert (result.rewritten, result.written_bytes) == (1, 5)
    s.close()
    checkpoint = CheckpointStore(tmp_path / "state.db").load()
    assert checkpoint.entries == {A: b"one", C: b"three"} and checkpoint.covers == 2


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    s = _open(tmp_path / "state.db")
    s.write({A: b"old"}, covers=5)

    class Boom(Exception):
        pass

    calls = []
    real_digest = store_mod.digest

    def digest_then_fail(blob: bytes) -> bytes:
        calls.append(blob)
        if len(calls) > 1:
            raise Boom
        return real_digest(blob)

    monkeypatch.setattr(store_mod, "digest", digest_then_fail)
    with pytest.raises(Boom):
        s.write({A: b"new", B: b"more"}, covers=9)
    monkeypatch.undo()
    s.close()
    checkpoint = CheckpointStore(tmp_path / "state.db").load()
    assert checkpoint.entries == {A: b"old"} and checkpoint.covers == 5


def test_the_database_file_alone_holds_the_checkpoint(tmp_path):
    s = _open(tmp_path / "state.db")
    s.write({A: b"x" * 100_000}, covers=3)
    # No close: a copy of state.db taken now (a backup) must already hold everything.
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "state.db").read_bytes())
    assert CheckpointStore(copy).load().entries == {A: b"x" * 100_000}
    s.close()


# --- damage -------------------------------------------------------------------------------------


def test_corrupt_blob_drops_that_entry_and_keeps_the_others(tmp_path):
    s = _open(tmp_path / "state.db")
    s.write({A: b"alpha" * 50, B: b"beta" * 50}, covers=7)
    s.close()
    with sqlite3.connect(tmp_path / "state.db") as conn:  # flip bytes behind the digest's back
        conn.execute("UPDATE entries SET blob = ? WHERE analyzer = 'runs'", (b"alphX" * 50,))
    s = CheckpointStore(tmp_path / "state.db")
    checkpoint = s.load()
    assert checkpoint.entries == {B: b"beta" * 50} and checkpoint.covers == 7
    assert [(d.reason, d.count) for d in checkpoint.damage] == [("checkpoint_entry", 1)]
    assert "runs" in checkpoint.damage[0].detail
    # The next checkpoint replaces the damaged row.
    s.write({A: b"rebuilt", B: b"beta" * 50}, covers=8)
    s.close()
    reloaded = CheckpointStore(tmp_path / "state.db").load()
    assert reloaded.entries == {A: b"rebuilt", B: b"beta" * 50} and reloaded.damage == []


def test_file_that_is_not_a_database_is_moved_aside_and_replaced(tmp_path, caplog):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an SQLite database, whatever its name says" * 100)
    checkpoint = CheckpointStore(path).load()
    assert (checkpoint.covers, checkpoint.entries) == (0, {})
    assert [(d.reason, d.count) for d in checkpoint.damage] == [("checkpoint_file", 1)]
    moved = list(tmp_path.glob("state.db.damaged-*"))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not an SQLite")
    assert "moved to state.db.damaged-" in caplog.text
    s = _open(path)  # the fresh database works
    s.write({A: b"new"}, covers=1)
    s.close()


def test_truncated_database_is_survived(tmp_path):
    path = tmp_path / "state.db"
    s = _open(path)
    s.write({(f"e{i}", Key("p", str(i))): bytes([i]) * 20_000 for i in range(20)}, covers=11)
    s.close()
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)
    checkpoint = CheckpointStore(path).load()
    assert checkpoint.damage, "truncation must be noticed"
    assert {d.reason for d in checkpoint.damage} <= {"checkpoint_file", "checkpoint_entry"}
    assert len(checkpoint.entries) + sum(d.count for d in checkpoint.damage) >= 1
    for (name, key), blob in checkpoint.entries.items():  # whatever is kept is intact
        assert blob == bytes([int(key.component)]) * 20_000 and name == f"e{key.component}"


def test_newer_state_format_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "state.db"
    _open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = 99 WHERE name = 'schema_version'")
    with pytest.raises(StateFormatError, match="state format 99"):
        CheckpointStore(path).load()
    assert path.exists() and not list(tmp_path.glob("*.damaged-*"))
