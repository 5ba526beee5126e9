"""The write-ahead log: every accepted batch, made durable before its client is acknowledged.

Layout: a directory of segment files named after the sequence number of their first record
(``00000000000000000042.log``). A segment starts with a 20-byte header (magic, format version,
first sequence number); records follow, each framed as::

    length u64 | seq u64 | payload crc32 u32 | header crc32 u32 | payload (length bytes)

The header CRC covers length and seq, so a record whose payload is damaged can be skipped (its
length is still trusted) while a damaged header ends the segment (nothing after it can be
framed). Records are numbered 1, 2, 3... without gaps, across segments and restarts.

A checkpoint names the last record it covers; segments wholly covered are deleted after the
checkpoint commits (:meth:`WriteAheadLog.drop_through`), so a crash between the two only leaves
records that replay skips by number.

Writes go straight to the file descriptor; durability is group-committed: :meth:`sync` issues one
``fdatasync`` for every record written so far, so receivers waiting at the same time share it.
Lock order is ``_sync_lock`` then ``_append_lock``, everywhere.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MAGIC = b"MLOBSLOG"
FORMAT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sIQ")  # magic, format version, first seq
FRAME = struct.Struct("<QQII")  # length, seq, payload crc32, header crc32
_FRAME_FIELDS = struct.Struct("<QQ")
_SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.log"


Payload = bytes | Sequence[bytes]  # one record's bytes, whole or as consecutive parts


def payload_crc(payload: Payload) -> int:
    """CRC-32 of a payload, whole or in parts (the parts are not joined)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return zlib.crc32(payload)
    crc = 0
    for part in payload:
        crc = zlib.crc32(part, crc)
    return crc


def frame_header(seq: int, length: int, crc: int) -> bytes:
    """The header that precedes a payload of ``length`` bytes in the log."""
    fields = _FRAME_FIELDS.pack(length, seq)
    return fields + struct.pack("<II", crc, zlib.crc32(fields))


def frame(seq: int, payload: Payload, crc: int | None = None) -> bytes:
    """One framed record as one bytes object (``crc`` may be computed beforehand)."""
    parts = [payload] if isinstance(payload, bytes | bytearray | memoryview) else list(payload)
    crc = payload_crc(parts) if crc is None else crc
    return frame_header(seq, sum(map(len, parts)), crc) + b"".join(parts)


def segments(directory: Path) -> list[tuple[int, Path]]:
    """``(first seq, path)`` of every segment file, in order; other files are ignored."""
    out = []
    for path in directory.iterdir():
        match = _SEGMENT_NAME.match(path.name)
        if match and path.is_file():
            out.append((int(match.group(1)), path))
    return sorted(out)


