"""What the commands tests share: settings on the test's data directory, Redis and a real
registry, the database, the dispatcher, and reports shaped by the protocol's own schema.

Test modules cannot import from here: they take the fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from redis.asyncio import Redis
from sqlalchemy import Engine

from sm_commands.dispatch import Dispatcher
from sm_commands.schema import create_tables
from sm_commands.settings import CommandsSettings
from sm_shared.command_keys import load_command_key
from sm_shared.database import create_database_engine
from sm_shared.datadir import DataDir

PROTOCOL = Path(__file__).resolve().parents[3] / "openapi" / "agent-protocol.json"


@pytest.fixture(scope="session")
def protocol() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(PROTOCOL.read_text())
    return document


@pytest.fixture(scope="session")
def validate_message(protocol: dict[str, Any]) -> Callable[[dict[str, Any], str], None]:
    """``validate_message(message, definition)``: checks it against the protocol's definition."""

    def validate(message: dict[str, Any], definition: str) -> None:
        schema = {**protocol["definitions"][definition], "definitions": protocol["definitions"]}
        jsonschema.Draft7Validator(schema).validate(message)

    return validate


@pytest.fixture
def settings(data_dir: DataDir, redis_url: str) -> CommandsSettings:
    return CommandsSettings(
        data_dir=data_dir.root,
        redis_url=redis_url,
        validate_responses=True,
        commands_consumer="tests",
        commands_block_ms=50,
    )


@pytest.fixture
def engine(settings: CommandsSettings) -> Iterator[Engine]:
    engine = create_database_engine(settings.database_url)
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
async def aredis(redis_url: str) -> Any:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def dispatcher(engine: Engine, aredis: Redis, data_dir: DataDir) -> Dispatcher:
    return Dispatcher(engine, aredis, load_command_key(data_dir))
