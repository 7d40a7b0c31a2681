"""One ingest batch → one transaction: raw rows, the latest row per node, the touched minutes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from sm_metrics.rows import Heartbeat
from sm_metrics.schema import latest, samples, touched
from sm_metrics.upserts import insert_ignoring, upsert
from sm_shared.database import writer


@dataclass(frozen=True)
class Written:
    """What a batch added: new raw rows (duplicates are not counted) and nodes seen."""

    inserted: int
    nodes: int


def newest_per_node(heartbeats: Sequence[Heartbeat]) -> list[Heartbeat]:
    """Each node's newest heartbeat of the batch (by its own time, then sequence)."""
    newest: dict[str, Heartbeat] = {}
    for heartbeat in heartbeats:
        seen = newest.get(heartbeat.node_id)
        if seen is None or (heartbeat.ts, heartbeat.row["seq"]) > (seen.ts, seen.row["seq"]):
            newest[heartbeat.node_id] = heartbeat
    return list(newest.values())


def write_batch(engine: Engine, heartbeats: Sequence[Heartbeat]) -> Written:
    """Store ``heartbeats`` in one write transaction; idempotent (a replay changes nothing)."""
    if not heartbeats:
        return Written(0, 0)
    dialect = engine.dialect.name
    newest = newest_per_node(heartbeats)
    minutes = {(h.node_id, h.minute) for h in heartbeats}
    with writer(engine).begin() as conn:
        result = conn.execute(insert_ignoring(dialect, samples), [h.row for h in heartbeats])
        conn.execute(
            upsert(dialect, latest, key=["node_id"], where=lambda new: new.ts > latest.c.ts),
            [{**h.row, "dropped": h.dropped} for h in newest],
        )
        conn.execute(
            upsert(
                dialect,
                touched,
                key=["node_id", "minute"],
                replace=(),
                set_={"version": touched.c.version + 1},
            ),
            [{"node_id": node, "minute": minute, "version": 0} for node, minute in minutes],
        )
    inserted = result.rowcount if result.rowcount >= 0 else len(heartbeats)
    return Written(inserted, len(newest))
