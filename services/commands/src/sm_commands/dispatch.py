"""Dispatch: queued executions → signed ``execute`` frames in the inboxes of the gateways
holding their nodes.

``Dispatcher.command(id)`` (the arq job of a new command, a freed batch slot,
reconciliation) takes the command's queued executions whose node has a route
(``route:{node}``, one pipelined ``MGET``), at most as many as its batch
window has free places, signs each once (the frame is stored and re-sent as
is), marks them ``sent`` (``attempts`` + 1) in one write transaction — which
also re-checks states, so two dispatchers never send one execution for the
same reason — then writes the frames to the inboxes, pipelined, and publishes
``sent`` events. Nodes without a route stay queued: their ``online`` entry (or
reconciliation) sends them later.

``Dispatcher.nodes(ids)`` (nodes that just connected) re-sends their
sent-but-not-started executions where they are now and dispatches the
commands with queued executions for them. ``Dispatcher.resend(rows)``
re-sends stored frames. ``send_cancels`` writes ``cancel`` frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis
from sqlalchemy import ColumnElement, Engine, and_, bindparam, func, select, update

from sm_commands import progress, records
from sm_commands.orders import OrderFacts, cancel_frame, execute_frame
from sm_commands.schema import IN_FLIGHT, AnyRow, commands, executions
from sm_shared.database import writer
from sm_shared.streams import gateway_inbox, route_key

log = logging.getLogger("sm_commands.dispatch")

MGET_CHUNK: Final = 1000

# Seconds an inbox outlives its last delivery (``deliver``).
INBOX_TTL: Final = 3600


async def routes(redis: Redis, node_ids: Sequence[str]) -> dict[str, str]:
    """The gateway holding each of ``node_ids`` (only those that have one)."""
    unique = list(dict.fromkeys(node_ids))
    if not unique:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(unique), MGET_CHUNK):
            pipe.mget([route_key(node) for node in unique[start : start + MGET_CHUNK]])
        replies: list[list[bytes | None]] = await pipe.execute()
    found: dict[str, str] = {}
    values = [value for reply in replies for value in reply]
    for node, value in zip(unique, values, strict=True):
        if value:
            found[node] = value.decode() if isinstance(value, bytes) else str(value)
    return found


@dataclass(frozen=True, slots=True)
class Delivery:
    """One frame for one node, through the gateway that holds it."""

    gateway: str
    node_id: str
    kind: str
    frame: bytes


async def deliver(redis: Redis, deliveries: Sequence[Delivery]) -> None:
    """Append ``deliveries`` to their gateways' inboxes, pipelined.

    Each inbox written to expires ``INBOX_TTL`` after its last delivery: a
    gateway reads its inbox within moments, and one that died without
    deleting its inbox (its id is never used again) must not leave it behind
    for good. What such an inbox held goes again through reconciliation.
    """
    if not deliveries:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for item in deliveries:
            pipe.xadd(
                gateway_inbox(item.gateway),
                {"kind": item.kind, "node_id": item.node_id, "frame": item.frame},
            )
        for gateway in {item.gateway for item in deliveries}:
            pipe.expire(gateway_inbox(gateway), INBOX_TTL)
        await pipe.execute()


async def send_cancels(redis: Redis, targets: Sequence[tuple[str, str]]) -> int:
    """Write a ``cancel`` frame for each (execution id, node id) whose node has a route."""
    where = await routes(redis, [node for _, node in targets])
    deliveries = [
        Delivery(where[node], node, "cancel", cancel_frame(execution_id))
        for execution_id, node in targets
        if node in where
    ]
    await deliver(redis, deliveries)
    return len(deliveries)


@dataclass(frozen=True, slots=True)
class Candidate:
    execution_id: str
    node_id: str
    frame: bytes | None


@dataclass
class Plan:
    """What a command's dispatch read: how many may go, and which are queued."""

    command_id: str
    kind: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    timeout: int = 0
    expires_at: float = 0.0
    free: int = 0
    queued: list[Candidate] = field(default_factory=list)


