"""The ``commands-consumer`` process (``smctl serve commands-consumer``).

Two consumers on one event loop, each its own consumer group:

* the results consumer (``results.ResultsConsumer``, group ``commands`` on
  ``results``): agents' reports recorded, progress published, executions
  dispatched to nodes that just connected or into freed batch places;
* the audit writer (``audit_writer.run_audit_writer``, group ``audit-chain``
  on ``audit``): the single writer of the hash-chained audit log.

At start the process appends what the audit outbox still holds
(``outbox.flush``: events an API process staged and died before appending;
reconciliation rounds flush it too).

Both use the consumer name ``SM_COMMANDS_CONSUMER`` (default: the host
name), stable across restarts so that a restarted process first re-reads
what it had read but not acknowledged. SIGTERM/SIGINT stop both after their
current batch. If either fails, the process exits non-zero (``up`` restarts it).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from redis.asyncio import Redis

from sm_commands import outbox
from sm_commands.audit_writer import run_audit_writer
from sm_commands.jobs import open_dispatcher
from sm_commands.results import ResultsConsumer
from sm_commands.schema import create_tables
from sm_commands.settings import CommandsSettings
from sm_shared.database import create_database_engine
from sm_shared.streams import COMMANDS_CONSUMER_HEALTH_KEY, RESULTS_GROUP, RESULTS_STREAM

log = logging.getLogger("sm_commands.consumer")


async def serve(settings: CommandsSettings, stop: asyncio.Event) -> None:
    """Run both consumers until ``stop`` is set; the first failure ends both and is raised."""
    engine = create_database_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url)
    try:
        create_tables(engine)
        flushed = await outbox.flush(redis, engine)
        if flushed:
            log.info("appended %d audit events left in the outbox", flushed)
        consumer = ResultsConsumer(
            settings, engine, redis, open_dispatcher(settings, engine, redis)
        )
        log.info("consuming %s as %s of group %s", RESULTS_STREAM, consumer.name, RESULTS_GROUP)
        tasks = [
            asyncio.create_task(consumer.run(stop), name="results"),
            asyncio.create_task(
                run_audit_writer(
                    redis,
                    engine,
                    settings.commands_consumer,
                    claim_idle=settings.commands_claim_idle.total_seconds(),
                    stop=stop,
                ),
                name="audit-writer",
            ),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            stop.set()
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await redis.delete(COMMANDS_CONSUMER_HEALTH_KEY)
    finally:
        await redis.aclose()
        engine.dispose()


def main(settings: CommandsSettings) -> None:
    """The process: consume until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(settings, stop)

    asyncio.run(run())
