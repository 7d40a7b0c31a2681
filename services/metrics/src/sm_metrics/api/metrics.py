"""Handlers of ``/api/v1/metrics`` (tag ``metrics``): latest values, fleet summary, series."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from sqlalchemy import Engine, select

from sm_metrics import fleet, history
from sm_metrics.context import current
from sm_metrics.schema import METRICS
from sm_metrics.schema import latest as latest_table
from sm_shared.problems import BadRequest, NotFound

DEFAULT_RANGE = 3600.0


async def latest(
    node_id: list[str] | None = None, limit: int = 100, after: str | None = None
) -> dict[str, Any]:
    ctx = current()
    return await asyncio.to_thread(
        fleet.latest_values, ctx.engine, node_ids=node_id or (), limit=limit, after=after
    )


async def summary(top: int = 5) -> dict[str, Any]:
    ctx = current()
    rows = await asyncio.to_thread(fleet.current_rows, ctx.engine)
    online = await fleet.online_nodes(ctx.redis, [row.node_id for row in rows])
    return fleet.summarize(rows, online, top, time.time())


def _known(engine: Engine, node_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            select(latest_table.c.node_id).where(latest_table.c.node_id == node_id)
        ).first()
    return found is not None


async def series(
    node_id: str,
    metrics: list[str] | None = None,
    max_points: int = 300,
    **bounds: float,
) -> dict[str, Any]:
    ctx = current()
    now = time.time()
    end = bounds.get("to", now)
    start = bounds.get("from", end - DEFAULT_RANGE)
    if not (math.isfinite(start) and math.isfinite(end)):
        raise BadRequest("`from` and `to` must be finite numbers")
    if end <= start:
        raise BadRequest("`from` must be before `to`")
    if not await asyncio.to_thread(_known, ctx.engine, node_id):
        raise NotFound(f"no metrics recorded for node {node_id}")
    return await asyncio.to_thread(
        history.series,
        ctx.engine,
        node_id,
        start=max(start, 0.0),
        end=end,
        max_points=max_points,
        now=now,
        settings=ctx.settings,
        metrics=metrics or METRICS,
    )
