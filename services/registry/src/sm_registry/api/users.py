"""Handlers of ``/api/v1/users`` (tag ``users``)."""

from __future__ import annotations

from typing import Any

from connexion import NoContent

from sm_registry import users
from sm_registry.context import current
from sm_registry.oauth import USER_CLIENT_ID
from sm_shared.problems import Forbidden


async def list_users() -> dict[str, Any]:
    items = await users.list_users(current())
    return {"items": items, "total": len(items)}


async def create_user(
    body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    return await users.create_user(current(), token_info["sub"], **body), 201


async def get_user(username: str) -> dict[str, Any]:
    return await users.get_user(current(), username)


async def update_user(
    username: str, body: dict[str, Any], token_info: dict[str, Any]
) -> dict[str, Any]:
    return await users.update_user(current(), token_info["sub"], username, **body)


async def delete_user(username: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    await users.delete_user(current(), token_info["sub"], username)
    return NoContent, 204


async def change_own_password(body: dict[str, Any], token_info: dict[str, Any]) -> tuple[Any, int]:
    if token_info.get("client_id") != USER_CLIENT_ID:
        raise Forbidden("only users have passwords: this token was not issued to a user")
    await users.change_own_password(
        current(), token_info["sub"], body["current_password"], body["new_password"]
    )
    return NoContent, 204
