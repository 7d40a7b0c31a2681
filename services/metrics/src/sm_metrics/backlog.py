"""The ``metrics`` stream's backlog: where it may be trimmed, and how far behind the ingest is.

Trimming uses ``XTRIM MINID`` (never ``MAXLEN``, which drops entries nobody
has acknowledged): below the oldest entry any consumer group still has
pending, or, with nothing pending, up to the last entry every group has been
delivered. Entries no group has read yet are never trimmed.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from sm_shared.streams import METRICS_GROUP, METRICS_STREAM


def _id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)


def _text(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def trim_floor(client: Redis, stream: str = METRICS_STREAM) -> str | None:
    """The lowest id every group still needs (``XTRIM MINID`` keeps it and all above)."""
    try:
        groups: Any = client.xinfo_groups(stream)
    except ResponseError:
        return None  # no stream yet
    if not groups:
        return None
    floor: tuple[int, int] | None = None
    for group in groups:
        name = group["name"]
        summary: Any = client.xpending(stream, name)
        needed = _id(summary["min"]) if summary["pending"] else _id(group["last-delivered-id"])
        floor = needed if floor is None else min(floor, needed)
    return None if floor is None or floor == (0, 0) else _text(floor)


def trim(client: Redis, stream: str = METRICS_STREAM) -> int:
    """Trim what no group needs any more; returns the entries removed."""
    floor = trim_floor(client, stream)
    if floor is None:
        return 0
    removed: Any = client.xtrim(stream, minid=floor, approximate=False)
    return int(removed)


async def lag(client: AsyncRedis, now: float | None = None) -> dict[str, Any]:
    """How far behind the ingest is: stream length, entries not yet read and not yet
    acknowledged, and the age of the oldest unacknowledged one (seconds)."""
    now = time.time() if now is None else now
    report: dict[str, Any] = {
        "stream_length": 0,
        "unread": 0,
        "pending": 0,
        "oldest_pending_age": None,
        "consumers": 0,
    }
    try:
        report["stream_length"] = int(await client.xlen(METRICS_STREAM))
        groups: list[dict[str, Any]] = await client.xinfo_groups(METRICS_STREAM)
    except ResponseError:
        return report  # no stream yet
    group = next((g for g in groups if _name(g["name"]) == METRICS_GROUP), None)
    if group is None:
        report["unread"] = report["stream_length"]
        return report
    report["consumers"] = int(group["consumers"])
    group_lag = group.get("lag")
    # None when Redis cannot tell (entries were deleted from the middle of the stream).
    report["unread"] = None if group_lag is None else int(group_lag)
    summary: dict[str, Any] = await client.xpending(METRICS_STREAM, METRICS_GROUP)
    report["pending"] = int(summary["pending"])
    if summary["pending"]:
        report["oldest_pending_age"] = max(0.0, now - _id(summary["min"])[0] / 1000)
    return report


def _name(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
