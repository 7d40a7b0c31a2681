"""The gateway's HTTP endpoints, checked against openapi/gateway.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml
from prometheus_client.parser import text_string_to_metric_families

DOCUMENT = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "openapi" / "gateway.yaml").read_text()
)


def _schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}


async def test_healthz(gateway: Any) -> None:
    async with gateway.client() as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    jsonschema.validate(response.json(), _schema("Health"))


async def test_readyz_with_redis(gateway: Any) -> None:
    async with gateway.client() as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    jsonschema.validate(body, _schema("Ready"))
    assert body["checks"] == ["redis"]


async def test_readyz_without_redis(start_gateway: Any) -> None:
    async with (
        start_gateway(redis_url="redis://127.0.0.1:9/0") as gateway,
        gateway.client() as http,
    ):
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    jsonschema.validate(problem, _schema("Problem"))
    assert "redis" in problem["checks"]


async def test_metrics_is_prometheus_text(gateway: Any) -> None:
    async with gateway.client() as http:
        await http.get("/healthz")
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert "gateway_agent_connections" in families
    requests = families["gateway_http_requests"]
    assert any(
        s.labels == {"path": "/healthz", "status": "200"} and s.value >= 1 for s in requests.samples
    )


async def test_unknown_paths_are_404_problems(gateway: Any) -> None:
    async with gateway.client() as http:
        response = await http.get("/nothing/here")
    assert response.status_code == 404
    jsonschema.validate(response.json(), _schema("Problem"))


async def test_an_authenticated_plain_get_is_not_an_upgrade(gateway: Any, registry: Any) -> None:
    node = registry.enroll()
    async with gateway.client() as http:
        response = await http.get(
            "/agent/ws", headers={"Authorization": f"Bearer {node['credential']}"}
        )
    # Declared in the contract: a request that is not a WebSocket upgrade.
    assert response.status_code in (400, 426)
    declared = DOCUMENT["paths"]["/agent/ws"]["get"]["responses"]
    assert str(response.status_code) in declared
    # The registry was not asked: no handshake was counted.
    async with gateway.client() as http:
        metrics = (await http.get("/metrics")).text
    assert "gateway_agent_handshakes_total{" not in metrics


def test_every_status_the_socket_answers_is_declared() -> None:
    declared = set(DOCUMENT["paths"]["/agent/ws"]["get"]["responses"])
    assert {"101", "401", "403", "503"} <= declared


async def test_the_gateway_reads_tls_through_small_buffers(gateway: Any) -> None:
    """asyncio's default 256 KiB read buffer per TLS connection is most of an agent's cost."""
    import asyncio.sslproto

    from sm_gateway.server import TLS_READ_BUFFER

    assert asyncio.sslproto.SSLProtocol.max_size == TLS_READ_BUFFER == 16 * 1024
    async with gateway.client() as http:  # a TLS request still answers through it
        assert (await http.get("/healthz")).status_code == 200
