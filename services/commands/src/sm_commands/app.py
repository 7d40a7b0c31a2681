"""The commands service's ASGI app.

Besides the database and Redis every service has, its handlers reach the
registry (target resolution, ``targets.Resolver``) and the arq queue
(dispatch jobs); both are opened with the app and closed with its lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import connexion
from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry

from sm_commands.schema import create_tables
from sm_commands.settings import CommandsSettings
from sm_commands.targets import Resolver
from sm_shared.api_app import ServiceResources, ServiceState, build_api_app
from sm_shared.contracts import spec_path
from sm_shared.database import create_database_engine
from sm_shared.tokens import TokenVerifier

SERVICE = "commands"


def create_app(settings: CommandsSettings) -> connexion.AsyncApp:
    # Tables are created when the app is built (not at import), before it serves.
    engine = create_database_engine(settings.database_url)
    try:
        create_tables(engine)
    finally:
        engine.dispose()
    resources = ServiceResources.open(settings.database_url, settings.redis_url)
    resolver = Resolver.open(
        settings.registry_url,
        str(settings.data.ca_cert),
        settings.data.service_secret,
        settings.registry_timeout,
    )
    queue = ArqRedis(resources.redis.connection_pool)
    state = ServiceState(
        name=SERVICE,
        readiness=resources.readiness(),
        metrics=CollectorRegistry(),
        extra={"resources": resources, "settings": settings, "resolver": resolver, "queue": queue},
    )

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with resources.lifespan():
            try:
                yield
            finally:
                await resolver.aclose()

    return build_api_app(
        name="sm_commands",
        spec=spec_path("sm_commands", "commands.yaml"),
        package="sm_commands.api",
        verifier=TokenVerifier(settings.data),
        state=state,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        validate_responses=settings.validate_responses,
    )
