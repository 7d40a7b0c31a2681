"""Online state in Redis, written by the gateway that holds a node's connection.

Per node (names from ``sm_shared.streams``):

- ``presence:{node}``: JSON ``{"gateway", "connected_at", "last_seen"}`` with a
  TTL of 3 heartbeat intervals. The node is online iff it exists; if this
  gateway dies, it expires on its own.
- ``route:{node}``: the id of the gateway holding the connection, same TTL.
- hash ``last-seen``: node → Unix time of its last heartbeat (no TTL).

A status event ``{"type": "status", "node_id", "status", "gateway", "at"}`` is
published on the ``events`` channel when a node comes online (its presence
key did not exist) and when its connection ends here.

Heartbeats refresh presence in batches (``stage``): one script call per
batch sets the keys of every node in it and publishes their live messages,
inside the batch's pipeline; it returns the nodes that were offline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from sm_shared.streams import (
    EVENTS_CHANNEL,
    LAST_SEEN_HASH,
    live_metrics_channel,
    presence_key,
    route_key,
)

PRESENCE_INTERVALS: Final = 3

# Deletes presence and route only while they are still this connection's: a
# newer connection (here or on another gateway) must keep its own.
_RELEASE = """
local mine = false
local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and doc['gateway'] == ARGV[1]
     and doc['connected_at'] == tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1])
    mine = true
  end
else
  mine = redis.call('GET', KEYS[2]) == ARGV[1]
end
if mine and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
if mine then return 1 end
return 0
"""


# KEYS: the last-seen hash, then per node its presence and route keys.
# ARGV: gateway, TTL (ms), now, then per node: id, presence document, live channel,
# live message ('' for none). Returns the ids of the nodes that were offline.
_TOUCH_MANY = """
local gateway, ttl, now = ARGV[1], ARGV[2], ARGV[3]
local came = {}
for i = 1, (#KEYS - 1) / 2 do
  local a = 3 + (i - 1) * 4
  local node, live = ARGV[a + 1], ARGV[a + 4]
  local before = redis.call('SET', KEYS[2 * i], ARGV[a + 2], 'PX', ttl, 'GET')
  redis.call('SET', KEYS[2 * i + 1], gateway, 'PX', ttl)
  redis.call('HSET', KEYS[1], node, now)
  if live ~= '' then redis.call('PUBLISH', ARGV[a + 3], live) end
  if not before then came[#came + 1] = node end
end
return came
"""


@dataclass(frozen=True, slots=True)
class Refresh:
    """One node's presence refresh in a batch, with its live message (or none)."""

    node_id: str
    connected_at: float
    live: bytes | None


def status_event(node_id: str, status: str, gateway: str, at: float) -> bytes:
    return orjson.dumps(
        {"type": "status", "node_id": node_id, "status": status, "gateway": gateway, "at": at}
    )


class Presence:
    def __init__(self, redis: Redis, gateway_id: str, heartbeat_interval: float) -> None:
        self._redis = redis
        self._gateway = gateway_id
        self._ttl_ms = int(heartbeat_interval * PRESENCE_INTERVALS * 1000)
        self._release = redis.register_script(_RELEASE)

    async def touch(self, node_id: str, connected_at: float) -> bool:
        """Mark the node online through this gateway now; True when it was offline before."""
        now = round(time.time(), 3)
        async with self._redis.pipeline(transaction=False) as pipe:
            self.stage(pipe, [Refresh(node_id, connected_at, None)], now)
            (came_online,) = await pipe.execute()
        if came_online:
            await self.announce_online(came_online, now)
        return bool(came_online)

    def stage(self, pipe: Any, refreshes: Sequence[Refresh], now: float) -> None:
        """Queue one script call on ``pipe`` refreshing every node of ``refreshes``."""
        keys: list[str] = [LAST_SEEN_HASH]
        args: list[str | bytes | float] = [self._gateway, self._ttl_ms, repr(now)]
        for refresh in refreshes:
            keys += (presence_key(refresh.node_id), route_key(refresh.node_id))
            document = orjson.dumps(
                {"gateway": self._gateway, "connected_at": refresh.connected_at, "last_seen": now}
            )
            args += (
                refresh.node_id,
                document,
                live_metrics_channel(refresh.node_id),
                refresh.live or b"",
            )
        pipe.eval(_TOUCH_MANY, len(keys), *keys, *args)

    async def announce_online(self, node_ids: Sequence[bytes | str], now: float) -> None:
        """Publish ``online`` for the nodes a batch found offline."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for node in node_ids:
                node_id = node.decode() if isinstance(node, bytes) else node
                pipe.publish(EVENTS_CHANNEL, status_event(node_id, "online", self._gateway, now))
            await pipe.execute()

    async def release(self, node_id: str, connected_at: float) -> bool:
        """The connection that started at ``connected_at`` ended; True when the node went offline."""
        released = await self._release(
            keys=[presence_key(node_id), route_key(node_id)],
            args=[self._gateway, repr(connected_at)],
        )
        if released:
            await self._redis.publish(
                EVENTS_CHANNEL,
                status_event(node_id, "offline", self._gateway, round(time.time(), 3)),
            )
        return bool(released)
