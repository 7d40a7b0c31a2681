"""The fleet's current state: every node's latest values, and a summary.

Both read the ``latest`` table (one row per node, kept current by the
ingest), never the raw tier. The summary's node count is the nodes with a
latest row, i.e. nodes that have sent a heartbeat whose history has not
expired; a node is online while its presence key exists in Redis (the
gateway keeps it alive), the same rule the registry's node status uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import Engine, Row, select

from sm_metrics.rows import detail_object
from sm_metrics.schema import METRICS, latest
from sm_shared.streams import presence_key


def _item(row: Row[Any]) -> dict[str, Any]:
    return {
        "node_id": row.node_id,
        "boot_id": row.boot_id,
        "seq": row.seq,
        "ts": row.ts,
        "received_at": row.received_at,
        "skewed": bool(row.skewed),
        "dropped": row.dropped,
        "values": {metric: getattr(row, metric) for metric in METRICS},
        "detail": detail_object(row.detail),
    }


def latest_values(
    engine: Engine, *, node_ids: Sequence[str] = (), limit: int, after: str | None = None
) -> dict[str, Any]:
    """Latest rows in node id order: the ``node_ids`` given, or a page after ``after``."""
    query = select(latest).order_by(latest.c.node_id).limit(limit + 1)
    if node_ids:
        query = query.where(latest.c.node_id.in_(sorted(set(node_ids))))
    if after is not None:
        query = query.where(latest.c.node_id > after)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "items": [_item(row) for row in page],
        "next_after": page[-1].node_id if more and page else None,
    }


async def online_nodes(redis: Redis, node_ids: Sequence[str]) -> set[str]:
    """The nodes among ``node_ids`` whose presence key exists."""
    pipe = redis.pipeline(transaction=False)
    for node_id in node_ids:
        pipe.exists(presence_key(node_id))
    found = await pipe.execute()
    return {node_id for node_id, exists in zip(node_ids, found, strict=True) if exists}


def current_rows(engine: Engine) -> list[Any]:
    columns = (
        latest.c.node_id,
        latest.c.ts,
        latest.c.cpu,
        latest.c.mem_percent,
        latest.c.disk_percent,
    )
    with engine.connect() as conn:
        return list(conn.execute(select(*columns)).all())


def _average(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 3) if present else None


def _top(rows: list[Any], metric: str, count: int) -> list[dict[str, Any]]:
    ranked = sorted(
        (row for row in rows if getattr(row, metric) is not None),
        key=lambda row: (-getattr(row, metric), row.node_id),
    )
    return [
        {
            "node_id": row.node_id,
            "cpu": row.cpu,
            "mem_percent": row.mem_percent,
            "ts": row.ts,
        }
        for row in ranked[:count]
    ]


def summarize(rows: list[Any], online: set[str], top: int, now: float) -> dict[str, Any]:
    """Counts, averages over online nodes, and the top ``top`` online nodes by CPU and memory."""
    live = [row for row in rows if row.node_id in online]
    return {
        "at": now,
        "nodes": {"total": len(rows), "online": len(live), "offline": len(rows) - len(live)},
        "averages": {
            metric: _average([getattr(row, metric) for row in live])
            for metric in ("cpu", "mem_percent", "disk_percent")
        },
        "top_cpu": _top(live, "cpu", top),
        "top_memory": _top(live, "mem_percent", top),
    }
