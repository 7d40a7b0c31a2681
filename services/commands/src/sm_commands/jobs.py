"""The commands service's worker jobs (run by the arq worker, ``sm_ctl.worker``).

``dispatch_job`` (arq name ``commands.dispatch``, one per command, enqueued
by the API with job id ``dispatch:<command id>`` and no result kept) sends
the command's executions (``dispatch.Dispatcher.command``).
``reconcile_job`` (cron, every few seconds) re-sends what the database says
is pending and expires what can no longer start (``reconcile``). Both are
idempotent: arq may run a job again.
"""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from redis.asyncio import Redis
from sqlalchemy import Engine

from sm_commands.dispatch import Dispatcher
from sm_commands.reconcile import reconcile
from sm_commands.schema import create_tables
from sm_commands.settings import CommandsSettings
from sm_shared.command_keys import load_command_key
from sm_shared.database import create_database_engine

log = logging.getLogger("sm_commands.jobs")
CONTEXT_NAME: Final = "commands"


@dataclass(frozen=True)
class CommandsJobs:
    engine: Engine
    dispatcher: Dispatcher
    settings: CommandsSettings


def open_dispatcher(settings: CommandsSettings, engine: Engine, redis: Redis) -> Dispatcher:
    return Dispatcher(engine, redis, load_command_key(settings.data))


async def open_jobs(data_dir: Path, redis_url: str, stack: AsyncExitStack) -> CommandsJobs:
    settings = CommandsSettings(data_dir=data_dir, redis_url=redis_url)
    engine = create_database_engine(settings.database_url)
    stack.callback(engine.dispose)
    create_tables(engine)
    redis = Redis.from_url(redis_url)
    stack.push_async_callback(redis.aclose)
    return CommandsJobs(engine, open_dispatcher(settings, engine, redis), settings)


def _jobs(ctx: dict[str, Any]) -> CommandsJobs:
    jobs = ctx[CONTEXT_NAME]
    assert isinstance(jobs, CommandsJobs)
    return jobs


async def dispatch_job(ctx: dict[str, Any], command_id: str) -> int:
    """Send what command ``command_id`` may send now; returns how many executions went."""
    return await _jobs(ctx).dispatcher.command(command_id)


async def reconcile_job(ctx: dict[str, Any]) -> dict[str, int]:
    jobs = _jobs(ctx)
    done = await reconcile(jobs.engine, jobs.dispatcher, jobs.settings, time.time())
    figures = asdict(done)
    if any(figures.values()):
        log.info("reconciliation: %s", figures)
    return figures
