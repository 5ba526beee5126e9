"""Durable processor state: recovery at start, the ingest journal, periodic checkpoints.

A state directory holds ``state.db`` (:mod:`.store`: the last checkpoint of every analyzer, and
the number of the last log record it covers), ``log/`` (:mod:`.wal`: every batch accepted since)
and a ``lock`` file that keeps a second processor out.

* **Accept**: the ingest queue hands each batch to :meth:`Persistence.append` (which numbers it
  in queue order) and waits on :meth:`Persistence.sync` before the receiver answers, so nothing
  is acknowledged before it is on disk. A batch is logged as the protobuf request it came in
  (when those bytes decode to exactly its records, see :func:`.ingest.redacted`), else as its
  pickled records; replay decodes the first kind again.
* **Checkpoint**: every ``checkpoint_interval_s`` (and at a clean stop) the analyzers are
  snapshotted under the state lock together with the number of the last batch applied and the
  identifier decisions of :class:`.privacy.IdHasher` (entry :data:`ID_DECISIONS`); the
  snapshot and that number commit in one SQLite transaction; log segments wholly covered are
  deleted afterwards.
* **Recover**: load the checkpoint, restore the analyzers and the identifier decisions, then
  replay the log records after the covered number, in order. Damage (a torn or corrupt record,
  an unreadable file) costs only what is damaged: it is logged, counted by reason, and the
  processor starts with the rest.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_mlobs.processor.decode import decode_request
from otel_mlobs.processor.ingest import Batch
from otel_mlobs.processor.privacy import IdHasher
from otel_mlobs.processor.records import Key, Record
from otel_mlobs.processor.router import Router
from otel_mlobs.processor.store import CheckpointStore, WriteResult
from otel_mlobs.processor.wal import Damage, LogScan, WriteAheadLog, payload_crc

logger = logging.getLogger(__name__)

STATE_FILE = "state.db"
LOG_DIR = "log"
LOCK_FILE = "lock"
# First byte of a log payload: how the batch is encoded.
_PAYLOAD_VERSION = b"\x01"  # pickled records
_PAYLOAD_OTLP = b"\x02"  # a serialized ExportTraceServiceRequest, decoded again on replay
ID_DECISIONS = ("_id_decisions", Key(""))
"""Checkpoint entry of the identifier hasher's decisions (no analyzer is named with a ``_``)."""

DAMAGE_REASONS = (
    "log_torn",
    "log_checksum",
    "log_segment",
    "log_gap",
    "log_undecodable",
    "checkpoint_file",
    "checkpoint_entry",
)


def encode_records(records: list[Record]) -> bytes:
    """A batch as one log payload: pickled records, numpy arrays as raw buffers."""
    return _PAYLOAD_VERSION + pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)


def decode_records(payload: bytes) -> list[Record]:
    """The records of a log payload. A request payload is decoded as the receiver decoded it
    and not redacted again: it was logged as received only because redaction replaced nothing
    in it (:func:`.ingest.redacted`), so its records are exactly the ones first applied, whatever
    the identifier decisions are at replay time."""
    tag, body = payload[:1], memoryview(payload)[1:]
    if tag == _PAYLOAD_OTLP:
        request = ExportTraceServiceRequest.FromString(body)
        return decode_request(request).records
    if tag != _PAYLOAD_VERSION:
        raise ValueError(f"unknown log payload version {tag!r}")
    records = pickle.loads(body)  # noqa: S301 - written by this processor only
    if not isinstance(records, list):
        raise ValueError(f"log payload holds a {type(records).__name__}, not a list of records")
    return records


@dataclass
class Prepared:
    """A batch encoded (and checksummed) outside the queue's lock, in parts never joined."""

    parts: tuple[bytes, ...]
    crc: int


@dataclass
class Recovery:
    """What start-up found and did; also the source of the ``mlobs_processor_state_*`` gauges."""

    restored_entries: int = 0
    replayed_batches: int = 0
    replayed_records: int = 0
    covered_seq: int = 0  # log position of the checkpoint loaded
    last_seq: int = 0  # log position after replay (numbers skipped by damage included)
    checkpoint_written_at: float | None = None
    seconds: float = 0.0
    damage: list[Damage] = field(default_factory=list)


class StateDirLocked(OSError):
    """Another processor holds the state directory."""


