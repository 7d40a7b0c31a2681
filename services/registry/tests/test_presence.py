"""Reading presence from a real Redis: a page (pipeline) and a fleet (script) agree."""

from __future__ import annotations

import random
import uuid

import orjson
from redis.asyncio import Redis

from sm_registry.presence import CHUNK, Presence, read_presence
from sm_shared.streams import LAST_SEEN_HASH, presence_key


async def test_states(redis: Redis) -> None:
    ids = [str(uuid.uuid4()) for _ in range(6)]
    never, offline, online, stale_hash, no_last_seen, garbage = ids
    await redis.hset(LAST_SEEN_HASH, mapping={offline: "100.5", online: "150", stale_hash: "900"})  # type: ignore[misc]
    await redis.set(presence_key(online), orjson.dumps({"gateway": "g", "last_seen": 200.25}))
    await redis.set(presence_key(stale_hash), orjson.dumps({"gateway": "g", "last_seen": 800.0}))
    await redis.set(presence_key(no_last_seen), orjson.dumps({"gateway": "g"}))
    await redis.set(presence_key(garbage), b"not json")
    expected = {
        never: Presence(online=False, last_seen=None),
        offline: Presence(online=False, last_seen=100.5),
        online: Presence(online=True, last_seen=200.25),
        stale_hash: Presence(online=True, last_seen=900.0),  # the newer of the two wins
        no_last_seen: Presence(online=True, last_seen=None),
        garbage: Presence(online=True, last_seen=None),
    }
    assert await read_presence(redis, ids) == expected
    assert await read_presence(redis, []) == {}


async def test_fleet_reads_agree_with_page_reads(redis: Redis) -> None:
    rng = random.Random(5)
    ids = [str(uuid.uuid4()) for _ in range(CHUNK * 2 + 517)]
    async with redis.pipeline(transaction=False) as pipe:
        for node_id in ids:
            if rng.random() < 0.5:
                pipe.hset(LAST_SEEN_HASH, node_id, f"{rng.uniform(1e9, 2e9):.6f}")
            if rng.random() < 0.3:
                document = {"gateway": "g", "last_seen": rng.uniform(1e9, 2e9)}
                pipe.set(presence_key(node_id), orjson.dumps(document))
        await pipe.execute()
    fleet = await read_presence(redis, ids)  # the script path
    assert len(fleet) == len(ids)
    paged: dict[str, Presence] = {}
    for start in range(0, len(ids), CHUNK):
        paged.update(await read_presence(redis, ids[start : start + CHUNK]))  # the pipeline path
    assert fleet.keys() == paged.keys()
    for node_id in ids:
        assert fleet[node_id].online == paged[node_id].online
        a, b = fleet[node_id].last_seen, paged[node_id].last_seen
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert abs(a - b) < 1e-5
    assert 0 < sum(p.online for p in fleet.values()) < len(ids)
