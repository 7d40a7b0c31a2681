"""Remote control through real gateways, a real registry and Redis, with websockets
clients playing agents: inbox deliveries (``execute``, ``cancel``) reach the node
held, reports land in the ``results`` stream and are acknowledged once written,
connections announce themselves (``online``), and ``/events/ws`` forwards a
command's progress. Deliveries are written the way the commands service writes
them: ``route:{node}`` names the gateway, whose inbox gets the entry.

Every frame either side sends is checked against the contracts with jsonschema.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sm_shared.datadir import DataDir
from sm_shared.streams import RESULTS_STREAM, command_channel, gateway_inbox, route_key

ROOT = Path(__file__).resolve().parents[3]
AGENTS = json.loads((ROOT / "openapi" / "agent-protocol.json").read_text())
EVENTS = json.loads((ROOT / "openapi" / "events-protocol.json").read_text())

Gateway = Any
Registry = Any


def _check(message: Any, schema: dict[str, Any] = AGENTS) -> None:
    jsonschema.validate(message, schema, cls=jsonschema.Draft7Validator)


def example(name: str, **changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        **copy.deepcopy(AGENTS["definitions"][name]["examples"][0]),
        **changes,
    }
    _check(message)
    return message


def agent(gateway: Gateway, credential: str, **options: Any) -> connect:
    return connect(
        gateway.url,
        ssl=gateway.verify,
        additional_headers={"Authorization": f"Bearer {credential}"},
        compression=None,
        open_timeout=10,
        proxy=None,
        **options,
    )


async def send(ws: ClientConnection, message: dict[str, Any]) -> bytes:
    frame = orjson.dumps(message)
    await ws.send(frame.decode())
    return frame


async def receive(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    _check(message)
    return message


async def greet(ws: ClientConnection) -> None:
    await send(ws, example("hello"))
    assert (await receive(ws))["type"] == "welcome"


async def _no_ack_until_closed(ws: ClientConnection) -> None:
    while True:  # nothing but the close may come (no ack for what Redis never got)
        message = await receive(ws)
        assert message["type"] not in ("ack", "result_ack"), message


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        await _no_ack_until_closed(ws)
    return ws.close_code


async def frame_of(ws: ClientConnection, within: float = 5.0) -> bytes:
    """The next frame the agent receives, as bytes: a text frame, as the protocol wants."""
    frame = await asyncio.wait_for(ws.recv(), within)
    assert isinstance(frame, str)
    return frame.encode()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def counter(gateway: Gateway, name: str, **labels: str) -> float:
    """The value of counter ``name`` (with ``labels``) on the gateway's /metrics; 0 if absent."""
    async with gateway.client() as http:
        text = (await http.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_total" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return float(sample.value)
    return 0.0


async def deliver(redis: Redis, node_id: str, kind: str, frame: bytes) -> str:
    """Write a delivery as the commands service does: route:{node} → that gateway's inbox."""
    gateway_id = await redis.get(route_key(node_id))
    assert gateway_id is not None, "the node has no route"
    inbox = gateway_inbox(gateway_id.decode())
    await redis.xadd(inbox, {"kind": kind, "node_id": node_id, "frame": frame})
    return inbox


def execute_frame(execution_id: str = "x_0b5f1d2c3e4a5b6c7d8e9f00", pad: int = 0) -> bytes:
    """An execute frame written with the core's spacing choices (kept byte for byte)."""
    message = example("execute", execution_id=execution_id)
    if pad:
        message["order"] += " " * pad
    _check(message)
    return json.dumps(message).encode()  # ", " and ": " separators: not orjson's


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def results(redis: Redis) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(RESULTS_STREAM)]


# ---- deliveries ----


