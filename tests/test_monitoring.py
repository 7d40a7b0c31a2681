"""The monitoring pipeline end to end: real ``sm-agent`` processes against a real ``up``.

Agent → TLS WebSocket → gateway → ``metrics`` stream → ingest → SQLite →
metrics API, and presence → the registry's node list. Network hiccups are
real too: the agent reaches the gateway through a TCP relay the test can cut,
so the agent runs on, buffers on disk and flushes after the link returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sm_ctl import banner
from sm_ctl.instance import UpProcess, free_port_pair
from tests.live_core import Agent, Api, Relay, wait_for

pytestmark = pytest.mark.slow

STRICT = {"SM_VALIDATE_RESPONSES": "true"}


@pytest.fixture
def closing(request: pytest.FixtureRequest) -> Callable[[Api], Api]:
    """Close each API client when the test ends."""

    def register(api: Api) -> Api:
        request.addfinalizer(api.close)
        return api

    return register


@pytest.fixture
def core(tmp_path: Path) -> Iterator[tuple[UpProcess, banner.Banner]]:
    """``up`` with its local agent, heartbeats every second."""
    env = {**STRICT, "SM_HEARTBEAT_INTERVAL": "1"}
    up = UpProcess.start(tmp_path / "data", free_port_pair(), env=env)
    try:
        yield up, up.wait_ready()
    finally:
        up.stop()


def test_a_second_agent_with_the_printed_key_is_online_within_one_interval(
    tmp_path: Path, closing: Callable[[Api], Api]
) -> None:
    """At the default 5 s interval, from exec to ``online`` in the node list."""
    up = UpProcess.start(tmp_path / "data", free_port_pair(), env=STRICT)
    try:
        ready = up.wait_ready()
        api = closing(Api(up.data, ready.api_url))
        assert len(api.nodes(status="online")) == 1  # the local agent
        agent = Agent(tmp_path / "second", ready.api_url, ready.enrollment_key)
        began = time.monotonic()
        agent.start()
        try:
            node_id = agent.node_id()
            wait_for(lambda: api.status(node_id) == "online", 5.0, "the second node online")
            assert time.monotonic() - began <= 5.0
            assert {n["id"] for n in api.nodes(status="online")} >= {node_id}
            node = api.node(node_id)
            assert node["facts"]["agent_version"]
            assert (
                node["facts"]["boot_id"]
                == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            )
        finally:
            assert agent.stop() == 0, agent.output()
    finally:
        up.stop()


def test_history_offline_and_the_buffer_across_an_outage_and_a_restart(
    core: tuple[UpProcess, banner.Banner], tmp_path: Path, closing: Callable[[Api], Api]
) -> None:
    up, ready = core
    api = closing(Api(up.data, ready.api_url))
    gateway_port = int(ready.gateway_url.split(":")[2].split("/")[0])
    relay = Relay(gateway_port)
    relay.open()
    agent = Agent(
        tmp_path / "agent",
        ready.api_url,
        ready.enrollment_key,
        gateway_url=f"wss://127.0.0.1:{relay.port}/agent/ws",
    )
    try:
        agent.start()
        node_id = agent.node_id()
        wait_for(lambda: api.status(node_id) == "online", 10, "the node online")
        began = time.time()
        # History is queryable: samples arrive in the raw tier, about one per second.
        wait_for(
            lambda: len(api.sample_times(node_id, began - 5, time.time())) >= 3,
            15,
            "three samples in the history",
            step=0.25,
        )

        # A network outage nobody sees a close of: the node goes offline within
        # 3 intervals all the same (its presence expires); the agent samples on.
        relay.stall()
        cut_at = time.time()
        took = wait_for(lambda: api.status(node_id) == "offline", 10, "offline after the stall")
        assert took <= 3 * 1.0 + 1.0, f"offline after {took:.1f} s"
        # Then the connections drop; the agent retries and keeps buffering.
        relay.cut()
        time.sleep(2)
        # The agent restarts while offline: what it buffered survives.
        assert agent.stop() == 0, agent.output()
        agent.start()
        time.sleep(3)
        restored_at = time.time()
        relay.open()

        wait_for(lambda: api.status(node_id) == "online", 15, "online after the outage")

        def outage_covered() -> bool:
            times = api.sample_times(node_id, cut_at, restored_at)
            return len(times) >= int(restored_at - cut_at) - 3

        wait_for(outage_covered, 20, "the buffered samples in the history", step=0.5)
        times = api.sample_times(node_id, cut_at, restored_at)
        # Original timestamps: spread over the outage, not stamped on arrival.
        assert min(times) < cut_at + 2
        assert max(times) > restored_at - 4

        # Stopping the agent: offline within 3 intervals.
        assert agent.stop() == 0, agent.output()
        took = wait_for(lambda: api.status(node_id) == "offline", 10, "offline after SIGTERM")
        assert took <= 3 * 1.0 + 1.0, f"offline after {took:.1f} s"
    finally:
        if agent.process is not None and agent.process.poll() is None:
            agent.stop()
        relay.close()
