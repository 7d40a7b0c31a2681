"""The agent's link (``sm_agent.link``) against the real gateway and registry."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from sm_agent.backoff import Backoff
from sm_agent.collectors import Sampler
from sm_agent.facts import gather_facts
from sm_agent.heartbeat import Heartbeats, SequenceNumbers
from sm_agent.link import CredentialRefused, Link
from sm_shared.datadir import DataDir


def make_link(
    gateway: Any, credential: str, tmp_path: Path, backoff: Backoff | None = None
) -> Link:
    return Link(
        gateway_url=gateway.url,
        credential=credential,
        ssl_context=gateway.verify,
        facts=gather_facts,
        heartbeats=Heartbeats("boot-x", SequenceNumbers(tmp_path / "seq", "boot-x"), Sampler()),
        backoff=backoff or Backoff(base=0.05, cap=0.2, rng=random.Random(1)),
    )


async def until(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_the_link_heartbeats_and_stops_cleanly(
    gateway: Any, registry: Any, redis_url: str, tmp_path: Path
) -> None:
    node = registry.enroll()
    link = make_link(gateway, node["credential"], tmp_path)
    stop = asyncio.Event()
    running = asyncio.create_task(link.run(stop))
    redis = Redis.from_url(redis_url)
    try:
        # interval 1 s (the gateway's welcome): a few heartbeats arrive.
        await until(lambda: _sent(link, 3))
        assert await redis.exists(f"presence:{node['node_id']}")
        stop.set()
        await asyncio.wait_for(running, 5)
        assert link.connections == 1
        await until(lambda: _absent(redis, f"presence:{node['node_id']}"))
    finally:
        stop.set()
        await redis.aclose()


async def test_the_link_reconnects_after_the_gateway_restarts(
    start_gateway: Any, registry: Any, tmp_path: Path
) -> None:
    node = registry.enroll()
    stop = asyncio.Event()
    port = free_port()
    async with start_gateway(port=port) as gateway:
        link = make_link(gateway, node["credential"], tmp_path)
        running = asyncio.create_task(link.run(stop))
        await until(lambda: _sent(link, 1))
    # The gateway went away (1001); the same port comes back.
    async with start_gateway(port=port):
        sent = link.heartbeats_sent
        await until(lambda: _sent(link, sent + 1))
        assert link.connections == 2
        stop.set()
        await asyncio.wait_for(running, 5)


async def test_a_deleted_node_stops_the_link(gateway: Any, registry: Any, tmp_path: Path) -> None:
    node = registry.enroll()
    registry.delete_node(node["node_id"])
    link = make_link(gateway, node["credential"], tmp_path)
    with pytest.raises(CredentialRefused, match="HTTP 403"):
        await asyncio.wait_for(link.run(asyncio.Event()), 10)
    assert link.connections == 0


async def test_stop_interrupts_the_backoff(tmp_path: Path, data_dir: DataDir) -> None:
    class Gone:
        url = "wss://127.0.0.1:9/agent/ws"
        verify = ssl.create_default_context(cafile=str(data_dir.ca_cert))

    backoff = Backoff(base=30, cap=60, rng=random.Random(1))  # first delay: about 4 s
    link = make_link(Gone(), "smn1.x.y", tmp_path, backoff)
    stop = asyncio.Event()
    running = asyncio.create_task(link.run(stop))
    await asyncio.sleep(0.3)  # the first attempt failed; now it waits up to 30 s
    stop.set()
    await asyncio.wait_for(running, 2)
    assert link.connections == 0


async def _sent(link: Link, count: int) -> bool:
    return link.heartbeats_sent >= count


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _absent(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)
