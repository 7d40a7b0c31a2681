"""Buckets of uniform width and avg/min/max per bucket, from any tier.

From the raw tier a bucket's values are the plain AVG/MIN/MAX of its samples;
from a rollup tier they combine the finer buckets: MIN of minima, MAX of
maxima, and the average weighted by each bucket's sample count (so an hour
built from minutes equals the hour computed from raw samples).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
)

from sm_metrics.schema import AGGREGATES, RESOLUTION, samples


def time_column(table: Table) -> ColumnElement[Any]:
    """The column a tier's rows are placed in time by (a sample's ts, a rollup's bucket)."""
    return table.c.ts if table is samples else table.c.bucket


def bucket_start(
    column: ColumnElement[Any], width: int, origin: int, dialect: str
) -> ColumnElement[int]:
    """``origin + floor((column - origin) / width) * width`` (``column >= origin``)."""
    # Integers written into the statement, not bound: the GROUP BY expression is
    # then textually the selected one (PostgreSQL insists).
    at: ColumnElement[int] = literal_column(str(int(origin)), BigInteger)
    step: ColumnElement[int] = literal_column(str(int(width)), BigInteger)
    offset = (column - at) / step
    # SQLite's CAST truncates, which is floor for the non-negative offsets used here;
    # PostgreSQL's rounds, so it floors first.
    index = cast(func.floor(offset) if dialect == "postgresql" else offset, BigInteger)
    return at + index * step


def aggregate_columns(table: Table, metrics: Sequence[str]) -> list[ColumnElement[Any]]:
    """``count`` and ``<metric>_avg|min|max`` over a group of ``table``'s rows."""
    if table is samples:
        columns: list[ColumnElement[Any]] = [func.count().label("count")]
        for metric in metrics:
            value = table.c[metric]
            columns += [
                func.avg(value).label(f"{metric}_avg"),
                func.min(value).label(f"{metric}_min"),
                func.max(value).label(f"{metric}_max"),
            ]
        return columns
    count = table.c["count"]
    columns = [func.sum(count).label("count")]
    for metric in metrics:
        average = table.c[f"{metric}_avg"]
        weight = func.sum(case((average.is_not(None), count)))
        columns += [
            (func.sum(average * count) / func.nullif(weight, 0)).label(f"{metric}_avg"),
            func.min(table.c[f"{metric}_min"]).label(f"{metric}_min"),
            func.max(table.c[f"{metric}_max"]).label(f"{metric}_max"),
        ]
    return columns


def _in_range(table: Table) -> ColumnElement[bool]:
    when = time_column(table)
    return and_(
        table.c.node_id == bindparam("node_id"),
        when >= bindparam("start"),
        when < bindparam("end"),
    )


@functools.lru_cache(maxsize=64)
def _stored_query(table: Table, metrics: tuple[str, ...]) -> Select[Any]:
    stored: list[ColumnElement[Any]] = [table.c.bucket.label("bucket"), table.c["count"]]
    stored += [table.c[f"{metric}_{name}"] for metric in metrics for name in AGGREGATES]
    return select(*stored).where(_in_range(table)).order_by(time_column(table))


@functools.lru_cache(maxsize=256)
def _grouped_query(
    table: Table, metrics: tuple[str, ...], width: int, origin: int, dialect: str
) -> Select[Any]:
    bucket = bucket_start(time_column(table), width, origin, dialect).label("bucket")
    return (
        select(bucket, *aggregate_columns(table, metrics))
        .where(_in_range(table))
        .group_by(bucket)
        .order_by(bucket)
    )


def aggregate(
    conn: Connection,
    table: Table,
    node_id: str,
    *,
    start: float,
    end: float,
    width: int,
    origin: int,
    metrics: Sequence[str],
    regroup: bool = False,
) -> Sequence[Row[Any]]:
    """One node's buckets of ``width`` seconds (aligned to ``origin``) over [start, end).

    When ``width`` is a rollup tier's own resolution its rows already are the
    buckets: they are read as stored, without regrouping (a GROUP BY over 57
    aggregates costs about 2.5 times the plain read; bench/RESULTS.md) unless
    ``regroup`` asks for the GROUP BY anyway (the tests compare both).
    Statements are built once per shape and reused with bound node and range:
    building 57 aggregate expressions took most of a rollup's time.
    """
    if not regroup and RESOLUTION.get(table.name) == width and origin % width == 0:
        query = _stored_query(table, tuple(metrics))
    else:
        query = _grouped_query(table, tuple(metrics), int(width), int(origin), conn.dialect.name)
    return conn.execute(query, {"node_id": node_id, "start": start, "end": end}).all()
