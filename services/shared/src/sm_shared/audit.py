"""Audit events: every service appends them to the ``audit`` stream.

The commands service is the single writer of the hash-chained audit log; it
consumes this stream. Events are flat string maps (Redis stream fields).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from sm_shared.streams import AUDIT_STREAM


@dataclass(frozen=True)
class AuditEvent:
    actor: str
    action: str
    target: str
    service: str
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def fields(self) -> dict[str, str]:
        return {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "service": self.service,
            "detail": orjson.dumps(self.detail).decode(),
            "at": f"{self.at:.6f}",
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> AuditEvent:
        return cls(
            actor=fields["actor"],
            action=fields["action"],
            target=fields["target"],
            service=fields["service"],
            detail=orjson.loads(fields["detail"]),
            at=float(fields["at"]),
        )


async def emit(redis: Redis, event: AuditEvent) -> str:
    """Append ``event`` to the audit stream; returns its stream id."""
    entry_id = await redis.xadd(AUDIT_STREAM, event.fields())  # type: ignore[arg-type]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
