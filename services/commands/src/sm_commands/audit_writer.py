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
(``asyncio.to_thread``). Cancelling the task is safe at any point. The
group's loop (reading, recovering, claiming, retrying) is
``stream_group.GroupConsumer``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from sm_commands import audit_chain
from sm_commands.audit_schema import create_tables
from sm_commands.stream_group import Entry, GroupConsumer, text
from sm_shared.audit import AuditEvent
from sm_shared.streams import AUDIT_GROUP, AUDIT_STREAM

log = logging.getLogger("sm_commands.audit_writer")

COUNTERS_KEY: Final = "audit-chain:counters"


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
class AuditWriter(GroupConsumer):
    """One consumer of the group ``audit-chain``, appending to the chain in ``engine``."""

    stream = AUDIT_STREAM
    group = AUDIT_GROUP
    log = log
    what = "appending to the audit chain"
    retry_on = (OperationalError,)  # a Redis failure ends the process's consumers

    redis: Redis
    engine: Engine
    consumer: str
    batch: int = 500
    block_ms: int = 1000
    claim_idle: float = 30.0
    appended: int = 0
    duplicates: int = 0
    malformed: int = 0

    async def handle(self, entries: Sequence[Entry]) -> int:
        """Append ``entries`` (one transaction), then acknowledge them; returns records added."""
        if not entries:
            return 0
        events: list[tuple[str, AuditEvent]] = []
        malformed = 0
        for raw_id, fields in entries:
            stream_id = text(raw_id)
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

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Create the audit tables when missing, then consume until ``stop`` is set."""
        await asyncio.to_thread(create_tables, self.engine)
        await super().run(stop)


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
