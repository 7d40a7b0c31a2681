"""Fixtures every test package shares: a real Redis server, a real data directory, a registry,
a gateway.

Redis: Debian's ``redis-server`` on a free loopback port for the whole session
(nothing kept on disk); each test gets database 0 emptied before it runs.
``registry_api`` drives the real registry (``registry_origin``) as an admin and
enrolls nodes; ``gateway_service`` is a real gateway (TLS, in the test's event
loop) on ``gateway_port`` using that registry, Redis and data directory;
``start_gateway(**settings)`` starts more. A test package whose agents should
be told the gateway's URL at enrollment overrides ``registry_gateway_url``
with ``gateway_url`` (see services/gateway/tests/conftest.py).
Every test package imports this file: heavy imports (uvicorn, the registry,
the gateway) stay inside the fixtures that need them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize

if TYPE_CHECKING:
    from sm_gateway.settings import GatewaySettings

# Facts of an enrolling node (the agent protocol's example).
NODE_FACTS: dict[str, Any] = {
    "hostname": "web-1",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-26-amd64",
    "arch": "x86_64",
    "cpu_model": "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
    "cpu_count": 2,
    "memory_total": 4110147584,
    "addresses": [{"interface": "eth0", "family": "ipv4", "address": "10.0.0.5"}],
    "agent_version": "0.1.0",
    "boot_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the test session; yields its base URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the README's test command (./sm test)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """Database 0 of the session's Redis, emptied for this test."""
    url = f"{redis_server}/0"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    """A fresh data directory with a first start's key material."""
    data = DataDir(tmp_path / "data")
    initialize(data)
    return data


@pytest.fixture
def registry_gateway_url() -> str:
    """The gateway URL ``registry_origin`` gives enrolling agents (override where a gateway runs)."""
    return "wss://127.0.0.1:8104/agent/ws"


