"""Audit events: every service appends them to the ``audit`` stream.

The commands service is the single writer of the hash-chained audit log; it
consumes this stream. Events are flat string maps (Redis stream fields).

An event may carry a ``key``: a stable id of the fact it records (e.g.
``command.create:<command id>``). The writer chains at most one event per
key, so a producer that cannot know whether its append went through (it
crashed between its commit and the append) may append the same keyed event
again. Events without a key (the field is then absent) are chained as they come.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from sm_shared.streams import AUDIT_STREAM


@dataclass(frozen=True)
class AuditEvent:
    """Who (``actor``: a token's ``sub``) did what (``action``, e.g. ``node.update``)
    to what (``target``, e.g. ``node:<id>``), in which service, when (unix time);
    ``key``: the fact's stable id when the producer may append it more than once."""

    actor: str
    action: str
    target: str
    service: str
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    key: str | None = None

    def fields(self) -> dict[str, str]:
        """The event as the flat string map a stream entry holds (``key`` only when set)."""
        fields = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "service": self.service,
            "detail": orjson.dumps(self.detail).decode(),
            # repr is the shortest text that reads back as the same float.
            "at": repr(self.at),
        }
        if self.key is not None:
            fields["key"] = self.key
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str] | Mapping[bytes, bytes]) -> AuditEvent:
        """The event of a stream entry, as read with or without ``decode_responses``."""
        text = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        return cls(
            actor=text["actor"],
            action=text["action"],
            target=text["target"],
            service=text["service"],
            detail=orjson.loads(text["detail"]),
            at=float(text["at"]),
            key=text.get("key"),
        )


async def emit(redis: Redis, event: AuditEvent) -> str:
    """Append ``event`` to the audit stream; returns its stream id."""
    entry_id = await redis.xadd(AUDIT_STREAM, event.fields())  # type: ignore[arg-type]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def given(**fields: Any) -> dict[str, Any]:
    """The fields an update was given (those not None): the detail of an update event."""
    return {name: value for name, value in fields.items() if value is not None}
