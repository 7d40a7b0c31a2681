"""When each heartbeat became visible in the metrics database: the send→commit lag.

A thread polls the raw tier (``samples`` in ``metrics.db``, read-only, WAL
so the ingest is never blocked) every ``interval`` seconds for rows past the
last rowid it saw. A row seen at poll time T was committed after the previous
poll and before T, so ``T - ts`` (``ts`` = the agent's ``sent_at``; the swarm
runs on the same clock) is an upper bound of its send→commit lag, too high
by at most one poll interval plus the query. Only rows of this run's boot ids
(``swarm-<run id>-…``) count.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from array import array
from pathlib import Path


class CommitWatch:
    def __init__(self, database: Path, boot_prefix: str, interval: float = 0.2) -> None:
        self._database = database
        self._prefix = boot_prefix
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.ts: array[float] = array("d")
        self.lag: array[float] = array("d")
        self.polls = 0

    def __enter__(self) -> CommitWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _connect(self) -> sqlite3.Connection:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = sqlite3.connect(f"file:{self._database}?mode=ro", uri=True)
                conn.execute("SELECT 1 FROM samples LIMIT 1")
                return conn
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _run(self) -> None:
        conn = self._connect()
        try:
            (last,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM samples").fetchone()
            pattern = self._prefix + "%"
            while not self._stop.wait(self.interval):
                rows = conn.execute(
                    "SELECT rowid, ts FROM samples WHERE rowid > ? AND boot_id LIKE ?",
                    (last, pattern),
                ).fetchall()
                seen = time.time()
                self.polls += 1
                for rowid, ts in rows:
                    last = max(last, rowid)
                    self.ts.append(ts)
                    self.lag.append(seen - ts)
        finally:
            conn.close()

    def sent_between(self, start: float, end: float) -> list[tuple[float, float]]:
        """(sent at, send→commit lag) of the rows sent in [start, end)."""
        return [(ts, lag) for ts, lag in zip(self.ts, self.lag, strict=True) if start <= ts < end]

    def committed(self) -> int:
        """Rows of this run in the database now (each (node, boot id, seq) is stored once)."""
        conn = self._connect()
        try:
            (count,) = conn.execute(
                "SELECT count(*) FROM samples WHERE boot_id LIKE ?", (self._prefix + "%",)
            ).fetchone()
            return int(count)
        finally:
            conn.close()