@dataclass
class Dispatcher:
    engine: Engine
    redis: Redis
    key: Ed25519PrivateKey
    clock: Callable[[], float] = time.time

    # ---- one command -------------------------------------------------------------

    def _plan(self, command_id: str, now: float) -> Plan | None:
        with self.engine.connect() as conn:
            command = conn.execute(select(commands).where(commands.c.id == command_id)).first()
            if command is None:
                return None
            c = command._mapping
            if c["cancelled_at"] is not None or c["expires_at"] <= now:
                return None
            plan = Plan(
                command_id,
                kind=c["kind"],
                spec=orjson.loads(c["spec"]),
                timeout=c["timeout"],
                expires_at=c["expires_at"],
            )
            rows = conn.execute(
                select(executions.c.id, executions.c.node_id, executions.c.frame)
                .where(
                    executions.c.command_id == command_id,
                    executions.c.state == "queued",
                    executions.c.cancel_requested_at.is_(None),
                )
                .order_by(executions.c.seq_no)
            ).all()
            plan.queued = [Candidate(*row) for row in rows]
            window = c["window"]
            if window is None:
                plan.free = len(plan.queued)
            else:
                plan.free = window - _in_flight(conn, command_id)
        return plan

    async def command(self, command_id: str) -> int:
        """Send what the command may send now; returns how many executions went."""
        now = self.clock()
        plan = await asyncio.to_thread(self._plan, command_id, now)
        if plan is None or plan.free <= 0 or not plan.queued:
            return 0
        where = await routes(self.redis, [c.node_id for c in plan.queued])
        chosen = [c for c in plan.queued if c.node_id in where][: plan.free]
        if not chosen:
            return 0
        frames = {
            c.execution_id: c.frame
            if c.frame is not None
            else execute_frame(
                self.key,
                OrderFacts(
                    c.execution_id,
                    plan.command_id,
                    c.node_id,
                    plan.kind,
                    plan.spec,
                    plan.timeout,
                    now,
                    plan.expires_at,
                ),
            )
            for c in chosen
        }
        sent = await asyncio.to_thread(self._claim, plan.command_id, chosen, frames, now)
        nodes = {c.execution_id: c.node_id for c in chosen}
        await deliver(
            self.redis,
            [Delivery(where[nodes[x]], nodes[x], "execute", frames[x]) for x in sent],
        )
        await progress.publish(
            self.redis,
            [progress.execution_event(plan.command_id, x, nodes[x], "sent", now) for x in sent],
        )
        return len(sent)

    def _claim(
        self,
        command_id: str,
        chosen: Sequence[Candidate],
        frames: dict[str, bytes],
        now: float,
    ) -> list[str]:
        """Mark what is still queued of ``chosen`` as sent (within the window); returns those ids."""
        with writer(self.engine).begin() as conn:
            window = conn.execute(
                select(commands.c.window, commands.c.cancelled_at).where(
                    commands.c.id == command_id
                )
            ).first()
            if window is None or window[1] is not None:
                return []
            still: set[str] = set()
            for part in records.chunked([c.execution_id for c in chosen]):
                still.update(
                    conn.execute(select(executions.c.id).where(*_still(part, "queued"))).scalars()
                )
            ids = [c.execution_id for c in chosen if c.execution_id in still]
            if window[0] is not None:
                ids = ids[: max(window[0] - _in_flight(conn, command_id), 0)]
            if ids:
                conn.execute(
                    update(executions)
                    .where(executions.c.id == bindparam("b_id"))
                    .values(
                        state="sent",
                        attempts=executions.c.attempts + 1,
                        sent_at=now,
                        frame=bindparam("b_frame"),
                    ),
                    [{"b_id": x, "b_frame": frames[x]} for x in ids],
                )
        return ids

    # ---- nodes that just connected ----------------------------------------------

    def _pending_for(self, node_ids: Sequence[str], now: float) -> tuple[list[AnyRow], set[str]]:
        sent: list[AnyRow] = []
        queued_commands: set[str] = set()
        with self.engine.connect() as conn:
            for part in records.chunked(list(node_ids)):
                rows = conn.execute(
                    select(
                        executions.c.id,
                        executions.c.command_id,
                        executions.c.node_id,
                        executions.c.state,
                        executions.c.frame,
                    )
                    .join(commands, commands.c.id == executions.c.command_id)
                    .where(
                        executions.c.node_id.in_(part),
                        executions.c.state.in_(("queued", "sent")),
                        executions.c.cancel_requested_at.is_(None),
                        commands.c.cancelled_at.is_(None),
                        commands.c.expires_at > now,
                    )
                ).all()
                for row in rows:
                    if row._mapping["state"] == "sent":
                        sent.append(row)
                    else:
                        queued_commands.add(row._mapping["command_id"])
        return sent, queued_commands

    async def nodes(self, node_ids: Sequence[str]) -> int:
        """Nodes just connected: re-send their unstarted executions, send their queued ones."""
        if not node_ids:
            return 0
        sent_rows, queued_commands = await asyncio.to_thread(
            self._pending_for, node_ids, self.clock()
        )
        count, _ = await self.resend(sent_rows)
        for command_id in sorted(queued_commands):
            count += await self.command(command_id)
        return count

    # ---- re-sending ---------------------------------------------------------------

    async def resend(self, rows: Sequence[AnyRow]) -> tuple[int, list[AnyRow]]:
        """Re-send the stored frames of sent executions (rows with id, node_id, frame).

        Returns how many went and the rows whose node has no route now.
        """
        if not rows:
            return 0, []
        now = self.clock()
        where = await routes(self.redis, [row._mapping["node_id"] for row in rows])
        going = [r for r in rows if r._mapping["node_id"] in where and r._mapping["frame"]]
        stranded = [r for r in rows if r._mapping["node_id"] not in where]
        ids = await asyncio.to_thread(self._mark_resent, [r._mapping["id"] for r in going], now)
        await deliver(
            self.redis,
            [
                Delivery(
                    where[r._mapping["node_id"]],
                    r._mapping["node_id"],
                    "execute",
                    r._mapping["frame"],
                )
                for r in going
                if r._mapping["id"] in ids
            ],
        )
        return len(ids), stranded

    def _mark_resent(self, ids: Sequence[str], now: float) -> set[str]:
        if not ids:
            return set()
        marked: set[str] = set()
        with writer(self.engine).begin() as conn:
            for part in records.chunked(list(ids)):
                marked.update(
                    conn.execute(
                        update(executions)
                        .where(*_still(part, "sent"))
                        .values(attempts=executions.c.attempts + 1, sent_at=now)
                        .returning(executions.c.id)
                    ).scalars()
                )
        return marked


def _still(ids: Sequence[str], state: str) -> tuple[ColumnElement[bool], ...]:
    """Which of the executions ``ids`` are still in ``state``, their cancel not requested."""
    return (
        executions.c.id.in_(ids),
        executions.c.state == state,
        executions.c.cancel_requested_at.is_(None),
    )


def _in_flight(conn: Any, command_id: str) -> int:
    count = conn.execute(
        select(func.count()).where(
            and_(executions.c.command_id == command_id, executions.c.state.in_(IN_FLIGHT))
        )
    ).scalar()
    return int(count or 0)