def fsync_directory(directory: Path) -> None:
    """Make file creations and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- writing ------------------------------------------------------------------------------------


class WriteAheadLog:
    """Appends records to the current segment; thread-safe.

    Parameters
    ----------
    directory
        Where the segments live (created if missing).
    next_seq
        Number of the next record: one past everything recovery saw, so numbers never repeat.
    """

    def __init__(self, directory: Path, next_seq: int) -> None:
        if next_seq < 1:
            raise ValueError(f"Invalid 'next_seq': {next_seq}; expected >= 1")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._sync_lock = threading.Lock()
        self._append_lock = threading.Lock()
        self._next = next_seq
        self._written = next_seq - 1  # last record written to the current file
        self._durable = next_seq - 1  # last record known to be on disk
        self._fd = -1
        self._first = next_seq  # first seq of the current segment
        self._size = 0  # bytes in the current segment
        self._closed = False
        self._open_segment(next_seq)

    # -- segments --
    def _open_segment(self, first_seq: int) -> None:
        path = self.directory / segment_name(first_seq)
        if path.exists() and path.stat().st_size > SEGMENT_HEADER.size:
            # Holds nothing readable (recovery numbers past every intact record), but keep the
            # bytes for whoever investigates.
            path.rename(path.with_name(path.name + ".damaged"))
        # O_APPEND: after a failed write is cut back, the next one lands at the new end.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            header = SEGMENT_HEADER.pack(MAGIC, FORMAT_VERSION, first_seq)
            _write_all(fd, [header])
            os.fsync(fd)
            fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._first, self._size = fd, first_seq, len(header)

    def rotate(self) -> None:
        """Close the current segment (durably) and start the next one, if it holds records."""
        with self._sync_lock, self._append_lock:
            if self._closed or self._next == self._first:
                return
            os.fdatasync(self._fd)
            self._durable = self._written
            os.close(self._fd)
            self._fd = -1
            self._open_segment(self._next)

    def drop_through(self, seq: int) -> int:
        """Delete the closed segments whose records are all numbered ``<= seq``; bytes freed."""
        with self._append_lock:
            current = self._first
        found = segments(self.directory)
        freed = 0
        for (first, path), (next_first, _) in zip(found, found[1:], strict=False):
            if first >= current or next_first - 1 > seq:
                break
            freed += path.stat().st_size
            path.unlink()
        if freed:
            fsync_directory(self.directory)
        return freed

    # -- records --
    def append(self, payload: Payload, crc: int | None = None) -> int:
        """Write one record (not yet durable: call :meth:`sync`); returns its number.

        ``payload`` may come in parts (say a format tag and a request body): they are written
        with one ``writev``, never joined, since a payload is megabytes and a copy costs as much
        as the write. ``crc`` (of the whole payload) may be computed beforehand, outside the lock.

        On a failed write the segment is cut back to its last whole record, so a full disk
        leaves no torn record in the middle of the log; the ``OSError`` propagates.
        """
        parts = [payload] if isinstance(payload, bytes | bytearray | memoryview) else list(payload)
        crc = payload_crc(parts) if crc is None else crc
        length = sum(map(len, parts))
        with self._append_lock:
            if self._closed:
                raise OSError(errno.EBADF, "write-ahead log is closed")
            seq = self._next
            try:
                _write_all(self._fd, [frame_header(seq, length, crc), *parts])
            except OSError:
                self._cut_back()
                raise
            self._size += FRAME.size + length
            self._written = seq
            self._next = seq + 1
            return seq

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            logger.exception("cannot cut the write-ahead log back after a failed write")

    def sync(self, seq: int) -> None:
        """Return once record ``seq`` (and every earlier one) is on disk; one fsync serves many."""
        if self._durable >= seq:
            return
        with self._sync_lock:
            if self._durable >= seq:
                return
            with self._append_lock:
                if self._closed:
                    raise OSError(errno.EBADF, "write-ahead log is closed")
                fd, target = self._fd, self._written
            os.fdatasync(fd)  # rotate/close need _sync_lock: fd stays open meanwhile
            self._durable = target

    @property
    def last_seq(self) -> int:
        """Number of the last record appended."""
        return self._written

    def size_bytes(self) -> int:
        """Bytes in every segment on disk."""
        total = 0
        for _, path in segments(self.directory):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def close(self) -> None:
        """Make everything durable and close the file; later appends raise ``OSError``."""
        with self._sync_lock, self._append_lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.fdatasync(self._fd)
                self._durable = self._written
            finally:
                os.close(self._fd)
                self._fd = -1


def _write_all(fd: int, parts: list[bytes]) -> None:
    """``writev`` every part, going on after a short write (a signal, a nearly full disk)."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Damage:
    """Something recovery could not use: what kind, how many items, and where."""

    reason: str
    count: int
    detail: str


