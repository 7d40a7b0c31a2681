"""``/agent/ws`` against a real registry and Redis: handshake refusals, protocol, presence."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sm_agent.facts import gather_facts

# The running services come from conftest.py fixtures (types there: Gateway, Registry).
Gateway = Any
Registry = Any

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "openapi" / "agent-protocol.json").read_text()
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


# ---- heartbeats → the metrics stream, acks ----


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    _check(message)
    return message


async def test_heartbeats_land_in_the_metrics_stream_and_are_acked(
    gateway: Gateway, node: dict[str, Any], redis: Redis
) -> None:
    sent: list[str] = []
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        for seq in range(3):
            frame = orjson.dumps(heartbeat(seq, example=seq % 2)).decode()
            sent.append(frame)
            await ws.send(frame)
        upto = 0
        while upto < 3:
            ack = await recv_json(ws)
            assert ack["type"] == "ack"
            assert ack["upto"] > upto  # cumulative, growing
            upto = ack["upto"]
    entries = await redis.xrange("metrics")
    assert len(entries) == 3
    for (_, fields), frame in zip(entries, sent, strict=True):
        assert set(fields) == {b"n", b"h", b"r"}
        assert fields[b"n"].decode() == node["node_id"]
        assert fields[b"h"] == frame.encode()  # the frame's bytes exactly as sent
        assert abs(float(fields[b"r"]) - time.time()) < 5


async def test_an_ack_never_runs_ahead_of_the_stream(
    gateway: Gateway, node: dict[str, Any], redis: Redis
) -> None:
    count = 200
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        for seq in range(count):
            await send(ws, heartbeat(seq))
        upto = 0
        while upto < count:
            upto = (await recv_json(ws))["upto"]
            # Acked means written: the stream holds at least that many at that moment.
            assert await redis.xlen("metrics") >= upto
    assert await redis.xlen("metrics") == count


async def test_heartbeats_of_many_connections_share_batches(
    gateway: Gateway, registry: Registry, redis: Redis
) -> None:
    nodes = [registry.enroll(f"machine-{i}") for i in range(5)]
    connections = [agent(gateway, n["credential"]) for n in nodes]
    sockets = [await c.__aenter__() for c in connections]
    try:
        for ws in sockets:
            await greet(ws)
        for ws in sockets:
            for seq in range(4):
                await send(ws, heartbeat(seq))
        for ws in sockets:
            upto = 0
            while upto < 4:
                upto = (await recv_json(ws))["upto"]
    finally:
        for c in connections:
            await c.__aexit__(None, None, None)
    assert await redis.xlen("metrics") == 20
    async with gateway.client() as http:
        text = (await http.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    written = families["gateway_heartbeats_written"].samples[0].value
    batches = next(
        s.value
        for s in families["gateway_heartbeat_batch_size"].samples
        if s.name.endswith("_count")
    )
    assert written == 20
    assert batches < 20  # heartbeats of several connections went out together


async def test_live_heartbeats_are_published_on_the_node_channel(
    gateway: Gateway, node: dict[str, Any], redis: Redis
) -> None:
    live = redis.pubsub()
    await live.subscribe(f"live:{node['node_id']}")
    await live.get_message(timeout=1)
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        newer, older = heartbeat(5), heartbeat(4)
        older["sent_at"] = newer["sent_at"] - 60  # a buffered one, sent after a newer one
        await send(ws, newer)
        assert (await recv_json(ws))["upto"] == 1
        await send(ws, older)
        assert (await recv_json(ws))["upto"] == 2
    message = await live.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    body = json.loads(message["data"])
    assert set(body) == {"type", "node_id", "received_at", "heartbeat"}
    assert (body["type"], body["node_id"]) == ("metrics", node["node_id"])
    assert body["heartbeat"] == newer
    # The older (buffered) heartbeat is stored but not published as live.
    assert await live.get_message(ignore_subscribe_messages=True, timeout=0.3) is None
    await live.aclose()  # type: ignore[no-untyped-call]


async def test_backlog_rate_divides_the_budget_among_connections(
    start_gateway: Any, registry: Registry
) -> None:
    nodes = [registry.enroll(f"machine-{i}") for i in range(4)]
    async with start_gateway(backlog_budget=100.0) as gw:
        connections = [agent(gw, n["credential"]) for n in nodes]
        rates = []
        try:
            for c in connections:
                rates.append((await greet(await c.__aenter__()))["backlog_rate"])
        finally:
            for c in connections:
                await c.__aexit__(None, None, None)
    assert rates == [100.0, 50.0, 33.333, 25.0]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own (a test may kill it); its port is in ``args[2]``."""
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(free_port()),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    yield server
    if server.poll() is None:
        server.kill()
        server.wait(10)


async def _no_ack_until_closed(ws: ClientConnection) -> None:
    while True:  # no ack may come for a heartbeat Redis never got
        assert (await recv_json(ws))["type"] != "ack"


async def test_redis_failing_closes_with_1011_and_acks_nothing_unwritten(
    start_gateway: Any, node: dict[str, Any], private_redis: subprocess.Popen[bytes]
) -> None:
    url = f"redis://127.0.0.1:{private_redis.args[2]}/0"  # type: ignore[index]
    private = Redis.from_url(url)
    try:
        await eventually(lambda: _pings(private))
        async with start_gateway(redis_url=url) as gw, agent(gw, node["credential"]) as ws:
            await greet(ws)
            await send(ws, heartbeat(0))
            assert (await recv_json(ws))["upto"] == 1
            assert await private.xlen("metrics") == 1
            private_redis.kill()
            await asyncio.to_thread(private_redis.wait, 10)
            await send(ws, heartbeat(1))
            with pytest.raises(ConnectionClosed):
                await _no_ack_until_closed(ws)
            assert ws.close_code == 1011
    finally:
        await private.aclose()