class Persistence:
    """The state directory of one processor.

    Parameters
    ----------
    state_dir
        Created if missing.
    checkpoint_interval_s
        Seconds between checkpoints while batches keep arriving.
    router, lock
        The analyzers and the state lock the worker applies batches under.
    applied
        The number of the last log record the worker applied; read under ``lock``.
    id_hasher
        The receivers' identifier hasher, whose decisions (which columns are identifiers) are
        checkpointed with the analyzers and restored before replay.
    """

    def __init__(
        self,
        state_dir: Path,
        checkpoint_interval_s: float,
        router: Router,
        lock: threading.RLock,
        applied: Callable[[], int],
        id_hasher: IdHasher | None = None,
    ) -> None:
        if checkpoint_interval_s <= 0:
            raise ValueError(f"Invalid 'checkpoint_interval_s': {checkpoint_interval_s!r}")
        self.state_dir = state_dir
        self.checkpoint_interval_s = checkpoint_interval_s
        self._router = router
        self._lock = lock
        self._applied = applied
        self._id_hasher = id_hasher
        self._store = CheckpointStore(state_dir / STATE_FILE)
        self._wal: WriteAheadLog | None = None
        self._lock_fd = -1
        self._covered = 0
        self._checkpoint_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recovery = Recovery()
        self.dropped: Counter[str] = Counter(dict.fromkeys(DAMAGE_REASONS, 0))
        self.write_errors: Counter[str] = Counter()
        self.checkpoints = 0
        self.last_checkpoint: WriteResult | None = None
        self.last_checkpoint_at: float | None = None
        self.snapshot_seconds = 0.0
        self.checkpoint_seconds_total = 0.0  # wall time of every checkpoint written, summed

    # --- start-up -----------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Lock the directory, load the checkpoint, replay the log; returns what happened.

        Call before the worker and the receivers start: replayed batches must precede new ones.
        """
        start = time.perf_counter()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            report = self._load_and_replay()
        except BaseException:
            self._store.close()
            self._release_lock()
            raise
        report.seconds = time.perf_counter() - start
        self.recovery = report
        for d in report.damage:
            self.dropped[d.reason] += d.count
        level = logging.WARNING if report.damage else logging.INFO
        logger.log(
            level,
            "state recovered from %s in %.2f s: %d analyzer snapshots (log position %d), "
            "%d batches (%d records) replayed%s",
            self.state_dir,
            report.seconds,
            report.restored_entries,
            report.covered_seq,
            report.replayed_batches,
            report.replayed_records,
            _damage_summary(report.damage),
        )
        return report

    def _load_and_replay(self) -> Recovery:
        checkpoint = self._store.load()
        report = Recovery(
            covered_seq=checkpoint.covers,
            checkpoint_written_at=checkpoint.written_at,
            damage=list(checkpoint.damage),
        )
        entries = dict(checkpoint.entries)
        decisions = entries.pop(ID_DECISIONS, None)
        if decisions is not None and self._id_hasher is not None:
            try:
                self._id_hasher.import_decisions(decisions)
            except ValueError as exc:
                report.damage.append(Damage("checkpoint_entry", 1, f"{exc}"))
        with self._lock:
            skipped = self._router.restore(entries)
        for name, key in skipped:
            report.damage.append(
                Damage("checkpoint_entry", 1, f"{name} {key}: snapshot does not restore")
            )
        report.restored_entries = len(entries) - len(skipped)
        log_dir = self.state_dir / LOG_DIR
        scan = LogScan(log_dir, after=checkpoint.covers)
        with self._lock:
            for seq, payload in scan:
                try:
                    records = decode_records(payload)
                except Exception as exc:  # an undecodable payload is damage, not a crash
                    report.damage.append(Damage("log_undecodable", 1, f"record {seq}: {exc}"))
                    logger.warning("write-ahead log record %d does not decode: %s", seq, exc)
                    continue
                self._router.dispatch_many(records)
                report.replayed_batches += 1
                report.replayed_records += len(records)
        report.damage.extend(scan.damage)
        # Numbers never repeat: past every record read, and no segment on disk starts later.
        report.last_seq = max(scan.last_seq, scan.highest_segment_start() - 1, checkpoint.covers)
        self._covered = checkpoint.covers
        self._wal = WriteAheadLog(log_dir, next_seq=report.last_seq + 1)
        return report

    def _take_lock(self) -> None:
        path = self.state_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateDirLocked(
                f"state directory {self.state_dir} is in use by another processor "
                f"(pid {holder}); give each processor its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = -1

    # --- the journal the ingest queue writes through ------------------------------------------

    def prepare(self, batch: Batch) -> Prepared:
        """Encode a batch (on the receiving thread, outside every lock): its request bytes as
        they are when it has them, else its pickled records."""
        if batch.wire is not None:
            parts: tuple[bytes, ...] = (_PAYLOAD_OTLP, batch.wire)
        else:
            parts = (encode_records(batch.records),)
        return Prepared(parts, payload_crc(parts))

    def append(self, prepared: Prepared) -> int:
        """Write a batch to the log (the queue calls this under its lock, fixing the order)."""
        assert self._wal is not None, "recover() first"
        try:
            return self._wal.append(prepared.parts, prepared.crc)
        except OSError:
            self._write_failed("log_append")
            raise

    def sync(self, seq: int) -> None:
        """Return once batch ``seq`` is on disk (the receiver acknowledges after this)."""
        assert self._wal is not None, "recover() first"
        try:
            self._wal.sync(seq)
        except OSError:
            self._write_failed("log_sync")
            raise

    def _write_failed(self, op: str) -> None:
        self.write_errors[op] += 1
        if op == "checkpoint":
            logger.exception("checkpoint failed; the log keeps every batch until the next one")
        else:
            logger.exception("state write failed (%s); the client is told to retry", op)

    # --- checkpoints --------------------------------------------------------------------------

    def start(self) -> None:
        """Start checkpointing in the background (the first one at once if recovery replayed)."""
        self._thread = threading.Thread(target=self._run, name="mlobs-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        recovered = self.recovery.last_seq != self.recovery.covered_seq
        wait = 0.0 if recovered else self.checkpoint_interval_s
        while not self._stop.wait(wait):
            try:
                self.checkpoint()
            except Exception:  # never let the checkpointer die; checkpoint() counts its failures
                logger.exception("checkpoint thread error")
            wait = self.checkpoint_interval_s

    def checkpoint(self, force: bool = False) -> bool:
        """Write a checkpoint if batches were applied since the last one (or ``force``).

        Returns whether one was written. A failure is logged and counted; the log keeps every
        batch since the previous checkpoint, so nothing is lost, and the next attempt retries.
        """
        with self._checkpoint_lock:
            if self._wal is None:
                return False
            start = time.perf_counter()
            try:
                with self._lock:
                    covers = self._applied()
                    if covers == self._covered and not force:
                        return False
                    # One analyzer that cannot snapshot fails the whole checkpoint: leaving it
                    # out would let the log it still needs be deleted.
                    entries = self._router.snapshot()
                    if self._id_hasher is not None:
                        entries[ID_DECISIONS] = self._id_hasher.export_decisions()
                self.snapshot_seconds = time.perf_counter() - start
                self._wal.rotate()  # the covered part becomes a closed, deletable segment
                result = self._store.write(entries, covers)
                self._covered = covers
                self._wal.drop_through(covers)
            except Exception:
                self._write_failed("checkpoint")
                return False
            self.checkpoints += 1
            self.checkpoint_seconds_total += time.perf_counter() - start
            self.last_checkpoint = result
            self.last_checkpoint_at = time.time()
            logger.debug(
                "checkpoint through log record %d: %d entries (%d rewritten), %d bytes, "
                "%.3f s (snapshot %.3f s)",
                covers,
                result.entries,
                result.rewritten,
                result.size_bytes,
                time.perf_counter() - start,
                self.snapshot_seconds,
            )
            return True

    @property
    def covered_seq(self) -> int:
        """Log position of the last checkpoint written or loaded."""
        return self._covered

    def log_bytes(self) -> int:
        return 0 if self._wal is None else self._wal.size_bytes()

    def log_pending(self) -> int:
        """Batches in the log not yet covered by a checkpoint."""
        return 0 if self._wal is None else max(0, self._wal.last_seq - self._covered)

    def state_bytes(self) -> int:
        return self._store.file_bytes()

    def status(self) -> dict[str, object]:
        """The ``persistence`` part of ``GET /api/v1/status``."""
        rec = self.recovery
        return {
            "state_dir": str(self.state_dir),
            "checkpoint_interval_s": self.checkpoint_interval_s,
            "checkpoint_covers": self._covered,
            "last_checkpoint_at": self.last_checkpoint_at or rec.checkpoint_written_at,
            "log_batches": self.log_pending(),
            "checkpoints": {
                "written": self.checkpoints,
                "seconds_total": self.checkpoint_seconds_total,
                "last_bytes": None
                if self.last_checkpoint is None
                else self.last_checkpoint.size_bytes,
            },
            "recovery": {
                "seconds": rec.seconds,
                "restored_entries": rec.restored_entries,
                "replayed_batches": rec.replayed_batches,
                "dropped": {r: n for r, n in self.dropped.items() if n},
            },
        }

    def close(self) -> None:
        """Stop checkpointing, write the final checkpoint, close the files, unlock.

        Call after the worker has stopped, so the final checkpoint covers everything applied.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._wal is not None:
            if self.checkpoint(force=True):
                logger.info("final checkpoint written through log record %d", self._covered)
            self._wal.close()
            self._wal = None
        self._store.close()
        self._release_lock()


def _damage_summary(damage: list[Damage]) -> str:
    if not damage:
        return ""
    by_reason = Counter()
    for d in damage:
        by_reason[d.reason] += d.count
    parts = ", ".join(f"{reason} {n}" for reason, n in sorted(by_reason.items()))
    return f"; dropped as damaged: {parts}"