@contextlib.contextmanager
def serving_registry(
    data_dir: DataDir, redis_url: str, gateway_url: str = "wss://127.0.0.1:8104/agent/ws"
) -> Iterator[str]:
    """Serve a real registry on ``data_dir`` and Redis until the block ends; yields its origin.

    uvicorn runs it in a thread of its own (its handlers block on SQLite), with
    the data directory's server certificate.
    """
    import uvicorn

    from sm_registry import RegistrySettings, create_app

    port = free_port()
    settings = RegistrySettings(
        data_dir=data_dir.root,
        redis_url=redis_url,
        validate_responses=True,
        gateway_url=gateway_url,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(data_dir.server_cert),
            ssl_keyfile=str(data_dir.server_key),
            log_level="warning",
            lifespan="on",  # a failing startup stops the server instead of being skipped
        )
    )
    thread = threading.Thread(target=server.run, name="registry", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the registry did not start")
        time.sleep(0.02)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture(scope="session")
def registry_server() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """``with registry_server(data_dir, redis_url) as origin``: for fixtures of wider scope."""
    return serving_registry


@pytest.fixture
def registry_origin(data_dir: DataDir, redis_url: str, registry_gateway_url: str) -> Iterator[str]:
    """``https://127.0.0.1:<port>`` of a real registry serving the test's data directory and Redis."""
    with serving_registry(data_dir, redis_url, registry_gateway_url) as origin:
        yield origin


# ---- the registry as an admin, and gateways ----


@dataclass(frozen=True)
class RegistryApi:
    """The real registry at ``origin``, driven with tokens signed from the data directory."""

    origin: str
    data: DataDir
    verify: ssl.SSLContext

    def token(self, *scopes: str, ttl: int = 600, subject: str = "admin") -> str:
        """An access token with ``scopes`` (all of them if none are given)."""
        from sm_shared.scopes import ALL_SCOPES
        from sm_shared.tokens import issue_access_token

        return issue_access_token(
            self.data,
            subject=subject,
            client_id="tests",
            scopes=scopes or ALL_SCOPES,
            ttl=ttl,
        )

    def admin_token(self) -> str:
        return self.token()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.origin, verify=self.verify, trust_env=False, timeout=10)

    def enroll(self, machine_id: str = "machine-1", hostname: str | None = None) -> dict[str, Any]:
        """Enroll a node with the enrollment key; the 201 answer (node_id, credential, ...)."""
        from sm_shared.access_keys import KeyKind, load_key

        facts = {**NODE_FACTS, "hostname": hostname or machine_id}
        with self.client() as client:
            response = client.post(
                "/api/v1/enroll",
                json={
                    "key": str(load_key(self.data, KeyKind.ENROLLMENT)),
                    "machine_id": machine_id,
                    "facts": facts,
                },
            )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def node(self, node_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(
                f"/api/v1/nodes/{node_id}", headers={"Authorization": f"Bearer {self.token()}"}
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def delete_node(self, node_id: str) -> None:
        with self.client() as client:
            response = client.delete(
                f"/api/v1/nodes/{node_id}", headers={"Authorization": f"Bearer {self.token()}"}
            )
        assert response.status_code == 204, response.text


@pytest.fixture
def registry_api(registry_origin: str, data_dir: DataDir) -> RegistryApi:
    return RegistryApi(
        registry_origin, data_dir, ssl.create_default_context(cafile=str(data_dir.ca_cert))
    )


@dataclass(frozen=True)
class RunningGateway:
    """A gateway serving in the test's event loop: ``url`` is its agents' WebSocket."""

    url: str
    origin: str
    settings: GatewaySettings
    verify: ssl.SSLContext

    @property
    def events_url(self) -> str:
        return f"wss://127.0.0.1:{self.settings.port}/events/ws"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.origin, verify=self.verify, trust_env=False, timeout=10
        )


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[RunningGateway]:
    """Serve ``settings`` until the block ends (then cancelled: connections close with 1001)."""
    from sm_gateway.server import serve

    verify = ssl.create_default_context(cafile=str(settings.data.ca_cert))
    origin = f"https://127.0.0.1:{settings.port}"
    task = asyncio.create_task(serve(settings))
    try:
        async with httpx.AsyncClient(base_url=origin, verify=verify, trust_env=False) as http:
            for _ in range(500):
                if task.done():
                    task.result()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.02)
            else:
                raise RuntimeError("the gateway did not start")
        yield RunningGateway(f"wss://127.0.0.1:{settings.port}/agent/ws", origin, settings, verify)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def gateway_settings(
    data_dir: DataDir, redis_url: str, port: int, registry_origin: str, **extra: Any
) -> GatewaySettings:
    """Test settings: heartbeat interval 1 s, hello timeout 2 s, id ``gw-test``."""
    from sm_gateway.settings import GatewaySettings

    values: dict[str, Any] = {
        "data_dir": data_dir.root,
        "redis_url": redis_url,
        "host": "127.0.0.1",
        "port": port,
        "registry_url": registry_origin,
        "heartbeat_interval": 1.0,
        "hello_timeout": 2.0,
        "gateway_id": "gw-test",
        **extra,
    }
    return GatewaySettings(**values)


StartGateway = Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]


@pytest.fixture
def gateway_port() -> int:
    return free_port()


@pytest.fixture
def gateway_url(gateway_port: int) -> str:
    """The agents' URL of ``gateway_service``."""
    return f"wss://127.0.0.1:{gateway_port}/agent/ws"


@pytest.fixture
def start_gateway(data_dir: DataDir, redis_url: str, registry_origin: str) -> StartGateway:
    """``async with start_gateway(**settings) as gw``: another gateway (a free port unless
    ``port`` is given; ``redis_url`` and any GatewaySettings field may be overridden)."""

    def start(**extra: Any) -> contextlib.AbstractAsyncContextManager[RunningGateway]:
        redis_at = extra.pop("redis_url", redis_url)
        port = extra.pop("port", None) or free_port()
        settings = gateway_settings(data_dir, redis_at, port, registry_origin, **extra)
        return running_gateway(settings)

    return start


@pytest.fixture
async def gateway_service(
    data_dir: DataDir, redis_url: str, gateway_port: int, registry_origin: str
) -> AsyncIterator[RunningGateway]:
    """A real gateway (TLS) on ``gateway_port`` with the test's registry, Redis and data dir."""
    settings = gateway_settings(data_dir, redis_url, gateway_port, registry_origin)
    async with running_gateway(settings) as running:
        yield running
