"""A real core for cross-service tests: its REST API with an admin token,
``sm-agent`` processes with their own configuration, a TCP relay the test can
cut, and polling with a deadline."""

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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from sm_ctl.instance import free_port_pair
from sm_shared.datadir import DataDir
from sm_shared.scopes import ALL_SCOPES
from sm_shared.tokens import issue_access_token

SM_AGENT = str(Path(sys.executable).with_name("sm-agent"))
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

    def __init__(
        self,
        root: Path,
        server: str,
        key: str,
        gateway_url: str | None = None,
        settings: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``settings``: more lines of the agent's TOML configuration (``allow_shell = true``);
        ``env``: variables set for the agent process (``PATH`` with a stand-in ``systemctl``)."""
        self.env = dict(env or {})
        self.state = root / "state"
        self.config = root / "agent.toml"
        root.mkdir(parents=True, exist_ok=True)
        lines = [f'server = "{server}"', f'enrollment_key = "{key}"', f'state_dir = "{self.state}"']
        if gateway_url is not None:
            lines.append(f'gateway_urls = ["{gateway_url}"]')
        lines.extend(settings)
        self.config.write_text("\n".join(lines) + "\n")
        self.log = root / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        env.update(self.env)
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
