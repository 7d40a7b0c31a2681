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
"""

from __future__ import annotations

import time
from typing import Final

import orjson
from redis.asyncio import Redis

from sm_shared.streams import EVENTS_CHANNEL, LAST_SEEN_HASH, presence_key, route_key

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
        document = orjson.dumps(
            {"gateway": self._gateway, "connected_at": connected_at, "last_seen": now}
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(presence_key(node_id), document, px=self._ttl_ms, get=True)
            pipe.set(route_key(node_id), self._gateway, px=self._ttl_ms)
            pipe.hset(LAST_SEEN_HASH, node_id, repr(now))
            previous, _, _ = await pipe.execute()
        if previous is None:
            await self._redis.publish(
                EVENTS_CHANNEL, status_event(node_id, "online", self._gateway, now)
            )
            return True
        return False

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
