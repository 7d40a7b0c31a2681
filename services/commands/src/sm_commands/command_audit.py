"""The audit events the commands service emits (to the ``audit`` stream; the audit
writer chains them).

``command.create``, ``command.cancel``, ``execution.cancel`` (who: the token's
subject and client) and ``execution.finish`` (per ended execution: its status,
exit code and output digests, or why it was refused or expired). Environment
values never appear (``specs.redacted``). Many events go in one pipeline.

Every event has a key (``AuditEvent.key``, the fact's stable id: the audit
writer chains one event per key), so that whoever is unsure an event was
appended may append it again::

    command.create:<command id>
    command.cancel:<command id>:<request id>      (one per cancel request)
    execution.cancel:<execution id>:<request id>
    execution.finish:<execution id>:<seq>         (the node's finished/refused report)
    execution.finish:<execution id>:<state>       (ended by the core: cancelled, expired)

An execution the core ended may still be corrected by the node's
``finished`` report: a second ``execution.finish`` under its seq's key.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import Redis

from sm_commands import outbox, specs
from sm_commands.records import NewCommand
from sm_shared.audit import AuditEvent

SERVICE: Final = "commands"


def command_target(command_id: str) -> str:
    return f"command:{command_id}"


def execution_target(execution_id: str) -> str:
    return f"execution:{execution_id}"


def new_request_id() -> str:
    """The id of one cancel request (part of its events' keys)."""
    return uuid.uuid4().hex


def finish_key(execution_id: str, end: str | int) -> str:
    """``end``: the seq of the node's report that ended it, or the state the core ended it in."""
    return f"execution.finish:{execution_id}:{end}"


def command_created(new: NewCommand) -> AuditEvent:
    """The command as stored (its spec redacted)."""
    detail = {
        "kind": new.kind,
        new.kind: specs.redacted(new.kind, new.spec),
        "target": new.target,
        "node_ids": list(new.node_ids),
        "timeout": new.timeout,
        "expires_in": new.expires_in,
        "batch": new.batch,
        "note": new.note,
        "client": new.client,
        "rerun_of": new.rerun_of,
    }
    return AuditEvent(
        new.actor,
        "command.create",
        command_target(new.id),
        SERVICE,
        detail,
        at=new.created_at,
        key=f"command.create:{new.id}",
    )


def command_cancelled(
    actor: str,
    client: str | None,
    command_id: str,
    execution_ids: Sequence[str],
    at: float,
    request: str,
) -> AuditEvent:
    return AuditEvent(
        actor,
        "command.cancel",
        command_target(command_id),
        SERVICE,
        {"client": client, "executions": len(execution_ids)},
        at=at,
        key=f"command.cancel:{command_id}:{request}",
    )


def execution_cancelled(
    actor: str,
    client: str | None,
    command_id: str,
    execution_id: str,
    node_id: str,
    at: float,
    request: str,
) -> AuditEvent:
    return AuditEvent(
        actor,
        "execution.cancel",
        execution_target(execution_id),
        SERVICE,
        {"client": client, "command_id": command_id, "node_id": node_id},
        at=at,
        key=f"execution.cancel:{execution_id}:{request}",
    )


def execution_finished(
    actor: str,
    command_id: str,
    execution_id: str,
    node_id: str,
    state: str,
    at: float,
    *,
    end: str | int,
    exit_code: int | None = None,
    streams: dict[str, dict[str, Any]] | None = None,
    reason: str | None = None,
    code: str | None = None,
) -> AuditEvent:
    detail: dict[str, Any] = {
        "command_id": command_id,
        "node_id": node_id,
        "status": state,
        "exit_code": exit_code,
    }
    for name, summary in (streams or {}).items():
        detail[name] = {"bytes": summary["bytes"], "sha256": summary["sha256"]}
    if reason is not None:
        detail["reason"] = reason
    if code is not None:
        detail["code"] = code
    return AuditEvent(
        actor,
        "execution.finish",
        execution_target(execution_id),
        SERVICE,
        detail,
        at=at,
        key=finish_key(execution_id, end),
    )


async def emit_all(redis: Redis, events: Sequence[AuditEvent]) -> None:
    """Append ``events`` to the audit stream in order, in one pipeline."""
    await outbox.append(redis, [event.fields() for event in events])
