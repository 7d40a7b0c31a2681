"""``/events/ws`` (clients' live events) against a real gateway, registry and Redis.

Every message either side sends is checked against ``openapi/events-protocol.json``
with ``jsonschema``.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ROOT = Path(__file__).resolve().parents[3]
EVENTS = json.loads((ROOT / "openapi" / "events-protocol.json").read_text())
AGENTS = json.loads((ROOT / "openapi" / "agent-protocol.json").read_text())

Gateway = Any
Registry = Any


def _check(message: dict[str, Any], schema: dict[str, Any] = EVENTS) -> None:
    jsonschema.validate(message, schema, cls=jsonschema.Draft7Validator)


def client(gateway: Gateway, token: str | None, **options: Any) -> connect:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return connect(
        gateway.events_url,
        ssl=gateway.verify,
        additional_headers=headers,
        compression=None,
        open_timeout=10,
        proxy=None,
        **options,
    )


def agent(gateway: Gateway, credential: str) -> connect:
    return connect(
        gateway.url,
        ssl=gateway.verify,
        additional_headers={"Authorization": f"Bearer {credential}"},
        compression=None,
        open_timeout=10,
        proxy=None,
    )


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    _check(message)
    await ws.send(orjson.dumps(message).decode())
    return await receive(ws)


async def receive(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    _check(message)
    return message


async def hello_and_heartbeat(ws: ClientConnection, seq: int = 0) -> dict[str, Any]:
    hello = copy.deepcopy(AGENTS["definitions"]["hello"]["examples"][0])
    await ws.send(orjson.dumps(hello).decode())
    await asyncio.wait_for(ws.recv(), 5)  # welcome
    beat = {
        **copy.deepcopy(AGENTS["definitions"]["heartbeat"]["examples"][0]),
        "seq": seq,
        "sent_at": time.time(),
    }
    _check(beat, AGENTS)
    await ws.send(orjson.dumps(beat).decode())
    return beat


async def refused(gateway: Gateway, token: str | None) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as caught:
        async with client(gateway, token):
            pass
    response = caught.value.response
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.status_code, json.loads(response.body or b"{}")


async def _read_all(ws: ClientConnection, within: float) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), within)


async def closed_with(ws: ClientConnection, within: float = 10.0) -> int | None:
    """Read until the gateway closes; the close code."""
    with pytest.raises(ConnectionClosed):
        await _read_all(ws, within)
    return ws.close_code


@pytest.fixture
async def redis(redis_url: str) -> Any:
    connection = Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


# ---- handshake ----


async def test_a_missing_or_bad_token_is_refused_with_401(
    gateway: Gateway, registry: Registry
) -> None:
    assert (await refused(gateway, None))[0] == 401
    assert (await refused(gateway, "not-a-jwt"))[0] == 401
    expired = registry.token("nodes:read", ttl=-10)
    status, problem = await refused(gateway, expired)
    assert status == 401
    assert "not valid" in problem["detail"]


async def test_a_token_without_read_scopes_is_refused_with_403(
    gateway: Gateway, registry: Registry
) -> None:
    status, problem = await refused(gateway, registry.token("commands:run"))
    assert status == 403
    assert "nodes:read" in problem["detail"]


# ---- topics ----


async def test_fleet_sees_nodes_come_online_and_go_offline(
    gateway: Gateway, registry: Registry
) -> None:
    node = registry.enroll()
    async with client(gateway, registry.token("nodes:read")) as ws:
        answer = await ask(ws, {"type": "subscribe", "id": "a", "topics": ["fleet"]})
        assert answer == {"type": "subscribed", "id": "a", "topics": ["fleet"]}
        async with agent(gateway, node["credential"]) as agent_ws:
            await hello_and_heartbeat(agent_ws)
            online = await receive(ws)
            assert online["type"] == "event"
            assert online["event"]["node_id"] == node["node_id"]
            assert online["event"]["status"] == "online"
        offline = await receive(ws)
        assert (offline["event"]["node_id"], offline["event"]["status"]) == (
            node["node_id"],
            "offline",
        )


async def test_a_node_topic_carries_its_live_metrics(gateway: Gateway, registry: Registry) -> None:
    node, other = registry.enroll("machine-1"), registry.enroll("machine-2")
    async with client(gateway, registry.token("metrics:read")) as ws:
        topic = f"node:{node['node_id']}"
        assert (await ask(ws, {"type": "subscribe", "topics": [topic]}))["topics"] == [topic]
        async with (
            agent(gateway, other["credential"]) as other_ws,
            agent(gateway, node["credential"]) as node_ws,
        ):
            await hello_and_heartbeat(other_ws)  # not subscribed: never seen
            sent = await hello_and_heartbeat(node_ws, seq=7)
            live = await receive(ws)
        assert live["type"] == "metrics"
        assert live["node_id"] == node["node_id"]
        assert live["heartbeat"] == sent
        _check(live["heartbeat"], AGENTS)
        gone = await ask(ws, {"type": "unsubscribe", "id": "u", "topics": [topic]})
        assert gone == {"type": "subscribed", "id": "u", "topics": []}


async def test_a_topic_needs_its_scope(gateway: Gateway, registry: Registry) -> None:
    node_topic = "node:0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10"
    async with client(gateway, registry.token("nodes:read")) as ws:
        refusal = await ask(ws, {"type": "subscribe", "id": "x", "topics": ["fleet", node_topic]})
        assert refusal["type"] == "error"
        assert refusal["id"] == "x"
        assert refusal["problem"]["status"] == 403
        assert refusal["problem"]["topics"] == [node_topic]
        assert "metrics:read" in refusal["problem"]["detail"]
        # All or nothing: fleet was not subscribed either; alone it is allowed.
        assert (await ask(ws, {"type": "subscribe", "topics": ["fleet"]}))["topics"] == ["fleet"]


async def test_node_topics_are_bounded(start_gateway: Any, registry: Registry) -> None:
    topics = [f"node:n-{i}" for i in range(3)]
    async with (
        start_gateway(events_max_topics=2) as gw,
        client(gw, registry.token("nodes:read", "metrics:read")) as ws,
    ):
        assert (await ask(ws, {"type": "subscribe", "topics": topics[:2]}))["type"] == "subscribed"
        refusal = await ask(ws, {"type": "subscribe", "topics": ["fleet", topics[2]]})
        assert refusal["problem"]["status"] == 400
        held = await ask(ws, {"type": "subscribe", "topics": ["fleet"]})
        assert held["topics"] == ["fleet", *topics[:2]]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", 1007),
        ("[]", 1007),
        (b"\x00binary", 1003),
        ('{"type": "shout", "topics": ["fleet"]}', 1008),
        ('{"type": "subscribe", "topics": ["everything"]}', 1008),
        ('{"type": "subscribe", "topics": "fleet"}', 1008),
    ],
)
async def test_bad_client_messages_close_the_connection(
    gateway: Gateway, registry: Registry, frame: str | bytes, code: int
) -> None:
    async with client(gateway, registry.token("nodes:read")) as ws:
        await ws.send(frame)
        assert await closed_with(ws) == code


# ---- closing ----


async def test_the_connection_ends_when_the_token_expires(
    gateway: Gateway, registry: Registry
) -> None:
    async with client(gateway, registry.token("nodes:read", ttl=1)) as ws:
        await ask(ws, {"type": "subscribe", "topics": ["fleet"]})
        started = time.monotonic()
        assert await closed_with(ws) == 4401
        assert time.monotonic() - started < 3


@contextlib.asynccontextmanager
async def _default_tls_read_buffer(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", 256 * 1024)
    yield


@pytest.mark.parametrize(
    "bounds",
    [{"events_queue": 8}, {"events_queue": 100_000, "events_queue_bytes": 1024 * 1024}],
    ids=["messages", "bytes"],
)
async def test_a_slow_client_is_dropped_while_another_keeps_receiving(
    start_gateway: Any,
    registry: Registry,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    bounds: dict[str, int],
) -> None:
    topic, channel = "node:busy", "live:busy"
    big = {"type": "metrics", "node_id": "busy", "received_at": 1.0, "heartbeat": {"pad": ""}}
    token = registry.token("metrics:read")
    count = 400
    async with (
        start_gateway(**bounds) as gw,
        # The clients here share the gateway's process, and with it the small TLS read
        # buffer the gateway sets for agents; real clients are processes of their own
        # with asyncio's default, which the fast one needs to keep up with 100 KiB frames.
        _default_tls_read_buffer(monkeypatch),
        # max_queue=1: the slow client's library stops reading the socket at once.
        client(gw, token, max_queue=1, max_size=None) as slow,
        client(gw, token, max_size=None) as fast,
    ):
        for ws in (slow, fast):
            await ask(ws, {"type": "subscribe", "topics": [topic]})
        received = 0

        async def read_fast() -> None:
            nonlocal received
            while received < count:
                message = json.loads(await asyncio.wait_for(fast.recv(), 10))
                assert message["received_at"] == received
                received += 1

        reader = asyncio.create_task(read_fast())
        for i in range(count):  # ~100 KiB each: far more than the sockets' buffers hold
            big["received_at"] = i
            big["heartbeat"] = {"pad": "x" * 100_000}
            await redis.publish(channel, orjson.dumps(big))
        await asyncio.wait_for(reader, 30)
        assert received == count
        assert await closed_with(slow, within=20) == 4008
        async with gw.client() as http:
            metrics = (await http.get("/metrics")).text
        assert 'gateway_event_drops_total{reason="slow"} 1.0' in metrics
