"""Settings of the registry (``SM_`` environment variables)."""

from __future__ import annotations

from sm_shared.settings import CoreSettings


class RegistrySettings(CoreSettings):
    registry_database_url: str | None = None
    # Lifetime of access tokens the token endpoint issues.
    access_token_ttl: int = 900
    # Where agents open their WebSocket (returned at enrollment); defaults to the
    # gateway on this host at its standalone port.
    gateway_url: str = "wss://127.0.0.1:8104/agent/ws"

    @property
    def database_url(self) -> str:
        return self.registry_database_url or self.data.database_url("registry")
