"""The registry's jobs in the background worker (housekeeping)."""

from __future__ import annotations

import time
from typing import Any

from arq.cron import cron

from sm_ctl.worker import JobSet


async def housekeeping(ctx: dict[str, Any]) -> float:
    return time.time()


def registry_jobs() -> JobSet:
    return JobSet("registry", cron_jobs=[cron(housekeeping, minute=set(range(0, 60, 5)))])
