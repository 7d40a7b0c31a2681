"""The metrics service's periodic jobs (run by the arq worker, ``sm_ctl.worker``).

``rollup_job`` (every minute) recomputes every touched 1-minute and 1-hour
bucket; ``retention_job`` (every minute) prunes each tier to its retention.
Both are idempotent (arq may retry them) and work in small transactions.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from sm_metrics import retention, rollups
from sm_metrics.schema import create_tables
from sm_metrics.settings import MetricsSettings
from sm_shared.database import create_database_engine

log = logging.getLogger("sm_metrics.jobs")
CONTEXT_NAME = "metrics"


@dataclass(frozen=True)
class MetricsJobs:
    """What the jobs need: the database and the settings."""

    engine: Engine
    settings: MetricsSettings


async def open_jobs(data_dir: Path, redis_url: str, stack: AsyncExitStack) -> MetricsJobs:
    settings = MetricsSettings(data_dir=data_dir, redis_url=redis_url)
    engine = create_database_engine(settings.database_url)
    stack.callback(engine.dispose)
    create_tables(engine)
    return MetricsJobs(engine, settings)


def _jobs(ctx: dict[str, Any]) -> MetricsJobs:
    jobs = ctx[CONTEXT_NAME]
    assert isinstance(jobs, MetricsJobs)
    return jobs


async def rollup_job(ctx: dict[str, Any]) -> dict[str, int]:
    jobs = _jobs(ctx)
    result = await rollups.rollup(jobs.engine, jobs.settings.metrics_chunk)
    return asdict(result)


async def retention_job(ctx: dict[str, Any]) -> dict[str, Any]:
    jobs = _jobs(ctx)
    result = await retention.prune(jobs.engine, jobs.settings)
    if any(result.deleted.values()):
        log.info("retention deleted %s in %d transactions", result.deleted, result.transactions)
    return asdict(result)
