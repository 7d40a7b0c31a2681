"""The results consumer: the ``results`` stream → the commands database, in batches.

One consumer of the group ``commands`` (``smctl serve commands-consumer``).
Each round reads up to ``commands_batch`` entries (``XREADGROUP ... BLOCK``):

* ``report`` entries are recorded in ONE transaction (``recording.record``:
  idempotent on (execution, seq)); after the commit the changes are
  published on ``command:{id}`` and ``execution.finish`` audit events are
  appended (one pipeline each), then commands whose batch window freed a place
  dispatch their next executions;
* ``online`` entries (a node just connected) dispatch that node's queued
  executions and re-send its sent-but-not-started ones;

and only then are the entries acknowledged. A killed process loses
nothing: on start it first re-reads its own pending entries (id ``0``) and
handles them again (what was committed is recognised and skipped). Entries
another consumer read and never acknowledged are claimed (``XAUTOCLAIM``)
once idle for ``commands_claim_idle``. A malformed entry is logged, counted
and acknowledged. While it runs the consumer keeps
``COMMANDS_CONSUMER_HEALTH_KEY`` alive and trims the stream below what the
group still needs (``XTRIM MINID``). The group's loop (reading, recovering,
claiming, retrying a failed round) is ``stream_group.GroupConsumer``'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from sm_commands import command_audit, progress
from sm_commands.dispatch import Dispatcher, send_cancels
from sm_commands.recording import Counts, Report, record
from sm_commands.settings import CommandsSettings
from sm_commands.stream_group import GroupConsumer
from sm_shared.streams import COMMANDS_CONSUMER_HEALTH_KEY, RESULTS_GROUP, RESULTS_STREAM

log = logging.getLogger("sm_commands.results")

COUNTERS_KEY: Final = "commands-consumer:counters"
HEALTH_TTL: Final = 15
HEALTH_EVERY: Final = 2.0
TRIM_EVERY: Final = 1.0
REPORT_TYPES: Final = frozenset({"started", "output", "finished", "refused"})

Entry = tuple[bytes, dict[bytes, bytes] | None]


class Malformed(ValueError):
    """A stream entry that is not a report or an online notice this consumer reads."""


def decode(fields: dict[bytes, bytes] | None) -> Report | str:
    """A report, or the id of a node that just connected."""
    if not fields:
        raise Malformed("no fields (deleted entry)")
    try:
        node_id = fields[b"n"].decode()
        kind = fields[b"t"].decode()
    except (KeyError, UnicodeDecodeError) as exc:
        raise Malformed(f"missing or unreadable field: {exc}") from exc
    if kind == "online":
        return node_id
    if kind != "report":
        raise Malformed(f"unknown entry type {kind!r}")
    try:
        message = orjson.loads(fields[b"m"])
    except (KeyError, orjson.JSONDecodeError) as exc:
        raise Malformed(f"no readable report: {exc}") from exc
    if not isinstance(message, dict) or message.get("type") not in REPORT_TYPES:
        raise Malformed("the report is not started/output/finished/refused")
    for name in ("execution_id", "seq", "at"):
        if name not in message:
            raise Malformed(f"the report has no {name}")
    return Report(node_id, message)


@dataclass
class Totals:
    entries: int = 0
    malformed: int = 0
    online: int = 0
    dispatched: int = 0
    recorded: Counts = field(default_factory=Counts)


@dataclass
class ResultsConsumer(GroupConsumer):
    """The consumer ``settings.commands_consumer`` of the group ``commands`` on ``results``."""

    stream = RESULTS_STREAM
    group = RESULTS_GROUP
    log = log
    what = "a results round"
    retry_on = (OperationalError, RedisError, OSError)

    settings: CommandsSettings
    engine: Engine
    redis: Redis
    dispatcher: Dispatcher
    clock: Callable[[], float] = time.time
    totals: Totals = field(default_factory=Totals)
    _next_trim: float = 0.0
    _next_health: float = 0.0

    def __post_init__(self) -> None:
        self.consumer = self.settings.commands_consumer
        self.batch = self.settings.commands_batch
        self.block_ms = self.settings.commands_block_ms
        self.claim_idle = self.settings.commands_claim_idle.total_seconds()

    @property
    def name(self) -> str:
        return self.consumer

    async def handle(self, entries: Sequence[Entry]) -> None:
        """Record and act on ``entries``, then acknowledge them."""
        if not entries:
            return
        batch: list[Report] = []
        online: list[str] = []
        malformed = 0
        for entry_id, fields in entries:
            try:
                item = decode(fields)
            except Malformed as exc:
                malformed += 1
                log.warning("dropping malformed entry %s: %s", entry_id.decode(), exc)
                continue
            if isinstance(item, str):
                online.append(item)
            else:
                batch.append(item)
        outcome = await asyncio.to_thread(record, self.engine, batch, self.clock())
        await progress.publish(self.redis, outcome.events)
        await command_audit.emit_all(self.redis, outcome.audit)
        if outcome.cancel_again:
            await send_cancels(self.redis, outcome.cancel_again)
        dispatched = await self.dispatcher.nodes(list(dict.fromkeys(online)))
        for command_id in sorted(outcome.freed):
            dispatched += await self.dispatcher.command(command_id)
        counts = {
            "entries": len(entries),
            "malformed": malformed,
            "online": len(online),
            "dispatched": dispatched,
            **outcome.counts.nonzero(),
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(RESULTS_STREAM, RESULTS_GROUP, *[entry_id for entry_id, _ in entries])
            for name, value in counts.items():
                if value:
                    pipe.hincrby(COUNTERS_KEY, name, value)
            await pipe.execute()
        self.totals.entries += len(entries)
        self.totals.malformed += malformed
        self.totals.online += len(online)
        self.totals.dispatched += dispatched
        for name, value in outcome.counts.nonzero().items():
            setattr(self.totals.recorded, name, getattr(self.totals.recorded, name) + value)

    async def housekeeping(self) -> int:
        """Keep the health key alive, claim (``GroupConsumer``), trim the stream."""
        now = time.monotonic()
        if now >= self._next_health:
            self._next_health = now + HEALTH_EVERY
            status = {
                "consumer": self.name,
                "at": self.clock(),
                "entries": self.totals.entries,
            }
            await self.redis.set(COMMANDS_CONSUMER_HEALTH_KEY, orjson.dumps(status), ex=HEALTH_TTL)
        claimed = await super().housekeeping()
        if now >= self._next_trim:
            self._next_trim = now + TRIM_EVERY
            await self.trim()
        return claimed