async def test_execute_and_cancel_reach_the_node_held_as_written(
    gateway: Gateway, registry: Registry, redis: Redis
) -> None:
    node, other = registry.enroll("machine-1"), registry.enroll("machine-2")
    async with (
        agent(gateway, node["credential"]) as ws,
        agent(gateway, other["credential"]) as ws_other,
    ):
        await greet(ws)
        await greet(ws_other)
        execute = execute_frame()
        cancel = json.dumps(example("cancel")).encode()
        inbox = await deliver(redis, node["node_id"], "execute", execute)
        await deliver(redis, node["node_id"], "cancel", cancel)
        assert inbox == "gateway:gw-test:inbox"
        assert await frame_of(ws) == execute  # byte for byte
        assert await frame_of(ws) == cancel  # in order
        with pytest.raises(TimeoutError):  # the other node got nothing
            await asyncio.wait_for(ws_other.recv(), 0.3)
        await eventually(lambda: _empty(redis, inbox))  # handled entries are removed


async def _empty(redis: Redis, stream: str) -> bool:
    return bool(await redis.xlen(stream) == 0)


async def test_deliveries_not_for_a_held_node_or_invalid_are_dropped_and_counted(
    gateway: Gateway, registry: Registry, redis: Redis
) -> None:
    node = registry.enroll()
    inbox = "gateway:gw-test:inbox"
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        # A node this gateway does not hold (it moved, or never came).
        await redis.xadd(inbox, {"kind": "execute", "node_id": "n-elsewhere", "frame": b"{}"})
        await redis.xadd(inbox, {"kind": "cancel", "node_id": "n-elsewhere", "frame": b"{}"})
        # Frames the agent must never see: not JSON, the wrong kind, broken.
        for kind, frame in [
            ("execute", b"\xff not json"),
            ("execute", json.dumps(example("cancel")).encode()),
            ("execute", orjson.dumps({**example("execute"), "signature": "short"})),
        ]:
            await redis.xadd(inbox, {"kind": kind, "node_id": node["node_id"], "frame": frame})
        valid = execute_frame()
        await redis.xadd(inbox, {"kind": "execute", "node_id": node["node_id"], "frame": valid})
        assert await frame_of(ws) == valid
        assert await counter(gateway, "gateway_inbox_drops", kind="execute", reason="not_held") == 1
        assert await counter(gateway, "gateway_inbox_drops", kind="cancel", reason="not_held") == 1
        assert await counter(gateway, "gateway_inbox_drops", kind="execute", reason="invalid") == 3
        assert ws.close_code is None


async def test_a_slow_agent_never_holds_up_deliveries_to_others(
    start_gateway: Any, registry: Registry, redis: Redis
) -> None:
    slow, fast = registry.enroll("machine-slow"), registry.enroll("machine-fast")
    async with (
        start_gateway(gateway_id="gw-outbox", agent_outbox_max=4) as gw,
        # max_queue=1: the slow agent's library stops reading its socket at once.
        agent(gw, slow["credential"], max_queue=1, close_timeout=0.5) as ws_slow,
        agent(gw, fast["credential"]) as ws_fast,
    ):
        await greet(ws_slow)
        await greet(ws_fast)
        big = execute_frame(pad=90_000)  # ~90 KB: socket buffers fill after a few dozen
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(300):
                pipe.xadd(
                    "gateway:gw-outbox:inbox",
                    {"kind": "execute", "node_id": slow["node_id"], "frame": big},
                )
            await pipe.execute()
        started = time.monotonic()
        frame = execute_frame("x_fast")
        await deliver(redis, fast["node_id"], "execute", frame)
        assert await frame_of(ws_fast) == frame
        assert time.monotonic() - started < 3
        await eventually(lambda: _empty(redis, "gateway:gw-outbox:inbox"))
        # What did not fit the slow agent's queue was dropped (reconciliation resends it).
        assert await counter(gw, "gateway_inbox_drops", kind="execute", reason="full") > 0


# ---- reports → results, result_ack ----


