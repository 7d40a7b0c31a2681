"""DashboardState against the real core: counts, summary, top nodes, recent commands, live."""

from __future__ import annotations

import asyncio

import pytest

from sm_client.api import CoreApi
from sm_client.api.commands import CommandsApi
from sm_client.api.fleet import FleetApi
from sm_client.live import LiveEvents
from sm_client.state.dashboard import DashboardState
from sm_client.state.observable import Phase

from .feeds import RecordingFeed, until

# The first test also waits for the module's `up` (a minute on a loaded machine).
pytestmark = pytest.mark.timeout(180)


async def test_counts_summary_top_nodes_and_recent_commands(admin: CoreApi) -> None:
    local = (await FleetApi(admin).list_nodes(status="online", limit=1))["items"][0]
    created = await CommandsApi(admin).create(
        {"target": {"node_ids": [local["id"]]}, "kind": "shell", "shell": {"script": "echo hi"}}
    )
    feed = RecordingFeed()
    state = DashboardState(admin, feed, interval=0.5)
    await state.start()
    try:
        assert state.load.phase is Phase.READY
        assert state.online >= 1
        assert state.total == state.online + state.offline
        assert "fleet" in feed.handlers
        # the local agent has sent heartbeats: averages and top lists
        await until(lambda: bool(state.top_cpu), 45)
        assert state.metrics_load.phase is Phase.READY
        assert state.averages is not None
        assert state.averages["cpu"] is not None
        assert state.top_cpu[0].name == local["name"]
        assert state.top_memory[0].node_id == local["id"]
        assert state.name_of(local["id"]) == local["name"]
        assert state.commands_load.phase is Phase.READY
        assert state.commands[0]["id"] == created["id"]
        assert len(state.commands) <= state.recent
        # the summary is refreshed while shown
        first = state.summary_at
        await until(lambda: state.summary_at != first, 10)
    finally:
        state.stop()
    assert feed.handlers == {}
    assert feed.resyncs == []


async def test_status_events_re_read_the_counts_once_per_burst(admin: CoreApi) -> None:
    feed = RecordingFeed()
    state = DashboardState(admin, feed, interval=3600, event_delay=0.1)
    await state.start()
    reads: list[int] = []
    original = state.refresh_counts

    async def counting() -> None:
        reads.append(1)
        await original()

    state.refresh_counts = counting  # type: ignore[method-assign]
    try:
        event = {"type": "status", "node_id": "x", "status": "offline", "gateway": "g", "at": 1.0}
        for _ in range(10):
            feed.send("fleet", {"type": "event", "topic": "fleet", "event": event})
        feed.send("fleet", {"type": "event", "topic": "fleet", "event": {"type": "other"}})
        await until(lambda: bool(reads), 5)
        await asyncio.sleep(0.3)
        assert len(reads) == 1
        await feed.resyncs[0]()  # a reconnect re-reads everything
        assert len(reads) == 2
    finally:
        state.stop()


async def test_the_dashboard_follows_fleet_over_the_real_feed(admin: CoreApi) -> None:
    feed = LiveEvents(admin)
    feed.start()
    state = DashboardState(admin, feed, interval=3600)
    try:
        await state.start()
        await until(lambda: feed.connected, 45)
        assert "fleet" in feed.topics
        assert state.online >= 1
    finally:
        state.stop()
        await feed.close()
