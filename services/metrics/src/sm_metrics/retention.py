"""Retention: each tier keeps its rows for its own period, pruned in small chunks.

Rows are deleted node by node along the (node, time) index, at most about
``chunk`` rows per write transaction, and the job yields between
transactions, so the ingest (the other writer) never waits long for the lock.
A node's ``latest`` row goes when it is older than the longest retention
(no history of the node remains).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, delete, func, select

from sm_metrics.aggregation import time_column
from sm_metrics.schema import latest, rollup_1h, rollup_1m, samples
from sm_metrics.settings import MetricsSettings
from sm_shared.database import WRITER_PAUSE, writer


@dataclass
class PruneResult:
    deleted: dict[str, int] = field(default_factory=dict)
    transactions: int = 0


def _plan_node(
    conn: Connection, table: Table, node_id: str, cutoff: float, budget: int
) -> tuple[Any, int, bool]:
    """What to delete of the node's rows older than ``cutoff``, about ``budget`` at most.

    Returns (the newest time to delete up to, None for every older row; rows; done).
    """
    when = time_column(table)
    older = and_(table.c.node_id == node_id, when < cutoff)
    boundary = conn.execute(
        select(when).where(older).order_by(when).limit(1).offset(budget - 1)
    ).scalar()
    if boundary is None:  # fewer than budget rows left: all of them
        rows = conn.execute(select(func.count()).select_from(table).where(older)).scalar_one()
        return None, int(rows), True
    return boundary, budget, False


def prune_some(engine: Engine, table: Table, cutoff: float, nodes: list[str], chunk: int) -> int:
    """Prune ``nodes`` in order (removing those done) until about ``chunk`` rows went.

    What to delete is found in a read transaction (most nodes, most minutes,
    have nothing to prune, and looking costs no lock); the write transaction
    only deletes, so it stays short however many nodes there are.
    """
    planned: list[tuple[str, Any]] = []
    budget = chunk
    with engine.connect() as conn, conn.begin():
        while nodes and budget > 0:
            boundary, rows, done = _plan_node(conn, table, nodes[0], cutoff, budget)
            if rows:
                planned.append((nodes[0], boundary))
                budget -= rows
            if done:
                nodes.pop(0)
    if not planned:
        return 0
    when = time_column(table)
    deleted = 0
    with writer(engine).begin() as conn:
        for node_id, boundary in planned:
            up_to = when < cutoff if boundary is None else when <= boundary
            deleted += conn.execute(
                delete(table).where(and_(table.c.node_id == node_id, up_to))
            ).rowcount
    return deleted


def _nodes(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(latest.c.node_id).order_by(latest.c.node_id)).scalars())


def tiers(settings: MetricsSettings) -> list[tuple[Table, float]]:
    """Each tier's table and retention in seconds."""
    return [
        (samples, settings.metrics_retention_raw.total_seconds()),
        (rollup_1m, settings.metrics_retention_1m.total_seconds()),
        (rollup_1h, settings.metrics_retention_1h.total_seconds()),
    ]


async def prune(engine: Engine, settings: MetricsSettings, now: float | None = None) -> PruneResult:
    """Prune every tier; between transactions the event loop (and other writers) run."""
    now = time.time() if now is None else now
    result = PruneResult()
    nodes = await asyncio.to_thread(_nodes, engine)
    for table, keep in tiers(settings):
        pending = list(nodes)
        total = 0
        while pending:
            total += await asyncio.to_thread(
                prune_some, engine, table, now - keep, pending, settings.metrics_chunk
            )
            result.transactions += 1
            await asyncio.sleep(WRITER_PAUSE)
        result.deleted[table.name] = total
    longest = max(keep for _, keep in tiers(settings))
    result.deleted[latest.name] = await asyncio.to_thread(_prune_latest, engine, now - longest)
    return result


def _prune_latest(engine: Engine, cutoff: float) -> Any:
    with writer(engine).begin() as conn:
        return conn.execute(delete(latest).where(latest.c.ts < cutoff)).rowcount
