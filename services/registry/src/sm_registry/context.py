"""What registry handlers reach through the request: engine, Redis, settings, data directory."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import Engine

from sm_registry.settings import RegistrySettings
from sm_shared.api_app import request_service
from sm_shared.datadir import DataDir


@dataclass(frozen=True)
class RegistryContext:
    engine: Engine
    redis: Redis
    settings: RegistrySettings

    @property
    def data(self) -> DataDir:
        return self.settings.data


def current() -> RegistryContext:
    """The registry context of the request being served."""
    _, resources, settings = request_service(RegistrySettings)
    return RegistryContext(resources.engine, resources.redis, settings)
