"""The audit events the commands service emits (to the ``audit`` stream; the audit
writer chains them).

``command.create``, ``command.cancel``, ``execution.cancel`` (who: the token's
subject and client) and ``execution.finish`` (per ended execution: its status,
exit code and output digests, or why it was refused or expired). Environment
values never appear (``specs.redacted``). Many events go in one pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import Redis

from sm_shared.audit import AuditEvent
from sm_shared.streams import AUDIT_STREAM

SERVICE: Final = "commands"


def command_target(command_id: str) -> str:
    return f"command:{command_id}"


def execution_target(execution_id: str) -> str:
    return f"execution:{execution_id}"


def command_created(command: dict[str, Any], node_ids: Sequence[str]) -> AuditEvent:
    """``command`` as answered (redacted spec)."""
    kind = command["kind"]
    detail = {
        "kind": kind,
        kind: command[kind],
        "target": command["target"],
        "node_ids": list(node_ids),
        "timeout": command["timeout"],
        "expires_in": command["expires_in"],
        "batch": command["batch"],
        "note": command["note"],
        "client": command.get("client"),
        "rerun_of": command["rerun_of"],
    }
    return AuditEvent(
        command["actor"],
        "command.create",
        command_target(command["id"]),
        SERVICE,
        detail,
        at=command["created_at"],
    )


def command_cancelled(
    actor: str, client: str | None, command_id: str, execution_ids: Sequence[str], at: float
) -> AuditEvent:
    return AuditEvent(
        actor,
        "command.cancel",
        command_target(command_id),
        SERVICE,
        {"client": client, "executions": len(execution_ids)},
        at=at,
    )


def execution_cancelled(
    actor: str, client: str | None, command_id: str, execution_id: str, node_id: str, at: float
) -> AuditEvent:
    return AuditEvent(
        actor,
        "execution.cancel",
        execution_target(execution_id),
        SERVICE,
        {"client": client, "command_id": command_id, "node_id": node_id},
        at=at,
    )


def execution_finished(
    actor: str,
    command_id: str,
    execution_id: str,
    node_id: str,
    state: str,
    at: float,
    *,
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
        actor, "execution.finish", execution_target(execution_id), SERVICE, detail, at=at
    )


async def emit_all(redis: Redis, events: Sequence[AuditEvent]) -> None:
    """Append ``events`` to the audit stream in order, in one pipeline."""
    if not events:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(AUDIT_STREAM, event.fields())  # type: ignore[arg-type]
        await pipe.execute()
