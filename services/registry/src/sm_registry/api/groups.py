"""Handlers of ``/api/v1/groups`` (tag ``groups``)."""

from __future__ import annotations

from typing import Any

import orjson
from connexion import NoContent
from connexion.lifecycle import ConnexionResponse

from sm_registry import groups
from sm_registry.context import current


def _json(body: dict[str, Any], status: int = 200) -> ConnexionResponse:
    # Named explicitly: the operations also declare problem+json responses.
    return ConnexionResponse(
        status_code=status, body=orjson.dumps(body), content_type="application/json"
    )


async def list_groups() -> ConnexionResponse:
    return _json({"items": await groups.list_groups(current())})


async def create_group(body: dict[str, Any], token_info: dict[str, Any]) -> ConnexionResponse:
    group = await groups.create_group(
        current(),
        name=body["name"],
        description=body.get("description", ""),
        actor=token_info["sub"],
    )
    return _json(group, 201)


async def get_group(name: str) -> ConnexionResponse:
    return _json(await groups.get_group(current(), name))


async def update_group(
    name: str, body: dict[str, Any], token_info: dict[str, Any]
) -> ConnexionResponse:
    group = await groups.update_group(current(), name, changes=body, actor=token_info["sub"])
    return _json(group)


async def delete_group(name: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    await groups.delete_group(current(), name, actor=token_info["sub"])
    return NoContent, 204
