"""Waiting until what ``up`` started answers its readiness probe."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from redis.asyncio import Redis

POLL_INTERVAL = 0.05


class NotReady(RuntimeError):
    """A probe did not succeed before its deadline."""


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """Verifies servers against the core CA only."""
    return ssl.create_default_context(cafile=str(ca_file))


Probe = Callable[[], Awaitable[bool]]


async def wait_until(
    name: str, probe: Probe, *, within: float, alive: Callable[[], bool] = lambda: True
) -> None:
    """Poll ``probe`` until it returns True; NotReady after ``within`` seconds or when ``alive()`` fails."""
    deadline = time.monotonic() + within
    last_error = "no answer"
    while True:
        try:
            if await probe():
                return
            last_error = "not ready yet"
        except (OSError, httpx.HTTPError, ssl.SSLError, ConnectionError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a Redis error, for instance: keep polling, report the last
            last_error = f"{type(exc).__name__}: {exc}"
        if not alive():
            raise NotReady(f"{name} exited before it was ready ({last_error})")
        if time.monotonic() > deadline:
            raise NotReady(f"{name} was not ready after {within:g} s ({last_error})")
        await asyncio.sleep(POLL_INTERVAL)


def http_ready(url: str, tls: ssl.SSLContext | None) -> Probe:
    """A probe: ``GET url`` answers 200 (TLS verified with ``tls``)."""

    async def probe() -> bool:
        async with httpx.AsyncClient(
            verify=tls if tls is not None else True, timeout=2.0
        ) as client:
            response = await client.get(url)
            return response.status_code == 200

    return probe


def redis_ready(url: str) -> Probe:
    """A probe: the Redis server at ``url`` answers PING."""

    async def probe() -> bool:
        client = Redis.from_url(url, socket_connect_timeout=1.0)
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    return probe


def redis_key_exists(url: str, key: str) -> Probe:
    """A probe: ``key`` exists in the Redis at ``url`` (e.g. a worker's health-check key)."""

    async def probe() -> bool:
        client = Redis.from_url(url, socket_connect_timeout=1.0)
        try:
            return bool(await client.exists(key))
        finally:
            await client.aclose()

    return probe
