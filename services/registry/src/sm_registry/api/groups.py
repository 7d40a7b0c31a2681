"""Handlers of ``/api/v1/groups`` (tag ``groups``)."""

from __future__ import annotations

from typing import Any

from connexion import NoContent

from sm_registry import groups
from sm_registry.context import current

# Operations also declare problem+json responses, so Connexion needs the type named.
JSON = {"Content-Type": "application/json"}
Reply = tuple[dict[str, Any], int, dict[str, str]]


async def list_groups() -> Reply:
    return {"items": await groups.list_groups(current())}, 200, JSON


async def create_group(body: dict[str, Any], token_info: dict[str, Any]) -> Reply:
    group = await groups.create_group(
        current(),
        name=body["name"],
        description=body.get("description", ""),
        actor=token_info["sub"],
    )
    return group, 201, JSON


async def get_group(name: str) -> Reply:
    return await groups.get_group(current(), name), 200, JSON


async def update_group(name: str, body: dict[str, Any], token_info: dict[str, Any]) -> Reply:
    group = await groups.update_group(current(), name, changes=body, actor=token_info["sub"])
    return group, 200, JSON


async def delete_group(name: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    await groups.delete_group(current(), name, actor=token_info["sub"])
    return NoContent, 204
