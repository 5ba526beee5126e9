"""Checkpoints of analyzer state in an embedded SQLite database (``state.db``).

The database holds one checkpoint: a row per analyzer instance (analyzer name, key, snapshot
blob and its BLAKE2b digest) and a ``meta`` row naming the last write-ahead-log record the
checkpoint covers. :meth:`CheckpointStore.write` replaces the previous checkpoint in a single
transaction (rows whose digest is unchanged are not rewritten), so the entries and the covered
log position always change together: a crash leaves either the old checkpoint or the new one.

SQLite runs in WAL journal mode with ``synchronous=FULL``; every write ends with a truncating
WAL checkpoint so ``state.db`` alone holds the whole state (a plain file copy is a backup).

Reading tolerates damage instead of refusing to start: a file SQLite cannot read as a database
is moved aside (``state.db.damaged-<UTC time>``) and a fresh one is created; an entry that does
not read or whose digest does not match is dropped and the others are kept. Every drop is a
:class:`~otel_mlobs.processor.wal.Damage` the caller logs and counts.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from otel_mlobs.processor.records import Key
from otel_mlobs.processor.router import SnapshotKey
from otel_mlobs.processor.wal import Damage

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    analyzer TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    component TEXT NOT NULL,
    model TEXT NOT NULL,
    digest BLOB NOT NULL,
    blob BLOB NOT NULL,
    UNIQUE (analyzer, pipeline, component, model)
);
"""


def digest(blob: bytes) -> bytes:
    """128-bit BLAKE2b: detects damage to a blob and tells an unchanged entry from a new one."""
    return hashlib.blake2b(blob, digest_size=16).digest()


@dataclass
class Checkpoint:
    """What :meth:`CheckpointStore.load` found."""

    covers: int = 0  # last write-ahead-log record included in the entries
    written_at: float | None = None  # unix time of the write, None when there is none
    entries: dict[SnapshotKey, bytes] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Figures of one checkpoint write."""

    entries: int  # entries in the checkpoint
    rewritten: int  # entries whose blob changed and was written
    size_bytes: int  # sum of every entry's blob
    written_bytes: int  # sum of the rewritten blobs
    seconds: float


class StateFormatError(OSError):
    """The state file was written by a newer, incompatible version: refuse rather than lose it."""


class CheckpointStore:
    """One ``state.db``; safe to call from several threads (calls are serialized)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._digests: dict[SnapshotKey, bytes] = {}  # what the database holds now
        self._bad_ids: list[int] = []  # damaged rows, deleted by the next write

    # --- opening and loading ------------------------------------------------------------------

    def load(self) -> Checkpoint:
        """Open the database (creating it if absent) and read the checkpoint it holds."""
        with self._lock:
            damage: list[Damage] = []
            try:
                self._conn = self._connect()
                checkpoint = self._read(self._conn)
            except sqlite3.DatabaseError as exc:
                self._close_quietly()
                moved = self._quarantine()
                detail = f"{self.path.name}: unreadable ({exc}); moved to {moved.name}"
                logger.error("checkpoint dropped: %s", detail)
                damage.append(Damage("checkpoint_file", 1, detail))
                self._conn = self._connect()
                checkpoint = self._read(self._conn)
            checkpoint.damage[:0] = damage
            return checkpoint

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA journal_size_limit=67108864")
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _read(self, conn: sqlite3.Connection) -> Checkpoint:
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        version = int(meta.get("schema_version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise StateFormatError(
                f"{self.path} has state format {version}; this processor reads up to "
                f"{SCHEMA_VERSION}: upgrade the processor or point it at another state directory"
            )
        out = Checkpoint(covers=int(meta.get("covers_seq", 0)), written_at=meta.get("written_at"))
        self._digests, self._bad_ids = {}, []
        ids = [row[0] for row in conn.execute("SELECT id FROM entries ORDER BY id")]
        for entry_id in ids:
            try:
                row = conn.execute(
                    "SELECT analyzer, pipeline, component, model, digest, blob "
                    "FROM entries WHERE id = ?",
                    (entry_id,),
                ).fetchone()
                name, pipeline, component, model, stored, blob = row
                key = Key(str(pipeline), str(component), str(model))
                blob, stored = bytes(blob), bytes(stored)
            except (sqlite3.DatabaseError, TypeError, ValueError) as exc:
                out.damage.append(Damage("checkpoint_entry", 1, f"entry #{entry_id}: {exc}"))
                self._bad_ids.append(entry_id)
                continue
            if digest(blob) != stored:
                out.damage.append(
                    Damage("checkpoint_entry", 1, f"{name} {key}: snapshot digest mismatch")
                )
                self._bad_ids.append(entry_id)
                continue
            out.entries[(name, key)] = blob
            self._digests[(name, key)] = stored
        for d in out.damage:
            logger.warning("checkpoint damage (%s): %s", d.reason, d.detail)
        return out

    def _quarantine(self) -> Path:
        """Move the unreadable database (and its SQLite side files) aside, keeping it."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(target.with_name(target.name + suffix))
        self.path.rename(target)
        return target

    # --- writing ------------------------------------------------------------------------------

    def write(self, entries: Mapping[SnapshotKey, bytes], covers: int) -> WriteResult:
        """Replace the checkpoint by ``entries``, covering the log through record ``covers``."""
        start = time.perf_counter()
        digests = {k: digest(v) for k, v in entries.items()}
        with self._lock:
            conn = self._conn
            if conn is None:
                raise sqlite3.ProgrammingError("checkpoint store is not open")
            changed = [k for k, d in digests.items() if self._digests.get(k) != d]
            gone = [k for k in self._digests if k not in digests]
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in self._bad_ids])
                conn.executemany(
                    "DELETE FROM entries WHERE analyzer = ? AND pipeline = ? AND component = ? "
                    "AND model = ?",
                    [(n, k.pipeline, k.component, k.model) for n, k in gone],
                )
                for name, key in changed:
                    conn.execute(
                        "INSERT INTO entries (analyzer, pipeline, component, model, digest, blob) "
                        "VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (analyzer, pipeline, component, model) "
                        "DO UPDATE SET digest = excluded.digest, blob = excluded.blob",
                        (name, key.pipeline, key.component, key.model, digests[(name, key)],
                         entries[(name, key)]),
                    )  # fmt: skip
                conn.executemany(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    [("covers_seq", covers), ("written_at", time.time())],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._digests, self._bad_ids = digests, []
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return WriteResult(
            entries=len(entries),
            rewritten=len(changed),
            size_bytes=sum(len(v) for v in entries.values()),
            written_bytes=sum(len(entries[k]) for k in changed),
            seconds=time.perf_counter() - start,
        )

    def file_bytes(self) -> int:
        """Size on disk of the database and its SQLite side files."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += self.path.with_name(self.path.name + suffix).stat().st_size
            except FileNotFoundError:
                continue
        return total

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                logger.exception("closing %s", self.path)
            self._conn = None
