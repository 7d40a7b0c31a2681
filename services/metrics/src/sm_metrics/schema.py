"""The metrics service's tables (SQLAlchemy Core, on a MetaData of its own).

* ``samples``: the raw tier, one WIDE row per heartbeat: its key (node, boot
  id, sequence), its time (``ts`` = the agent's ``sent_at``), the gateway's
  receive time, a skew flag, one column per numeric metric and a compact JSON
  ``detail`` (per core, per mount, per interface, uptime). Unique on (node,
  boot id, sequence): the ingest is idempotent.
* ``rollup_1m`` and ``rollup_1h``: per node and bucket start (Unix seconds),
  the sample count and avg/min/max of every metric.
* ``latest``: one row per node, upserted with each batch (never computed by scanning).
* ``touched``: the (node, minute) buckets that received samples since the last
  rollup; ``version`` grows with each touch, so a rollup deletes only the
  touches it has seen.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

from sm_shared import database

metadata = MetaData()

# Every numeric metric: its column type in the raw and latest tables. Sizes are
# bytes, rates bytes per second, CPU and the percentages 0-100.
METRIC_TYPES: Final[dict[str, type[TypeEngine[float]] | type[TypeEngine[int]]]] = {
    "cpu": Float,
    "mem_percent": Float,
    "mem_used": BigInteger,
    "mem_total": BigInteger,
    "mem_available": BigInteger,
    "swap_used": BigInteger,
    "swap_total": BigInteger,
    "disk_percent": Float,
    "disk_used": BigInteger,
    "disk_total": BigInteger,
    "disk_read_bps": Float,
    "disk_write_bps": Float,
    "net_rx_bps": Float,
    "net_tx_bps": Float,
    "load1": Float,
    "load5": Float,
    "load15": Float,
    "processes": BigInteger,
    "tcp": BigInteger,
}
METRICS: Final[tuple[str, ...]] = tuple(METRIC_TYPES)
AGGREGATES: Final = ("avg", "min", "max")
NODE_ID_LENGTH: Final = 64
BOOT_ID_LENGTH: Final = 64


def _metric_columns() -> list[Column[object]]:
    return [Column(name, kind, nullable=True) for name, kind in METRIC_TYPES.items()]


def _heartbeat_columns(*, node_key: bool) -> list[Column[object]]:
    """What a stored heartbeat holds (the raw tier's row, a node's latest row)."""
    return [
        Column("node_id", String(NODE_ID_LENGTH), primary_key=node_key, nullable=False),
        Column("boot_id", String(BOOT_ID_LENGTH), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("ts", Float, nullable=False),
        Column("received_at", Float, nullable=False),
        Column("skewed", Boolean, nullable=False),
        *_metric_columns(),
        Column("detail", LargeBinary, nullable=False),
    ]


samples = Table(
    "samples",
    metadata,
    *_heartbeat_columns(node_key=False),
    UniqueConstraint("node_id", "boot_id", "seq", name="samples_key"),
    Index("samples_node_ts", "node_id", "ts"),
)


def _rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("node_id", String(NODE_ID_LENGTH), primary_key=True),
        Column("bucket", BigInteger, primary_key=True, autoincrement=False),
        Column("count", Integer, nullable=False),
        *[
            Column(f"{metric}_{aggregate}", Float, nullable=True)
            for metric in METRICS
            for aggregate in AGGREGATES
        ],
        sqlite_with_rowid=False,
    )


rollup_1m = _rollup("rollup_1m")
rollup_1h = _rollup("rollup_1h")

# The rollup tiers' bucket widths (seconds); their rows are stored aligned to them.
MINUTE: Final = 60
HOUR: Final = 3600
RESOLUTION: Final = {rollup_1m.name: MINUTE, rollup_1h.name: HOUR}

latest = Table(
    "latest",
    metadata,
    *_heartbeat_columns(node_key=True),
    # Heartbeats the agent's offline buffer discarded (its own counter).
    Column("dropped", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

touched = Table(
    "touched",
    metadata,
    Column("node_id", String(NODE_ID_LENGTH), primary_key=True),
    Column("minute", BigInteger, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    sqlite_with_rowid=False,
)


def create_tables(engine: Engine) -> None:
    """Create every metrics table that does not exist yet (once per engine and process)."""
    database.create_tables(engine, metadata)
