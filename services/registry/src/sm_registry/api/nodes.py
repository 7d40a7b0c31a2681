"""Handlers of ``/api/v1/nodes`` (tag ``nodes``): list, get, update, bulk, delete, resolve,
duplicates, and agent authentication for the gateway."""

from __future__ import annotations

from typing import Any

from connexion import NoContent

from sm_registry import enrollment, nodes
from sm_registry.context import current


async def list_nodes(
    sort: str = "name",
    order: str = "asc",
    limit: int = 100,
    offset: int = 0,
    group: str | None = None,
    selector: str | None = None,
    q: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    query = nodes.NodeQuery(
        group=group,
        selector=selector,
        q=q,
        status=None if status is None else nodes.Status(status),
        sort=nodes.SortKey(sort),
        descending=order == "desc",
        limit=limit,
        offset=offset,
    )
    return await nodes.list_nodes(current(), query)


async def get_node(node_id: str) -> dict[str, Any]:
    return await nodes.get_node(current(), node_id)


async def update_node(
    node_id: str, body: dict[str, Any], token_info: dict[str, Any]
) -> dict[str, Any]:
    return await nodes.update_node(current(), node_id, changes=body, actor=token_info["sub"])


async def delete_node(node_id: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    await nodes.delete_node(current(), node_id, actor=token_info["sub"])
    return NoContent, 204


async def put_facts(node_id: str, body: dict[str, Any]) -> tuple[Any, int]:
    await nodes.put_facts(current(), node_id, body)
    return NoContent, 204


async def bulk_update_nodes(body: dict[str, Any], token_info: dict[str, Any]) -> dict[str, Any]:
    labels = body.get("labels", {})
    change = nodes.BulkChange(
        set_labels=labels.get("set", {}),
        remove_labels=tuple(labels.get("remove", ())),
        **({"group": body["group"]} if "group" in body else {}),
    )
    return await nodes.bulk_update(current(), body["node_ids"], change, actor=token_info["sub"])


async def resolve_nodes(body: dict[str, Any]) -> dict[str, Any]:
    target = nodes.Target(
        node_ids=tuple(body.get("node_ids", ())),
        groups=tuple(body.get("groups", ())),
        selector=body.get("selector"),
        all=bool(body.get("all", False)),
    )
    return await nodes.resolve(current(), target)


async def decide_duplicate(
    node_id: str, body: dict[str, Any], token_info: dict[str, Any]
) -> dict[str, Any]:
    decision = nodes.Decision(body["decision"])
    return await nodes.decide_duplicate(current(), node_id, decision, actor=token_info["sub"])


async def authenticate_node(body: dict[str, Any]) -> dict[str, Any]:
    return await enrollment.authenticate(current(), body["credential"])
