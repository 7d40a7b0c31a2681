"""What the API's operations do: create, cancel and re-run commands.

Creating: the specification is checked (``specs``), the target resolved by
the registry (``targets``), the command and its executions stored in one
transaction, one dispatch job enqueued (``jobs.DISPATCH_JOB``, job id
``dispatch:<command id>``, no result kept), ``command.create`` audited,
and the command answered (202). Cancelling ends queued executions at once and
writes ``cancel`` frames for sent and running ones.

Audit events go through the outbox (``sm_commands.outbox``): staged in the
transaction that makes the change, appended to the ``audit`` stream after
the commit; a crash in between leaves them staged for the next flush.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from sm_commands import command_audit, outbox, progress, records, specs
from sm_commands.context import CommandsContext
from sm_commands.dispatch import send_cancels
from sm_commands.targets import NoNodes
from sm_shared.audit import AuditEvent

DISPATCH_JOB: Final = "commands.dispatch"


def dispatch_job_id(command_id: str) -> str:
    return f"dispatch:{command_id}"


async def enqueue_dispatch(ctx: CommandsContext, command_id: str) -> None:
    await ctx.queue.enqueue_job(DISPATCH_JOB, command_id, _job_id=dispatch_job_id(command_id))


async def _store_and_start(ctx: CommandsContext, new: records.NewCommand) -> dict[str, Any]:
    audit = [command_audit.command_created(new)]
    await asyncio.to_thread(records.create, ctx.engine, new, audit)
    await outbox.deliver(ctx.redis, ctx.engine, audit)
    await enqueue_dispatch(ctx, new.id)
    return await asyncio.to_thread(records.get, ctx.engine, new.id)


async def create(
    ctx: CommandsContext, actor: str, client: str | None, body: dict[str, Any]
) -> dict[str, Any]:
    kind = body["kind"]
    spec = specs.specification(kind, body)
    node_ids = await ctx.resolver.resolve(body["target"])
    new = records.NewCommand(
        actor=actor,
        client=client,
        kind=kind,
        spec=spec,
        target=body["target"],
        node_ids=node_ids,
        timeout=body.get("timeout", 60),
        expires_in=body.get("expires_in", 3600),
        batch=_batch_text(body.get("batch")),
        note=body.get("note"),
        created_at=time.time(),
    )
    return await _store_and_start(ctx, new)


def _batch_text(batch: Any) -> str | None:
    return None if batch is None else str(batch)


async def rerun(
    ctx: CommandsContext, actor: str, client: str | None, command_id: str, which: str
) -> dict[str, Any]:
    row, spec = await asyncio.to_thread(records.spec_of, ctx.engine, command_id)
    node_ids = await asyncio.to_thread(records.rerun_nodes, ctx.engine, command_id, which)
    if not node_ids:
        raise NoNodes(f"no execution of {command_id} qualifies for a re-run ({which})")
    m = row._mapping
    new = records.NewCommand(
        actor=actor,
        client=client,
        kind=m["kind"],
        spec=spec,
        target={"node_ids": node_ids},
        node_ids=node_ids,
        timeout=m["timeout"],
        expires_in=m["expires_in"],
        batch=m["batch"],
        note=m["note"],
        rerun_of=command_id,
        created_at=time.time(),
    )
    return await _store_and_start(ctx, new)


def _cancel_audit(
    actor: str, client: str | None, command_id: str, execution_id: str | None, now: float
) -> Callable[[records.Cancellation], list[AuditEvent]]:
    """What a cancel audits, given what it changed (run in its transaction)."""
    request = command_audit.new_request_id()

    def events(result: records.Cancellation) -> list[AuditEvent]:
        owner = result.command._mapping["actor"]
        audit: list[AuditEvent] = []
        if execution_id is None:
            ids = [r._mapping["id"] for r in (*result.ended, *result.to_stop)]
            audit.append(
                command_audit.command_cancelled(actor, client, command_id, ids, now, request)
            )
        else:
            for row in (*result.ended, *result.to_stop):
                m = row._mapping
                audit.append(
                    command_audit.execution_cancelled(
                        actor, client, command_id, m["id"], m["node_id"], now, request
                    )
                )
        for row in result.ended:
            m = row._mapping
            audit.append(
                command_audit.execution_finished(
                    owner,
                    command_id,
                    m["id"],
                    m["node_id"],
                    "cancelled",
                    now,
                    end="cancelled",
                    reason=records.CANCEL_REASON,
                )
            )
        return audit

    return events


async def cancel(
    ctx: CommandsContext,
    actor: str,
    client: str | None,
    command_id: str,
    execution_id: str | None = None,
) -> None:
    now = time.time()
    audit = _cancel_audit(actor, client, command_id, execution_id, now)
    result = await asyncio.to_thread(
        records.cancel, ctx.engine, command_id, now, execution_id, audit
    )
    await outbox.deliver(ctx.redis, ctx.engine, result.audit)
    events = [
        progress.execution_event(
            command_id,
            row._mapping["id"],
            row._mapping["node_id"],
            "cancelled",
            now,
            reason=records.CANCEL_REASON,
        )
        for row in result.ended
    ]
    await send_cancels(
        ctx.redis, [(r._mapping["id"], r._mapping["node_id"]) for r in result.to_stop]
    )
    await progress.publish(ctx.redis, events)
