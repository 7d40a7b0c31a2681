"""What commands handlers reach through the request: engine, Redis, queue, resolver, settings."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy import Engine

from sm_commands.settings import CommandsSettings
from sm_commands.targets import Resolver
from sm_shared.api_app import ServiceState, request_service


@dataclass(frozen=True)
class CommandsContext:
    engine: Engine
    redis: Redis
    queue: ArqRedis
    resolver: Resolver
    settings: CommandsSettings
    state: ServiceState


def current() -> CommandsContext:
    """The commands context of the request being served."""
    state, resources, settings = request_service(CommandsSettings)
    resolver = state.extra["resolver"]
    queue = state.extra["queue"]
    assert isinstance(resolver, Resolver)
    assert isinstance(queue, ArqRedis)
    return CommandsContext(resources.engine, resources.redis, queue, resolver, settings, state)
