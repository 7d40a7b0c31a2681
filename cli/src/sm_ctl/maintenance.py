"""Database maintenance the worker runs for every service of the data directory.

SQLite's query planner chooses indexes from the statistics ``ANALYZE``
stores (``sqlite_stat1``); without them, or with stale ones, it guesses. The
worker refreshes them at start and every hour, with ``analysis_limit`` so
each run reads a bounded sample of every index and holds the write lock for
milliseconds, not for a scan of a large metrics table. It reads no rows of
any service: it is the database engine's own bookkeeping, like a backup.
Databases that are not SQLite files in the data directory (PostgreSQL) are
the operator's to maintain.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from arq.cron import cron

from sm_ctl.archive import DATABASE_SERVICES
from sm_ctl.worker import JobSet
from sm_shared.datadir import DataDir

# Rows sampled per index by ANALYZE (SQLite's recommended range is 100-1000).
ANALYSIS_LIMIT = 400
BUSY_TIMEOUT_MS = 10_000


def analyze(database: Path) -> float:
    """Refresh the planner statistics of one SQLite file; returns the seconds it took."""
    started = time.perf_counter()
    conn = sqlite3.connect(database, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return time.perf_counter() - started


def analyze_all(data: DataDir) -> dict[str, float]:
    """``analyze`` every service database that exists in ``data``."""
    return {
        service: analyze(data.database(service))
        for service in DATABASE_SERVICES
        if data.database(service).exists()
    }


async def refresh_statistics(ctx: dict[str, Any]) -> dict[str, float]:
    """The cron job: seconds spent per database."""
    data = ctx["maintenance"]
    assert isinstance(data, DataDir)
    return await asyncio.to_thread(analyze_all, data)


async def _open(data_dir: Path, redis_url: str, stack: AsyncExitStack) -> DataDir:
    return DataDir(data_dir)


def maintenance_jobs() -> JobSet:
    return JobSet(
        "maintenance",
        cron_jobs=[cron(refresh_statistics, minute={17}, second={0}, run_at_startup=True)],
        open=_open,
    )
