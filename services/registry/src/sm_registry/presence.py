"""Node presence as the gateway writes it in Redis (the registry only reads it).

- ``presence:{node_id}`` exists (with a TTL of 3 heartbeat intervals) while
  the node is connected: JSON ``{"gateway", "connected_at", "last_seen"}``;
- hash ``last-seen``: node id → Unix time (float as text), kept after the
  node goes offline.

A node is online iff its presence key exists. Reads are batched: one round
trip (a pipeline of one MGET and one HMGET) per page of nodes, never one per node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from sm_shared.streams import presence_key

LAST_SEEN_HASH: Final = "last-seen"
# Ids per MGET when a filter needs the presence of many nodes (status=online over
# the whole fleet): large enough to stay a handful of round trips at 10,000
# nodes, small enough not to stall Redis on one command.
CHUNK: Final = 2_000


@dataclass(frozen=True)
class Presence:
    online: bool
    last_seen: float | None


OFFLINE_NEVER_SEEN: Final = Presence(online=False, last_seen=None)


def _as_float(raw: Any) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _presence(raw_presence: bytes | None, raw_last_seen: bytes | None) -> Presence:
    last_seen = _as_float(raw_last_seen)
    if raw_presence is None:
        return Presence(online=False, last_seen=last_seen)
    try:
        document = orjson.loads(raw_presence)
    except orjson.JSONDecodeError:
        document = None
    live = _as_float(document.get("last_seen")) if isinstance(document, dict) else None
    if live is not None and (last_seen is None or live > last_seen):
        last_seen = live
    return Presence(online=True, last_seen=last_seen)


async def read_presence(redis: Redis, node_ids: Sequence[str]) -> dict[str, Presence]:
    """Presence of each node id (missing from Redis = offline, never seen)."""
    result: dict[str, Presence] = {}
    for start in range(0, len(node_ids), CHUNK):
        chunk = list(node_ids[start : start + CHUNK])
        async with redis.pipeline(transaction=False) as pipe:
            pipe.mget([presence_key(node_id) for node_id in chunk])
            pipe.hmget(LAST_SEEN_HASH, chunk)
            presences, last_seen = await pipe.execute()
        for node_id, raw_presence, raw_last_seen in zip(chunk, presences, last_seen, strict=True):
            result[node_id] = _presence(raw_presence, raw_last_seen)
    return result


async def online_ids(redis: Redis, node_ids: Sequence[str]) -> set[str]:
    """Those of ``node_ids`` whose presence key exists."""
    online: set[str] = set()
    for start in range(0, len(node_ids), CHUNK):
        chunk = list(node_ids[start : start + CHUNK])
        found = await redis.mget([presence_key(node_id) for node_id in chunk])
        online.update(node_id for node_id, raw in zip(chunk, found, strict=True) if raw is not None)
    return online
