"""The background worker: job sets, their resources, and the database maintenance job."""

from __future__ import annotations

import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.worker import Worker, func

from sm_ctl.maintenance import analyze_all, maintenance_jobs
from sm_ctl.worker import HEALTH_CHECK_KEY, JobSet, job_sets, worker_settings
from sm_shared.datadir import DataDir


def _database(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE INDEX ix_name ON nodes (name)")
        conn.executemany(
            "INSERT INTO nodes (name) VALUES (?)", [(f"n{i % 10}",) for i in range(500)]
        )
        conn.commit()
    finally:
        conn.close()


def _stats(path: Path) -> list[tuple[str, str | None, str]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1 ORDER BY tbl, idx"))
    finally:
        conn.close()


def test_analyze_refreshes_planner_statistics(data_dir: DataDir) -> None:
    _database(data_dir.database("registry"))
    took = analyze_all(data_dir)
    assert set(took) == {"registry"}  # metrics and commands have no database here
    # analysis_limit samples the index: the row estimate is approximate, but there.
    ((table, index, stat),) = _stats(data_dir.database("registry"))
    assert (table, index) == ("nodes", "ix_name")
    rows, per_value = map(int, stat.split())
    assert rows > 0
    assert 0 < per_value <= rows


# arq 0.28 closes its pool with redis-py's deprecated close() (upstream).
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_the_worker_runs_contributed_jobs_with_their_resources(
    data_dir: DataDir, redis_url: str
) -> None:
    opened: list[str] = []

    async def open_resources(data: Path, url: str, stack: AsyncExitStack) -> dict[str, str]:
        opened.append("open")
        stack.callback(opened.append, "closed")
        return {"data": str(data), "redis": url}

    async def record(ctx: dict[str, Any], value: str) -> str:
        return f"{value} in {ctx['example']['data']}"

    example = JobSet("example", functions=[func(record, name="record")], open=open_resources)
    settings = worker_settings(data_dir.root, redis_url, [example, *job_sets()])
    pool = await create_pool(settings["redis_settings"])
    try:
        job = await pool.enqueue_job("record", "hello")
        assert job is not None
        worker = Worker(**{**settings, "burst": True, "poll_delay": 0, "handle_signals": False})
        try:
            await worker.main()
            assert await pool.exists(HEALTH_CHECK_KEY)  # what `up` waits for
        finally:
            await worker.close()
        assert opened == ["open", "closed"]
        assert await job.result(timeout=5) == f"hello in {data_dir.root}"
        assert not await pool.exists(HEALTH_CHECK_KEY)  # removed on a clean stop
        # The cron jobs that run at start (maintenance; metrics rollups and retention) ran
        # with their own resources: the metrics jobs created the metrics database.
        at_start = [c for s in job_sets() for c in s.cron_jobs if c.run_at_startup]
        assert {c.name for c in at_start} >= {"cron:rollup_job", "cron:retention_job"}
        # At least those; the commands reconciliation also runs every 5 s, and on a
        # busy machine scheduled rounds of it fall within the burst.
        assert worker.jobs_complete >= 1 + len(at_start)
        assert worker.jobs_failed == 0
        assert data_dir.database("metrics").exists()
    finally:
        await pool.aclose(close_connection_pool=True)


def test_maintenance_runs_hourly_and_at_start() -> None:
    jobs = maintenance_jobs()
    (job,) = jobs.cron_jobs
    assert job.run_at_startup
    assert job.minute == {17}
