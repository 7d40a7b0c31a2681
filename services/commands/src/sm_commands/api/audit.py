"""Handlers of ``/api/v1/audit`` (tag ``audit``): the hash-chained audit log, listed and verified.

``GET /api/v1/audit``: records newest first, filtered by exact ``actor``,
``action`` and ``target`` and by time (``since``/``until``, inclusive,
date-time); ``limit`` per page, ``cursor`` = the previous page's
``next_cursor`` (a seq: the page holds records below it).
``GET /api/v1/audit/verify``: the whole chain checked (``sm_commands.audit_chain.verify``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sm_commands import audit_chain
from sm_commands.settings import CommandsSettings
from sm_shared.api_app import request_service
from sm_shared.problems import BadRequest


def _engine() -> Any:
    _state, resources, _settings = request_service(CommandsSettings)
    return resources.engine


def _at(name: str, text: str | None) -> str | None:
    """A date-time query parameter as the chain's ``at`` text (UTC, microseconds)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"`{name}` is not an ISO 8601 date-time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(audit_chain.AT_FORMAT)


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"`cursor` {text!r} is not a cursor this API returned")
    return int(text)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return record


async def list_audit(
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    filters = audit_chain.Filters(
        actor=actor,
        action=action,
        target=target,
        since=_at("since", since),
        until=_at("until", until),
    )
    if filters.since and filters.until and filters.since > filters.until:
        raise BadRequest("`since` is after `until`")
    page, following = await asyncio.to_thread(
        audit_chain.records, _engine(), filters, limit=limit, before=_cursor(cursor)
    )
    return {
        "items": [_public(record) for record in page],
        "next_cursor": None if following is None else str(following),
    }


async def verify_audit() -> dict[str, Any]:
    verification = await asyncio.to_thread(audit_chain.verify, _engine())
    return verification.as_dict()
