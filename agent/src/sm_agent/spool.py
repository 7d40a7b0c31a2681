"""The offline buffer: every heartbeat stays on disk until the core acknowledges it.

One append-only journal (``<state_dir>/spool/journal``), one record per line::

    smspool 1 <next_serial> <dropped>   header (first line; written at creation and compaction)
    <serial> {"v":1,"type":"heartbeat",…}   a heartbeat, its JSON exactly as sent
    -<first> <end>                      heartbeats first … end-1 left the buffer (acknowledged)
    x<serial> <dropped>                 heartbeat <serial> was dropped (the buffer was full);
                                        <dropped> heartbeats were dropped in all

Every heartbeat is one small append, flushed to the disk (``fdatasync``) so
neither a killed agent nor a lost machine loses it; acknowledgements are
appended without a flush (losing one only means sending a duplicate, which
the core ignores). When the records of heartbeats that left the buffer take
more room than those still in it, the journal is rewritten with only the
latter (written aside, flushed, renamed over the old one).

Bounded by count and bytes: past either bound the oldest heartbeat is dropped
and counted. The dropped count is kept across restarts and compactions.

Memory: only the serial, file offset and length of each buffered heartbeat
(a few arrays of integers); the heartbeats themselves are read back from the
file when they are sent again.
"""

from __future__ import annotations

import logging
import os
import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

MAGIC = b"smspool 1"
# The journal is rewritten only once this much of it is dead records.
COMPACT_MIN_BYTES = 256 * 1024
# How many finished entries at the front of the index arrays before they are cut off.
TRIM_AT = 1024

log = logging.getLogger(__name__)


class SpoolError(Exception):
    """The spool's directory cannot be used."""


