"""Live progress: what is recorded is published on ``command:{id}`` (after the commit).

Messages are ``ExecutionEvent`` and ``OutputEvent`` of
``openapi/events-protocol.json`` as JSON; the gateway relays them to
clients subscribed to topic ``command:<id>``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from sm_shared.streams import command_channel


@dataclass(frozen=True, slots=True)
class Event:
    """One message for one command's channel."""

    command_id: str
    body: dict[str, Any]

    def encoded(self) -> bytes:
        return orjson.dumps(self.body)


def execution_event(
    command_id: str,
    execution_id: str,
    node_id: str,
    state: str,
    at: float,
    *,
    exit_code: int | None = None,
    reason: str | None = None,
    error: str | None = None,
    with_exit_code: bool = False,
) -> Event:
    body: dict[str, Any] = {
        "type": "execution",
        "command_id": command_id,
        "execution_id": execution_id,
        "node_id": node_id,
        "state": state,
        "at": at,
    }
    if with_exit_code:
        body["exit_code"] = exit_code
    if reason is not None:
        body["reason"] = reason
    if error is not None:
        body["error"] = error
    return Event(command_id, body)


def output_event(
    command_id: str,
    execution_id: str,
    node_id: str,
    stream: str,
    offset: int,
    data: bytes,
    at: float,
) -> Event:
    return Event(
        command_id,
        {
            "type": "output",
            "command_id": command_id,
            "execution_id": execution_id,
            "node_id": node_id,
            "stream": stream,
            "offset": offset,
            "data": base64.b64encode(data).decode(),
            "at": at,
        },
    )


async def publish(redis: Redis, events: Sequence[Event]) -> None:
    """Publish ``events`` in order, pipelined."""
    if not events:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.publish(command_channel(event.command_id), event.encoded())
        await pipe.execute()
