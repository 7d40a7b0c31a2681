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
