"""The metrics service's set of worker jobs: rollups and retention, every minute."""

from __future__ import annotations

from arq.cron import cron

from sm_ctl.worker import JobSet
from sm_metrics.jobs import CONTEXT_NAME, open_jobs, retention_job, rollup_job


def metrics_jobs() -> JobSet:
    return JobSet(
        CONTEXT_NAME,
        cron_jobs=[
            # Rollups early in each minute (the minute before is complete by then);
            # retention half a minute later, so the two rarely contend for the lock.
            cron(rollup_job, second={5}, run_at_startup=True),
            cron(retention_job, second={35}, run_at_startup=True),
        ],
        open=open_jobs,
    )
