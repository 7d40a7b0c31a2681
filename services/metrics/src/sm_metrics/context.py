"""What metrics handlers reach through the request: engine, Redis, settings."""

from __future__ import annotations

from dataclasses import dataclass

from connexion import request
from redis.asyncio import Redis
from sqlalchemy import Engine

from sm_metrics.settings import MetricsSettings
from sm_shared.api_app import ServiceResources, ServiceState


@dataclass(frozen=True)
class MetricsContext:
    engine: Engine
    redis: Redis
    settings: MetricsSettings
    state: ServiceState


def current() -> MetricsContext:
    """The metrics context of the request being served."""
    state = request.state.service
    assert isinstance(state, ServiceState)
    resources = state.extra["resources"]
    settings = state.extra["settings"]
    assert isinstance(resources, ServiceResources)
    assert isinstance(settings, MetricsSettings)
    return MetricsContext(resources.engine, resources.redis, settings, state)