async def test_a_connection_announces_itself_in_results(
    gateway: Gateway, registry: Registry, redis: Redis
) -> None:
    node = registry.enroll()
    async with agent(gateway, node["credential"]) as ws:
        await send(ws, example("hello"))
        assert (await receive(ws))["type"] == "welcome"
        await eventually(lambda: _has_entries(redis, 1))
        (online,) = await results(redis)
        assert set(online) == {b"n", b"t", b"r"}
        assert (online[b"n"].decode(), online[b"t"]) == (node["node_id"], b"online")
        assert abs(float(online[b"r"]) - time.time()) < 5
        # By then the route names this gateway: deliveries written now reach the node.
        assert await redis.get(route_key(node["node_id"])) == b"gw-test"


async def _has_entries(redis: Redis, count: int) -> bool:
    return bool(await redis.xlen(RESULTS_STREAM) >= count)


async def test_reports_land_in_results_and_are_acked_once_written(
    gateway: Gateway, registry: Registry, redis: Redis
) -> None:
    node = registry.enroll()
    one, two = "x_one", "x_two"
    now = round(time.time(), 3)
    reports = [
        example("started", execution_id=one, at=now),
        example("output", execution_id=one, seq=1, data="aGVsbG8K"),
        example("output", execution_id=one, seq=2, offset=6, stream="stderr", data="/w=="),
        example("refused", execution_id=two, code="busy", reason="too many at once"),
        example("finished", execution_id=one, seq=3),
    ]
    async with agent(gateway, node["credential"]) as ws:
        await greet(ws)
        await eventually(lambda: _has_entries(redis, 1))  # online
        frames = [await send(ws, report) for report in reports]
        acked: dict[str, int] = {}
        while acked != {one: 3, two: 0}:
            ack = await receive(ws)
            assert ack["type"] == "result_ack"
            execution, upto = ack["execution_id"], ack["upto"]
            assert upto >= acked.get(execution, 0)  # acks only grow
            acked[execution] = upto
            # Acked means written: the report with that seq is in the stream already.
            written = [orjson.loads(f[b"m"]) for f in await results(redis) if f[b"t"] == b"report"]
            assert any(r["execution_id"] == execution and r["seq"] == upto for r in written)
        with pytest.raises(TimeoutError):  # no heartbeat was sent: no ack of them
            await asyncio.wait_for(ws.recv(), 0.3)
    entries = (await results(redis))[1:]
    assert len(entries) == len(reports)
    for fields, frame in zip(entries, frames, strict=True):
        assert set(fields) == {b"n", b"t", b"m", b"r"}
        assert (fields[b"n"].decode(), fields[b"t"]) == (node["node_id"], b"report")
        assert fields[b"m"] == frame  # the frame's bytes exactly as sent
        assert abs(float(fields[b"r"]) - time.time()) < 5
    assert await counter(gateway, "gateway_results_written", type="report") == len(reports)
    assert await counter(gateway, "gateway_agent_messages", type="output") == 2


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 0},  # output numbers from 1
        {"data": "not base64!"},
        {"execution_id": "x_1\n"},
        {"stream": "stdin"},
        {"data": "QUFB" * 5463},  # more than 16 KiB raw
    ],
)
async def test_a_malformed_report_closes_only_its_connection(
    gateway: Gateway, registry: Registry, redis: Redis, change: dict[str, Any]
) -> None:
    good, bad = registry.enroll("machine-good"), registry.enroll("machine-bad")
    async with (
        agent(gateway, good["credential"]) as ws_good,
        agent(gateway, bad["credential"]) as ws_bad,
    ):
        await greet(ws_good)
        await greet(ws_bad)
        await eventually(lambda: _has_entries(redis, 2))  # both online
        await send(ws_bad, {**example("output"), **change})
        assert await closed_with(ws_bad) == 1008
        await send(ws_good, example("started"))
        assert (await receive(ws_good))["type"] == "result_ack"
        assert ws_good.close_code is None
    reported = [f[b"n"].decode() for f in await results(redis) if f[b"t"] == b"report"]
    assert reported == [good["node_id"]]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own (the test kills it); its port is in ``args[2]``."""
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(free_port()), "--bind", "127.0.0.1"),
            *("--save", "", "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
    )
    yield server
    if server.poll() is None:
        server.kill()
        server.wait(10)


async def _pings(client: Redis) -> bool:
    try:
        return bool(await client.ping())
    except (RedisConnectionError, OSError):
        return False


async def test_redis_failing_closes_with_1011_and_acks_no_report(
    start_gateway: Any, registry: Registry, private_redis: subprocess.Popen[bytes]
) -> None:
    node = registry.enroll()
    url = f"redis://127.0.0.1:{private_redis.args[2]!s}/0"  # type: ignore[index]
    private = Redis.from_url(url)
    try:
        await eventually(lambda: _pings(private))
        async with start_gateway(redis_url=url) as gw, agent(gw, node["credential"]) as ws:
            await greet(ws)
            await send(ws, example("started"))
            assert (await receive(ws))["upto"] == 0
            assert await private.xlen(RESULTS_STREAM) == 2  # online, started
            private_redis.kill()
            await asyncio.to_thread(private_redis.wait, 10)
            await send(ws, example("output"))
            assert await closed_with(ws) == 1011
    finally:
        await private.aclose()


# ---- two gateway processes, one Redis ----


@contextlib.contextmanager
def gateway_process(
    data_dir: DataDir, redis_url: str, registry_origin: str, gateway_id: str
) -> Iterator[Any]:
    """A gateway in a process of its own; yields an object like ``gateway`` (url, verify, client)."""
    port = free_port()
    env = {
        **os.environ,
        "SM_DATA_DIR": str(data_dir.root),
        "SM_REDIS_URL": redis_url,
        "SM_REGISTRY_URL": registry_origin,
        "SM_HOST": "127.0.0.1",
        "SM_PORT": str(port),
        "SM_GATEWAY_ID": gateway_id,
        "SM_HEARTBEAT_INTERVAL": "1",
    }
    script = (
        "import asyncio, signal\n"
        "from sm_gateway.server import serve\n"
        "from sm_gateway.settings import GatewaySettings\n"
        "async def main():\n"
        "    task = asyncio.ensure_future(serve(GatewaySettings()))\n"
        "    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)\n"
        "    try:\n"
        "        await task\n"
        "    except asyncio.CancelledError:\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    verify = ssl.create_default_context(cafile=str(data_dir.ca_cert))
    origin = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "the gateway process exited"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{origin}/readyz", verify=verify, trust_env=False).is_success:
                    break
            assert time.monotonic() < deadline, "the gateway process did not start"
            time.sleep(0.05)

        class Remote:
            url = f"wss://127.0.0.1:{port}/agent/ws"

            def __init__(self) -> None:
                self.verify = verify

            def client(self) -> httpx.AsyncClient:
                return httpx.AsyncClient(base_url=origin, verify=verify, trust_env=False)

        yield Remote()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def test_deliveries_reach_nodes_held_by_either_of_two_gateway_processes(
    gateway: Gateway,
    registry: Registry,
    redis: Redis,
    redis_url: str,
    data_dir: DataDir,
    registry_origin: str,
) -> None:
    here, there = registry.enroll("machine-here"), registry.enroll("machine-there")
    with gateway_process(data_dir, redis_url, registry_origin, "gw-far") as far:
        async with (
            agent(gateway, here["credential"]) as ws_here,
            agent(far, there["credential"]) as ws_there,
        ):
            await greet(ws_here)
            await greet(ws_there)
            await eventually(lambda: _has_entries(redis, 2))  # both online
            for node, ws, inbox in [
                (here, ws_here, "gateway:gw-test:inbox"),
                (there, ws_there, "gateway:gw-far:inbox"),
            ]:
                frame = execute_frame(f"x_{node['node_id'][-12:]}")
                assert await deliver(redis, node["node_id"], "execute", frame) == inbox
                assert await frame_of(ws) == frame
            # Written to the wrong gateway (a stale route): dropped there, never sent.
            await redis.xadd(
                "gateway:gw-test:inbox",
                {"kind": "execute", "node_id": there["node_id"], "frame": execute_frame()},
            )
            await eventually(lambda: _empty(redis, "gateway:gw-test:inbox"))
            assert await counter(gateway, "gateway_inbox_drops", reason="not_held") == 1
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws_there.recv(), 0.3)
            # Reports to the far gateway are written and acknowledged there too.
            await send(ws_there, example("started"))
            assert (await receive(ws_there))["type"] == "result_ack"
    nodes = {f[b"n"].decode() for f in await results(redis) if f[b"t"] == b"report"}
    assert nodes == {there["node_id"]}


# ---- /events/ws: command progress ----


def client(gateway: Gateway, token: str) -> connect:
    return connect(
        gateway.events_url,
        ssl=gateway.verify,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        open_timeout=10,
        proxy=None,
    )


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    _check(message, EVENTS)
    await ws.send(orjson.dumps(message).decode())
    return await receive_event(ws)


async def receive_event(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    _check(message, EVENTS)
    return message


def execution_event(command_id: str, state: str) -> dict[str, Any]:
    return {
        "type": "execution",
        "command_id": command_id,
        "execution_id": "x_1",
        "node_id": "n_1",
        "state": state,
        "at": 1764345600.5,
    }


async def test_a_command_topic_carries_its_progress(
    gateway: Gateway, registry: Registry, redis: Redis
) -> None:
    async with client(gateway, registry.token("commands:read")) as ws:  # alone it may connect
        subscribed = await ask(ws, {"type": "subscribe", "id": "s", "topics": ["command:c_1"]})
        assert subscribed == {"type": "subscribed", "id": "s", "topics": ["command:c_1"]}
        running = execution_event("c_1", "running")
        output = {
            **execution_event("c_1", "running"),
            "type": "output",
            "stream": "stdout",
            "offset": 0,
            "data": "aGVsbG8K",
        }
        del output["state"]
        await redis.publish(command_channel("c_2"), orjson.dumps(execution_event("c_2", "sent")))
        for event in (running, output):
            await redis.publish(command_channel("c_1"), orjson.dumps(event))
        for event in (running, output):
            progress = await receive_event(ws)
            assert progress == {"type": "progress", "topic": "command:c_1", "event": event}
        gone = await ask(ws, {"type": "unsubscribe", "topics": ["command:c_1"]})
        assert gone["topics"] == []
        await redis.publish(command_channel("c_1"), orjson.dumps(running))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)


async def test_a_command_topic_needs_commands_read(gateway: Gateway, registry: Registry) -> None:
    async with client(gateway, registry.token("nodes:read", "metrics:read")) as ws:
        refusal = await ask(ws, {"type": "subscribe", "id": "x", "topics": ["command:c_1"]})
        assert refusal["type"] == "error"
        assert refusal["problem"]["status"] == 403
        assert refusal["problem"]["topics"] == ["command:c_1"]
        assert "commands:read" in refusal["problem"]["detail"]
    # A token with none of the read scopes is refused at the handshake.
    with pytest.raises(InvalidStatus) as caught:
        async with client(gateway, registry.token("commands:run")):
            pass
    assert caught.value.response.status_code == 403
    assert b"commands:read" in (caught.value.response.body or b"")


async def test_command_topics_are_bounded_apart_from_node_topics(
    gateway: Gateway, registry: Registry
) -> None:
    commands = [f"command:c_{i}" for i in range(51)]
    nodes = [f"node:n-{i}" for i in range(200)]
    async with client(gateway, registry.token("commands:read", "metrics:read")) as ws:
        assert (await ask(ws, {"type": "subscribe", "topics": commands[:50]}))["type"] == (
            "subscribed"
        )
        refusal = await ask(ws, {"type": "subscribe", "topics": commands[50:]})
        assert refusal["problem"]["status"] == 400
        assert "50 command topics" in refusal["problem"]["detail"]
        held = await ask(ws, {"type": "subscribe", "topics": nodes})  # node topics count apart
        assert len(held["topics"]) == 250
