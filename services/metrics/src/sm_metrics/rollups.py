"""The 1-minute and 1-hour tiers, recomputed for every bucket that received samples.

The ingest records each (node, minute) it wrote to in ``touched``. A rollup
run takes those in chunks; per chunk it recomputes each touched minute from
the raw tier and upserts them, then each hour containing one from the
1-minute tier (weighted by count) and upserts those, and deletes the touches
it handled — only at the version it read, so a minute touched again
meanwhile (late data) stays queued for the next chunk or run. Computing
happens in read transactions; the write lock is held only for the upserts,
so the ingest is never stalled for long. Re-running changes nothing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, Table, and_, bindparam, delete, select

from sm_metrics.aggregation import aggregate
from sm_metrics.schema import HOUR, METRICS, MINUTE, rollup_1h, rollup_1m, samples, touched
from sm_metrics.upserts import upsert
from sm_shared.database import WRITER_PAUSE, writer


@dataclass(frozen=True)
class RollupResult:
    minutes: int = 0
    hours: int = 0
    chunks: int = 0


def _by_node(pairs: Iterable[tuple[str, int]]) -> dict[str, set[int]]:
    grouped: dict[str, set[int]] = defaultdict(set)
    for node_id, bucket in pairs:
        grouped[node_id].add(bucket)
    return grouped


def _recompute(
    conn: Connection, source: Table, buckets: dict[str, set[int]], width: int
) -> list[dict[str, Any]]:
    """The rows of ``buckets`` (per node) computed from ``source``, ready to upsert."""
    rows: list[dict[str, Any]] = []
    for node_id, wanted in buckets.items():
        found: Sequence[Row[Any]] = aggregate(
            conn,
            source,
            node_id,
            start=min(wanted),
            end=max(wanted) + width,
            width=width,
            origin=0,
            metrics=METRICS,
        )
        rows += [{"node_id": node_id, **row._asdict()} for row in found if row.bucket in wanted]
    return rows


def _write(conn: Connection, target: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(upsert(conn.dialect.name, target, key=["node_id", "bucket"]), rows)


def rollup_chunk(engine: Engine, limit: int) -> tuple[int, int, int]:
    """Handle up to ``limit`` touched minutes; returns (touches handled, minutes, hours written).

    The aggregates are computed in read transactions (WAL: the ingest keeps
    writing meanwhile); the write lock is held only to upsert what was
    computed. A minute touched again after it was read keeps its touch (the
    version differs), so it is recomputed by the next chunk or run.
    """
    with engine.connect() as conn, conn.begin():
        touches = conn.execute(
            select(touched.c.node_id, touched.c.minute, touched.c.version)
            .order_by(touched.c.node_id, touched.c.minute)
            .limit(limit)
        ).all()
        if not touches:
            return 0, 0, 0
        minutes = _recompute(
            conn, samples, _by_node((t.node_id, t.minute) for t in touches), MINUTE
        )
    with writer(engine).begin() as conn:
        _write(conn, rollup_1m, minutes)
    hour_buckets = _by_node((t.node_id, t.minute // HOUR * HOUR) for t in touches)
    with engine.connect() as conn, conn.begin():
        hours = _recompute(conn, rollup_1m, hour_buckets, HOUR)
    with writer(engine).begin() as conn:
        _write(conn, rollup_1h, hours)
        conn.execute(
            delete(touched).where(
                and_(
                    touched.c.node_id == bindparam("n"),
                    touched.c.minute == bindparam("m"),
                    touched.c.version == bindparam("v"),
                )
            ),
            [{"n": t.node_id, "m": t.minute, "v": t.version} for t in touches],
        )
    return len(touches), len(minutes), len(hours)


async def rollup(engine: Engine, chunk: int) -> RollupResult:
    """Every touched bucket, chunk by chunk (other writers get the lock between chunks)."""
    minutes = hours = chunks = 0
    while True:
        handled, m, h = await asyncio.to_thread(rollup_chunk, engine, chunk)
        if not handled:
            return RollupResult(minutes, hours, chunks)
        minutes, hours, chunks = minutes + m, hours + h, chunks + 1
        if handled < chunk:
            return RollupResult(minutes, hours, chunks)
        await asyncio.sleep(WRITER_PAUSE)
