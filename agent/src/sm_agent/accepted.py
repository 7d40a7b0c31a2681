"""Execution ids this node accepted, kept on disk until their orders expire.

Running is at most once: an id is recorded (and flushed to the disk) before
its process starts, and an order whose id is recorded is refused
(``replayed``). ``<state_dir>/accepted``, one record per line::

    a <execution_id> <expires_at>   accepted (flushed before the execution runs)
    d <execution_id>                its last report is written (flushed)

An id is kept until ``expires_at`` plus a margin (a clock set back a little
does not make an expired order new again), then pruned: the file is
rewritten with the live records at start and whenever it has doubled since
it was last rewritten. An id accepted but
never marked done tells a restarted agent that an execution was cut short.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

# How long past its expiry an id is still remembered.
MARGIN = 3600.0
COMPACT_MIN_RECORDS = 256

log = logging.getLogger(__name__)


class AcceptedIds:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._expires: dict[str, float] = {}
        self._done: set[str] = set()
        self._records = 0
        self._compact_at = COMPACT_MIN_RECORDS
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._load()
        self._compact()

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._expires

    def __len__(self) -> int:
        return len(self._expires)

    def unfinished(self) -> list[str]:
        """Ids accepted but never marked done (an agent crash cut them short)."""
        return [i for i in self._expires if i not in self._done]

    def add(self, execution_id: str, expires_at: float) -> None:
        """Record ``execution_id`` as accepted; on the disk when this returns."""
        self._append(f"a {execution_id} {expires_at!r}\n")
        self._expires[execution_id] = expires_at
        self._prune()

    def mark_done(self, execution_id: str) -> None:
        if execution_id in self._expires and execution_id not in self._done:
            self._append(f"d {execution_id}\n")
            self._done.add(execution_id)

    # ------------------------------------------------------------ inside

    def _append(self, record: str) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, record.encode())
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self._records += 1

    def _load(self) -> None:
        try:
            text = self._path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return
        for line in text.splitlines(keepends=True):
            parts = line.split()
            if not line.endswith("\n"):
                break  # torn last record: never flushed, never acted on
            self._records += 1
            try:
                if parts[0] == "a" and len(parts) == 3:
                    self._expires[parts[1]] = float(parts[2])
                elif parts[0] == "d" and len(parts) == 2:
                    self._done.add(parts[1])
                else:
                    raise ValueError(line)
            except (ValueError, IndexError):
                log.warning("%s: skipping a damaged record %r", self._path, line[:80])

    def _prune(self) -> None:
        # Every record names a remembered id until a rewrite drops the expired ones, so
        # the file's length alone says when to rewrite (amortized: at twice the last).
        if self._records >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        now = self._clock()
        for execution_id, expires_at in list(self._expires.items()):
            # An unfinished id stays until a restarted agent has reported it.
            if expires_at + MARGIN < now and execution_id in self._done:
                del self._expires[execution_id]
                self._done.discard(execution_id)
        self._done &= self._expires.keys()
        records = [f"a {i} {e!r}\n" for i, e in self._expires.items()]
        records += [f"d {i}\n" for i in self._done]
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(records).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._records = len(records)
        self._compact_at = max(COMPACT_MIN_RECORDS, 2 * self._records)
