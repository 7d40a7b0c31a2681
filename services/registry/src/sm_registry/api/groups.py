"""Handlers of ``/api/v1/groups`` (tag ``groups``)."""

from __future__ import annotations

from typing import Any

from connexion import NoContent

from sm_registry import groups
from sm_registry.context import current


async def list_groups() -> dict[str, Any]:
    return {"items": await groups.list_groups(current())}


async def create_group(
    body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    group = await groups.create_group(
        current(),
        name=body["name"],
        description=body.get("description", ""),
        actor=token_info["sub"],
    )
    return group, 201


async def get_group(name: str) -> dict[str, Any]:
    return await groups.get_group(current(), name)


async def update_group(
    name: str, body: dict[str, Any], token_info: dict[str, Any]
) -> dict[str, Any]:
    return await groups.update_group(current(), name, changes=body, actor=token_info["sub"])


async def delete_group(name: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    await groups.delete_group(current(), name, actor=token_info["sub"])
    return NoContent, 204
