"""Handlers of ``/api/v1/enroll`` and ``/api/v1/enrollment-tokens`` (tag ``enrollment``)."""

from __future__ import annotations

from typing import Any

import orjson
from connexion import request
from connexion.lifecycle import ConnexionResponse

from sm_registry import enrollment
from sm_registry.context import current
from sm_registry.ratelimit import address_subject


def _json(body: dict[str, Any], status: int = 200) -> ConnexionResponse:
    # Named explicitly: the operations also declare problem+json responses.
    return ConnexionResponse(
        status_code=status, body=orjson.dumps(body), content_type="application/json"
    )


async def enroll(body: dict[str, Any]) -> ConnexionResponse:
    enroll_request = enrollment.EnrollRequest(
        machine_id=body["machine_id"],
        facts=body["facts"],
        key=body.get("key"),
        credential=body.get("credential"),
    )
    result = await enrollment.enroll(current(), enroll_request, subjects=[address_subject(request)])
    return _json(result, 201)


async def list_enrollment_tokens() -> ConnexionResponse:
    return _json({"items": await enrollment.list_tokens(current())})


async def create_enrollment_token(
    body: dict[str, Any], token_info: dict[str, Any]
) -> ConnexionResponse:
    spec = enrollment.TokenSpec(
        ttl=body.get("ttl", 86400),
        max_uses=body.get("max_uses"),
        group=body.get("group"),
        labels=body.get("labels"),
        description=body.get("description", ""),
    )
    return _json(await enrollment.create_token(current(), spec, actor=token_info["sub"]), 201)


async def get_enrollment_token(token_id: str) -> ConnexionResponse:
    return _json(await enrollment.get_token(current(), token_id))


async def revoke_enrollment_token(token_id: str, token_info: dict[str, Any]) -> ConnexionResponse:
    token = await enrollment.revoke_token(current(), token_id, actor=token_info["sub"])
    return _json(token)
