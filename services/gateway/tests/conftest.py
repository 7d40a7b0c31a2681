"""A real registry (uvicorn, TLS) and a real gateway for the gateway's tests.

The registry is the root conftest's ``registry_origin``, told the gateway's
URL; the gateway runs in the test's event loop via ``serve(settings)``. Both
use the test's data directory and Redis database.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sm_agent.facts import gather_facts
from sm_gateway.server import serve
from sm_gateway.settings import GatewaySettings
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.scopes import ALL_SCOPES
from sm_shared.tokens import issue_access_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Registry:
    origin: str
    data: DataDir
    verify: ssl.SSLContext

    def admin_token(self) -> str:
        return issue_access_token(
            self.data, subject="admin", client_id="sm-admin", scopes=ALL_SCOPES, ttl=600
        )

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.origin, verify=self.verify, trust_env=False, timeout=10)

    def enroll(self, machine_id: str = "machine-1", hostname: str | None = None) -> dict[str, Any]:
        facts = gather_facts()
        if hostname is not None:
            facts["hostname"] = hostname
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

    def delete_node(self, node_id: str) -> None:
        with self.client() as client:
            response = client.delete(
                f"/api/v1/nodes/{node_id}",
                headers={"Authorization": f"Bearer {self.admin_token()}"},
            )
        assert response.status_code == 204, response.text


@pytest.fixture
def gateway_port() -> int:
    return free_port()


@pytest.fixture
def registry_gateway_url(gateway_port: int) -> str:
    return f"wss://127.0.0.1:{gateway_port}/agent/ws"


@pytest.fixture
def registry(registry_origin: str, data_dir: DataDir) -> Registry:
    return Registry(
        registry_origin, data_dir, ssl.create_default_context(cafile=str(data_dir.ca_cert))
    )


@dataclass(frozen=True)
class Gateway:
    url: str
    origin: str
    settings: GatewaySettings
    verify: ssl.SSLContext

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.origin, verify=self.verify, trust_env=False, timeout=10
        )


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[Gateway]:
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
        yield Gateway(f"wss://127.0.0.1:{settings.port}/agent/ws", origin, settings, verify)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def gateway_settings(
    data_dir: DataDir, redis_url: str, port: int, registry: Registry, **extra: Any
) -> GatewaySettings:
    values: dict[str, Any] = {
        "data_dir": data_dir.root,
        "redis_url": redis_url,
        "host": "127.0.0.1",
        "port": port,
        "registry_url": registry.origin,
        "heartbeat_interval": 1.0,
        "hello_timeout": 2.0,
        "gateway_id": "gw-test",
        **extra,
    }
    return GatewaySettings(**values)


StartGateway = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def start_gateway(data_dir: DataDir, redis_url: str, registry: Registry) -> StartGateway:
    """Start another gateway (on a free port unless ``port`` is given); keywords override settings."""

    def start(**extra: Any) -> contextlib.AbstractAsyncContextManager[Gateway]:
        redis = extra.pop("redis_url", redis_url)
        port = extra.pop("port", None) or free_port()
        settings = gateway_settings(data_dir, redis, port, registry, **extra)
        return running_gateway(settings)

    return start


@pytest.fixture
async def gateway(
    data_dir: DataDir, redis_url: str, gateway_port: int, registry: Registry
) -> AsyncIterator[Gateway]:
    async with running_gateway(
        gateway_settings(data_dir, redis_url, gateway_port, registry)
    ) as running:
        yield running
