"""Settings of the metrics service and its ingest process (``SM_`` environment variables).

Retention periods accept seconds (``43200``) or ISO 8601 durations
(``PT12H``, ``P7D``).
"""

from __future__ import annotations

import socket
from datetime import timedelta

from pydantic import Field

from sm_shared.settings import CoreSettings


class MetricsSettings(CoreSettings):
    metrics_database_url: str | None = None
    # How long each tier keeps its rows (raw heartbeats, 1-minute and 1-hour rollups).
    metrics_retention_raw: timedelta = timedelta(hours=12)
    metrics_retention_1m: timedelta = timedelta(days=7)
    metrics_retention_1h: timedelta = timedelta(days=730)
    # The ingest consumer: its name in the consumer group (stable across restarts,
    # so a restarted process re-processes what it had read but not acknowledged),
    # entries per read, how long one read blocks, and after how long an entry
    # another consumer read but never acknowledged is taken over.
    metrics_consumer: str = Field(default_factory=socket.gethostname, min_length=1)
    metrics_batch: int = Field(default=2000, ge=1, le=50_000)
    metrics_block_ms: int = Field(default=1000, ge=1, le=60_000)
    metrics_claim_idle: timedelta = timedelta(seconds=60)
    # A heartbeat stamped this far after its receive time (the agent's clock is ahead) is flagged.
    metrics_skew_threshold: timedelta = timedelta(seconds=60)
    # Rows deleted (retention) or buckets recomputed (rollups) per transaction.
    metrics_chunk: int = Field(default=5000, ge=1, le=1_000_000)

    @property
    def database_url(self) -> str:
        return self.metrics_database_url or self.data.database_url("metrics")
