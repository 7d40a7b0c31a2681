"""Reconciliation (an arq cron job every few seconds): what the database says is pending goes
out again, so a restart of a gateway, the worker or Redis loses nothing.

Each round:

1. **expire**: executions still queued or sent (never started) whose command
   has expired end as ``expired`` (event, ``execution.finish`` audit);
2. **redeliver**: executions sent ``commands_redeliver_after`` ago or more and
   not started (and not being cancelled) have their stored frame written again
   where their node is now; those whose node has no route go back to
   ``queued`` (so they free their batch place and go when the node returns);
3. **queued**: every command with queued executions dispatches what it may
   (nodes that got a route meanwhile; batch places freed by a lost report);
4. **cancels**: ``cancel`` frames of executions still sent or running are
   written again every ``commands_redeliver_after`` (an agent ignores a
   cancel for an execution it is not running); an execution still only
   ``sent`` twice that long after its cancel was asked for ends ``cancelled`` (the
   node never started it; should it start after all, the results consumer
   answers its ``started`` with a ``cancel`` and its ``finished`` corrects the record).

Each step handles at most ``commands_chunk`` executions per round.

The ``execution.finish`` events of steps 1 and 4 are staged in the audit
outbox in the transaction that ends the executions (``outbox.stage``: a
crash after the commit cannot lose them) and every round appends what the
outbox holds (``outbox.flush``: these, and whatever an API process staged and
did not get to append).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, select, update

from sm_commands import command_audit, outbox, progress, records
from sm_commands.dispatch import Dispatcher, send_cancels
from sm_commands.schema import AnyRow, commands, executions
from sm_commands.settings import CommandsSettings
from sm_shared.database import writer

EXPIRED_REASON: Final = "the command expired before the node could start it"
ABANDONED_REASON: Final = "cancelled before the node started it"


@dataclass
class Round:
    expired: int = 0
    abandoned: int = 0
    redelivered: int = 0
    requeued: int = 0
    dispatched: int = 0
    cancels: int = 0
    # Audit events appended from the outbox.
    audited: int = 0


def _end_unstarted(
    engine: Engine, now: float, state: str, reason: str, where: Any, limit: int
) -> list[AnyRow]:
    """End, as ``state`` with ``reason``, the unstarted executions ``where`` selects, and
    stage their ``execution.finish`` events (one transaction); returns those ended."""
    unstarted = executions.c.state.in_(("queued", "sent"))
    with writer(engine).begin() as conn:
        rows = conn.execute(
            select(
                executions.c.id,
                executions.c.command_id,
                executions.c.node_id,
                commands.c.actor,
            )
            .join(commands, commands.c.id == executions.c.command_id)
            .where(unstarted, where)
            .limit(limit)
        ).all()
        ended: set[str] = set()
        for part in records.chunked([row.id for row in rows]):
            # Only what this update changed is audited (on a database with concurrent
            # writers a row selected above may have moved on meanwhile).
            ended.update(
                conn.execute(
                    update(executions)
                    .where(executions.c.id.in_(part), unstarted)
                    .values(state=state, reason=reason, ended_at=now)
                    .returning(executions.c.id)
                ).scalars()
            )
        rows = [row for row in rows if row.id in ended]
        outbox.stage(
            conn,
            [
                command_audit.execution_finished(
                    row.actor,
                    row.command_id,
                    row.id,
                    row.node_id,
                    state,
                    now,
                    end=state,
                    reason=reason,
                )
                for row in rows
            ],
        )
        records.mark_done(conn, {row.command_id for row in rows}, now)
    return list(rows)


def _unstarted(engine: Engine, before: float, limit: int) -> list[AnyRow]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    executions.c.id,
                    executions.c.command_id,
                    executions.c.node_id,
                    executions.c.frame,
                )
                .where(
                    executions.c.state == "sent",
                    executions.c.sent_at < before,
                    executions.c.cancel_requested_at.is_(None),
                )
                .order_by(executions.c.sent_at)
                .limit(limit)
            ).all()
        )


def _requeue(engine: Engine, ids: list[str]) -> list[str]:
    back: list[str] = []
    with writer(engine).begin() as conn:
        for part in records.chunked(ids):
            back += conn.execute(
                update(executions)
                .where(executions.c.id.in_(part), executions.c.state == "sent")
                .values(state="queued")
                .returning(executions.c.id)
            ).scalars()
    return back


def _with_queued(engine: Engine, now: float, limit: int) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(executions.c.command_id)
                .join(commands, commands.c.id == executions.c.command_id)
                .where(
                    executions.c.state == "queued",
                    executions.c.cancel_requested_at.is_(None),
                    commands.c.cancelled_at.is_(None),
                    commands.c.expires_at > now,
                )
                .distinct()
                .limit(limit)
            ).scalars()
        )


def _cancels_due(engine: Engine, now: float, before: float, limit: int) -> list[tuple[str, str]]:
    with writer(engine).begin() as conn:
        rows = conn.execute(
            select(executions.c.id, executions.c.node_id)
            .where(
                executions.c.state.in_(("sent", "running")),
                executions.c.cancel_requested_at.is_not(None),
                executions.c.cancel_sent_at < before,
            )
            .limit(limit)
        ).all()
        for part in records.chunked([row.id for row in rows]):
            conn.execute(
                update(executions).where(executions.c.id.in_(part)).values(cancel_sent_at=now)
            )
    return [(row.id, row.node_id) for row in rows]


async def reconcile(
    engine: Engine, dispatcher: Dispatcher, settings: CommandsSettings, now: float
) -> Round:
    redis = dispatcher.redis
    limit = settings.commands_chunk
    after = settings.commands_redeliver_after.total_seconds()
    done = Round()

    expired = await asyncio.to_thread(
        _end_unstarted, engine, now, "expired", EXPIRED_REASON, commands.c.expires_at <= now, limit
    )
    # A cancel of an execution sent but never started: two redelivery periods
    # (the cancel went out twice) without a ``started``: the node did not get it (a late ``started``
    # is answered with another ``cancel``; its ``finished`` corrects the record).
    abandoned = await asyncio.to_thread(
        _end_unstarted,
        engine,
        now,
        "cancelled",
        ABANDONED_REASON,
        executions.c.cancel_requested_at < now - 2 * after,
        limit,
    )
    done.expired = len(expired)
    done.abandoned = len(abandoned)
    events: list[progress.Event] = []
    for state, reason, rows in (
        ("expired", EXPIRED_REASON, expired),
        ("cancelled", ABANDONED_REASON, abandoned),
    ):
        for row in rows:
            events.append(
                progress.execution_event(
                    row.command_id, row.id, row.node_id, state, now, reason=reason
                )
            )

    unstarted = await asyncio.to_thread(_unstarted, engine, now - after, limit)
    done.redelivered, stranded = await dispatcher.resend(unstarted)
    if stranded:
        by_id: dict[str, Any] = {row.id: row for row in stranded}
        back = await asyncio.to_thread(_requeue, engine, list(by_id))
        done.requeued = len(back)
        for execution_id in back:
            row = by_id[execution_id]
            events.append(
                progress.execution_event(row.command_id, row.id, row.node_id, "queued", now)
            )
    await progress.publish(redis, events)
    done.audited = await outbox.flush(redis, engine)

    for command_id in await asyncio.to_thread(_with_queued, engine, now, limit):
        done.dispatched += await dispatcher.command(command_id)

    due = await asyncio.to_thread(_cancels_due, engine, now, now - after, limit)
    done.cancels = await send_cancels(redis, due)
    return done
