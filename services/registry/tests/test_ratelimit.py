"""Backoff on failed attempts, against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from sm_registry.ratelimit import Backoff, BackoffPolicy
from sm_shared.problems import TooManyRequests
from sm_shared.streams import rate_limit_key

FAST = BackoffPolicy(free_failures=2, base_delay=0.4, max_delay=1.6, forget_after=30)


async def test_free_failures_cost_nothing(redis: Redis) -> None:
    backoff = Backoff(redis, "test", FAST)
    assert await backoff.fail(["addr:a"]) == 0
    assert await backoff.fail(["addr:a"]) == 0
    assert await backoff.retry_after(["addr:a"]) == 0
    await backoff.check(["addr:a"])


async def test_delay_doubles_up_to_the_cap(redis: Redis) -> None:
    backoff = Backoff(redis, "test", FAST)
    for _ in range(FAST.free_failures):
        await backoff.fail(["addr:a"])
    key = rate_limit_key("test", "addr:a")
    waits = []
    for _ in range(5):
        await backoff.fail(["addr:a"])
        waits.append(float(await redis.hget(key, "until")) - float((await redis.time())[0]))  # type: ignore[misc]
    # 0.4, 0.8, 1.6, 1.6, 1.6 (measured against whole server seconds: ±1)
    assert waits[1] > waits[0]
    assert waits[2] > waits[1]
    assert abs(waits[4] - waits[3]) < 1.01
    assert await backoff.retry_after(["addr:a"]) == 2  # ceil(1.6)


async def test_check_raises_with_retry_after_then_lets_through(redis: Redis) -> None:
    backoff = Backoff(redis, "test", FAST)
    for _ in range(FAST.free_failures + 1):
        await backoff.fail(["addr:a"])
    with pytest.raises(TooManyRequests) as caught:
        await backoff.check(["addr:a"])
    assert caught.value.retry_after == 1
    assert caught.value.headers() == {"Retry-After": "1"}
    assert caught.value.to_dict()["status"] == 429
    await asyncio.sleep(0.45)
    await backoff.check(["addr:a"])


async def test_any_waiting_subject_blocks_and_subjects_are_separate(redis: Redis) -> None:
    backoff = Backoff(redis, "test", FAST)
    for _ in range(FAST.free_failures + 1):
        await backoff.fail(["client:x"])
    assert await backoff.retry_after(["addr:b"]) == 0
    assert await backoff.retry_after(["addr:b", "client:x"]) == 1
    # Another bucket does not share the count.
    assert await Backoff(redis, "other", FAST).retry_after(["client:x"]) == 0


async def test_succeed_forgets_only_the_named_subjects(redis: Redis) -> None:
    backoff = Backoff(redis, "test", FAST)
    for _ in range(FAST.free_failures + 1):
        await backoff.fail(["addr:a", "user:u"])
    await backoff.succeed(["user:u"])
    assert await backoff.retry_after(["user:u"]) == 0
    assert await backoff.retry_after(["addr:a"]) == 1


async def test_keys_expire_after_quiet_period(redis: Redis) -> None:
    backoff = Backoff(redis, "test", FAST)
    await backoff.fail(["addr:a"])
    ttl = await redis.ttl(rate_limit_key("test", "addr:a"))
    assert 0 < ttl <= FAST.forget_after
