"""The all-in-one router: several service apps in one ASGI process.

``up`` serves the registry, metrics and commands APIs from one uvicorn
process. Requests go to the app that :func:`sm_shared.routes.service_for`
names; the probes (``/healthz``, ``/readyz``, ``/metrics``) answer for every
app at once. Starlette does not run the lifespans of mounted apps, so the
router runs each app's lifespan itself, inside its own (one combined
lifespan).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sm_shared.problems import problem_response
from sm_shared.routes import service_for

PROBE_PATHS = ("/healthz", "/readyz", "/metrics")
PROBE_TIMEOUT = 5.0


class LifespanFailed(RuntimeError):
    """An app reported that its startup or shutdown failed."""


@asynccontextmanager
async def running_lifespan(app: ASGIApp, state: dict[str, Any]) -> AsyncIterator[None]:
    """Run ``app``'s ASGI lifespan: startup on enter, shutdown on exit.

    ``state`` receives what the app's lifespan stores (ASGI lifespan state);
    the router hands it to every request of that app.
    """
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {
        "type": "lifespan",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "state": state,
    }

    async def run_app() -> None:
        await app(scope, to_app.get, from_app.put)

    task = asyncio.create_task(run_app())

    async def reply() -> Message | None:
        """The app's next lifespan message; None when it returned without one."""
        getter = asyncio.ensure_future(from_app.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        task.result()  # re-raises what the app raised
        return None

    await to_app.put({"type": "lifespan.startup"})
    started = await reply()
    if started is not None and started["type"] == "lifespan.startup.failed":
        # The app raises after reporting; collect that so it is not logged as lost.
        with contextlib.suppress(Exception):
            await task
        raise LifespanFailed(started.get("message", "startup failed"))
    try:
        yield
    finally:
        if not task.done():
            await to_app.put({"type": "lifespan.shutdown"})
            stopped = await reply()
            if stopped is not None and stopped["type"] == "lifespan.shutdown.failed":
                raise LifespanFailed(stopped.get("message", "shutdown failed"))
            await task


class _MetricsWithService(Collector):
    """Families parsed from several expositions, each sample labelled with its service."""

    def __init__(self, expositions: Mapping[str, str]) -> None:
        self.expositions = expositions

    def collect(self) -> list[Metric]:
        merged: dict[str, Metric] = {}
        for service, text in self.expositions.items():
            for family in text_string_to_metric_families(text):
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    target.samples.append(
                        sample._replace(labels={**sample.labels, "service": service})
                    )
        return list(merged.values())


class ServiceRouter:
    """Routes by path prefix to one of several service apps and answers the probes for all.

    ``apps`` maps a service name (as :data:`sm_shared.routes.ROUTES` names it)
    to its ASGI app. Paths of services that are not in ``apps`` (the gateway's
    WebSocket paths, for instance) get a 404 problem naming where they live.
    """

    def __init__(self, apps: Mapping[str, ASGIApp], elsewhere: Mapping[str, str] | None = None):
        self.apps = dict(apps)
        self.elsewhere = dict(elsewhere or {})
        self.states: dict[str, dict[str, Any]] = {name: {} for name in self.apps}

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Enter every app's lifespan (in order), leave them in reverse."""
        async with AsyncExitStack() as stack:
            for name, app in self.apps.items():
                await stack.enter_async_context(running_lifespan(app, self.states[name]))
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        path: str = scope["path"]
        if scope["type"] == "http" and path in PROBE_PATHS:
            response = await self._probe(path)
            await response(scope, receive, send)
            return
        service = service_for(path)
        app = self.apps.get(service) if service is not None else None
        if app is None or service is None:
            await self._not_here(scope, receive, send, service)
            return
        scope["state"] = {**scope.get("state", {}), **self.states[service]}
        await app(scope, receive, send)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(self.lifespan())
        except Exception as exc:
            await send(
                {"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"}
            )
            raise
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        try:
            await stack.aclose()
        except Exception as exc:
            await send(
                {"type": "lifespan.shutdown.failed", "message": f"{type(exc).__name__}: {exc}"}
            )
            raise
        await send({"type": "lifespan.shutdown.complete"})

    async def _not_here(
        self, scope: Scope, receive: Receive, send: Send, service: str | None
    ) -> None:
        if service is not None and service in self.elsewhere:
            detail = f"{scope['path']} is served by the {service} at {self.elsewhere[service]}"
        else:
            detail = f"no service serves {scope['path']}"
        if scope["type"] == "websocket":
            # Refusing before accept makes the server answer the handshake with 403.
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        await problem_response(404, "Not Found", detail)(scope, receive, send)

    async def _ask(self, service: str, path: str) -> httpx.Response:
        """GET ``path`` from one app in process (its lifespan is already running)."""
        app = self.apps[service]
        state = self.states[service]

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = {**scope.get("state", {}), **state}
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            return await asyncio.wait_for(client.get(path), PROBE_TIMEOUT)

    async def _ask_all(self, path: str) -> dict[str, httpx.Response | Exception]:
        names = list(self.apps)
        answers = await asyncio.gather(
            *(self._ask(name, path) for name in names), return_exceptions=True
        )
        results: dict[str, httpx.Response | Exception] = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer
            results[name] = answer
        return results

    async def _probe(self, path: str) -> Response:
        answers = await self._ask_all(path)
        if path == "/metrics":
            texts = {
                name: answer.text
                for name, answer in answers.items()
                if isinstance(answer, httpx.Response) and answer.status_code == 200
            }
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_MetricsWithService(texts))
            return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
        bodies: dict[str, Any] = {}
        failed: dict[str, Any] = {}
        for name, answer in answers.items():
            if isinstance(answer, Exception):
                failed[name] = f"{type(answer).__name__}: {answer}"
                continue
            body = answer.json() if answer.content else {}
            bodies[name] = body
            if answer.status_code != 200:
                failed[name] = body
        if failed:
            what = "alive" if path == "/healthz" else "ready"
            return problem_response(
                503, "Service Unavailable", f"not every service is {what}", services=failed
            )
        status = "ok" if path == "/healthz" else "ready"
        return Response(
            orjson.dumps({"status": status, "services": bodies}), media_type="application/json"
        )
