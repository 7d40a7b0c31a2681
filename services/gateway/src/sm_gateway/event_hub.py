"""One Redis pub/sub connection per gateway process, fanned out to its event clients.

A channel is subscribed in Redis while at least one client holds its topic
(``events`` for ``fleet`` always, so the connection never idles out of
subscriptions). Each message is encoded once for its topic (``fleet``:
``event``, ``command:<id>``: ``progress``, ``node:<id>``: as published) and
offered to every client holding the topic; a client whose bounded queue is full drops itself (it is
too slow), the others are not held up. If the pub/sub connection fails,
events were lost: every client is closed with 1011 so it reconnects and
re-syncs over REST, and the hub subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sm_gateway.event_protocol import FLEET, client_message, topic_channel
from sm_shared.streams import EVENTS_CHANNEL

READ_TIMEOUT: Final = 1.0
RETRY_PAUSE: Final = 1.0

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    def offer(self, message: bytes) -> None:
        """Queue ``message`` for the client without waiting."""

    def feed_lost(self) -> None:
        """Events may have been missed: the client must reconnect and re-sync."""


class EventHub:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub()
        self._holders: dict[str, set[Subscriber]] = {}  # channel → clients
        self._topics: dict[str, str] = {EVENTS_CHANNEL: FLEET}  # channel → topic
        self._ready = asyncio.Event()

    @property
    def channels(self) -> int:
        return len(self._holders)

    async def subscribe(self, client: Subscriber, topics: list[str]) -> None:
        new: list[str] = []
        for topic in topics:
            channel = topic_channel(topic)
            holders = self._holders.setdefault(channel, set())
            self._topics[channel] = topic
            if not holders and channel != EVENTS_CHANNEL:
                new.append(channel)
            holders.add(client)
        if new:
            await self._pubsub.subscribe(*new)

    async def unsubscribe(self, client: Subscriber, topics: list[str]) -> None:
        gone: list[str] = []
        for topic in topics:
            channel = topic_channel(topic)
            holders = self._holders.get(channel)
            if holders is None:
                continue
            holders.discard(client)
            if not holders and channel != EVENTS_CHANNEL:
                del self._holders[channel]
                del self._topics[channel]
                gone.append(channel)
        if gone:
            await self._pubsub.unsubscribe(*gone)

    async def run(self) -> None:
        """Read the pub/sub connection and fan out until cancelled."""
        try:
            while True:
                try:
                    await self._pubsub.subscribe(EVENTS_CHANNEL)
                    self._ready.set()
                    await self._read()
                except (RedisError, OSError) as exc:
                    self._ready.clear()
                    log.warning("the event feed failed; clients must re-sync: %r", exc)
                    await self._lost()
                    await asyncio.sleep(RETRY_PAUSE)
        finally:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def _read(self) -> None:
        while True:
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=READ_TIMEOUT
            )
            if message is None or message["type"] != "message":
                continue
            channel = message["channel"].decode()
            holders = self._holders.get(channel)
            if not holders:
                continue
            payload = client_message(self._topics[channel], message["data"])
            for client in list(holders):
                client.offer(payload)

    async def _lost(self) -> None:
        for client in {c for holders in self._holders.values() for c in holders}:
            client.feed_lost()
        self._holders = {}
        self._topics = {EVENTS_CHANNEL: FLEET}
        # A pub/sub object resubscribes what it knew when it reconnects; start clean instead.
        broken, self._pubsub = self._pubsub, self._redis.pubsub()
        with contextlib.suppress(RedisError, OSError):
            await broken.aclose()  # type: ignore[no-untyped-call]
