"""``/agent/ws`` against a real registry and Redis: handshake refusals, protocol, presence."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sm_agent.facts import gather_facts

# The running services come from conftest.py fixtures (types there: Gateway, Registry).
Gateway = Any
Registry = Any

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "openapi" / "agent-protocol.json").read_text()
)


def _check(message: dict[str, Any]) -> None:
    jsonschema.validate(message, SCHEMA, cls=jsonschema.Draft7Validator)


def hello(versions: list[int] | None = None) -> dict[str, Any]:
    message = {
        "v": 1,
        "type": "hello",
        "versions": versions or [1],
        "agent_version": "0.1.0",
        "facts": gather_facts(),
    }
    if versions is None:
        _check(message)
    return message


def heartbeat(seq: int = 0, example: int = 0) -> dict[str, Any]:
    """A heartbeat built from the contract's examples (not from the agent's collectors)."""
    message = {
        **copy.deepcopy(SCHEMA["definitions"]["heartbeat"]["examples"][example]),
        "boot_id": "boot-test",
        "seq": seq,
        "sent_at": round(time.time(), 3),
    }
    _check(message)
    return message


def agent(gateway: Gateway, credential: str | None) -> connect:
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    return connect(
        gateway.url,
        ssl=gateway.verify,
        additional_headers=headers,
        compression=None,
        open_timeout=10,
        proxy=None,
    )


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def greet(ws: ClientConnection) -> dict[str, Any]:
    await send(ws, hello())
    welcome: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    _check(welcome)
    return welcome


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code, ws.close_reason


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until ``check`` holds: the gateway finishes a close after the client sees it."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def refused(gateway: Gateway, credential: str | None) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as caught:
        async with agent(gateway, credential):
            pass
    response = caught.value.response
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.status_code, json.loads(response.body or b"{}")


@pytest.fixture
def node(registry: Registry) -> dict[str, Any]:
    return registry.enroll()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _present(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))


async def _absent(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


async def _no_connections(gateway: Gateway) -> bool:
    async with gateway.client() as http:
        text = (await http.get("/metrics")).text
    return "gateway_agent_connections 0.0" in text


# ---- handshake ----


async def test_no_credential_is_refused_with_401(gateway: Gateway) -> None:
    status, problem = await refused(gateway, None)
    assert status == 401
    assert "credential" in problem["detail"]


async def test_a_malformed_credential_is_refused_with_401(gateway: Gateway) -> None:
    status, _ = await refused(gateway, "not-a-credential")
    assert status == 401


async def test_an_unknown_credential_is_refused_with_401(
    gateway: Gateway, node: dict[str, Any]
) -> None:
    wrong = node["credential"].rsplit(".", 1)[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    status, _ = await refused(gateway, wrong)
    assert status == 401


async def test_a_deleted_node_is_refused_with_403(
    gateway: Gateway, registry: Registry, node: dict[str, Any]
) -> None:
    registry.delete_node(node["node_id"])
    status, problem = await refused(gateway, node["credential"])
    assert status == 403
    assert "revoked" in problem["detail"]


async def test_registry_unreachable_is_503(start_gateway: Any, node: dict[str, Any]) -> None:
    async with start_gateway(registry_url="https://127.0.0.1:9") as lonely:
        status, problem = await refused(lonely, node["credential"])
    assert status == 503
    assert "retry" in problem["detail"]


# ---- protocol ----


async def test_hello_welcome_and_heartbeats_set_presence(
    gateway: Gateway, node: dict[str, Any], redis: Redis
) -> None:
    node_id = node["node_id"]
    events = redis.pubsub()
    await events.subscribe("events")
    await events.get_message(timeout=1)  # the subscription confirmation

    async with agent(gateway, node["credential"]) as ws:
        welcome = await greet(ws)
        assert welcome == {
            "v": 1,
            "type": "welcome",
            "node_id": node_id,
            "heartbeat_interval": 1.0,
            "backlog_rate": 1000.0,  # the whole budget (2000/s), within the contract's range
        }
        online = await events.get_message(ignore_subscribe_messages=True, timeout=5)
        assert online is not None
        assert json.loads(online["data"])["status"] == "online"

        await redis.delete(f"presence:{node_id}")  # so only the heartbeat can bring it back
        await send(ws, heartbeat(0))
        await eventually(lambda: _present(redis, f"presence:{node_id}"))
        presence = json.loads(await redis.get(f"presence:{node_id}"))
        assert presence["gateway"] == "gw-test"
        assert presence["last_seen"] >= presence["connected_at"]
        assert 0 < await redis.pttl(f"presence:{node_id}") <= 3000
        assert await redis.get(f"route:{node_id}") == b"gw-test"
        assert 0 < await redis.pttl(f"route:{node_id}") <= 3000
        last_seen = float(await redis.hget("last-seen", node_id))
        assert abs(last_seen - time.time()) < 5
        # Presence had expired: the heartbeat made the node come online again.
        again = await events.get_message(ignore_subscribe_messages=True, timeout=5)
        assert again is not None
        assert json.loads(again["data"])["status"] == "online"

    offline = await events.get_message(ignore_subscribe_messages=True, timeout=5)
    assert offline is not None
    event = json.loads(offline["data"])
    assert event["status"] == "offline"
    assert event["node_id"] == node_id
    assert not await redis.exists(f"presence:{node_id}")
    assert not await redis.exists(f"route:{node_id}")
    assert await redis.hget("last-seen", node_id) is not None
    await events.aclose()


async def test_the_node_list_shows_it_online(
    gateway: Gateway, registry: Registry, node: dict[str, Any]
) -> None:
    def status() -> str:
        with registry.client() as client:
            response = client.get(
                f"/api/v1/nodes/{node['node_id']}",
                headers={"Authorization": f"Bearer {registry.admin_token()}"},
            )
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        await send(ws, heartbeat())
        await asyncio.sleep(0.1)
        assert await asyncio.to_thread(status) == "online"

    async def offline() -> bool:
        return await asyncio.to_thread(status) == "offline"

    await eventually(offline)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", 1007),
        ("[1, 2, 3]", 1007),
        (b"\x00\x01binary", 1003),
        ('{"v": 1, "type": "launch"}', 1008),
        ('{"v": 1}', 1008),
    ],
)
async def test_bad_first_frames(
    gateway: Gateway, node: dict[str, Any], frame: str | bytes, code: int
) -> None:
    async with agent(gateway, node["credential"]) as ws:
        await ws.send(frame)
        assert (await closed_with(ws))[0] == code


async def test_heartbeat_before_hello_is_a_policy_violation(
    gateway: Gateway, node: dict[str, Any]
) -> None:
    async with agent(gateway, node["credential"]) as ws:
        await send(ws, heartbeat())
        code, reason = await closed_with(ws)
    assert code == 1008
    assert reason is not None
    assert "hello" in reason


async def test_an_unsupported_version_is_closed_with_4001(
    gateway: Gateway, node: dict[str, Any]
) -> None:
    async with agent(gateway, node["credential"]) as ws:
        await send(ws, {**hello([2, 3]), "v": 3})
        code, reason = await closed_with(ws)
    assert code == 4001
    assert reason is not None
    assert "speaks 1" in reason


@pytest.mark.parametrize(
    "change",
    [
        {"seq": "one"},
        {"seq": -1},
        {"v": 2},
        {"unknown": True},
        {"sample": {"cpu": {"percent": 250}, "memory": {}, "load": [], "uptime": 1}},
    ],
)
async def test_schema_violations_after_hello_close_with_1008(
    gateway: Gateway, node: dict[str, Any], change: dict[str, Any]
) -> None:
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        await send(ws, {**heartbeat(), **change})
        assert (await closed_with(ws))[0] == 1008


async def test_malformed_json_after_hello_closes_with_1007(
    gateway: Gateway, node: dict[str, Any]
) -> None:
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        await ws.send('{"v": 1, "type": "heartbeat",')
        assert (await closed_with(ws))[0] == 1007


async def test_a_second_hello_closes_with_1008(gateway: Gateway, node: dict[str, Any]) -> None:
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        await send(ws, hello())
        assert (await closed_with(ws))[0] == 1008


async def test_an_oversized_frame_closes_with_1009(gateway: Gateway, node: dict[str, Any]) -> None:
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        big = heartbeat()
        big["boot_id"] = "x" * (gateway.settings.agent_max_message_bytes + 1)
        await send(ws, big)
        assert (await closed_with(ws))[0] == 1009


async def test_no_hello_in_time_closes_with_1008(gateway: Gateway, node: dict[str, Any]) -> None:
    async with agent(gateway, node["credential"]) as ws:
        code, reason = await closed_with(ws)
    assert code == 1008
    assert reason is not None
    assert "no hello" in reason


async def test_one_bad_agent_does_not_disturb_another(
    gateway: Gateway, registry: Registry, redis: Redis
) -> None:
    good, bad = registry.enroll("machine-good"), registry.enroll("machine-bad")
    async with (
        agent(gateway, good["credential"]) as ws_good,
        agent(gateway, bad["credential"]) as ws_bad,
    ):
        await greet(ws_good)
        await greet(ws_bad)
        await ws_bad.send("garbage")
        assert (await closed_with(ws_bad))[0] == 1007
        await send(ws_good, heartbeat(1))
        await asyncio.sleep(0.1)
        assert ws_good.close_code is None
        assert await redis.exists(f"presence:{good['node_id']}")
        assert not await redis.exists(f"presence:{bad['node_id']}")


async def test_a_newer_connection_replaces_the_older_with_4004(
    gateway: Gateway, node: dict[str, Any], redis: Redis
) -> None:
    key = f"presence:{node['node_id']}"
    async with agent(gateway, node["credential"]) as older:
        await greet(older)
        first = json.loads(await redis.get(key))
        async with agent(gateway, node["credential"]) as newer:
            await asyncio.sleep(0.01)  # a distinct connected_at
            await greet(newer)
            assert (await closed_with(older))[0] == 4004
            await asyncio.sleep(0.1)
            current = json.loads(await redis.get(key))
            assert current["connected_at"] > first["connected_at"]
            await send(newer, heartbeat())
            await asyncio.sleep(0.1)
            assert await redis.exists(key)
        await eventually(lambda: _absent(redis, key))


async def test_presence_of_another_gateway_is_left_alone(
    gateway: Gateway, node: dict[str, Any], redis: Redis
) -> None:
    key = f"presence:{node['node_id']}"
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        # Meanwhile the node reached another gateway (e.g. after a network split).
        elsewhere = orjson.dumps({"gateway": "gw-other", "connected_at": 1.0, "last_seen": 2.0})
        await redis.set(key, elsewhere, px=3000)
        await redis.set(f"route:{node['node_id']}", "gw-other", px=3000)
    await eventually(lambda: _no_connections(gateway))  # the session has ended
    assert await redis.get(key) == elsewhere
    assert await redis.get(f"route:{node['node_id']}") == b"gw-other"
