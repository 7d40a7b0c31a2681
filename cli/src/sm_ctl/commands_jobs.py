"""The commands service's set of worker jobs: dispatch (one job per command) and
reconciliation (every 5 seconds)."""

from __future__ import annotations

from arq.cron import cron
from arq.worker import func

from sm_commands.actions import DISPATCH_JOB
from sm_commands.jobs import CONTEXT_NAME, dispatch_job, open_jobs, reconcile_job
from sm_ctl.worker import JobSet

RECONCILE_SECONDS = frozenset(range(0, 60, 5))


def commands_jobs() -> JobSet:
    return JobSet(
        CONTEXT_NAME,
        functions=[func(dispatch_job, name=DISPATCH_JOB, keep_result=0)],
        cron_jobs=[
            cron(
                reconcile_job,
                name="commands.reconcile",
                second=set(RECONCILE_SECONDS),
                run_at_startup=True,
                keep_result=0,
            )
        ],
        open=open_jobs,
    )
