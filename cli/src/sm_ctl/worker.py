"""The background worker: one arq worker process running every service's jobs.

Each contributor brings a :class:`JobSet`: its functions (enqueued jobs), its
cron jobs, and the resources they need (opened on worker start, closed on
stop, reachable in the job context under the set's name). Today that is the
databases' maintenance (:mod:`sm_ctl.maintenance`) and the metrics rollups and
retention (:mod:`sm_ctl.metrics_jobs`) and the commands' dispatch and
reconciliation (:mod:`sm_ctl.commands_jobs`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arq.connections import RedisSettings
from arq.constants import default_queue_name, health_check_key_suffix
from arq.cron import CronJob
from arq.worker import Function, Worker

HEALTH_CHECK_KEY = default_queue_name + health_check_key_suffix
# How often the worker refreshes its health-check key (readiness and liveness read it).
HEALTH_CHECK_INTERVAL = 10
# Enqueue-to-start latency follows poll_delay (STACK-NOTES.md: 0.05 s → p50 ~29 ms).
POLL_DELAY = 0.05

Context = dict[str, Any]
Opener = Callable[[Path, str, AsyncExitStack], Awaitable[Any]]


@dataclass(frozen=True)
class JobSet:
    """What one service runs in the worker.

    ``open`` is awaited at worker start with the data directory, the Redis URL
    and the worker's exit stack; what it returns is placed in the job context
    under ``name`` (e.g. ``ctx["registry"]``), and whatever it pushed on the
    stack is closed when the worker stops.
    """

    name: str
    functions: Sequence[Callable[..., Any] | Function] = ()
    cron_jobs: Sequence[CronJob] = ()
    open: Opener | None = None


def job_sets() -> list[JobSet]:
    """Every contributor's jobs, in the order their resources open."""
    from sm_ctl.commands_jobs import commands_jobs
    from sm_ctl.maintenance import maintenance_jobs
    from sm_ctl.metrics_jobs import metrics_jobs

    return [maintenance_jobs(), metrics_jobs(), commands_jobs()]


def worker_settings(data_dir: Path, redis_url: str, sets: Sequence[JobSet]) -> dict[str, Any]:
    """Keyword arguments of ``arq.worker.Worker`` for ``sets``."""
    stack = AsyncExitStack()

    async def on_startup(ctx: Context) -> None:
        await stack.__aenter__()
        for job_set in sets:
            if job_set.open is not None:
                ctx[job_set.name] = await job_set.open(data_dir, redis_url, stack)

    async def on_shutdown(ctx: Context) -> None:
        await stack.aclose()

    return {
        "functions": [f for s in sets for f in s.functions],
        "cron_jobs": [c for s in sets for c in s.cron_jobs],
        "redis_settings": RedisSettings.from_dsn(redis_url),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "poll_delay": POLL_DELAY,
        "handle_signals": True,
    }


def run(data_dir: Path) -> None:
    """Run the worker in the foreground until SIGTERM/SIGINT (``smctl serve worker``)."""
    from sm_shared.settings import CoreSettings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = CoreSettings(data_dir=data_dir)
    # arq's Worker takes the running loop at construction (Python 3.10+ has none by default).
    asyncio.set_event_loop(asyncio.new_event_loop())
    Worker(**worker_settings(data_dir, settings.redis_url, job_sets())).run()