async def _pings(client: Redis) -> bool:
    try:
        return bool(await client.ping())
    except (RedisConnectionError, OSError):
        return False


# ---- facts → the registry ----


async def test_facts_of_hello_and_facts_messages_reach_the_registry(
    gateway: Gateway, registry: Registry, node: dict[str, Any], redis: Redis
) -> None:
    node_id = node["node_id"]

    async def hostname_is(name: str) -> bool:
        return (await asyncio.to_thread(registry.node, node_id))["hostname"] == name

    async with agent(gateway, node["credential"]) as ws:
        first = hello()
        first["facts"] = {**first["facts"], "hostname": "renamed-at-hello"}
        await send(ws, first)
        await recv_json(ws)
        await eventually(lambda: hostname_is("renamed-at-hello"))
        facts = {"v": 1, "type": "facts", "facts": {**first["facts"], "hostname": "renamed-later"}}
        _check(facts)
        await send(ws, facts)
        await eventually(lambda: hostname_is("renamed-later"))
        # Heartbeats go on meanwhile, and the connection stays open.
        await send(ws, heartbeat(0))
        assert (await recv_json(ws))["upto"] == 1
    stored = registry.node(node_id)
    assert stored["facts"] == facts["facts"]
    assert stored["name"] == "renamed-later"  # never renamed by hand: it follows the host name
    assert await redis.hexists("facts-digest", node_id)


async def test_unchanged_facts_are_not_sent_again(
    gateway: Gateway, registry: Registry, node: dict[str, Any]
) -> None:
    for _ in range(2):
        async with agent(gateway, node["credential"]) as ws:
            await greet(ws)
            await send(ws, heartbeat(0))
            await recv_json(ws)
    async with gateway.client() as http:
        text = (await http.get("/metrics")).text
    outcomes = {
        s.labels["outcome"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "gateway_facts_updates"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert outcomes == {"stored": 1.0}  # the second hello carried the same facts


# ---- revocation ----


async def test_a_node_deleted_while_connected_is_closed_with_4003_at_once(
    gateway: Gateway, registry: Registry, node: dict[str, Any], redis: Redis
) -> None:
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        started = time.monotonic()
        await asyncio.to_thread(registry.delete_node, node["node_id"])
        code, _ = await closed_with(ws)
        assert code == 4003
        assert time.monotonic() - started < 1.0
    # It cannot come back: refused at the handshake, cache or not.
    status, _ = await refused(gateway, node["credential"])
    assert status == 403
    await eventually(lambda: _absent(redis, f"presence:{node['node_id']}"))


async def test_a_revoke_in_the_inbox_closes_the_connection(
    gateway: Gateway, registry: Registry, redis: Redis
) -> None:
    held, other = registry.enroll("machine-held"), registry.enroll("machine-other")
    async with (
        agent(gateway, held["credential"]) as ws_held,
        agent(gateway, other["credential"]) as ws_other,
    ):
        await greet(ws_held)
        await greet(ws_other)
        inbox = "gateway:gw-test:inbox"
        await redis.xadd(inbox, {"kind": "teleport", "node_id": held["node_id"]})
        await redis.xadd(inbox, {"kind": "revoke", "node_id": held["node_id"], "reason": "deleted"})
        assert (await closed_with(ws_held))[0] == 4003
        await send(ws_other, heartbeat(0))
        assert (await recv_json(ws_other))["upto"] == 1  # the other connection is undisturbed
        await eventually(lambda: _empty_stream(redis, inbox))  # handled entries are removed


async def _empty_stream(redis: Redis, name: str) -> bool:
    return await redis.xlen(name) == 0


async def test_every_gateway_forgets_a_revoked_credential(
    gateway: Gateway, start_gateway: Any, registry: Registry, node: dict[str, Any]
) -> None:
    async with start_gateway(gateway_id="gw-other", auth_cache_seconds=600) as other:
        # The other gateway authenticated the node once: a success it caches.
        async with agent(other, node["credential"]) as ws:
            await greet(ws)
        # The node now lives on the first gateway; the other one holds no connection.
        async with agent(gateway, node["credential"]) as ws:
            await greet(ws)
            await asyncio.to_thread(registry.delete_node, node["node_id"])
            assert (await closed_with(ws))[0] == 4003
        # Only the revocations stream told the other gateway: its cache is evicted.
        async with other.client() as http:
            await eventually(lambda: _revocations_read(http))
        status, _ = await refused(other, node["credential"])
        assert status == 403


async def _revocations_read(http: Any) -> bool:
    text = (await http.get("/metrics")).text
    return "gateway_revocations_total 1.0" in text


async def test_the_inbox_is_deleted_on_a_clean_shutdown(start_gateway: Any, redis: Redis) -> None:
    inbox = "gateway:gw-leaving:inbox"
    async with start_gateway(gateway_id="gw-leaving"):
        await redis.xadd(inbox, {"kind": "nothing-known"})
        await eventually(lambda: _empty_stream(redis, inbox))
        assert await redis.exists(inbox)
    assert not await redis.exists(inbox)
