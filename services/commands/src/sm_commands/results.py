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
group still needs (``XTRIM MINID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from sm_commands import command_audit, progress
from sm_commands.dispatch import Dispatcher, send_cancels
from sm_commands.recording import Counts, Report, record
from sm_commands.settings import CommandsSettings
from sm_shared.streams import COMMANDS_CONSUMER_HEALTH_KEY, RESULTS_GROUP, RESULTS_STREAM

log = logging.getLogger("sm_commands.results")

COUNTERS_KEY: Final = "commands-consumer:counters"
HEALTH_TTL: Final = 15
HEALTH_EVERY: Final = 2.0
TRIM_EVERY: Final = 1.0
RETRY_PAUSE: Final = 1.0
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
class ResultsConsumer:
    settings: CommandsSettings
    engine: Engine
    redis: Redis
    dispatcher: Dispatcher
    clock: Callable[[], float] = time.time
    totals: Totals = field(default_factory=Totals)
    recovering: bool = True
    _next_claim: float = 0.0
    _next_trim: float = 0.0
    _next_health: float = 0.0

    @property
    def name(self) -> str:
        return self.settings.commands_consumer

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(RESULTS_STREAM, RESULTS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

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

    async def _read(self, start: str, block: int | None) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(
            RESULTS_GROUP,
            self.name,
            {RESULTS_STREAM: start},
            count=self.settings.commands_batch,
            block=block,
        )
        if not reply:
            return []
        entries: list[Entry] = reply[0][1]
        return entries

    async def recover(self) -> int:
        """Handle this consumer's own pending entries (read before a crash); returns how many."""
        handled = 0
        while True:
            entries = await self._read("0", None)
            if not entries:
                self.recovering = False
                return handled
            await self.handle(entries)
            handled += len(entries)

    async def claim(self) -> int:
        """Take over entries other consumers left pending longer than the claim idle time."""
        idle = int(self.settings.commands_claim_idle.total_seconds() * 1000)
        start = "0-0"
        handled = 0
        while True:
            reply: Any = await self.redis.xautoclaim(
                RESULTS_STREAM,
                RESULTS_GROUP,
                self.name,
                min_idle_time=idle,
                start_id=start,
                count=self.settings.commands_batch,
            )
            start_reply, entries = reply[0], reply[1]
            if entries:
                await self.handle(entries)
                handled += len(entries)
            start = start_reply.decode() if isinstance(start_reply, bytes) else str(start_reply)
            if start == "0-0":
                return handled

    async def trim(self) -> None:
        """``XTRIM MINID`` below the oldest entry the group still needs."""
        summary: Any = await self.redis.xpending(RESULTS_STREAM, RESULTS_GROUP)
        if summary["pending"]:
            floor = summary["min"]
        else:
            groups: Any = await self.redis.xinfo_groups(RESULTS_STREAM)
            mine = [g for g in groups if _text(g["name"]) == RESULTS_GROUP]
            if not mine:
                return
            floor = mine[0]["last-delivered-id"]
        text = _text(floor)
        if text in ("0-0", "0"):
            return
        await self.redis.xtrim(RESULTS_STREAM, minid=text, approximate=False)

    async def housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_health:
            self._next_health = now + HEALTH_EVERY
            status = {
                "consumer": self.name,
                "at": self.clock(),
                "entries": self.totals.entries,
            }
            await self.redis.set(COMMANDS_CONSUMER_HEALTH_KEY, orjson.dumps(status), ex=HEALTH_TTL)
        if now >= self._next_claim:
            self._next_claim = now + self.settings.commands_claim_idle.total_seconds() / 2
            claimed = await self.claim()
            if claimed:
                log.info("took over %d entries other consumers left pending", claimed)
        if now >= self._next_trim:
            self._next_trim = now + TRIM_EVERY
            await self.trim()

    async def step(self) -> int:
        """One round: own pending entries first when recovering, else new ones."""
        await self.housekeeping()
        recovered = await self.recover() if self.recovering else 0
        entries = await self._read(">", self.settings.commands_block_ms)
        await self.handle(entries)
        return recovered + len(entries)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; a failed round is retried, never skipped."""
        await self.ensure_group()
        while not stop.is_set():
            try:
                await self.step()
            except (OperationalError, RedisError, OSError) as exc:
                # Nothing of the round was acknowledged: its entries are read again.
                log.warning("a results round failed (%r); retrying", exc)
                self.recovering = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_PAUSE)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
