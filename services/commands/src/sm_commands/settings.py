"""Settings of the commands service, its worker jobs and its consumer process
(``SM_`` environment variables)."""

from __future__ import annotations

import socket
from datetime import timedelta

from pydantic import Field

from sm_shared.settings import CoreSettings


class CommandsSettings(CoreSettings):
    commands_database_url: str | None = None
    # The registry, asked to resolve targets (verified with the data dir's CA).
    registry_url: str = "https://127.0.0.1:8101"
    registry_timeout: float = Field(default=10.0, gt=0)
    # The results consumer (``smctl serve commands-consumer``): its name in the
    # consumer groups (stable across restarts, so a restarted process re-reads
    # what it had read but not acknowledged), entries per read, how long a read
    # blocks, and after how long entries a dead consumer left pending are taken over.
    commands_consumer: str = Field(default_factory=socket.gethostname, min_length=1)
    commands_batch: int = Field(default=1000, ge=1, le=50_000)
    commands_block_ms: int = Field(default=1000, ge=1, le=60_000)
    commands_claim_idle: timedelta = timedelta(seconds=30)
    # Reconciliation: an execution sent this long ago and not started is sent
    # again (its gateway may have restarted or lost its inbox).
    commands_redeliver_after: timedelta = timedelta(seconds=30)
    # Executions handled per reconciliation round and per dispatch transaction.
    commands_chunk: int = Field(default=2000, ge=1, le=100_000)

    @property
    def database_url(self) -> str:
        return self.commands_database_url or self.data.database_url("commands")
