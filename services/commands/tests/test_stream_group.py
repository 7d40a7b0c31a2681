"""The consumer-group loop the results consumer and the audit writer share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from sm_commands import stream_group
from sm_commands.stream_group import Entry, GroupConsumer

log = logging.getLogger("test.stream_group")


@dataclass
class Recorder(GroupConsumer):
    """Keeps what it handles; its first ``failures`` rounds with entries fail like a locked database."""

    stream = "test-stream"
    group = "test-group"
    log = log
    what = "a test round"

    redis: Redis
    consumer: str = "c1"
    batch: int = 2
    block_ms: int = 10
    claim_idle: float = 30.0
    failures: int = 0
    seen: list[bytes] = field(default_factory=list)
    three: asyncio.Event = field(default_factory=asyncio.Event)  # set once 3 entries are seen

    async def handle(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        if self.failures:
            self.failures -= 1
            raise OperationalError("INSERT ...", {"secret": "s3cret"}, Exception("locked"))
        self.seen += [fields[b"n"] for _, fields in entries]
        if len(self.seen) >= 3:
            self.three.set()
        await self.redis.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])


async def add(redis: Redis, *values: bytes) -> None:
    for value in values:
        await redis.xadd(Recorder.stream, {"n": value})


async def test_a_failed_round_is_read_again_not_skipped(
    aredis: Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(stream_group, "RETRY_PAUSE", 0.01)
    consumer = Recorder(aredis, failures=1)
    await consumer.ensure_group()
    await consumer.ensure_group()  # an existing group is kept
    await add(aredis, b"1", b"2", b"3")
    await asyncio.wait_for(consumer.run(consumer.three), 5)
    assert consumer.seen == [b"1", b"2", b"3"]
    assert (await aredis.xpending(Recorder.stream, Recorder.group))["pending"] == 0
    [failed] = [r for r in caplog.records if r.name == "test.stream_group"]
    assert failed.getMessage() == "a test round failed (Exception('locked')); retrying"


async def test_a_failure_not_retried_ends_the_run(aredis: Redis) -> None:
    class Broken(Recorder):
        async def handle(self, entries: Sequence[Entry]) -> None:
            raise RedisError("gone")

    with pytest.raises(RedisError):
        await Broken(aredis).run(asyncio.Event())


async def test_claim_takes_over_and_trim_keeps_what_the_group_needs(aredis: Redis) -> None:
    dead = Recorder(aredis, consumer="dead")
    await dead.ensure_group()
    await add(aredis, b"1", b"2", b"3")
    assert len(await dead._read(">", None)) == 2  # read, never acknowledged
    await dead.trim()
    assert await aredis.xlen(Recorder.stream) == 3
    survivor = Recorder(aredis, claim_idle=0.0)
    assert await survivor.step() == 3  # the dead one's 2 claimed, then 1 new
    assert survivor.seen == [b"1", b"2", b"3"]
    await survivor.trim()
    assert await aredis.xlen(Recorder.stream) == 1  # the last delivered entry is kept
