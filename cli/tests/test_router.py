"""The all-in-one router: routing by the route table, one combined lifespan, merged probes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from sm_commands import CommandsSettings
from sm_commands import create_app as create_commands_app
from sm_ctl.router import ServiceRouter, running_lifespan
from sm_metrics import MetricsSettings
from sm_metrics import create_app as create_metrics_app
from sm_registry import RegistrySettings
from sm_registry import create_app as create_registry_app
from sm_shared.datadir import DataDir
from sm_shared.tokens import issue_access_token


def _apps(data: DataDir, redis_url: str) -> dict[str, ASGIApp]:
    root, strict = data.root, True
    return {
        "registry": create_registry_app(
            RegistrySettings(data_dir=root, redis_url=redis_url, validate_responses=strict)
        ),
        "metrics": create_metrics_app(
            MetricsSettings(data_dir=root, redis_url=redis_url, validate_responses=strict)
        ),
        "commands": create_commands_app(
            CommandsSettings(data_dir=root, redis_url=redis_url, validate_responses=strict)
        ),
    }


@asynccontextmanager
async def _client(router: ServiceRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with router.lifespan():
        transport = httpx.ASGITransport(app=router)
        async with httpx.AsyncClient(transport=transport, base_url="http://core") as client:
            yield client


async def test_routes_each_prefix_to_its_service(data_dir: DataDir, redis_url: str) -> None:
    router = ServiceRouter(_apps(data_dir, redis_url))
    token = issue_access_token(
        data_dir, subject="admin", client_id="sm-admin", scopes=["nodes:read"], ttl=60
    )
    async with _client(router) as client:
        ca = await client.get("/ca.pem")
        assert ca.status_code == 200
        assert ca.content == data_dir.ca_cert.read_bytes()
        jwks = await client.get("/.well-known/jwks.json")
        assert jwks.status_code == 200
        assert jwks.json()["keys"]
        nodes = await client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
        assert nodes.status_code == 200
        assert nodes.json()["total"] == 0
        # The registry's tables exist: the router entered its lifespan and app.
        assert data_dir.database("registry").exists()


async def test_probes_cover_every_app(data_dir: DataDir, redis_url: str) -> None:
    router = ServiceRouter(_apps(data_dir, redis_url))
    async with _client(router) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert set(ready.json()["services"]) == {"registry", "metrics", "commands"}
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
        services = {s.labels["service"] for s in families["http_requests"].samples}
        # Each app counted its own /readyz and /healthz, labelled with its name.
        assert services == {"registry", "metrics", "commands"}


async def test_readiness_fails_when_redis_is_unreachable(data_dir: DataDir) -> None:
    router = ServiceRouter(_apps(data_dir, "redis://127.0.0.1:1/0"))
    async with _client(router) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        failed = ready.json()["services"]
        assert set(failed) == {"registry", "metrics", "commands"}
        assert "redis" in failed["registry"]["checks"]


async def test_paths_served_elsewhere_get_a_problem(data_dir: DataDir, redis_url: str) -> None:
    router = ServiceRouter(
        _apps(data_dir, redis_url),
        elsewhere={"gateway": "wss://core:8701"},
    )
    async with _client(router) as client:
        agent = await client.get("/agent/ws")
        assert agent.status_code == 404
        assert agent.json()["detail"] == "/agent/ws is served by the gateway at wss://core:8701"
        nothing = await client.get("/nowhere")
        assert nothing.status_code == 404
        assert nothing.headers["content-type"] == "application/problem+json"


def _starlette_app(events: list[str], fail: bool = False) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        if fail:
            raise RuntimeError("cannot open the database")
        events.append("startup")
        yield {"opened": "yes"}
        events.append("shutdown")

    async def opened(request: Request) -> JSONResponse:
        return JSONResponse({"opened": request.state.opened})

    return Starlette(routes=[Route("/api/v1/metrics/opened", opened)], lifespan=lifespan)


async def test_lifespans_run_in_order_and_their_state_reaches_requests() -> None:
    events: list[str] = []
    router = ServiceRouter({"metrics": _starlette_app(events)})
    async with _client(router) as client:
        assert events == ["startup"]
        answer = await client.get("/api/v1/metrics/opened")
        assert answer.json() == {"opened": "yes"}
    assert events == ["startup", "shutdown"]


async def test_a_failing_startup_fails_the_lifespan() -> None:
    app = _starlette_app([], fail=True)
    with pytest.raises(RuntimeError, match="cannot open the database"):
        async with running_lifespan(app, {}):
            pytest.fail("the lifespan must not start")


async def test_the_router_reports_startup_failure_to_the_server() -> None:
    router = ServiceRouter({"metrics": _starlette_app([], fail=True)})
    sent: list[Message] = []
    messages: Iterator[Message] = iter([{"type": "lifespan.startup"}])

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(RuntimeError):
        await router({"type": "lifespan"}, receive, send)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "cannot open the database" in str(sent[0]["message"])
