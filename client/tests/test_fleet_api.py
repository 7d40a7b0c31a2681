"""FleetApi and MetricsApi against the real core (up's local agent is the fleet)."""

from __future__ import annotations

import asyncio
import time

import pytest

from sm_client.api import ApiError, CoreApi
from sm_client.api.fleet import FleetApi, Node
from sm_client.api.metrics import LatestPage, MetricsApi

# The first test also waits for the module's `up` (a minute on a loaded machine).
pytestmark = pytest.mark.timeout(180)


async def local_node(fleet: FleetApi) -> Node:
    page = await fleet.list_nodes(limit=10)
    assert page["items"], "up enrolls its local agent"
    return page["items"][0]


async def latest_of(metrics: MetricsApi, node_id: str) -> LatestPage:
    deadline = time.monotonic() + 30
    while True:
        page = await metrics.latest([node_id])
        if page["items"] or time.monotonic() > deadline:
            return page
        await asyncio.sleep(0.5)


async def test_nodes_list_with_filters_sort_and_pages(admin: CoreApi) -> None:
    fleet = FleetApi(admin)
    node = await local_node(fleet)
    page = await fleet.list_nodes()
    assert page["total"] >= 1
    assert page["limit"] == 100
    assert page["offset"] == 0
    assert node["status"] in ("online", "offline")
    assert node["facts"]["cpu_count"] >= 1
    assert isinstance(node["labels"], dict)
    # q matches a substring of the name, case-insensitively
    hit = await fleet.list_nodes(q=node["name"][:3].upper())
    assert node["id"] in [n["id"] for n in hit["items"]]
    miss = await fleet.list_nodes(q="no-such-node-name-anywhere")
    assert miss["total"] == 0
    assert miss["items"] == []
    # empty strings are absent filters
    same = await fleet.list_nodes(q="", selector="", group="")
    assert same["total"] == page["total"]
    ordered = await fleet.list_nodes(sort="last_seen", order="desc", limit=1, offset=0)
    assert len(ordered["items"]) == 1
    beyond = await fleet.list_nodes(offset=page["total"])
    assert beyond["items"] == []
    assert beyond["total"] == page["total"]


async def test_labels_groups_selectors_and_bulk_changes(admin: CoreApi) -> None:
    fleet = FleetApi(admin)
    node = await local_node(fleet)
    group = await fleet.create_group({"name": "api-test", "description": "from the client"})
    assert group["name"] == "api-test"
    assert group["node_count"] == 0
    try:
        changed = await fleet.update_node(node["id"], {"labels": {"env": "prod", "tier": "web"}})
        assert changed["labels"] == {"env": "prod", "tier": "web"}
        by_label = await fleet.list_nodes(selector="env=prod,tier in (web,api)")
        assert [n["id"] for n in by_label["items"]] == [node["id"]]
        assert (await fleet.list_nodes(selector="env=dev"))["total"] == 0

        moved = await fleet.bulk_update(
            {"node_ids": [node["id"]], "group": "api-test", "labels": {"set": {"env": "staging"}}}
        )
        assert moved == {"node_ids": [node["id"]], "count": 1}
        fetched = await fleet.get_node(node["id"])
        assert fetched["group"] == "api-test"
        assert fetched["labels"] == {"env": "staging", "tier": "web"}
        in_group = await fleet.list_nodes(group="api-test")
        assert [n["id"] for n in in_group["items"]] == [node["id"]]
        groups = {g["name"]: g for g in await fleet.list_groups()}
        assert groups["api-test"]["node_count"] == 1

        resolved = await fleet.resolve({"groups": ["api-test"], "selector": "env=staging"})
        assert resolved == {"node_ids": [node["id"]], "count": 1}
        everyone = await fleet.resolve({"all": True})
        assert node["id"] in everyone["node_ids"]

        renamed = await fleet.update_group("api-test", {"description": "renamed"})
        assert renamed["description"] == "renamed"
        with pytest.raises(ApiError) as busy:
            await fleet.delete_group("api-test")
        assert busy.value.status == 409
    finally:
        await fleet.bulk_update(
            {"node_ids": [node["id"]], "group": None, "labels": {"remove": ["env", "tier"]}}
        )
        await fleet.delete_group("api-test")
    assert "api-test" not in [g["name"] for g in await fleet.list_groups()]
    assert (await fleet.get_node(node["id"]))["group"] is None


async def test_refusals_are_api_errors_with_the_problem(admin: CoreApi) -> None:
    fleet = FleetApi(admin)
    with pytest.raises(ApiError) as bad_selector:
        await fleet.list_nodes(selector="env in (prod")
    assert bad_selector.value.status == 400
    assert bad_selector.value.detail
    with pytest.raises(ApiError) as unknown:
        await fleet.get_node("00000000-0000-4000-8000-000000000000")
    assert unknown.value.status == 404
    with pytest.raises(ApiError) as no_group:
        await fleet.list_nodes(group="no-such-group")
    assert no_group.value.status == 404
    with pytest.raises(ApiError) as bulk_unknown:
        await fleet.bulk_update(
            {"node_ids": ["00000000-0000-4000-8000-000000000000"], "group": None}
        )
    assert bulk_unknown.value.status == 404


async def test_latest_summary_and_series_of_the_local_agent(admin: CoreApi) -> None:
    fleet, metrics = FleetApi(admin), MetricsApi(admin)
    node = await local_node(fleet)
    page = await latest_of(metrics, node["id"])
    assert [item["node_id"] for item in page["items"]] == [node["id"]]
    latest = page["items"][0]
    assert latest["values"]["cpu"] is not None
    assert 0 <= latest["values"]["cpu"] <= 100
    assert latest["values"]["mem_total"]
    assert latest["detail"]["uptime"] > 0
    assert page["next_after"] is None
    assert await metrics.latest([]) == {"items": [], "next_after": None}
    every = await metrics.latest(limit=1)
    assert len(every["items"]) == 1

    summary = await metrics.summary(top=3)
    assert summary["nodes"]["total"] >= 1
    assert summary["nodes"]["online"] + summary["nodes"]["offline"] == summary["nodes"]["total"]
    if summary["nodes"]["online"]:
        assert summary["averages"]["cpu"] is not None
        assert summary["top_cpu"][0]["node_id"]
    assert len(summary["top_memory"]) <= 3

    now = time.time()
    series = await metrics.series(
        node["id"], metrics=["cpu", "mem_percent"], start=now - 600, end=now, max_points=60
    )
    assert series["node_id"] == node["id"]
    assert set(series["series"]) == {"cpu", "mem_percent"}
    assert len(series["timestamps"]) == len(series["count"]) <= 60
    assert len(series["series"]["cpu"]["avg"]) == len(series["timestamps"])
    assert sum(series["count"]) >= 1
    default = await metrics.series(node["id"])
    assert "load1" in default["series"]
