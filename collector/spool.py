"""The collector's write-ahead spool: accepted requests on disk until the store has them.

A request is appended and fsynced before the collector answers 2xx, so an acknowledged span
survives ``kill -9`` and store outages. Records live in segment files named by their first
byte offset; positions are global byte offsets. The state file holds the committed offset (all
records before it are in the store) and the batch being inserted, if any: a batch's bounds are
written before its insert, so after a crash the very same batch is replayed with the very same
insert deduplication token, and the store keeps one copy. The state is rewritten in place, in
two alternating checksummed slots of a preallocated file: a torn write leaves the other slot,
and a full disk cannot stop the commit that frees it.

Record: ``HOS1`` magic, payload length (u32), CRC-32 of the payload (u32), payload. A torn
record at the tail (a crash mid-write, never acknowledged) is cut off on open.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from handoffs.errors import UsageError

_HEADER = struct.Struct("<4sII")
_MAGIC = b"HOS1"
_STATE = "state"
_SLOT = 512  # bytes per state slot: JSON padded with spaces, then its CRC-32
_SUFFIX = ".seg"
_ROLL_WHEN_DRAINED = 64 << 10  # a drained segment this big is replaced by an empty one


class SpoolBusy(UsageError):
    """Another collector holds this spool directory."""


class SpoolFull(Exception):
    """The spool holds ``max_bytes`` not yet in the store: refuse with 429 until it drains."""


@dataclass(frozen=True)
class Record:
    """One spooled payload and where it lies: ``start`` up to ``end`` (the next record)."""

    start: int
    end: int
    payload: bytes


@dataclass(frozen=True)
class Pending:
    """A batch whose insert started: replay exactly these records, with this token."""

    start: int
    end: int

    def token(self, spool_id: str) -> str:
        return f"handoffs-{spool_id}-{self.start}-{self.end}"


class Spool:
    """Append-only segments on disk with a committed offset; one writer of appends, one reader.

    ``append`` is safe from many threads and syncs in groups: one fsync covers every record
    written before it started.
    """

    def __init__(self, directory: Path, max_bytes: int = 1 << 30, segment_bytes: int = 64 << 20) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the spool directory {self.directory}: {exc}; "
                             "pass --spool DIR on a writable disk") from exc
        self._dir_lock = open(self.directory / ".lock", "a+")
        try:  # one collector per spool: two writers would interleave records
            fcntl.flock(self._dir_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._dir_lock.close()
            raise SpoolBusy(f"another collector is using the spool {self.directory}; stop it or "
                            "pass --spool DIR for this one") from None
        self._lock = threading.Lock()  # appends and segment changes
        self._sync_lock = threading.Lock()
        state = self._read_state()
        self.spool_id: str = state.get("spool_id") or uuid.uuid4().hex[:12]
        self.committed: int = int(state.get("committed", 0))
        pending = state.get("pending")
        self.pending: Pending | None = Pending(*pending) if pending else None
        self._segments = self._scan_segments()
        self.end = self._recover_tail()
        self.synced = self.end
        self._file = open(self._segment_path(self._segments[-1]), "ab", buffering=0)
        if not state:
            self._write_state()

    # --- appending (request threads) -----------------------------------------------------------
    def append(self, payload: bytes, on_written: Callable[[int, int], None] | None = None) -> int:
        """Write one record and fsync it; return its end offset. Raises SpoolFull or OSError.

        ``on_written(start, end)`` runs once the record is written, before any reader can see
        it (the collector hands its decoded rows to the writer that way, keyed by ``start``).
        """
        record = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self.end - self.committed + len(record) > self.max_bytes:
                raise SpoolFull(f"the spool holds {self.end - self.committed} bytes not yet stored")
            if self.end - self._segments[-1] >= self.segment_bytes:
                self._roll()
            size_before = self.end - self._segments[-1]
            try:
                written = self._file.write(record)
                if written != len(record):
                    raise OSError(28, "short write to the spool")
            except OSError:
                # Leave no torn record behind: the next append must start on a record boundary.
                self._file.truncate(size_before)
                raise
            if on_written is not None:
                on_written(self.end, self.end + len(record))
            self.end += len(record)
            mine = self.end
        self._sync(mine)
        return mine

    def _sync(self, upto: int) -> None:
        with self._sync_lock:
            if self.synced >= upto:
                return  # another thread's fsync already covered this record
            with self._lock:
                target, fd = self.end, self._file.fileno()
            os.fsync(fd)
            self.synced = target

    def _roll(self) -> None:
        os.fsync(self._file.fileno())
        self._file.close()
        self._segments.append(self.end)
        self._file = open(self._segment_path(self.end), "ab", buffering=0)
        self._fsync_dir()

    # --- reading and committing (the writer thread) ----------------------------------------------
    def read(self, start: int, max_bytes: int = 16 << 20, stop: int | None = None) -> Iterator[Record]:
        """Records from ``start`` (a record boundary) up to ``stop`` or about ``max_bytes``."""
        with self._lock:
            end = self.synced if stop is None else stop
            segments = list(self._segments)
        pos, budget = start, max_bytes
        for i, seg_start in enumerate(segments):
            seg_end = segments[i + 1] if i + 1 < len(segments) else end
            if seg_end <= pos:
                continue
            with open(self._segment_path(seg_start), "rb") as fh:
                fh.seek(pos - seg_start)
                while pos < min(seg_end, end) and (budget > 0 or pos == start):
                    header = fh.read(_HEADER.size)
                    magic, length, crc = _HEADER.unpack(header)
                    payload = fh.read(length)
                    if magic != _MAGIC or zlib.crc32(payload) != crc:
                        raise RuntimeError(f"spool record at {pos} in {self.directory} is corrupt")
                    nxt = pos + _HEADER.size + length
                    yield Record(pos, nxt, payload)
                    pos = nxt
                    budget -= _HEADER.size + length
            if budget <= 0 or pos >= end:
                return

    def begin(self, start: int, end: int) -> Pending:
        """Record that the batch [start, end) is about to be inserted (before the insert)."""
        self.pending = Pending(start, end)
        self._write_state()
        return self.pending

    def commit(self, end: int) -> None:
        """Everything before ``end`` is in the store: advance, and delete whole segments behind."""
        self.committed = end
        self.pending = None
        self._write_state()
        with self._lock:
            if end == self.end and end - self._segments[-1] >= _ROLL_WHEN_DRAINED:
                self._roll()  # all stored: start afresh so the old segment can go (disk space)
            while len(self._segments) > 1 and self._segments[1] <= end:
                path = self._segment_path(self._segments.pop(0))
                path.unlink(missing_ok=True)

    @property
    def depth(self) -> int:
        """Bytes accepted but not yet in the store."""
        return self.end - self.committed

    def close(self) -> None:
        with self._lock:
            self._file.close()
            os.close(self._state_fd)
            self._dir_lock.close()

    # --- files ---------------------------------------------------------------------------------
    def _segment_path(self, start: int) -> Path:
        return self.directory / f"{start:020d}{_SUFFIX}"

    def _scan_segments(self) -> list[int]:
        starts = sorted(int(p.stem) for p in self.directory.glob("*" + _SUFFIX) if p.stem.isdigit())
        # Segments wholly before the committed offset are leftovers of a crash between commit
        # and delete.
        while len(starts) > 1 and starts[1] <= self.committed:
            self._segment_path(starts.pop(0)).unlink(missing_ok=True)
        if not starts:
            starts = [self.committed]
            self._segment_path(self.committed).touch()
        return starts

    def _recover_tail(self) -> int:
        """The end of the last whole record in the last segment; a torn tail is cut off."""
        start = self._segments[-1]
        path = self._segment_path(start)
        size = path.stat().st_size
        good = 0
        with open(path, "rb") as fh:
            while good + _HEADER.size <= size:
                magic, length, crc = _HEADER.unpack(fh.read(_HEADER.size))
                if magic != _MAGIC or good + _HEADER.size + length > size:
                    break
                if zlib.crc32(fh.read(length)) != crc:
                    break
                good += _HEADER.size + length
        if good != size:
            with open(path, "r+b") as fh:
                fh.truncate(good)
                os.fsync(fh.fileno())
        return start + good

    def _read_state(self) -> dict:
        """The newest valid slot of the state file ({} for a new spool)."""
        path = self.directory / _STATE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            raise UsageError(f"the spool state {path} is unreadable ({exc}); "
                             "move the spool directory aside to start empty") from exc
        best: dict = {}
        for offset in (0, _SLOT):
            slot = raw[offset:offset + _SLOT]
            if len(slot) != _SLOT or zlib.crc32(slot[:-4]) != struct.unpack("<I", slot[-4:])[0]:
                continue  # never written, or torn by a crash mid-write
            state = json.loads(slot[:-4])
            if state.get("seq", -1) > best.get("seq", -1):
                best = state
        if raw and not best:
            raise UsageError(f"the spool state {path} is corrupt; move the spool directory aside "
                             "to start empty (its segments can be replayed by hand)")
        self._seq = int(best.get("seq", 0))
        if not raw:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"\0" * 2 * _SLOT)  # preallocated: later writes need no new space
                os.fsync(fd)
            finally:
                os.close(fd)
            self._fsync_dir()
        self._state_fd = os.open(path, os.O_RDWR)
        return best

    def _write_state(self) -> None:
        self._seq += 1
        state = {"seq": self._seq, "spool_id": self.spool_id, "committed": self.committed,
                 "pending": [self.pending.start, self.pending.end] if self.pending else None}
        body = json.dumps(state).encode().ljust(_SLOT - 4)
        os.pwrite(self._state_fd, body + struct.pack("<I", zlib.crc32(body)), (self._seq % 2) * _SLOT)
        os.fsync(self._state_fd)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# A spooled payload: format version, project (u16-prefixed, empty when none), then the request
# in protobuf. OTLP/JSON is converted before spooling, so the writer has one format to read.
_PAYLOAD = struct.Struct("<BH")
_VERSION = 1
_NO_PROJECT = 0xFFFF


def pack(body: bytes, project: str | None) -> bytes:
    """A spool payload for a protobuf request body and the project its token maps to."""
    if project is None:
        return _PAYLOAD.pack(_VERSION, _NO_PROJECT) + body
    raw = project.encode()
    return _PAYLOAD.pack(_VERSION, len(raw)) + raw + body


def unpack(payload: bytes) -> tuple[bytes, str | None]:
    version, size = _PAYLOAD.unpack_from(payload)
    if version != _VERSION:
        raise RuntimeError(f"spool payload version {version} is not supported by this collector")
    if size == _NO_PROJECT:
        return payload[_PAYLOAD.size:], None
    start = _PAYLOAD.size + size
    return payload[start:], payload[_PAYLOAD.size:start].decode()
