"""Handlers of ``/api/v1/roles`` (tag ``roles``)."""

from __future__ import annotations

from typing import Any

from connexion import NoContent

from sm_registry import roles
from sm_registry.context import current


async def list_roles() -> dict[str, Any]:
    items = await roles.list_roles(current())
    return {"items": items, "total": len(items)}


async def create_role(
    body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    return await roles.create_role(current(), token_info["sub"], **body), 201


async def get_role(name: str) -> dict[str, Any]:
    return await roles.get_role(current(), name)


async def update_role(
    name: str, body: dict[str, Any], token_info: dict[str, Any]
) -> dict[str, Any]:
    return await roles.update_role(current(), token_info["sub"], name, **body)


async def delete_role(name: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    await roles.delete_role(current(), token_info["sub"], name)
    return NoContent, 204
