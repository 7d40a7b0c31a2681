"""Handlers of ``/api/v1/enroll`` and ``/api/v1/enrollment-tokens`` (tag ``enrollment``)."""

from __future__ import annotations

from typing import Any

from connexion import request

from sm_registry import enrollment
from sm_registry.context import current
from sm_registry.ratelimit import address_subject


async def enroll(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    enroll_request = enrollment.EnrollRequest(
        machine_id=body["machine_id"],
        facts=body["facts"],
        key=body.get("key"),
        credential=body.get("credential"),
    )
    result = await enrollment.enroll(current(), enroll_request, subjects=[address_subject(request)])
    return result, 201


async def list_enrollment_tokens() -> dict[str, Any]:
    return {"items": await enrollment.list_tokens(current())}


async def create_enrollment_token(
    body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    spec = enrollment.TokenSpec(
        ttl=body.get("ttl", 86400),
        max_uses=body.get("max_uses"),
        group=body.get("group"),
        labels=body.get("labels"),
        description=body.get("description", ""),
    )
    return await enrollment.create_token(current(), spec, actor=token_info["sub"]), 201


async def get_enrollment_token(token_id: str) -> dict[str, Any]:
    return await enrollment.get_token(current(), token_id)


async def revoke_enrollment_token(token_id: str, token_info: dict[str, Any]) -> dict[str, Any]:
    return await enrollment.revoke_token(current(), token_id, actor=token_info["sub"])
