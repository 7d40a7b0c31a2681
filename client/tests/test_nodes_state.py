"""NodesState against the real core: pages, filters, selection, bulk changes, live rows.

Besides up's local agent (live heartbeats), a few nodes are enrolled straight
through the registry (no agent: they stay offline and have no metrics), so
pages and filters have something to choose from.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest

from sm_client.api import CoreApi
from sm_client.api.fleet import FleetApi, Node
from sm_client.api.metrics import MetricsApi, MetricValues
from sm_client.live import LiveEvents
from sm_client.state.nodes import (
    NodeFilters,
    NodesState,
    by_metric,
    first_order,
    parse_label_changes,
)
from sm_client.state.observable import Phase

from .conftest import Core
from .feeds import RecordingFeed, until

PREFIX = "nlist"

# The first test also waits for the module's `up` (a minute on a loaded machine).
pytestmark = pytest.mark.timeout(180)


def facts(hostname: str) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.1.0-26-amd64",
        "arch": "x86_64",
        "cpu_model": "Test CPU",
        "cpu_count": 2,
        "memory_total": 4 * 1024**3,
        "addresses": [],
        "agent_version": "0.1.0",
        "boot_id": str(uuid.uuid4()),
    }


@pytest.fixture(scope="module")
def enrolled(core: Core) -> list[str]:
    """Five agent-less nodes ``nlist-0`` … ``nlist-4`` (enrolled once per module)."""
    ids = []
    with httpx.Client(
        verify=ssl.create_default_context(cafile=core.up.data.ca_cert), trust_env=False
    ) as http:
        for index in range(5):
            answer = http.post(
                f"{core.api_url}/api/v1/enroll",
                json={
                    "key": core.ready.enrollment_key,
                    "machine_id": f"{PREFIX}-{index}-{uuid.uuid4().hex[:8]}",
                    "facts": facts(f"{PREFIX}-{index}"),
                },
            )
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["node_id"])
    return ids


@pytest.fixture
async def fleet(admin: CoreApi, enrolled: list[str]) -> AsyncIterator[FleetApi]:
    api = FleetApi(admin)
    yield api
    await api.bulk_update({"node_ids": enrolled, "group": None, "labels": {"remove": ["env"]}})
    for group in await api.list_groups():
        if group["name"].startswith(PREFIX):
            await api.delete_group(group["name"])


async def test_pages_filters_and_sort(admin: CoreApi, fleet: FleetApi, enrolled: list[str]) -> None:
    feed = RecordingFeed()
    state = NodesState(admin, feed, NodeFilters(q=PREFIX), page_size=2)
    changes: list[Phase] = []
    state.listen(lambda: changes.append(state.load.phase))
    await state.start()
    try:
        assert state.load.phase is Phase.READY
        assert changes[0] is Phase.LOADING
        assert state.total == 5
        assert [r.node["name"] for r in state.rows] == [f"{PREFIX}-0", f"{PREFIX}-1"]
        assert state.page_count == 3
        assert not state.has_previous
        # live topics: fleet and exactly the rows shown
        assert "fleet" in feed.handlers
        assert feed.node_topics() == {enrolled[0], enrolled[1]}

        await state.next_page()
        assert [r.node["name"] for r in state.rows] == [f"{PREFIX}-2", f"{PREFIX}-3"]
        assert feed.node_topics() == {enrolled[2], enrolled[3]}
        await state.next_page()
        assert [r.id for r in state.rows] == [enrolled[4]]
        assert not state.has_next
        await state.previous_page()
        assert state.page_index == 1

        await state.sort_by("name")  # same key: the order flips, back to the first page
        assert state.filters.order == "desc"
        assert state.offset == 0
        assert [r.node["name"] for r in state.rows] == [f"{PREFIX}-4", f"{PREFIX}-3"]

        await state.set_status("online")
        assert state.load.phase is Phase.EMPTY  # agent-less nodes are offline
        assert feed.node_topics() == set()
        await state.set_status("offline")
        assert state.total == 5
        assert all(not r.online for r in state.rows)
        assert state.filters.active == 2

        state.type_query(f"{PREFIX}-3")  # debounced
        assert state.total == 5
        await state.settle()
        assert [r.id for r in state.rows] == [enrolled[3]]
        await state.clear_filters()
        assert state.filters.active == 0
        assert state.total >= 6  # the local agent too
    finally:
        state.stop()
    assert feed.handlers == {}
    assert feed.resyncs == []


async def test_selector_group_and_bulk_changes(
    admin: CoreApi, fleet: FleetApi, enrolled: list[str]
) -> None:
    await fleet.create_group({"name": f"{PREFIX}-web"})
    state = NodesState(admin, RecordingFeed(), NodeFilters(q=PREFIX))
    await state.start()
    try:
        assert f"{PREFIX}-web" in [g["name"] for g in state.groups]
        state.toggle(enrolled[0])
        state.toggle(enrolled[1], True)
        assert state.page_selection is None
        assert state.run_route() == "/commands/new?nodes=" + ",".join(sorted(enrolled[:2]))

        assert await state.set_labels({"env": "prod"}, [])
        assert await state.move_to_group(f"{PREFIX}-web")
        assert state.action.phase is Phase.READY
        web = next(g for g in state.groups if g["name"] == f"{PREFIX}-web")
        assert web["node_count"] == 2

        await state.set_selector("env=prod")
        assert sorted(r.id for r in state.rows) == sorted(enrolled[:2])
        assert all(r.node["labels"]["env"] == "prod" for r in state.rows)
        await state.set_selector("")
        await state.set_group(f"{PREFIX}-web")
        assert state.total == 2

        # a bad selector: an error with the problem, shown under the field too
        await state.set_group(None)
        state.type_selector("env in (prod")
        await state.settle()
        assert state.load.phase is Phase.ERROR
        assert state.selector_problem is not None
        assert state.selector_problem.status == 400
        assert state.rows == []
        await state.set_selector("env=prod")
        assert state.selector_problem is None
        assert state.total == 2

        state.select_page(True)
        assert state.page_selection is True
        assert await state.set_labels({}, ["env"])
        assert await state.move_to_group(None)
        assert state.total == 0  # nothing has env=prod any more
        state.clear_selection()
        assert not state.selected

        # a refused bulk change keeps the list and shows the problem
        state.toggle(enrolled[2])
        assert not await state.move_to_group("no-such-group")
        assert state.action.phase is Phase.ERROR
        assert state.action.problem is not None
        assert state.action.problem.status == 404
        state.dismiss_action_problem()
        assert state.action.phase is Phase.READY
    finally:
        state.stop()


async def test_live_rows_are_updated_in_place_and_coalesced(admin: CoreApi) -> None:
    """The local agent's heartbeats over the real /events/ws change its row only."""
    feed = LiveEvents(admin)
    feed.start()
    local = (await FleetApi(admin).list_nodes(q=None, status="online", limit=1))["items"][0]
    state = NodesState(admin, feed, NodeFilters(q=local["name"]), render_interval=0.2)
    rebuilt: list[int] = []
    rows_changed: list[list[str]] = []
    state.listen(lambda: rebuilt.append(len(state.rows)))
    state.listen_rows(rows_changed.append)
    try:
        await state.start()
        row = state.row(local["id"])
        assert row is not None
        await until(lambda: feed.connected, 45)
        first = row.sampled_at
        before = len(rebuilt)
        await until(lambda: row.sampled_at is not None and row.sampled_at != first, 45)
        assert row.values is not None
        assert row.values["cpu"] is not None
        assert row.values["mem_percent"] is not None
        await until(lambda: bool(rows_changed), 10)
        assert rows_changed[0] == [local["id"]]
        assert len(rebuilt) == before  # no whole-list re-render for a heartbeat
        assert feed.topics == ["fleet", f"node:{local['id']}"]
    finally:
        state.stop()
        await feed.close()