class LogScan:
    """Iterate the intact records numbered after ``after``, in order, noting what is damaged.

    Damage kinds (``Damage.reason``):

    ``log_torn``
        The last record of a segment is incomplete (a crash while writing it; it was never
        acknowledged). The rest of the segment is empty by construction.
    ``log_checksum``
        A record's payload fails its CRC: that record is dropped and reading goes on. Or a
        record header fails its CRC: nothing after it in the segment can be framed, so the
        rest of that segment is dropped.
    ``log_segment``
        A segment file whose own header is missing, short or foreign: the whole file is dropped
        (counted once per file).
    ``log_gap``
        Record numbers missing between what was read: records of a dropped or deleted segment,
        or those after a damaged header (counted per record).

    Each count is of records unless said otherwise; damage to a record the checkpoint already
    covers costs nothing and is not reported.
    """

    def __init__(self, directory: Path, after: int) -> None:
        self.directory = directory
        self.after = after
        self.damage: list[Damage] = []
        self.last_seq = after  # highest record number seen intact (or covered)
        self.records = 0  # records yielded

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        if not self.directory.is_dir():
            return
        found = segments(self.directory)
        for i, (first, path) in enumerate(found):
            if i + 1 < len(found) and found[i + 1][0] - 1 <= self.after:
                continue  # every record in it is covered by the checkpoint
            try:
                yield from self._segment(first, path)
            except OSError as exc:
                self._damaged("log_segment", 1, f"{path.name}: unreadable ({exc})")

    def highest_segment_start(self) -> int:
        """First number of the last segment file (0 when none): new numbers must exceed it."""
        found = segments(self.directory) if self.directory.is_dir() else []
        return found[-1][0] if found else 0

    def _damaged(self, reason: str, count: int, detail: str) -> None:
        self.damage.append(Damage(reason, count, detail))
        logger.warning("write-ahead log damage (%s): %s", reason, detail)

    def _segment(self, first: int, path: Path) -> Iterator[tuple[int, bytes]]:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(SEGMENT_HEADER.size)
            if len(head) < SEGMENT_HEADER.size:
                self._damaged("log_segment", 1, f"{path.name}: {len(head)}-byte file, no header")
                return
            magic, version, declared = SEGMENT_HEADER.unpack(head)
            if magic != MAGIC or version != FORMAT_VERSION or declared != first:
                self._damaged(
                    "log_segment",
                    1,
                    f"{path.name}: not a segment of this format "
                    f"(magic {magic!r}, version {version}, first {declared})",
                )
                return
            position = first - 1  # number of the last record framed in this segment
            while True:
                offset = f.tell()
                header = f.read(FRAME.size)
                if not header:
                    return
                where = f"{path.name}@{offset}"
                if len(header) < FRAME.size:
                    self._lost("log_torn", position + 1, f"{where}: record header cut short")
                    return
                length, seq, payload_crc, header_crc = FRAME.unpack(header)
                if zlib.crc32(header[: _FRAME_FIELDS.size]) != header_crc:
                    if _zeros_from(f, offset):
                        self._lost("log_torn", position + 1, f"{where}: zero-filled tail")
                    else:  # framing is lost: whatever follows in this segment is unreadable
                        self._lost(
                            "log_checksum",
                            position + 1,
                            f"{where}: record header checksum mismatch; {size - offset} bytes "
                            "to the end of the segment dropped",
                            always=True,
                        )
                    return
                position = seq
                if offset + FRAME.size + length > size:
                    self._lost(
                        "log_torn",
                        seq,
                        f"{where}: record {seq} cut short "
                        f"({size - offset - FRAME.size} of {length} bytes)",
                    )
                    return
                payload = f.read(length)
                if zlib.crc32(payload) != payload_crc:
                    self._lost("log_checksum", seq, f"{where}: record {seq} checksum mismatch")
                    continue
                if seq <= self.after or seq <= self.last_seq:
                    continue  # covered by the checkpoint (or a duplicate number)
                self._skip_to(seq, path, offset)
                self.records += 1
                yield seq, payload

    def _lost(self, reason: str, seq: int, detail: str, always: bool = False) -> None:
        """Record ``seq`` (exact, or the next number when its header is unreadable) is lost.

        A record the checkpoint covers costs nothing and is not reported, unless the damage
        also hides what follows it (``always``).
        """
        if seq > max(self.after, self.last_seq):
            self._damaged(reason, 1, detail)
            self._skip_to(seq, None, 0)
        elif always:
            self._damaged(reason, 1, detail)

    def _skip_to(self, seq: int, path: Path | None, offset: int) -> None:
        """Record ``seq`` is the latest seen; numbers skipped before it are a gap."""
        if seq > self.last_seq + 1:
            where = "" if path is None else f" before {path.name}@{offset}"
            self._damaged(
                "log_gap",
                seq - self.last_seq - 1,
                f"records {self.last_seq + 1}..{seq - 1} missing{where}",
            )
        self.last_seq = seq


def _zeros_from(f, offset: int) -> bool:  # noqa: ANN001 - a binary file object
    """Whether the file holds only zero bytes from ``offset`` (a preallocated, unwritten tail)."""
    f.seek(offset)
    while chunk := f.read(1 << 20):
        if chunk.count(0) != len(chunk):
            return False
    return True
