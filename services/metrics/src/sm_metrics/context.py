"""What metrics handlers reach through the request: engine, Redis, settings."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import Engine

from sm_metrics.settings import MetricsSettings
from sm_shared.api_app import ServiceState, request_service


@dataclass(frozen=True)
class MetricsContext:
    engine: Engine
    redis: Redis
    settings: MetricsSettings
    state: ServiceState


def current() -> MetricsContext:
    """The metrics context of the request being served."""
    state, resources, settings = request_service(MetricsSettings)
    return MetricsContext(resources.engine, resources.redis, settings, state)