async def test_status_events_and_bursts_of_heartbeats(admin: CoreApi, enrolled: list[str]) -> None:
    feed = RecordingFeed()
    state = NodesState(admin, feed, NodeFilters(q=PREFIX), render_interval=0.1)
    delivered: list[list[str]] = []
    state.listen_rows(delivered.append)
    await state.start()
    try:
        node = enrolled[0]
        sample = {
            "cpu": {"percent": 42.0, "per_core": [42.0]},
            "memory": {"total": 1000, "used": 250, "available": 750},
            "swap": {"total": 0, "used": 0},
            "load": [0.5, 0.4, 0.3],
            "disks": [{"mount": "/", "fstype": "ext4", "total": 100, "used": 10, "free": 90}],
            "net": {"rx_bps": 10.0, "tx_bps": 5.0, "rx_bytes": 1, "tx_bytes": 1, "interfaces": []},
            "processes": 12,
            "uptime": 30,
        }
        for seq in range(20):  # a burst: one delivery
            beat = {"type": "heartbeat", "v": 1, "boot_id": "b", "seq": seq, "sent_at": 1e9 + seq}
            feed.send(
                f"node:{node}",
                {"type": "metrics", "node_id": node, "heartbeat": {**beat, "sample": sample}},
            )
        feed.send(
            "fleet",
            {
                "type": "event",
                "topic": "fleet",
                "event": {
                    "type": "status",
                    "node_id": enrolled[1],
                    "status": "online",
                    "gateway": "g",
                    "at": 1.0,
                },
            },
        )
        await until(lambda: bool(delivered), 5)
        await asyncio.sleep(0.3)
        assert len(delivered) == 1
        assert sorted(delivered[0]) == sorted([node, enrolled[1]])
        row = state.row(node)
        assert row is not None
        assert row.values is not None
        assert row.values["cpu"] == 42.0
        assert row.values["mem_percent"] == 25.0
        assert row.values["disk_percent"] == 10.0
        assert row.online
        other = state.row(enrolled[1])
        assert other is not None
        assert other.online
        # a resync re-reads the page: REST says offline again
        await feed.resyncs[0]()
        other = state.row(enrolled[1])
        assert other is not None
        assert not other.online
    finally:
        state.stop()


