"""One client's event stream connection (``/events/ws``).

The token was verified at the handshake; its scopes decide which topics the
client may hold, its ``exp`` when the connection ends (4401). Everything the
client is sent goes through one bounded queue drained by one writer task: a
client that does not read fast enough fills it and is closed with 4008, so
its backlog never grows past ``queue_size`` messages or ``queue_bytes``
bytes. Both bounds are generous enough for a client that reads steadily to
follow a command on thousands of nodes (three events per execution in about
a second, an output chunk up to 22 KB each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from sm_gateway.event_hub import EventHub
from sm_gateway.event_protocol import (
    FLEET,
    EventCloseCode,
    EventProtocol,
    is_command_topic,
    problem,
    topic_scope,
)
from sm_gateway.instruments import Instruments
from sm_gateway.protocol import ProtocolError
from sm_shared.tokens import Claims

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientParts:
    """What every event client of a gateway shares."""

    protocol: EventProtocol
    hub: EventHub
    instruments: Instruments
    max_node_topics: int
    max_command_topics: int
    queue_size: int
    queue_bytes: int


class EventClient:
    def __init__(self, ws: ServerConnection, claims: Claims, parts: ClientParts) -> None:
        self.ws = ws
        self.claims = claims
        self._parts = parts
        self.topics: set[str] = set()
        self._queue: deque[bytes] = deque()
        self._queue_bytes = 0
        self._queued = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        parts = self._parts
        loop = asyncio.get_running_loop()
        expires_in = float(self.claims.raw["exp"]) - time.time()
        expiry = loop.call_later(
            max(0.0, expires_in),
            self._stop,
            EventCloseCode.TOKEN_EXPIRED,
            "the access token expired; reconnect with a new one",
            "expired",
        )
        self._writer = writer = asyncio.create_task(self._write())
        try:
            async for raw in self.ws:
                message = parts.protocol.decode(raw)
                await self._handle(message)
        except ProtocolError as exc:
            self._stop(int(exc.code), exc.close_reason, None)
        except ConnectionClosed:
            pass
        finally:
            expiry.cancel()
            await parts.hub.unsubscribe(self, sorted(self.topics))
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
            if self._closing is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._closing

    async def _handle(self, message: dict[str, Any]) -> None:
        parts = self._parts
        request_id = message.get("id")
        asked = list(dict.fromkeys(message["topics"]))
        if message["type"] == "unsubscribe":
            held = [topic for topic in asked if topic in self.topics]
            self.topics.difference_update(held)
            await parts.hub.unsubscribe(self, held)
            self.offer(parts.protocol.subscribed(self.topics, request_id))
            return
        denied = [topic for topic in asked if topic_scope(topic) not in self.claims.scopes]
        if denied:
            parts.instruments.event_refusals.labels("403").inc()
            scopes = sorted({topic_scope(topic) for topic in denied})
            body = problem(403, f"these topics need scope {', '.join(scopes)}", denied)
            self.offer(parts.protocol.error(body, request_id))
            return
        new = [topic for topic in asked if topic not in self.topics]
        holding = self.topics.union(new)
        commands = sum(1 for topic in holding if is_command_topic(topic))
        nodes = sum(1 for topic in holding if topic != FLEET) - commands
        detail = None
        if nodes > parts.max_node_topics:
            detail = f"at most {parts.max_node_topics} node topics per connection"
        elif commands > parts.max_command_topics:
            detail = f"at most {parts.max_command_topics} command topics per connection"
        if detail is not None:
            parts.instruments.event_refusals.labels("400").inc()
            self.offer(parts.protocol.error(problem(400, detail, new), request_id))
            return
        self.topics.update(new)
        await parts.hub.subscribe(self, new)
        self.offer(parts.protocol.subscribed(self.topics, request_id))

    # ---- the hub's side ----

    def offer(self, message: bytes) -> None:
        if self._closing is not None:
            return
        if (
            len(self._queue) >= self._parts.queue_size
            or self._queue_bytes + len(message) > self._parts.queue_bytes
        ):
            self._stop(
                EventCloseCode.TOO_SLOW, "too slow: reconnect, then re-sync over REST", "slow"
            )
            return
        self._queue.append(message)
        self._queue_bytes += len(message)
        self._parts.instruments.event_messages.inc()
        self._queued.set()

    def feed_lost(self) -> None:
        self.topics.clear()
        self._stop(
            EventCloseCode.FEED_LOST,
            "events may have been missed: reconnect and re-sync",
            "feed_lost",
        )

    # ---- writing ----

    def _stop(self, code: int, reason: str, drop: str | None) -> None:
        """Close now: queued messages are discarded, a send stuck on a full socket abandoned
        (frames are written whole before a send waits, so the close frame follows intact)."""
        if self._closing is not None:
            return
        if drop is not None:
            self._parts.instruments.event_drops.labels(drop).inc()
            log.info("event client %s: closing with %d (%s)", self.claims.subject, code, drop)
        self._queue.clear()
        self._queue_bytes = 0
        if self._writer is not None:
            self._writer.cancel()
        self._closing = asyncio.create_task(self.ws.close(code, reason))

    async def _write(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                message = self._queue.popleft()
                self._queue_bytes -= len(message)
                await self.ws.send(message, text=True)
