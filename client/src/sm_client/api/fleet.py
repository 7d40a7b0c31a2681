"""Nodes, groups and target resolution (openapi/registry.yaml), typed.

The TypedDicts mirror the registry's schemas by name (``Node``, ``NodeList``,
``Group``, ``BulkNodeUpdate``, ``Target``, ``NodeIdList`` …); request bodies
are ``total=False`` where the schema's members are optional. No Flet here.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict, cast
from urllib.parse import quote

from sm_client.api.core import CoreApi

NodeStatus = Literal["online", "offline"]
NodeSort = Literal["name", "hostname", "created", "last_seen"]
SortOrder = Literal["asc", "desc"]


class Address(TypedDict):
    interface: str
    family: Literal["ipv4", "ipv6"]
    address: str


class Facts(TypedDict):
    hostname: str
    os: str
    kernel: str
    arch: str
    cpu_model: str
    cpu_count: int
    memory_total: int
    addresses: list[Address]
    agent_version: str
    boot_id: str


class Node(TypedDict):
    id: str
    name: str
    hostname: str
    machine_id: str
    group: str | None
    labels: dict[str, str]
    facts: Facts
    status: NodeStatus
    last_seen: str | None  # ISO 8601, null if never seen
    duplicate_of: str | None
    created_at: str
    updated_at: str
    enrolled_at: str


class NodeList(TypedDict):
    items: list[Node]
    total: int  # nodes matching the filters over all pages
    limit: int
    offset: int


class NodePatch(TypedDict, total=False):
    """``NodeUpdate``: ``labels`` replaces the labels as a whole; ``group: None`` ungroups."""

    name: str
    labels: dict[str, str]
    group: str | None


NodeUpdate = NodePatch


class LabelChanges(TypedDict, total=False):
    set: dict[str, str]
    remove: list[str]


class BulkNodeUpdate(TypedDict):
    """All or nothing; ``group`` absent leaves it, None removes it."""

    node_ids: list[str]
    labels: NotRequired[LabelChanges]
    group: NotRequired[str | None]


class Target(TypedDict, total=False):
    """Union of what it names."""

    node_ids: list[str]
    groups: list[str]
    selector: str
    all: Literal[True]


class NodeIdList(TypedDict):
    node_ids: list[str]
    count: int


class Group(TypedDict):
    name: str
    description: str
    node_count: int
    created_at: str
    updated_at: str


class GroupList(TypedDict):
    items: list[Group]


class GroupCreate(TypedDict):
    name: str
    description: NotRequired[str]


class GroupPatch(TypedDict, total=False):
    """``GroupUpdate``: rename or change the description."""

    name: str
    description: str


GroupUpdate = GroupPatch


def _seg(value: str) -> str:
    """A path segment, escaped."""
    return quote(value, safe="")


class FleetApi:
    """``/api/v1/nodes`` and ``/api/v1/groups``."""

    def __init__(self, core: CoreApi) -> None:
        self.core = core

    # --- nodes ------------------------------------------------------------------

    async def list_nodes(
        self,
        *,
        q: str | None = None,
        status: NodeStatus | None = None,
        group: str | None = None,
        selector: str | None = None,
        sort: NodeSort = "name",
        order: SortOrder = "asc",
        limit: int = 100,
        offset: int = 0,
    ) -> NodeList:
        """One page of the nodes matching every filter given (empty strings count as absent)."""
        params = {
            "q": q or None,
            "status": status or None,
            "group": group or None,
            "selector": selector or None,
            "sort": sort,
            "order": order,
            "limit": limit,
            "offset": offset,
        }
        return cast(NodeList, await self.core.call("GET", "/api/v1/nodes", params=params))

    async def get_node(self, node_id: str) -> Node:
        return cast(Node, await self.core.call("GET", f"/api/v1/nodes/{_seg(node_id)}"))

    async def update_node(self, node_id: str, patch: NodePatch) -> Node:
        return cast(
            Node,
            await self.core.call("PATCH", f"/api/v1/nodes/{_seg(node_id)}", json=dict(patch)),
        )

    async def delete_node(self, node_id: str) -> None:
        await self.core.call("DELETE", f"/api/v1/nodes/{_seg(node_id)}")

    async def bulk_update(self, update: BulkNodeUpdate) -> NodeIdList:
        return cast(
            NodeIdList, await self.core.call("POST", "/api/v1/nodes/bulk", json=dict(update))
        )

    async def resolve(self, target: Target) -> NodeIdList:
        return cast(
            NodeIdList, await self.core.call("POST", "/api/v1/nodes/resolve", json=dict(target))
        )

    # --- groups -----------------------------------------------------------------

    async def list_groups(self) -> list[Group]:
        body = cast(GroupList, await self.core.call("GET", "/api/v1/groups"))
        return body["items"]

    async def get_group(self, name: str) -> Group:
        return cast(Group, await self.core.call("GET", f"/api/v1/groups/{_seg(name)}"))

    async def create_group(self, group: GroupCreate) -> Group:
        return cast(Group, await self.core.call("POST", "/api/v1/groups", json=dict(group)))

    async def update_group(self, name: str, patch: GroupPatch) -> Group:
        return cast(
            Group,
            await self.core.call("PATCH", f"/api/v1/groups/{_seg(name)}", json=dict(patch)),
        )

    async def delete_group(self, name: str) -> None:
        await self.core.call("DELETE", f"/api/v1/groups/{_seg(name)}")
