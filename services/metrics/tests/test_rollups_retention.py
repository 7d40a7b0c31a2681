"""Rollups (touched buckets, late data, weighting, idempotence) and chunked retention."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from sm_metrics import aggregation, retention, rollups, synthetic
from sm_metrics.schema import METRICS, RESOLUTION, latest, rollup_1h, rollup_1m, samples, touched
from sm_metrics.settings import MetricsSettings

NODE_A = "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10"
NODE_B = "1c7f5b9f-4d2e-4b68-8e4f-3a2b8d0c6f21"
Make = Callable[..., dict[str, Any]]
Store = Callable[..., None]


def rows(engine: Engine, table: Any, node_id: str = NODE_A) -> dict[int, Any]:
    with engine.connect() as conn:
        found = conn.execute(select(table).where(table.c.node_id == node_id)).all()
    return {row.bucket: row for row in found}


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def test_touched_minutes_and_hours_are_recomputed_late_data_included(
    engine: Engine,
    make_heartbeat: Make,
    store: Store,
) -> None:
    hour = (int(time.time()) // 3600 - 2) * 3600  # a whole hour, two hours ago
    # Minute 0: cpu 10, 20, 30; minute 1: cpu 40.
    store(
        NODE_A,
        [make_heartbeat(seq=i, sent_at=hour + 5 + 10 * i, cpu=10.0 * (i + 1)) for i in range(3)],
        hour + 60,
    )
    store(NODE_A, [make_heartbeat(seq=10, sent_at=hour + 65, cpu=40.0)], hour + 70)
    store(NODE_B, [make_heartbeat(seq=0, sent_at=hour + 5, cpu=99.0)], hour + 10)
    result = await rollups.rollup(engine, chunk=1)  # one touch per chunk: three chunks
    assert (result.minutes, result.chunks) == (3, 3)
    assert count(engine, touched) == 0
    minutes = rows(engine, rollup_1m)
    assert (
        minutes[hour].count,
        minutes[hour].cpu_avg,
        minutes[hour].cpu_min,
        minutes[hour].cpu_max,
    ) == (3, 20.0, 10.0, 30.0)
    assert (minutes[hour + 60].count, minutes[hour + 60].cpu_avg) == (1, 40.0)
    (only,) = rows(engine, rollup_1h).values()
    # Weighted by count: (3 x 20 + 1 x 40) / 4 = 25, not the mean of the minutes (30).
    assert (only.bucket, only.count, only.cpu_avg, only.cpu_min, only.cpu_max) == (
        hour,
        4,
        25.0,
        10.0,
        40.0,
    )
    assert rows(engine, rollup_1h, NODE_B)[hour].cpu_avg == 99.0

    # Late data (a buffered heartbeat) for minute 0 arrives after the rollup: recomputed.
    store(NODE_A, [make_heartbeat(seq=3, sent_at=hour + 40, cpu=60.0)], time.time())
    assert count(engine, touched) == 1
    result = await rollups.rollup(engine, chunk=100)
    assert (result.minutes, result.hours) == (1, 1)
    minutes = rows(engine, rollup_1m)
    assert (minutes[hour].count, minutes[hour].cpu_avg, minutes[hour].cpu_max) == (4, 30.0, 60.0)
    assert rows(engine, rollup_1h)[hour].cpu_avg == pytest.approx((4 * 30.0 + 40.0) / 5)
    # Nothing touched: nothing done; the rows stay as they are (idempotent).
    before = {b: tuple(r) for b, r in rows(engine, rollup_1m).items()}
    assert await rollups.rollup(engine, chunk=100) == rollups.RollupResult()
    assert {b: tuple(r) for b, r in rows(engine, rollup_1m).items()} == before


async def test_a_minute_touched_again_during_a_rollup_stays_queued(
    engine: Engine,
    make_heartbeat: Make,
    store: Store,
) -> None:
    minute = (int(time.time()) // 60 - 5) * 60
    store(NODE_A, [make_heartbeat(seq=0, sent_at=minute + 1)], minute + 2)
    with engine.connect() as conn:
        (version,) = conn.execute(select(touched.c.version)).one()
    # The ingest touches the minute again (a later version) before the rollup deletes its touch.
    store(NODE_A, [make_heartbeat(seq=1, sent_at=minute + 2)], minute + 3)
    with engine.connect() as conn:
        assert conn.execute(select(touched.c.version)).scalar_one() == version + 1
    await rollups.rollup(engine, chunk=100)
    assert rows(engine, rollup_1m)[minute].count == 2
    assert count(engine, touched) == 0


async def test_retention_prunes_each_tier_in_small_chunks(
    engine: Engine,
    settings: MetricsSettings,
    make_heartbeat: Make,
    store: Store,
) -> None:
    now = time.time()
    keep = settings.model_copy(
        update={
            "metrics_retention_raw": timedelta(hours=1),
            "metrics_retention_1m": timedelta(hours=3),
            "metrics_retention_1h": timedelta(days=1),
            "metrics_chunk": 100,
        }
    )
    old = [make_heartbeat(seq=i, sent_at=now - 7200 + i, cpu=1.0) for i in range(450)]
    fresh = [make_heartbeat(seq=1000 + i, sent_at=now - 60 + i, cpu=2.0) for i in range(20)]
    for node_id in (NODE_A, NODE_B):
        store(node_id, old + fresh, now)
    await rollups.rollup(engine, chunk=1000)
    result = await retention.prune(engine, keep, now=now)
    assert result.deleted["samples"] == 900
    assert result.transactions >= 9  # never more than about 100 rows per transaction
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(samples.c.ts))).scalar_one()
    assert oldest >= now - 3600
    assert count(engine, samples) == 40
    # The 1-minute rows of two hours ago are within their 3 hours; a second run finds nothing.
    assert result.deleted["rollup_1m"] == 0
    writes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        again = await retention.prune(engine, keep, now=now)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert sum(again.deleted.values()) == 0
    # Looking for what to prune takes no write lock: only the one short `latest` delete.
    assert len(writes) == 1
    # Four hours on, the 1-minute tier's rows go too; the hour rows stay (a day).
    later = await retention.prune(engine, keep, now=now + 4 * 3600)
    assert count(engine, rollup_1m) == 0
    assert later.deleted["rollup_1m"] > 0
    assert count(engine, rollup_1h) > 0
    # After the longest retention nothing of the nodes remains, their latest rows included.
    await retention.prune(engine, keep, now=now + 2 * 86400)
    assert count(engine, rollup_1h) == count(engine, latest) == 0


@pytest.mark.parametrize(("table", "width"), [(rollup_1m, 60), (rollup_1h, 3600)])
def test_a_rollup_read_at_its_own_resolution_equals_the_regrouped_one(
    engine: Engine, settings: MetricsSettings, table: Any, width: int
) -> None:
    """The fast path (stored rows as buckets) answers exactly what the GROUP BY does."""
    now = float(int(time.time()) // 3600 * 3600)
    assert RESOLUTION[table.name] == width  # the fast path applies
    synthetic.fill(engine, nodes=2, days=1, now=now, settings=settings)
    node = synthetic.node_ids(2)[1]
    window = {"start": now - 6 * 3600, "end": now, "width": width, "origin": int(now - 6 * 3600)}
    with engine.connect() as conn:
        fast = aggregation.aggregate(conn, table, node, metrics=METRICS, **window)
        slow = aggregation.aggregate(conn, table, node, metrics=METRICS, regroup=True, **window)
    assert len(fast) == len(slow) == 6 * 3600 // width
    for quick, regrouped in zip(fast, slow, strict=True):
        assert len(quick) == len(regrouped) == 2 + 3 * len(METRICS)
        for a, b in zip(quick, regrouped, strict=True):
            assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-9), (quick, regrouped)
