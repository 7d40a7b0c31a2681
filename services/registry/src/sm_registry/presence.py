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

from sm_shared.streams import LAST_SEEN_HASH, presence_key

# Up to this many ids (a page): one pipelined MGET + HMGET.
CHUNK: Final = 1_000
# Ids per script call beyond that: few round trips at 10,000 nodes, and each
# call short enough (a few ms) not to stall Redis for other clients.
FLEET_CHUNK: Final = 5_000


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


# KEYS[1]: the last-seen hash. ARGV[1]: node ids joined by ","; ARGV[2]: the
# presence key prefix (``presence_key("")``). Returns one string: per node, in order and
# joined by ",", "<1|0> <last seen>" (online flag; last seen empty if never).
# One argument and one reply string keep client-side encoding and parsing
# cheap for a whole fleet; the keys are derived from the ids (single Redis
# server, never a cluster: DESIGN.md).
_READ = """
local out = {}
for id in string.gmatch(ARGV[1], '[^,]+') do
  local seen = redis.call('HGET', KEYS[1], id)
  local raw = redis.call('GET', ARGV[2] .. id)
  local flag = '0'
  if raw then
    flag = '1'
    local ok, doc = pcall(cjson.decode, raw)
    if ok and type(doc) == 'table' and type(doc['last_seen']) == 'number' then
      if not seen or doc['last_seen'] > tonumber(seen) then
        seen = string.format('%.6f', doc['last_seen'])
      end
    end
  end
  out[#out + 1] = flag .. ' ' .. (seen or '')
end
return table.concat(out, ',')
"""


async def read_presence(redis: Redis, node_ids: Sequence[str]) -> dict[str, Presence]:
    """Presence of each node id (missing from Redis = offline, never seen).

    A page (up to ``CHUNK`` ids) is one pipelined MGET + HMGET; more ids (a
    status filter or a last-seen sort over the fleet) go through one script
    call per ``CHUNK`` ids instead of tens of thousands of encoded arguments.
    """
    if len(node_ids) <= CHUNK:
        return await _read_page(redis, node_ids)
    result: dict[str, Presence] = {}
    for start in range(0, len(node_ids), FLEET_CHUNK):
        chunk = node_ids[start : start + FLEET_CHUNK]
        reply = redis.eval(_READ, 1, LAST_SEEN_HASH, ",".join(chunk), presence_key(""))
        assert not isinstance(reply, str)  # redis-py types sync and async replies alike
        raw: Any = await reply
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        for node_id, entry in zip(chunk, text.split(","), strict=True):
            result[node_id] = Presence(
                online=entry[0] == "1", last_seen=float(entry[2:]) if len(entry) > 2 else None
            )
    return result


async def _read_page(redis: Redis, node_ids: Sequence[str]) -> dict[str, Presence]:
    if not node_ids:
        return {}
    chunk = list(node_ids)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.mget([presence_key(node_id) for node_id in chunk])
        pipe.hmget(LAST_SEEN_HASH, chunk)
        presences, last_seen = await pipe.execute()
    return {
        node_id: _presence(raw_presence, raw_last_seen)
        for node_id, raw_presence, raw_last_seen in zip(chunk, presences, last_seen, strict=True)
    }
