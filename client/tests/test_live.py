"""LiveEvents against the real gateway: subscriptions, reconnects, re-syncs, token renewal.

This module's core issues 8-second access tokens, so the gateway closes every
events socket with 4401 every few seconds: the feed must renew its token,
reconnect, subscribe again and re-sync each time, and keep delivering.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sm_client.api import CoreApi, PasswordLogin
from sm_client.api.admin import AdminApi
from sm_client.api.fleet import FleetApi
from sm_client.live import LiveEvents, events_candidates, topic_of
from sm_client.state.feed import Message
from sm_ctl.instance import UpProcess, free_port_pair

from .conftest import STRICT, Core
from .feeds import until

TTL = 8


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    root = tmp_path_factory.mktemp("core")
    env = {**STRICT, "SM_ACCESS_TOKEN_TTL": str(TTL)}
    up = UpProcess.start(root / "data", free_port_pair(), "--no-web", env=env)
    try:
        yield Core(up, up.wait_ready(), root)
    finally:
        up.stop()


@pytest.fixture
async def node_id(admin: CoreApi) -> str:
    page = await FleetApi(admin).list_nodes()
    return page["items"][0]["id"]


@pytest.fixture
async def feed(admin: CoreApi) -> AsyncIterator[LiveEvents]:
    live = LiveEvents(admin, backoff=(0.2, 0.5, 1.0))
    try:
        yield live
    finally:
        await live.close()


def test_candidates_follow_ups_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_EVENTS_URL", raising=False)
    assert events_candidates("https://core:8700") == (
        "wss://core:8700/events/ws",
        "wss://core:8701/events/ws",
    )
    assert events_candidates("core", "wss://10.0.0.1:9001/agent/ws")[0] == (
        "wss://10.0.0.1:9001/events/ws"
    )
    monkeypatch.setenv("SM_EVENTS_URL", "wss://proxy/events/ws")
    assert events_candidates("https://[::1]:8700")[0] == "wss://proxy/events/ws"
    assert "wss://[::1]:8701/events/ws" in events_candidates("https://[::1]:8700")


def test_messages_are_routed_to_their_topic() -> None:
    assert topic_of({"type": "metrics", "node_id": "n1", "heartbeat": {}}) == "node:n1"
    assert topic_of({"type": "event", "topic": "fleet", "event": {}}) == "fleet"
    assert topic_of({"type": "progress", "topic": "command:c", "event": {}}) == "command:c"
    assert topic_of({"type": "subscribed", "topics": []}) is None


async def test_heartbeats_arrive_on_the_node_topic_until_unsubscribed(
    feed: LiveEvents, node_id: str
) -> None:
    got: list[Message] = []
    feed.start()
    await until(lambda: feed.connected, 15, "the socket")
    # Subscribed while connected: the subscription goes out at once.
    stop = feed.subscribe(f"node:{node_id}", got.append)
    await until(lambda: len(got) >= 2, 15, "two heartbeats")
    assert all(m["type"] == "metrics" and m["node_id"] == node_id for m in got)
    assert "sample" in got[-1]["heartbeat"]
    # A second handler on the same topic gets the same messages.
    other: list[Message] = []
    stop_other = feed.subscribe(f"node:{node_id}", other.append)
    await until(lambda: len(other) >= 1, 15, "the second handler's heartbeat")
    stop()
    stop_other()
    assert feed.topics == []
    await asyncio.sleep(0.3)  # the unsubscribe reaches the gateway
    seen = len(got)
    await asyncio.sleep(2.5)  # heartbeats every second: none may arrive now
    assert len(got) == seen


async def test_expired_token_renews_reconnects_resubscribes_and_resyncs(
    feed: LiveEvents, node_id: str
) -> None:
    got: list[float] = []
    feed.subscribe(f"node:{node_id}", lambda m: got.append(time.monotonic()))
    resyncs: list[float] = []
    flips: list[bool] = []

    async def resync() -> None:
        resyncs.append(time.monotonic())

    feed.on_resync(resync)
    feed.listen(lambda: flips.append(feed.connected))
    feed.start()
    await until(lambda: feed.connected, 15, "the socket")
    assert resyncs == []  # the first connection is no re-connection
    # The gateway ends the socket when the 8-second token expires (4401).
    await until(lambda: len(resyncs) >= 1, 3 * TTL, "a re-sync after the token expired")
    assert feed.connections >= 2
    assert "4401" in feed.last_error
    assert False in flips  # went down…
    assert flips[-1] is True  # …and came back
    # Events flow again after the re-sync, on the re-subscribed topic.
    after = resyncs[0]
    await until(lambda: any(t > after for t in got), 15, "a heartbeat after reconnecting")


async def test_a_gateway_restart_is_survived(core: Core, feed: LiveEvents, node_id: str) -> None:
    got: list[float] = []
    feed.subscribe(f"node:{node_id}", lambda m: got.append(time.monotonic()))
    resynced = asyncio.Event()

    async def resync() -> None:
        resynced.set()

    feed.on_resync(resync)
    feed.start()
    await until(lambda: feed.connected and bool(got), 15, "the first heartbeat")
    resynced.clear()
    killed = time.monotonic()
    os.kill(core.ready.processes["gateway"], signal.SIGKILL)
    await until(lambda: not feed.connected, 10, "the socket to drop")
    # up restarts the gateway; the feed reconnects (with backoff), re-syncs, and
    # heartbeats (the agent reconnects too) arrive on the re-subscribed topic.
    await asyncio.wait_for(resynced.wait(), 60)
    await until(lambda: any(t > killed for t in got), 60, "a heartbeat after the restart")
    assert feed.connected


async def test_a_refused_topic_does_not_block_the_others(
    core: Core, admin: CoreApi, node_id: str, tmp_path: Path
) -> None:
    accounts = AdminApi(admin)
    await accounts.create_role({"name": "fleet-only", "scopes": ["nodes:read"]})
    await accounts.create_user(
        {"username": "watcher", "password": "w-pass-1234", "role": "fleet-only"}
    )
    user = CoreApi(admin.origin, admin.verify)
    await user.sign_in(PasswordLogin("watcher", "w-pass-1234"))
    live = LiveEvents(user, backoff=(0.2,))
    fleet: list[Message] = []
    try:
        live.subscribe(f"node:{node_id}", lambda m: None)  # needs metrics:read
        live.subscribe("fleet", fleet.append)
        live.start()
        await until(lambda: live.connected, 15, "the socket despite the refused topic")
        assert f"node:{node_id}" in live.refused
        assert "fleet" not in live.refused
    finally:
        await live.close()
        await user.aclose()
