"""Handlers of ``/api/v1/clients`` (tag ``clients``): admin-created service clients."""

from __future__ import annotations

from typing import Any

from connexion import NoContent

from sm_registry import clients
from sm_registry.context import current


async def list_clients() -> dict[str, Any]:
    items = await clients.list_clients(current())
    return {"items": items, "total": len(items)}


async def create_client(
    body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    return await clients.create_client(current(), token_info["sub"], **body), 201


async def get_client(client_id: str) -> dict[str, Any]:
    return await clients.get_client(current(), client_id)


async def update_client(
    client_id: str, body: dict[str, Any], token_info: dict[str, Any]
) -> dict[str, Any]:
    return await clients.update_client(current(), token_info["sub"], client_id, **body)


async def delete_client(client_id: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    await clients.delete_client(current(), token_info["sub"], client_id)
    return NoContent, 204
