"""The monitoring pipeline end to end: real ``sm-agent`` processes against a real ``up``.

Agent → TLS WebSocket → gateway → ``metrics`` stream → ingest → SQLite →
metrics API, and presence → the registry's node list. Network hiccups are
real too: the agent reaches the gateway through a TCP relay the test can cut,
so the agent runs on, buffers on disk and flushes after the link returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sm_ctl import banner
from sm_ctl.instance import UpProcess, free_port_pair
from sm_shared.datadir import DataDir
from sm_shared.scopes import ALL_SCOPES
from sm_shared.tokens import issue_access_token

pytestmark = pytest.mark.slow

SM_AGENT = str(Path(sys.executable).with_name("sm-agent"))
STRICT = {"SM_VALIDATE_RESPONSES": "true"}
SERIES_PATH = "/api/v1/metrics/nodes/{node_id}/series"


def wait_for(check: Callable[[], bool], within: float, what: str, step: float = 0.05) -> float:
    """Poll ``check`` until it holds; the seconds it took."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < within, f"timed out after {within:g} s waiting for {what}"
        time.sleep(step)
    return time.monotonic() - began


class Api:
    """The core's REST API with an admin token, verified with the core's CA."""

    def __init__(self, data: DataDir, url: str) -> None:
        token = issue_access_token(
            data, subject="test", client_id="sm-admin", scopes=ALL_SCOPES, ttl=900
        )
        self.http = httpx.Client(
            base_url=url,
            verify=ssl.create_default_context(cafile=str(data.ca_cert)),
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=10,
        )

    def close(self) -> None:
        self.http.close()

    def nodes(self, **params: str) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/nodes", params=params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def node(self, node_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/nodes/{node_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def status(self, node_id: str) -> str:
        return str(self.node(node_id)["status"])

    def series(self, node_id: str, start: float, end: float, points: int) -> dict[str, Any] | None:
        """The node's cpu series; None while nothing of the node is stored yet (404)."""
        response = self.http.get(
            SERIES_PATH.format(node_id=node_id),
            params={"metrics": "cpu", "from": start, "to": end, "max_points": points},
        )
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def sample_times(self, node_id: str, start: float, end: float) -> list[float]:
        """Starts of the 1 s raw buckets holding a sample of the node in [start, end)."""
        body = self.series(node_id, start, end, points=int(end - start) + 2)
        if body is None:
            return []
        assert (body["tier"], body["step"]) == ("raw", 1), body
        return [float(t) for t, n in zip(body["timestamps"], body["count"], strict=True) if n]


