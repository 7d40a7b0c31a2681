"""Handlers of ``/api/v1/audit`` (tag ``audit``): the hash-chained audit log, listed and verified.

``GET /api/v1/audit``: records newest first, filtered by exact ``actor``,
``action`` and ``target`` and by time (``since`` ≤ ``at`` < ``until``,
Unix seconds); ``limit`` per page, ``cursor`` = the previous page's
``next_cursor`` (a seq: the page holds records below it).
``GET /api/v1/audit/verify``: the whole chain checked (``sm_commands.audit_chain.verify``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Engine

from sm_commands import audit_chain
from sm_commands.settings import CommandsSettings
from sm_shared.api_app import request_service
from sm_shared.problems import BadRequest


def _engine() -> Engine:
    _state, resources, _settings = request_service(CommandsSettings)
    return resources.engine


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"`cursor` {text!r} is not a cursor this API returned")
    return int(text)


async def list_audit(
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    filters = audit_chain.Filters(
        actor=actor,
        action=action,
        target=target,
        since=since,
        until=until,
    )
    if since is not None and until is not None and since > until:
        raise BadRequest("`since` is after `until`")
    page, following = await asyncio.to_thread(
        audit_chain.records, _engine(), filters, limit=limit, before=_cursor(cursor)
    )
    return {
        "items": page,
        "next_cursor": None if following is None else str(following),
    }


async def verify_audit() -> dict[str, Any]:
    verification = await asyncio.to_thread(audit_chain.verify, _engine())
    return verification.as_dict()
