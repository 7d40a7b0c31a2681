"""The audit writer: the ``audit`` stream → the hash chain (the single writer).

Signature (the ``commands-consumer`` process runs it next to the results
consumer, on that process's event loop)::

    await run_audit_writer(
        redis,            # redis.asyncio.Redis (bytes or decoded responses)
        engine,           # the commands database's sqlalchemy Engine
        consumer,         # this process's consumer name in group "audit-chain"
        batch=500,        # entries per read and per write transaction
        block_ms=1000,    # XREADGROUP BLOCK; also how often ``stop`` is looked at
        claim_idle=30.0,  # seconds before another consumer's pending entries are taken
        stop=None,        # an asyncio.Event; the writer returns once it is set
    )

It creates the group ``audit-chain`` on ``audit`` (from the stream's start)
and the audit tables when missing. Each round reads up to ``batch`` entries,
appends them in ONE transaction (``audit_chain.append``, idempotent on the
stream id) and acknowledges them only after the commit. Started again after a
crash, it first re-reads its own pending entries (id ``0``): what was
committed but not acknowledged is skipped, not recorded twice. Entries
another consumer read and never acknowledged are claimed (``XAUTOCLAIM``)
once idle ``claim_idle`` seconds. A malformed entry is logged, counted
(``audit-chain:counters`` field ``malformed``) and acknowledged: it never
stops the chain. A failed write (the database locked or away) is retried
after a pause, never skipped. Database work runs in a thread
(``asyncio.to_thread``). Cancelling the task is safe at any point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from sm_commands import audit_chain
from sm_commands.audit_schema import create_tables
from sm_shared.audit import AuditEvent
from sm_shared.streams import AUDIT_GROUP, AUDIT_STREAM

log = logging.getLogger("sm_commands.audit_writer")

COUNTERS_KEY: Final = "audit-chain:counters"
RETRY_PAUSE: Final = 1.0

Entry = tuple[Any, Any]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Malformed(ValueError):
    """A stream entry that is not an audit event."""


def decode(fields: Any) -> AuditEvent:
    """The event of one entry's fields; Malformed when it is not one."""
    if not isinstance(fields, dict):
        raise Malformed("the entry has no fields (deleted from the stream?)")
    try:
        event = AuditEvent.from_fields(fields)
    except KeyError as exc:
        raise Malformed(f"missing field {exc}") from None
    except ValueError as exc:  # orjson.JSONDecodeError and float() are ValueErrors
        raise Malformed(str(exc)) from None
    except (TypeError, AttributeError) as exc:
        raise Malformed(f"unreadable fields: {exc}") from None
    if not isinstance(event.detail, dict):
        raise Malformed("detail is not a JSON object")
    if not (0 <= event.at < 253402300800):  # before year 10000
        raise Malformed(f"at {event.at!r} is not a Unix time")
    return event


@dataclass
class AuditWriter:
    """One consumer of the group ``audit-chain``, appending to the chain in ``engine``."""

    redis: Redis
    engine: Engine
    consumer: str
    batch: int = 500
    block_ms: int = 1000
    claim_idle: float = 30.0
    appended: int = 0
    duplicates: int = 0
    malformed: int = 0
    recovering: bool = True
    _next_claim: float = field(default=0.0)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(AUDIT_STREAM, AUDIT_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def handle(self, entries: Sequence[Entry]) -> int:
        """Append ``entries`` (one transaction), then acknowledge them; returns records added."""
        if not entries:
            return 0
        events: list[tuple[str, AuditEvent]] = []
        malformed = 0
        for raw_id, fields in entries:
            stream_id = _text(raw_id)
            try:
                events.append((stream_id, decode(fields)))
            except Malformed as exc:
                malformed += 1
                log.warning("dropping malformed audit entry %s: %s", stream_id, exc)
        added = await asyncio.to_thread(audit_chain.append, self.engine, events)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(AUDIT_STREAM, AUDIT_GROUP, *[raw_id for raw_id, _ in entries])
        if added:
            pipe.hincrby(COUNTERS_KEY, "appended", added)
        if len(events) - added:
            pipe.hincrby(COUNTERS_KEY, "duplicates", len(events) - added)
        if malformed:
            pipe.hincrby(COUNTERS_KEY, "malformed", malformed)
        await pipe.execute()
        self.appended += added
        self.duplicates += len(events) - added
        self.malformed += malformed
        return added

    async def _read(self, start: str, block: int | None) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(
            AUDIT_GROUP, self.consumer, {AUDIT_STREAM: start}, count=self.batch, block=block
        )
        if not reply:
            return []
        # RESP2: [[stream, [(id, fields), ...]]]; RESP3: {stream: [[(id, fields), ...]]}
        if isinstance(reply, dict):
            entries: list[Entry] = next(iter(reply.values()))[0]
            return entries
        rest: list[Entry] = reply[0][1]
        return rest

    async def recover(self) -> int:
        """Handle this consumer's own pending entries (read before a crash)."""
        handled = 0
        while True:
            entries = await self._read("0", None)
            if not entries:
                self.recovering = False
                return handled
            await self.handle(entries)
            handled += len(entries)

    async def claim(self) -> int:
        """Take over entries other consumers left pending longer than ``claim_idle``."""
        start = "0-0"
        handled = 0
        while True:
            reply: Any = await self.redis.xautoclaim(
                AUDIT_STREAM,
                AUDIT_GROUP,
                self.consumer,
                min_idle_time=int(self.claim_idle * 1000),
                start_id=start,
                count=self.batch,
            )
            start_reply, entries = reply[0], reply[1]
            # Entries deleted from the stream meanwhile come back as (id, None): acked as malformed.
            if entries:
                await self.handle(entries)
                handled += len(entries)
            start = _text(start_reply)
            if start == "0-0":
                return handled

    async def step(self) -> int:
        """One round: own pending entries first when recovering, else new ones."""
        now = time.monotonic()
        handled = 0
        if now >= self._next_claim:
            self._next_claim = now + self.claim_idle / 2
            claimed = await self.claim()
            if claimed:
                log.info("took over %d audit entries other consumers left pending", claimed)
            handled += claimed
        if self.recovering:
            handled += await self.recover()
        entries = await self._read(">", self.block_ms)
        await self.handle(entries)
        return handled + len(entries)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set; a failed write is retried, never skipped."""
        await asyncio.to_thread(create_tables, self.engine)
        await self.ensure_group()
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.step()
            except OperationalError as exc:
                # Nothing was acknowledged: the entries stay pending and are read again.
                log.warning("appending to the audit chain failed (%s); retrying", exc.orig)
                self.recovering = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_PAUSE)


async def run_audit_writer(
    redis: Redis,
    engine: Engine,
    consumer: str,
    *,
    batch: int = 500,
    block_ms: int = 1000,
    claim_idle: float = 30.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Append the ``audit`` stream to the hash chain until ``stop`` is set (module docstring)."""
    writer = AuditWriter(
        redis, engine, consumer, batch=batch, block_ms=block_ms, claim_idle=claim_idle
    )
    log.info(
        "appending %s to the audit chain as %s of group %s", AUDIT_STREAM, consumer, AUDIT_GROUP
    )
    await writer.run(stop)