class Relay:
    """A TCP relay in a thread: agent ↔ relay ↔ gateway.

    ``stall`` stops forwarding while every connection stays open (a network that
    silently loses packets: nobody sees a close); ``cut`` drops every connection
    and refuses new ones until ``open``.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port_pair()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    async def _open(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stall(self) -> None:
        self._flowing.clear()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def open(self) -> None:
        self._call(self._open())

    def stall(self) -> None:
        self._call(self._stall())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class Agent:
    """One ``sm-agent run`` process with its own configuration and state directory."""

    def __init__(self, root: Path, server: str, key: str, gateway_url: str | None = None) -> None:
        self.state = root / "state"
        self.config = root / "agent.toml"
        root.mkdir(parents=True, exist_ok=True)
        lines = [f'server = "{server}"', f'enrollment_key = "{key}"', f'state_dir = "{self.state}"']
        if gateway_url is not None:
            lines.append(f'gateway_urls = ["{gateway_url}"]')
        self.config.write_text("\n".join(lines) + "\n")
        self.log = root / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [SM_AGENT, "run", "--config", str(self.config), "--log-level", "DEBUG"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def node_id(self) -> str:
        wait_for(lambda: (self.state / "node.json").exists(), 20, "enrollment", step=0.02)
        return str(json.loads((self.state / "node.json").read_text())["node_id"])

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def closing(request: pytest.FixtureRequest) -> Callable[[Api], Api]:
    """Close each API client when the test ends."""

    def register(api: Api) -> Api:
        request.addfinalizer(api.close)
        return api

    return register


@pytest.fixture
def core(tmp_path: Path) -> Iterator[tuple[UpProcess, banner.Banner]]:
    """``up`` with its local agent, heartbeats every second."""
    env = {**STRICT, "SM_HEARTBEAT_INTERVAL": "1"}
    up = UpProcess.start(tmp_path / "data", free_port_pair(), env=env)
    try:
        yield up, up.wait_ready()
    finally:
        up.stop()


def test_a_second_agent_with_the_printed_key_is_online_within_one_interval(
    tmp_path: Path, closing: Callable[[Api], Api]
) -> None:
    """At the default 5 s interval, from exec to ``online`` in the node list."""
    up = UpProcess.start(tmp_path / "data", free_port_pair(), env=STRICT)
    try:
        ready = up.wait_ready()
        api = closing(Api(up.data, ready.api_url))
        assert len(api.nodes(status="online")) == 1  # the local agent
        agent = Agent(tmp_path / "second", ready.api_url, ready.enrollment_key)
        began = time.monotonic()
        agent.start()
        try:
            node_id = agent.node_id()
            wait_for(lambda: api.status(node_id) == "online", 5.0, "the second node online")
            assert time.monotonic() - began <= 5.0
            assert {n["id"] for n in api.nodes(status="online")} >= {node_id}
            node = api.node(node_id)
            assert node["facts"]["agent_version"]
            assert (
                node["facts"]["boot_id"]
                == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            )
        finally:
            assert agent.stop() == 0, agent.output()
    finally:
        up.stop()


def test_history_offline_and_the_buffer_across_an_outage_and_a_restart(
    core: tuple[UpProcess, banner.Banner], tmp_path: Path, closing: Callable[[Api], Api]
) -> None:
    up, ready = core
    api = closing(Api(up.data, ready.api_url))
    gateway_port = int(ready.gateway_url.split(":")[2].split("/")[0])
    relay = Relay(gateway_port)
    relay.open()
    agent = Agent(
        tmp_path / "agent",
        ready.api_url,
        ready.enrollment_key,
        gateway_url=f"wss://127.0.0.1:{relay.port}/agent/ws",
    )
    try:
        agent.start()
        node_id = agent.node_id()
        wait_for(lambda: api.status(node_id) == "online", 10, "the node online")
        began = time.time()
        # History is queryable: samples arrive in the raw tier, about one per second.
        wait_for(
            lambda: len(api.sample_times(node_id, began - 5, time.time())) >= 3,
            15,
            "three samples in the history",
            step=0.25,
        )

        # A network outage nobody sees a close of: the node goes offline within
        # 3 intervals all the same (its presence expires); the agent samples on.
        relay.stall()
        cut_at = time.time()
        took = wait_for(lambda: api.status(node_id) == "offline", 10, "offline after the stall")
        assert took <= 3 * 1.0 + 1.0, f"offline after {took:.1f} s"
        # Then the connections drop; the agent retries and keeps buffering.
        relay.cut()
        time.sleep(2)
        # The agent restarts while offline: what it buffered survives.
        assert agent.stop() == 0, agent.output()
        agent.start()
        time.sleep(3)
        restored_at = time.time()
        relay.open()

        wait_for(lambda: api.status(node_id) == "online", 15, "online after the outage")

        def outage_covered() -> bool:
            times = api.sample_times(node_id, cut_at, restored_at)
            return len(times) >= int(restored_at - cut_at) - 3

        wait_for(outage_covered, 20, "the buffered samples in the history", step=0.5)
        times = api.sample_times(node_id, cut_at, restored_at)
        # Original timestamps: spread over the outage, not stamped on arrival.
        assert min(times) < cut_at + 2
        assert max(times) > restored_at - 4

        # Stopping the agent: offline within 3 intervals.
        assert agent.stop() == 0, agent.output()
        took = wait_for(lambda: api.status(node_id) == "offline", 10, "offline after SIGTERM")
        assert took <= 3 * 1.0 + 1.0, f"offline after {took:.1f} s"
    finally:
        if agent.process is not None and agent.process.poll() is None:
            agent.stop()
        relay.close()
