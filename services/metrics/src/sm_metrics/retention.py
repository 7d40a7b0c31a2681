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

from sqlalchemy import Connection, Engine, Table, and_, delete, select

from sm_metrics.aggregation import time_column
from sm_metrics.schema import latest, rollup_1h, rollup_1m, samples
from sm_metrics.settings import MetricsSettings
from sm_shared.database import writer


@dataclass
class PruneResult:
    deleted: dict[str, int] = field(default_factory=dict)
    transactions: int = 0


def _prune_node(
    conn: Connection, table: Table, node_id: str, cutoff: float, budget: int
) -> tuple[int, bool]:
    """Delete up to about ``budget`` of the node's rows older than ``cutoff``; (deleted, done)."""
    when = time_column(table)
    older = and_(table.c.node_id == node_id, when < cutoff)
    boundary = conn.execute(
        select(when).where(older).order_by(when).limit(1).offset(budget - 1)
    ).scalar()
    if boundary is None:  # fewer than budget rows left: all of them
        return conn.execute(delete(table).where(older)).rowcount, True
    deleted = conn.execute(
        delete(table).where(and_(table.c.node_id == node_id, when <= boundary))
    ).rowcount
    return deleted, False


def prune_some(engine: Engine, table: Table, cutoff: float, nodes: list[str], chunk: int) -> int:
    """One transaction: prune ``nodes`` in order (removing those done) until ~``chunk`` rows went."""
    deleted = 0
    with writer(engine).begin() as conn:
        while nodes and deleted < chunk:
            count, done = _prune_node(conn, table, nodes[0], cutoff, chunk - deleted)
            deleted += count
            if done:
                nodes.pop(0)
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
            await asyncio.sleep(0)
        result.deleted[table.name] = total
    longest = max(keep for _, keep in tiers(settings))
    result.deleted[latest.name] = await asyncio.to_thread(_prune_latest, engine, now - longest)
    return result


def _prune_latest(engine: Engine, cutoff: float) -> Any:
    with writer(engine).begin() as conn:
        return conn.execute(delete(latest).where(latest.c.ts < cutoff)).rowcount