def test_label_changes_are_parsed() -> None:
    assert parse_label_changes("env=prod, tier=web,-canary") == (
        {"env": "prod", "tier": "web"},
        ["canary"],
    )
    assert parse_label_changes("example.com/role=db\nempty=") == (
        {"example.com/role": "db", "empty": ""},
        [],
    )
    for bad in ("", "env", "env=prod value", "=x", "-", "a=1,-a", "bad key=1"):
        with pytest.raises(ValueError):  # noqa: PT011 (the message is the bad part)
            parse_label_changes(bad)


def test_filters_come_from_the_route() -> None:
    f = NodeFilters.from_params(
        {"selector": " env=prod ", "status": "online", "group": "web", "sort": "bogus"}
    )
    assert f == NodeFilters(selector="env=prod", status="online", group="web")
    assert f.active == 3
    assert NodeFilters.from_params({"status": "weird"}).status is None
    assert NodeFilters.from_params({"sort": "memory", "order": "desc"}).sort == "memory"


async def test_metric_sorts_order_every_match_with_nodes_without_values_last(
    admin: CoreApi, enrolled: list[str]
) -> None:
    """The local agent has values, the five agent-less nodes none: by CPU it comes
    first whichever the order, the others follow by name, and pages slice that."""
    local = (await FleetApi(admin).list_nodes(status="online", limit=1))["items"][0]
    metrics = MetricsApi(admin)
    latest: list[Any] = []

    async def has_values() -> bool:
        latest[:] = (await metrics.latest([local["id"]]))["items"]
        return bool(latest)

    for _ in range(150):
        if await has_values():
            break
        await asyncio.sleep(0.2)
    assert latest, "the local agent's heartbeats never reached the metrics service"
    state = NodesState(admin, RecordingFeed(), NodeFilters(), page_size=4)
    try:
        await state.start()
        await state.sort_by("cpu")
        assert (state.filters.sort, state.filters.order) == ("cpu", "desc")  # busiest first
        assert state.total == 6
        names = [r.node["name"] for r in state.rows]
        assert names == [local["name"], f"{PREFIX}-0", f"{PREFIX}-1", f"{PREFIX}-2"]
        assert state.rows[0].values is not None
        assert state.rows[0].values["cpu"] == latest[0]["values"]["cpu"]
        assert all(r.values is None for r in state.rows[1:])
        await state.next_page()
        assert [r.node["name"] for r in state.rows] == [f"{PREFIX}-3", f"{PREFIX}-4"]
        assert not state.has_next
        await state.sort_by("cpu")  # flipped: still values first, then A to Z
        assert state.filters.order == "asc"
        assert state.offset == 0
        assert [r.node["name"] for r in state.rows][:2] == [local["name"], f"{PREFIX}-0"]
        await state.apply(sort="memory", q=PREFIX)  # filters narrow what is sorted
        assert state.total == 5
        assert [r.id for r in state.rows] == enrolled[:4]
    finally:
        state.stop()
    # Everything on one page: the values are read for the nodes by id instead.
    whole = NodesState(admin, RecordingFeed(), NodeFilters(sort="cpu", order="desc"))
    try:
        await whole.start()
        assert [r.node["name"] for r in whole.rows][:2] == [local["name"], f"{PREFIX}-0"]
        assert whole.rows[0].values is not None
        assert whole.total == 6
    finally:
        whole.stop()


def test_by_metric_orders_values_then_names() -> None:
    def node(name: str, status: str = "online") -> Node:
        return cast(Node, {"id": f"id-{name}", "name": name, "status": status})

    def values(cpu: float | None) -> tuple[MetricValues, float]:
        return cast(MetricValues, {"cpu": cpu}), 0.0

    nodes = [node(n) for n in ("d", "b", "a", "c", "e")] + [node("f", "offline")]
    held = {
        "id-a": values(10.0),
        "id-b": values(90.5),
        "id-c": values(10.0),
        "id-e": values(None),
        "id-f": values(99.0),  # offline: its last value ranks after every online node
    }
    busiest = by_metric(nodes, held, "cpu", descending=True)
    assert [n["name"] for n in busiest] == ["b", "a", "c", "f", "d", "e"]
    calmest = by_metric(nodes, held, "cpu", descending=False)
    assert [n["name"] for n in calmest] == ["a", "c", "b", "f", "d", "e"]
    assert first_order("cpu") == "desc"
    assert first_order("last_seen") == "desc"
    assert first_order("name") == "asc"
