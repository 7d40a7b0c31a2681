"""Settings of the gateway (``SM_`` environment variables)."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from sm_shared.routes import DEFAULT_PORTS
from sm_shared.settings import CoreSettings


def default_gateway_id() -> str:
    """Unique per process: routes name the process that holds a connection."""
    return f"{socket.gethostname()}-{os.getpid()}"


class GatewaySettings(CoreSettings):
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORTS["gateway"]
    # The registry, asked who a node credential belongs to (verified with the data dir's CA).
    registry_url: str = "https://127.0.0.1:8101"
    gateway_id: str = Field(default_factory=default_gateway_id, min_length=1, max_length=128)
    # Frames above this close the connection with 1009.
    agent_max_message_bytes: int = Field(default=128 * 1024, ge=4096)
    # A connection that sends no hello within this many seconds is closed (1008).
    hello_timeout: float = Field(default=10.0, gt=0)
    # How long a successful credential check is reused before the registry is asked again.
    auth_cache_seconds: float = Field(default=30.0, ge=0)
    # Buffered heartbeats per second all agents together may send on top of live ones;
    # each welcome offers this divided by the connections held (agent protocol: backlog_rate).
    backlog_budget: float = Field(default=2000.0, gt=0)
    # Heartbeats and execution reports are written to Redis in pipelined batches shared
    # by every connection: a batch is flushed when it holds this many entries or is this old.
    batch_max: int = Field(default=500, ge=1)
    batch_delay: float = Field(default=0.005, ge=0)
    # Entries (heartbeats, execution reports) received but not yet written, and the bytes
    # of their frames; above either, connections stop being read.
    batch_max_pending: int = Field(default=20_000, ge=1)
    batch_max_pending_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Deliveries (execute, cancel) queued for one agent; beyond, they are dropped (the
    # commands service's reconciliation sends them again).
    agent_outbox_max: int = Field(default=256, ge=1)
    # Client event stream (/events/ws): node and command topics per connection, messages
    # and their bytes queued per client (a command on 1,000 nodes publishes ~3,000 events
    # within about a second).
    events_max_topics: int = Field(default=200, ge=1)
    events_max_command_topics: int = Field(default=50, ge=1)
    events_queue: int = Field(default=16_384, ge=1)
    events_queue_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
