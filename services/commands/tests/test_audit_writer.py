"""The audit writer against a real Redis stream and a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import Engine, func, select

from sm_commands import audit_chain
from sm_commands.audit_schema import audit_records, create_tables
from sm_commands.audit_writer import COUNTERS_KEY, run_audit_writer
from sm_shared.audit import AuditEvent, emit
from sm_shared.database import create_database_engine
from sm_shared.datadir import DataDir
from sm_shared.streams import AUDIT_GROUP, AUDIT_STREAM


@pytest.fixture
def engine(data_dir: DataDir) -> Iterator[Engine]:
    engine = create_database_engine(data_dir.database_url("commands"))
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def writer(
    redis: Redis, engine: Engine, consumer: str = "w1", **options: Any
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_audit_writer(redis, engine, consumer, block_ms=50, stop=stop, **options)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_records)).scalar_one())


async def until_recorded(engine: Engine, expected: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while count(engine) < expected:
        assert time.monotonic() < deadline, f"{count(engine)} of {expected} recorded"
        await asyncio.sleep(0.02)


def event(n: int) -> AuditEvent:
    return AuditEvent("alice", "node.update", f"node:n{n}", "registry", {"n": n})


async def pending(redis: Redis) -> int:
    info: Any = await redis.xpending(AUDIT_STREAM, AUDIT_GROUP)
    return int(info["pending"])


async def test_events_become_a_verified_chain_in_order(redis: Redis, engine: Engine) -> None:
    ids = [await emit(redis, event(n)) for n in range(5)]
    async with writer(redis, engine):
        await until_recorded(engine, 5)
        ids += [await emit(redis, event(n)) for n in range(5, 8)]
        await until_recorded(engine, 8)
    result = audit_chain.verify(engine)
    assert result.ok
    assert result.records == 8
    page, _ = audit_chain.records(engine, audit_chain.Filters(), limit=10)
    assert [r["target"] for r in reversed(page)] == [f"node:n{n}" for n in range(8)]
    assert await pending(redis) == 0
    with engine.connect() as conn:
        stored = list(
            conn.execute(select(audit_records.c.stream_id).order_by(audit_records.c.seq)).scalars()
        )
    assert stored == ids


async def test_a_crash_between_commit_and_ack_records_nothing_twice(
    redis: Redis, engine: Engine
) -> None:
    for n in range(6):
        await emit(redis, event(n))
    await redis.xgroup_create(AUDIT_STREAM, AUDIT_GROUP, id="0", mkstream=True)
    # What a writer killed after its commit leaves: entries read (pending), committed, not acked.
    reply: Any = await redis.xreadgroup(AUDIT_GROUP, "w1", {AUDIT_STREAM: ">"}, count=4)
    entries = reply[0][1]
    committed = [(i.decode(), AuditEvent.from_fields(f)) for i, f in entries]
    assert audit_chain.append(engine, committed) == 4
    assert await pending(redis) == 4
    async with writer(redis, engine, "w1"):  # the same consumer, restarted
        await until_recorded(engine, 6)
        await asyncio.sleep(0.2)
    assert count(engine) == 6
    assert audit_chain.verify(engine).ok
    assert await pending(redis) == 0
    counters = await redis.hgetall(COUNTERS_KEY)
    assert counters == {b"appended": b"2", b"duplicates": b"4"}


async def test_a_dead_consumers_entries_are_claimed(redis: Redis, engine: Engine) -> None:
    for n in range(3):
        await emit(redis, event(n))
    await redis.xgroup_create(AUDIT_STREAM, AUDIT_GROUP, id="0", mkstream=True)
    await redis.xreadgroup(AUDIT_GROUP, "dead", {AUDIT_STREAM: ">"}, count=10)
    await asyncio.sleep(0.15)
    async with writer(redis, engine, "w2", claim_idle=0.1):
        await until_recorded(engine, 3)
    assert await pending(redis) == 0
    assert audit_chain.verify(engine).records == 3


async def test_malformed_entries_are_counted_and_never_stop_the_chain(
    redis: Redis, engine: Engine
) -> None:
    await emit(redis, event(1))
    good = event(2).fields()
    await redis.xadd(AUDIT_STREAM, {"actor": "x"})  # fields missing
    await redis.xadd(AUDIT_STREAM, {**good, "detail": "{not json"})
    await redis.xadd(AUDIT_STREAM, {**good, "detail": "[1, 2]"})  # not an object
    await redis.xadd(AUDIT_STREAM, {**good, "at": "yesterday"})
    await emit(redis, event(3))
    async with writer(redis, engine):
        await until_recorded(engine, 2)
        await emit(redis, event(4))
        await until_recorded(engine, 3)
    assert await pending(redis) == 0
    assert (await redis.hget(COUNTERS_KEY, "malformed")) == b"4"
    result = audit_chain.verify(engine)
    assert result.ok
    assert result.records == 3
