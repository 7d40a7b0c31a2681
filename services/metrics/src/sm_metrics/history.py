"""Trend queries: one node's metrics over a range, at most ``max_points`` uniform buckets.

The tier is picked from the range and the point budget: raw while the range
lies within the raw retention and buckets finer than a minute are wanted,
else the 1-minute tier while the range lies within its retention and
buckets finer than an hour are wanted, else the 1-hour tier. The step is a
multiple of the tier's resolution; buckets are aligned to multiples of the
step and every bucket in the range is returned — one with no data has count
0 and null values (missing buckets are explicit).

``series`` is what the API and the benchmarks call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Table

from sm_metrics.aggregation import aggregate
from sm_metrics.schema import AGGREGATES, HOUR, METRICS, MINUTE, rollup_1h, rollup_1m, samples
from sm_metrics.settings import MetricsSettings


class EmptyRange(ValueError):
    """``from`` is not before ``to``."""


@dataclass(frozen=True)
class Plan:
    """Which tier answers, with which bucket width, from which aligned start, how many buckets."""

    tier: str
    table: Table
    step: int
    origin: int
    buckets: int
    end: float


def plan(
    start: float, end: float, max_points: int, *, now: float, settings: MetricsSettings
) -> Plan:
    if end <= start:
        raise EmptyRange("`from` must be before `to`")
    needed = math.ceil((end - start) / max_points)
    raw_resolution = settings.heartbeat_interval
    if start >= now - settings.metrics_retention_raw.total_seconds() and needed < MINUTE:
        tier, table, resolution = "raw", samples, raw_resolution
    elif start >= now - settings.metrics_retention_1m.total_seconds() and needed < HOUR:
        tier, table, resolution = "1m", rollup_1m, MINUTE
    else:
        tier, table, resolution = "1h", rollup_1h, HOUR
    step = max(resolution, math.ceil(needed / resolution) * resolution)
    while True:
        origin = int(start // step) * step
        buckets = math.ceil((end - origin) / step)
        if buckets <= max_points:
            return Plan(tier, table, step, origin, buckets, end)
        step += resolution


def series(
    engine: Engine,
    node_id: str,
    *,
    start: float,
    end: float,
    max_points: int,
    now: float,
    settings: MetricsSettings,
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:
    """The node's ``metrics`` over [start, end) as uniform buckets (the API's ``Series``)."""
    chosen = plan(start, end, max_points, now=now, settings=settings)
    with engine.connect() as conn:
        rows = aggregate(
            conn,
            chosen.table,
            node_id,
            start=chosen.origin,
            end=end,
            width=chosen.step,
            origin=chosen.origin,
            metrics=metrics,
        )
    # Plain tuples by position (bucket, count, then avg/min/max per metric): reading
    # SQLAlchemy rows by name costs about a microsecond a value.
    by_bucket = {int(row[0]): tuple(row) for row in rows}
    timestamps = [chosen.origin + i * chosen.step for i in range(chosen.buckets)]
    found = [by_bucket.get(t) for t in timestamps]

    def column(position: int) -> list[Any]:
        return [None if row is None else row[position] for row in found]

    series_out: dict[str, dict[str, list[Any]]] = {}
    for index, metric in enumerate(metrics):
        first = 2 + index * len(AGGREGATES)
        series_out[metric] = {
            name: column(first + offset) for offset, name in enumerate(AGGREGATES)
        }
    return {
        "node_id": node_id,
        "tier": chosen.tier,
        "step": chosen.step,
        "from": chosen.origin,
        "to": end,
        "timestamps": timestamps,
        "count": [0 if row is None else int(row[1]) for row in found],
        "series": series_out,
    }
