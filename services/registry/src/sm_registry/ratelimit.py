"""Backoff on failed attempts, kept in Redis so every registry process shares it.

Each *subject* (a client address, a client id, a user name) has a counter of
recent failures under ``sm_shared.streams.rate_limit_key(bucket, subject)``.
The first ``free_failures`` failures cost nothing; every further one doubles
the time the subject must wait before its next attempt (``base_delay``,
``2 * base_delay``, … capped at ``max_delay``). A subject with no failure for
``forget_after`` seconds starts afresh (the key expires). Times come from the
Redis server's clock, so several processes agree on them.

Use it in three steps around the check it protects (here ``POST /api/v1/enroll``)::

    from sm_registry.ratelimit import Backoff, address_subject

    backoff = Backoff(ctx.redis, "enroll")
    subjects = [address_subject(request)]
    await backoff.check(subjects)        # raises TooManyRequests (429 problem+json,
                                         # Retry-After) while any subject must wait
    if not key_is_valid:
        await backoff.fail(subjects)     # counts the failure for every subject
        raise Unauthorized("...")
    await backoff.succeed(subjects)      # optional: forgets these subjects' failures

Call ``check`` before verifying anything, so a subject that must wait learns
nothing from its attempt. ``retry_after`` returns the wait without raising,
for callers (the token endpoint) that report it in another format. Only pass
to ``succeed`` subjects the success proves something about: resetting a shared
client address after one good login would let that address keep guessing
other accounts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from starlette.datastructures import Address

from sm_shared.problems import TooManyRequests
from sm_shared.streams import rate_limit_key

# KEYS: subject keys. ARGV: free failures, base delay, max delay, forget after (s).
# Returns the longest wait now imposed (seconds, as a string: Lua numbers lose
# their fraction on the way back).
_FAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local free = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local forget = tonumber(ARGV[4])
local longest = 0
for _, key in ipairs(KEYS) do
  local failures = redis.call('HINCRBY', key, 'failures', 1)
  local delay = 0
  if failures > free then
    delay = math.min(base * 2 ^ (failures - free - 1), cap)
    redis.call('HSET', key, 'until', tostring(now + delay))
  end
  redis.call('EXPIRE', key, math.ceil(delay + forget))
  if delay > longest then longest = delay end
end
return tostring(longest)
"""

# KEYS: subject keys. Returns the longest remaining wait (seconds, as a string).
_WAIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local longest = 0
for _, key in ipairs(KEYS) do
  local until_ = tonumber(redis.call('HGET', key, 'until') or '0')
  if until_ - now > longest then longest = until_ - now end
end
return tostring(longest)
"""


@dataclass(frozen=True)
class BackoffPolicy:
    """How failures turn into waits (seconds)."""

    free_failures: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0
    forget_after: float = 900.0


class Backoff:
    """Exponential backoff on failures in one ``bucket`` (e.g. ``"token"``, ``"enroll"``)."""

    def __init__(self, redis: Redis, bucket: str, policy: BackoffPolicy | None = None) -> None:
        self._redis = redis
        self._bucket = bucket
        self._policy = policy or BackoffPolicy()

    def _keys(self, subjects: Sequence[str]) -> list[str]:
        return [rate_limit_key(self._bucket, subject) for subject in dict.fromkeys(subjects)]

    async def _eval(self, script: str, keys: list[str], args: list[float]) -> float:
        # redis-py types eval's result as "Awaitable[str] | str" for its sync and async twins.
        result = self._redis.eval(script, len(keys), *keys, *(str(a) for a in args))
        assert not isinstance(result, str)
        return float(await result)

    async def retry_after(self, subjects: Sequence[str]) -> int:
        """Whole seconds until every subject may try again; 0 when all may try now."""
        keys = self._keys(subjects)
        if not keys:
            return 0
        wait = await self._eval(_WAIT, keys, [])
        return math.ceil(wait) if wait > 0 else 0

    async def check(self, subjects: Sequence[str]) -> None:
        """Raise ``TooManyRequests`` (429, Retry-After) while any subject must wait."""
        wait = await self.retry_after(subjects)
        if wait:
            raise TooManyRequests(f"too many failed attempts; retry in {wait} s", retry_after=wait)

    async def fail(self, subjects: Sequence[str]) -> int:
        """Count one failure for each subject; returns the longest wait now imposed (s)."""
        keys = self._keys(subjects)
        if not keys:
            return 0
        p = self._policy
        wait = await self._eval(
            _FAIL, keys, [p.free_failures, p.base_delay, p.max_delay, p.forget_after]
        )
        return math.ceil(wait) if wait > 0 else 0

    async def succeed(self, subjects: Sequence[str]) -> None:
        """Forget the failures of ``subjects`` (only those the success vouches for)."""
        keys = self._keys(subjects)
        if keys:
            await self._redis.delete(*keys)


class HasClient(Protocol):
    """A request (Starlette's, or Connexion's ``connexion.request``, which delegates to it)."""

    @property
    def client(self) -> Address | None: ...


def address_subject(request: HasClient) -> str:
    """The subject naming the request's client address (``addr:<host>``)."""
    client = request.client
    return f"addr:{client.host if client is not None else 'unknown'}"


def client_subject(client_id: str) -> str:
    """The subject naming an OAuth2 client (``client:<id>``)."""
    return f"client:{client_id}"


def user_subject(username: str) -> str:
    """The subject naming a user (``user:<name>``)."""
    return f"user:{username}"
