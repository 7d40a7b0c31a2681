"""A real ``sm-agent`` process against the real gateway and registry: nothing lost offline.

The agent enrolls with the registry's enrollment key and connects to a real
gateway (TLS, in this test's event loop, heartbeat interval 1 s). While the
gateway is down the agent keeps taking heartbeats into its offline buffer on
disk; the buffer survives the agent's restart; when the gateway is back every
buffered heartbeat reaches the ``metrics`` stream with its original
``sent_at``, and the gateway's acks empty the buffer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from sm_agent.spool import Spool
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.streams import METRICS_STREAM

pytestmark = pytest.mark.slow

SM_AGENT = str(Path(sys.executable).with_name("sm-agent"))
INTERVAL = 1.0  # the test gateway's heartbeat interval


@pytest.fixture
def registry_gateway_url(gateway_url: str) -> str:
    """Enrolling agents are told the test gateway's URL."""
    return gateway_url


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


class Agent:
    """``sm-agent run`` processes on one state directory, one after the other."""

    def __init__(self, tmp_path: Path, server: str, key: str, env: dict[str, str]) -> None:
        self.state = tmp_path / "agent-state"
        self.config = tmp_path / "agent.toml"
        self.config.write_text(
            f'server = "{server}"\nenrollment_key = "{key}"\nstate_dir = "{self.state}"\n'
        )
        self.log = tmp_path / "agent.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")} | env
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                SM_AGENT,
                "run",
                "--config",
                str(self.config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
            )

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return await asyncio.wait_for(self.process.wait(), 15)

    def node_id(self) -> str:
        node_id: str = json.loads((self.state / "node.json").read_text())["node_id"]
        return node_id

    def buffered(self) -> dict[int, float]:
        """seq → sent_at of the heartbeats in the offline buffer (read while stopped)."""
        spool = Spool(self.state / "spool")
        try:
            beats = [json.loads(spool.read(s) or b"") for s in spool.serials()]
        finally:
            spool.close()
        return {beat["seq"]: beat["sent_at"] for beat in beats}

    def output(self) -> str:
        return self.log.read_text()


@asynccontextmanager
async def agent_process(
    tmp_path: Path, registry_origin: str, data_dir: DataDir, **env: str
) -> AsyncIterator[Agent]:
    key = str(load_key(data_dir, KeyKind.ENROLLMENT))
    agent = Agent(tmp_path, registry_origin, key, env)
    try:
        yield agent
    finally:
        if agent.process is not None and agent.process.returncode is None:
            agent.process.kill()
            await agent.process.wait()


async def stream_heartbeats(redis: Redis, node_id: str) -> dict[int, float]:
    """seq → sent_at of the node's heartbeats in the ``metrics`` stream."""
    found: dict[int, float] = {}
    for _, fields in await redis.xrange(METRICS_STREAM):
        if fields[b"n"].decode() == node_id:
            beat = json.loads(fields[b"h"])
            found[beat["seq"]] = beat["sent_at"]
    return found


async def test_heartbeats_taken_offline_arrive_with_their_times_after_an_agent_restart(
    start_gateway: Any,
    gateway_port: int,
    registry_origin: str,
    data_dir: DataDir,
    redis_url: str,
    tmp_path: Path,
) -> None:
    redis = Redis.from_url(redis_url)
    try:
        async with agent_process(tmp_path, registry_origin, data_dir) as agent:
            async with start_gateway(port=gateway_port):
                await agent.start()
                await until(
                    lambda: asyncio.to_thread((agent.state / "node.json").exists), 20, "enrollment"
                )
                node_id = agent.node_id()

                async def some_arrived() -> bool:
                    return len(await stream_heartbeats(redis, node_id)) >= 2

                await until(some_arrived, 15, "heartbeats in the metrics stream")
            # The gateway is gone; the agent goes on taking heartbeats.
            await asyncio.sleep(3 * INTERVAL)
            assert await agent.stop() == 0
            first_offline = agent.buffered()
            assert len(first_offline) >= 2, agent.output()

            # Restarted while the core is unreachable: the buffer is kept and grows.
            await agent.start()
            await asyncio.sleep(2.5 * INTERVAL)
            assert await agent.stop(signal.SIGKILL) == -signal.SIGKILL
            offline = agent.buffered()
            assert first_offline.items() <= offline.items()
            assert len(offline) >= len(first_offline) + 1
            before = await stream_heartbeats(redis, node_id)
            assert set(offline) - set(before), "taken offline, so not delivered yet"

            async with start_gateway(port=gateway_port):
                await agent.start()

                async def all_delivered() -> bool:
                    arrived = await stream_heartbeats(redis, node_id)
                    return offline.items() <= arrived.items()

                # Original sent_at, exactly as taken (the raw heartbeat is stored as sent).
                await until(all_delivered, 20, "every buffered heartbeat in the stream")
                newest = max(offline)  # each restart takes a new block of sequence numbers

                async def live_again() -> bool:
                    arrived = await stream_heartbeats(redis, node_id)
                    return len([seq for seq in arrived if seq > newest]) >= 2

                await until(live_again, 10, "live heartbeats after the backlog")
                assert await agent.stop() == 0
            # Acknowledged heartbeats left the buffer (at most the last few were not yet acked).
            assert not set(offline) & set(agent.buffered())
    finally:
        await redis.aclose()
    output = agent.output()
    assert "Traceback" not in output
    assert output.count("connected to wss://") == 2


async def test_the_next_configured_gateway_is_tried_and_a_deleted_node_stops_with_3(
    gateway_service: Any,
    gateway_url: str,
    registry_api: Any,
    registry_origin: str,
    data_dir: DataDir,
    redis_url: str,
    tmp_path: Path,
) -> None:
    nowhere = "wss://127.0.0.1:9/agent/ws"
    async with agent_process(
        tmp_path, registry_origin, data_dir, SM_AGENT_GATEWAY_URLS=f"{nowhere},{gateway_url}"
    ) as agent:
        await agent.start()
        redis = Redis.from_url(redis_url)
        try:
            await until(
                lambda: asyncio.to_thread((agent.state / "node.json").exists), 20, "enrollment"
            )
            node_id = agent.node_id()

            async def online() -> bool:
                return bool(await redis.exists(f"presence:{node_id}"))

            await until(online, 15, "the node online through the second URL")
            registry_api.delete_node(node_id)
            assert agent.process is not None
            # The gateway closes with 4003 (or the next handshake gets 403): exit status 3.
            assert await asyncio.wait_for(agent.process.wait(), 15) == 3
        finally:
            await redis.aclose()
    output = agent.output()
    assert f"connection to {nowhere} failed" in output
    assert f"connected to {gateway_url}" in output
    assert "enroll this node again" in output
