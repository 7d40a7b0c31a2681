"""Synthetic history, fast: every tier filled directly for N nodes over D days.

For benchmarks and sizing (``bench/``, the README's disk figures): the raw tier
holds the last ``min(days, raw retention)`` at the heartbeat interval, the
1-minute tier the last ``min(days, 1-minute retention)``, the 1-hour tier the
whole span, and each node gets a latest row. Values are smooth functions of
time (no randomness), and each raw row carries a detail blob of a typical
size (4 cores, 2 mounts, 2 interfaces).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import Engine, Table, insert

from sm_metrics.schema import AGGREGATES, METRICS, latest, rollup_1h, rollup_1m, samples
from sm_metrics.settings import MetricsSettings
from sm_shared.database import writer

BATCH: Final = 10_000
GIB: Final = 1 << 30
DETAIL: Final = orjson.dumps(
    {
        "cores": [12.5, 40.0, 3.1, 7.75],
        "disks": [
            ["/", "ext4", 41_996_005_376, 9_338_826_752, 30_492_528_640],
            ["/var/lib/data", "xfs", 536_870_912_000, 123_456_789_012, 413_414_122_988],
        ],
        "interfaces": [
            ["eth0", 1536.0, 2048.0, 88_123_456_789, 12_345_678_901],
            ["eth1", 0.0, 12.5, 1_234_567, 7_654_321],
        ],
        "net": [88_124_691_356, 12_353_333_222],
        "disk_io": [1_203_765_248_512, 5_022_842_880_000],
        "uptime": 8_640_000.25,
    }
)


def node_ids(count: int) -> list[str]:
    return [f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(count)]


def values(node: int, ts: float) -> dict[str, Any]:
    """One node's metrics at ``ts``: daily and hourly waves, offset per node."""
    day = math.sin((ts + node * 977) / 86400 * 2 * math.pi)
    hour = math.sin((ts + node * 131) / 3600 * 2 * math.pi)
    cpu = 35 + 25 * day + 10 * hour
    mem_total = 16 * GIB
    mem_used = int(mem_total * (0.5 + 0.2 * day))
    disk_total = 578_866_917_376
    disk_used = int(disk_total * 0.23 + node * 1_000_000)
    return {
        "cpu": round(cpu, 2),
        "mem_percent": round(mem_used * 100 / mem_total, 3),
        "mem_used": mem_used,
        "mem_total": mem_total,
        "mem_available": mem_total - mem_used,
        "swap_used": 0,
        "swap_total": 2 * GIB,
        "disk_percent": round(disk_used * 100 / disk_total, 3),
        "disk_used": disk_used,
        "disk_total": disk_total,
        "disk_read_bps": round(4096 * (1 + hour), 1),
        "disk_write_bps": round(40960 * (1 + day), 1),
        "net_rx_bps": round(150_000 * (1.2 + hour), 1),
        "net_tx_bps": round(90_000 * (1.2 + day), 1),
        "load1": round(2 + 1.5 * hour, 2),
        "load5": round(2 + 1.2 * hour, 2),
        "load15": round(2 + day, 2),
        "processes": 180 + node % 50,
        "tcp": 40 + node % 200,
    }


def rollup_values(node: int, bucket: int, width: int, interval: int) -> dict[str, Any]:
    """A rollup bucket's values: the sampled value ± a spread as min and max."""
    middle = values(node, bucket + width / 2)
    row: dict[str, Any] = {"count": width // interval}
    for metric in METRICS:
        value = float(middle[metric])
        row[f"{metric}_avg"] = value
        row[f"{metric}_min"] = value * 0.9
        row[f"{metric}_max"] = value * 1.1
    assert len(row) == 1 + len(METRICS) * len(AGGREGATES)
    return row


@dataclass(frozen=True)
class Filled:
    raw: int
    minute: int
    hour: int


def _insert(engine: Engine, table: Table, rows: Iterator[dict[str, Any]]) -> int:
    written = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            with writer(engine).begin() as conn:
                conn.execute(insert(table), batch)
            written, batch = written + len(batch), []
    if batch:
        with writer(engine).begin() as conn:
            conn.execute(insert(table), batch)
        written += len(batch)
    return written


def _raw(nodes: list[str], start: float, end: float, interval: int) -> Iterator[dict[str, Any]]:
    steps = int((end - start) // interval)
    for index, node_id in enumerate(nodes):
        for i in range(steps):
            ts = start + i * interval
            yield {
                "node_id": node_id,
                "boot_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "seq": i,
                "ts": ts,
                "received_at": ts + 0.01,
                "skewed": False,
                **values(index, ts),
                "detail": DETAIL,
            }


def _rollups(
    nodes: list[str], start: float, end: float, width: int, interval: int
) -> Iterator[dict[str, Any]]:
    first = int(start // width) * width
    for index, node_id in enumerate(nodes):
        for bucket in range(first, int(end), width):
            yield {
                "node_id": node_id,
                "bucket": bucket,
                **rollup_values(index, bucket, width, interval),
            }


def fill(
    engine: Engine, *, nodes: int, days: float, now: float, settings: MetricsSettings
) -> Filled:
    """Fill every tier (into empty tables) for ``nodes`` nodes over the last ``days`` days."""
    ids = node_ids(nodes)
    span = days * 86400
    interval = settings.heartbeat_interval
    raw_from = now - min(span, settings.metrics_retention_raw.total_seconds())
    minute_from = now - min(span, settings.metrics_retention_1m.total_seconds())
    filled = Filled(
        raw=_insert(engine, samples, _raw(ids, raw_from, now, interval)),
        minute=_insert(engine, rollup_1m, _rollups(ids, minute_from, now, 60, interval)),
        hour=_insert(engine, rollup_1h, _rollups(ids, now - span, now, 3600, interval)),
    )
    latest_rows = (
        {
            "node_id": node_id,
            "boot_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "seq": 0,
            "ts": now,
            "received_at": now,
            "skewed": False,
            "dropped": 0,
            **values(index, now),
            "detail": DETAIL,
        }
        for index, node_id in enumerate(ids)
    )
    _insert(engine, latest, latest_rows)
    return filled
