"""The audit outbox: audit events committed with the change they describe.

The API's ``command.create``, ``command.cancel``, ``execution.cancel`` and the
``execution.finish`` events of executions the core ends itself (cancelled
while queued, expired, cancelled and never started) are written to
``audit_outbox`` (``stage``) in the SAME transaction as their change, so a
change is never committed without its events, nor an event for a change
that was rolled back. After the commit they are appended to the ``audit``
stream and deleted (``deliver``). A process that dies in between leaves them
in the table: every reconciliation round and the ``commands-consumer``
process at its start append and delete whatever is left (``flush``). An event
may thus be appended more than once (the flush ran while its producer was
still delivering it): every staged event has a ``key``, and the audit writer
chains one event per key.

(The results consumer needs no outbox: its reports stay pending in
``results`` until its events are appended, and a report read again re-emits
its ``execution.finish`` with the same key; see ``recording``.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.exc import OperationalError

from sm_commands.schema import audit_outbox, insert_ignoring
from sm_shared.audit import AuditEvent
from sm_shared.database import writer
from sm_shared.streams import AUDIT_STREAM

log = logging.getLogger("sm_commands.outbox")

FLUSH_CHUNK: Final = 500


def stage(conn: Connection, events: Sequence[AuditEvent]) -> None:
    """Write ``events`` (each with a key) to the outbox in the caller's transaction."""
    rows = []
    for event in events:
        if event.key is None:
            raise ValueError(f"an outbox event needs a key: {event.action} {event.target}")
        rows.append({"key": event.key, "fields": orjson.dumps(event.fields()).decode()})
    # A fact staged again (another process ended it first) is the same fact: kept once.
    insert_ignoring(conn, audit_outbox, rows)


def _forget(engine: Engine, keys: Sequence[str]) -> None:
    with writer(engine).begin() as conn:
        for start in range(0, len(keys), FLUSH_CHUNK):
            part = keys[start : start + FLUSH_CHUNK]
            conn.execute(delete(audit_outbox).where(audit_outbox.c.key.in_(part)))


async def append(redis: Redis, entries: Sequence[dict[str, Any]]) -> None:
    """Append ``entries`` (events' stream fields) to the audit stream in order, in one pipeline."""
    if not entries:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for fields in entries:
            pipe.xadd(AUDIT_STREAM, fields)  # type: ignore[arg-type]
        await pipe.execute()


async def deliver(redis: Redis, engine: Engine, events: Sequence[AuditEvent]) -> None:
    """Append staged (and committed) ``events`` to the audit stream, then delete them.

    Should the delete fail (the database busy), they stay staged: the next
    flush appends them again and the writer drops the repeats.
    """
    if not events:
        return
    await append(redis, [event.fields() for event in events])
    try:
        await asyncio.to_thread(_forget, engine, [event.key for event in events if event.key])
    except OperationalError as exc:
        log.warning("delivered audit events stay in the outbox (%s)", exc.orig)


def _staged(engine: Engine, after: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_outbox.c.id, audit_outbox.c.key, audit_outbox.c.fields)
            .where(audit_outbox.c.id > after)
            .order_by(audit_outbox.c.id)
            .limit(limit)
        ).all()
    return [(int(row.id), str(row.key), orjson.loads(row.fields)) for row in rows]


async def flush(redis: Redis, engine: Engine) -> int:
    """Append everything staged, in order, and delete it; returns how many events."""
    after, flushed = 0, 0
    while True:
        rows = await asyncio.to_thread(_staged, engine, after, FLUSH_CHUNK)
        if not rows:
            return flushed
        await append(redis, [fields for _, _, fields in rows])
        await asyncio.to_thread(_forget, engine, [key for _, key, _ in rows])
        after = rows[-1][0]
        flushed += len(rows)