class Spool:
    """The journal at ``directory/journal``; with ``directory=None`` an unnamed temporary file."""

    def __init__(
        self,
        directory: Path | None,
        *,
        max_entries: int = 20_000,
        max_bytes: int = 16 * 1024 * 1024,
        sync: bool = True,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("the spool needs room for at least one heartbeat")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._sync = sync
        self._directory = directory
        self.next_serial = 0
        self.dropped = 0
        # One slot per entry still indexed, in serial order; _done marks those gone.
        self._serials = array("q")
        self._offsets = array("q")
        self._lengths = array("q")
        self._done = bytearray()
        self._count = 0  # entries not done
        self._bytes = 0  # their JSON bytes
        self._size = 0  # the journal's size
        self._live_record_bytes = 0  # bytes of the records of entries not done
        self._warned_at: int | None = None  # the dropped count last logged
        if directory is None:
            self._fd, name = tempfile.mkstemp(prefix="sm-agent-spool-")
            os.unlink(name)
            self._write_header_to(self._fd)
        else:
            try:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._fd = self._open_or_recover(directory / "journal")
                self._tidy()
            except OSError as exc:
                raise SpoolError(f"cannot use the buffer in {directory}: {exc}") from exc
        self._enforce_bounds()

    # ------------------------------------------------------------ what it holds

    def __len__(self) -> int:
        return self._count

    def __contains__(self, serial: object) -> bool:
        return isinstance(serial, int) and self._index(serial) is not None

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def journal_bytes(self) -> int:
        return self._size

    def serials(self, start: int = 0, end: int | None = None) -> list[int]:
        """Serials of the buffered heartbeats in ``[start, end)``, oldest first."""
        found = []
        for i in range(bisect_left(self._serials, start), len(self._serials)):
            serial = self._serials[i]
            if end is not None and serial >= end:
                break
            if not self._done[i]:
                found.append(serial)
        return found

    def next_buffered(self, after: int, end: int) -> int | None:
        """The oldest buffered serial in ``(after, end)``, or None."""
        for i in range(bisect_left(self._serials, after + 1), len(self._serials)):
            serial = self._serials[i]
            if serial >= end:
                return None
            if not self._done[i]:
                return serial
        return None

    def read(self, serial: int) -> bytes | None:
        """The heartbeat's JSON as it was appended; None when it left the buffer."""
        i = self._index(serial)
        if i is None:
            return None
        return os.pread(self._fd, self._lengths[i], self._offsets[i])

    # ------------------------------------------------------------ changes

    def append(self, message: bytes) -> int:
        """Keep one heartbeat (its JSON, one line); its serial. Drops the oldest when full."""
        if b"\n" in message:
            raise ValueError("a heartbeat is one line of JSON")
        serial = self.next_serial
        prefix = b"%d " % serial
        record = prefix + message + b"\n"
        offset = self._size
        self._write(record)
        if self._sync:
            os.fdatasync(self._fd)
        self.next_serial = serial + 1
        self._serials.append(serial)
        self._offsets.append(offset + len(prefix))
        self._lengths.append(len(message))
        self._done.append(0)
        self._count += 1
        self._bytes += len(message)
        self._live_record_bytes += len(record)
        self._enforce_bounds()
        return serial

    def acknowledge(self, serials: Iterable[int]) -> int:
        """These heartbeats are durable in the core: they leave the buffer. How many did."""
        gone = [s for s in sorted(set(serials)) if self._forget(s)]
        if not gone:
            return 0
        records = []
        first = previous = gone[0]
        for serial in gone[1:]:
            if serial != previous + 1:
                records.append(b"-%d %d\n" % (first, previous + 1))
                first = serial
            previous = serial
        records.append(b"-%d %d\n" % (first, previous + 1))
        self._write(b"".join(records))
        self._tidy()
        return len(gone)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------ inside

    def _index(self, serial: int) -> int | None:
        i = bisect_left(self._serials, serial)
        if i < len(self._serials) and self._serials[i] == serial and not self._done[i]:
            return i
        return None

    def _forget(self, serial: int) -> bool:
        i = self._index(serial)
        if i is None:
            return False
        self._done[i] = 1
        self._count -= 1
        self._bytes -= self._lengths[i]
        self._live_record_bytes -= self._record_bytes(i)
        return True

    def _record_bytes(self, i: int) -> int:
        return len(b"%d " % self._serials[i]) + self._lengths[i] + 1

    def _enforce_bounds(self) -> None:
        dropped_records = []
        # The newest heartbeat is never dropped: it is the reason for the room.
        while self._count > 1 and (self._count > self.max_entries or self._bytes > self.max_bytes):
            serial = self.next_buffered(-1, self.next_serial)
            if serial is None:
                break
            self._forget(serial)
            self.dropped += 1
            dropped_records.append(b"x%d %d\n" % (serial, self.dropped))
        if dropped_records and (self._warned_at is None or self.dropped - self._warned_at >= 1000):
            self._warned_at = self.dropped
            log.warning(
                "offline buffer full (%d heartbeats, %d bytes): dropping the oldest (%d now, %d in all)",
                self._count,
                self._bytes,
                len(dropped_records),
                self.dropped,
            )
        if dropped_records:
            self._write(b"".join(dropped_records))
            self._tidy()

    def _write(self, data: bytes) -> None:
        written = os.pwrite(self._fd, data, self._size)
        if written != len(data):
            raise OSError(f"short write to the offline buffer ({written} of {len(data)} bytes)")
        self._size += written

    def _tidy(self) -> None:
        """Cut finished entries off the index; rewrite the journal when mostly dead."""
        front = 0
        while front < len(self._done) and self._done[front]:
            front += 1
        if front >= TRIM_AT or (front and front == len(self._done)):
            del self._serials[:front], self._offsets[:front], self._lengths[:front]
            del self._done[:front]
        dead = self._size - self._live_record_bytes
        if self._directory is not None and dead > max(COMPACT_MIN_BYTES, self._live_record_bytes):
            self._compact(self._directory / "journal")

    def _header(self) -> bytes:
        return b"%s %d %d\n" % (MAGIC, self.next_serial, self.dropped)

    def _write_header_to(self, fd: int) -> None:
        header = self._header()
        os.pwrite(fd, header, 0)
        self._size = len(header)

    def _compact(self, path: Path) -> None:
        tmp = path.with_name("journal.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            header = self._header()
            position = os.pwrite(fd, header, 0)
            serials, offsets, lengths = array("q"), array("q"), array("q")
            for i, serial in enumerate(self._serials):
                if self._done[i]:
                    continue
                message = os.pread(self._fd, self._lengths[i], self._offsets[i])
                prefix = b"%d " % serial
                position += os.pwrite(fd, prefix + message + b"\n", position)
                serials.append(serial)
                offsets.append(position - len(message) - 1)
                lengths.append(len(message))
            os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            raise
        _sync_directory(path.parent)
        os.close(self._fd)
        self._fd = fd
        self._serials, self._offsets, self._lengths = serials, offsets, lengths
        self._done = bytearray(len(serials))
        self._size = position
        self._live_record_bytes = position - len(header)
        log.debug("offline buffer compacted: %d heartbeats, %d bytes", self._count, position)

    def _open_or_recover(self, path: Path) -> int:
        """Open the journal and rebuild the index from it; a torn or damaged tail is cut off."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(os.dup(fd), "rb") as reader:
            header = reader.readline()
            parts = header.split()
            valid = (
                header.endswith(b"\n")
                and len(parts) == 4
                and b" ".join(parts[:2]) == MAGIC
                and all(p.isdigit() for p in parts[2:])
            )
            if not valid:
                if header:
                    log.warning("%s is not an offline buffer journal: starting a new one", path)
                os.ftruncate(fd, 0)
                self._write_header_to(fd)
                return fd
            self.next_serial, self.dropped = int(parts[2]), int(parts[3])
            position = len(header)
            for line in reader:
                if not self._replay(line, position):
                    log.warning(
                        "%s: damaged record at byte %d; the rest is cut off", path, position
                    )
                    break
                position += len(line)
        os.ftruncate(fd, position)
        self._size = position
        return fd

    def _replay(self, line: bytes, position: int) -> bool:
        """Apply one journal record; False when it is torn or damaged."""
        if not line.endswith(b"\n"):
            return False
        body = line[:-1]
        try:
            if body.startswith(b"-"):
                first, end = (int(p) for p in body[1:].split(b" "))
                for serial in self.serials(first, end):
                    self._forget(serial)
                return True
            if body.startswith(b"x"):
                serial, dropped = (int(p) for p in body[1:].split(b" "))
                self._forget(serial)
                self.dropped = max(self.dropped, dropped)
                return True
            head, _, message = body.partition(b" ")
            serial = int(head)
        except ValueError:
            return False
        if not (message.startswith(b"{") and message.endswith(b"}")):
            return False
        if self._serials and serial <= self._serials[-1]:
            return False
        self._serials.append(serial)
        self._offsets.append(position + len(head) + 1)
        self._lengths.append(len(message))
        self._done.append(0)
        self._count += 1
        self._bytes += len(message)
        self._live_record_bytes += len(line)
        self.next_serial = max(self.next_serial, serial + 1)
        return True


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
