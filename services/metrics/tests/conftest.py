"""What the metrics tests share: settings on the test's data directory and Redis, the
database, and heartbeats made from the protocol schema's own examples (validated
against it) appended to the real ``metrics`` stream the way the gateway appends them.

Test modules cannot import from here: they type the callable fixtures.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from redis import Redis
from sqlalchemy import Engine

from sm_metrics.schema import create_tables
from sm_metrics.settings import MetricsSettings
from sm_shared.database import create_database_engine
from sm_shared.datadir import DataDir
from sm_shared.streams import METRICS_STREAM

PROTOCOL = Path(__file__).resolve().parents[3] / "openapi" / "agent-protocol.json"
NODE_A = "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10"
NODE_B = "1c7f5b9f-4d2e-4b68-8e4f-3a2b8d0c6f21"


@pytest.fixture(scope="session")
def protocol() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(PROTOCOL.read_text())
    return document


@pytest.fixture(scope="session")
def heartbeat_validator(protocol: dict[str, Any]) -> Any:
    """Validates one agent message against the protocol document (``oneOf`` at the root)."""
    return jsonschema.Draft7Validator(protocol)


@pytest.fixture
def make_heartbeat(
    protocol: dict[str, Any], heartbeat_validator: Any
) -> Callable[..., dict[str, Any]]:
    """``make_heartbeat(seq=, sent_at=, cpu=, boot_id=, example=0)``: the schema's example
    with those changed, checked against the schema."""
    examples = protocol["definitions"]["heartbeat"]["examples"]

    def make(
        *,
        seq: int,
        sent_at: float,
        cpu: float | None = None,
        boot_id: str | None = None,
        example: int = 0,
        **sample: Any,
    ) -> dict[str, Any]:
        message: dict[str, Any] = copy.deepcopy(examples[example])
        message["seq"] = seq
        message["sent_at"] = sent_at
        if boot_id is not None:
            message["boot_id"] = boot_id
        if cpu is not None:
            message["sample"]["cpu"]["percent"] = cpu
        message["sample"].update(sample)
        heartbeat_validator.validate(message)
        return message

    return make


@pytest.fixture
def settings(data_dir: DataDir, redis_url: str) -> MetricsSettings:
    return MetricsSettings(
        data_dir=data_dir.root,
        redis_url=redis_url,
        validate_responses=True,
        heartbeat_interval=5,
        metrics_consumer="test-consumer",
        metrics_block_ms=50,
    )


@pytest.fixture
def engine(settings: MetricsSettings) -> Iterator[Engine]:
    engine = create_database_engine(settings.database_url)
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def append(redis_client: Redis) -> Callable[..., list[bytes]]:
    """``append(node_id, heartbeats, received_at=)``: XADD them as the gateway does (pipelined)."""

    def add(node_id: str, heartbeats: list[dict[str, Any]], received_at: float) -> list[bytes]:
        pipe = redis_client.pipeline(transaction=False)
        for heartbeat in heartbeats:
            pipe.xadd(
                METRICS_STREAM,
                {"n": node_id, "h": orjson.dumps(heartbeat), "r": repr(received_at)},
            )
        ids: list[bytes] = pipe.execute()
        return ids

    return add


@pytest.fixture
def store(engine: Engine) -> Callable[..., None]:
    """``store(node_id, heartbeats, received_at)``: written as one ingest batch (no Redis)."""
    from sm_metrics.rows import decode
    from sm_metrics.writes import write_batch

    def write(node_id: str, heartbeats: list[dict[str, Any]], received_at: float) -> None:
        fields = [
            {b"n": node_id.encode(), b"h": orjson.dumps(b), b"r": repr(received_at).encode()}
            for b in heartbeats
        ]
        write_batch(engine, [decode(f, skew_threshold=60) for f in fields])

    return write
