"""The frame every Connexion service is built in.

``build_api_app`` turns an OpenAPI document and a handler package into an
ASGI app with: scope-enforcing OAuth2 security (tokens verified locally),
strict request validation, problem+json errors, a request-body size limit
(413), Prometheus metrics in a registry of the app's own, and the service's
resources reachable from handlers as ``request.state.service``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import connexion
import orjson
import yaml
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import MiddlewarePosition
from connexion.resolver import RelativeResolver
from connexion.security import OAuthSecurityHandler
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.asyncio import Redis
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sm_shared import connexion_tuning, response_types
from sm_shared.contracts import spec_path
from sm_shared.database import create_database_engine, ping
from sm_shared.problems import PROBLEM_MEDIA_TYPE, PayloadTooLarge, ProblemError, response_for
from sm_shared.settings import CoreSettings
from sm_shared.tokens import InvalidToken, TokenVerifier

SHARED_HANDLERS = "sm_shared."
ReadinessCheck = Callable[[], Awaitable[None]]


@functools.cache
def _parsed_document(path: Path, stamp: tuple[int, int]) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(path.read_bytes(), Loader=loader)  # noqa: S506 (a safe loader)
    return document


def load_document(path: Path) -> dict[str, Any]:
    """The OpenAPI document at ``path``, parsed once per version of the file.

    Connexion would parse it with the pure-Python YAML loader on every app it
    builds (0.2-0.9 s for the registry's); libyaml takes a tenth of that, and
    a process building several apps parses each document once. Each call
    returns a private copy (Connexion modifies what it is given).
    """
    stat = path.stat()
    return copy.deepcopy(_parsed_document(path.resolve(), (stat.st_mtime_ns, stat.st_size)))


SettingsT = TypeVar("SettingsT", bound=CoreSettings)


@dataclass
class ServiceState:
    """What every service exposes to the shared probe handlers."""

    name: str
    readiness: dict[str, ReadinessCheck]
    metrics: CollectorRegistry
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServiceResources:
    """A service's database engine and Redis client, created when its app is built.

    Neither connects until first used; the app's lifespan releases both when it
    ends. Handlers reach them through ``request.state.service.extra["resources"]``.
    """

    engine: Engine
    redis: Redis

    @classmethod
    def open(cls, database_url: str, redis_url: str) -> ServiceResources:
        return cls(create_database_engine(database_url), Redis.from_url(redis_url))

    def readiness(self) -> dict[str, ReadinessCheck]:
        async def database() -> None:
            await asyncio.to_thread(ping, self.engine)

        async def redis() -> None:
            await self.redis.ping()

        return {"database": database, "redis": redis}

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.redis.aclose()
            self.engine.dispose()


def request_service(
    settings_type: type[SettingsT],
) -> tuple[ServiceState, ServiceResources, SettingsT]:
    """The state, resources and settings of the service serving the current request."""
    from connexion import request

    state = request.state.service
    assert isinstance(state, ServiceState)
    resources = state.extra["resources"]
    settings = state.extra["settings"]
    assert isinstance(resources, ServiceResources)
    assert isinstance(settings, settings_type)
    return state, resources, settings


class _Resolver(RelativeResolver):  # type: ignore[misc]
    """Relative to the service's handler package, except shared handlers named in full."""

    def resolve_operation_id(self, operation: Any) -> str:
        operation_id = str(operation.operation_id)
        if operation_id.startswith(SHARED_HANDLERS):
            return operation_id
        return str(super().resolve_operation_id(operation))


def _security_map(verifier: TokenVerifier) -> dict[str, type]:
    class VerifyingOAuthHandler(OAuthSecurityHandler):  # type: ignore[misc]
        def get_tokeninfo_func(self, security_definition: dict[str, Any]) -> Callable[..., Any]:
            return token_info

    def token_info(token: str) -> dict[str, Any] | None:
        try:
            return verifier.verify(token).token_info()
        except InvalidToken:
            return None

    return {"oauth2": VerifyingOAuthHandler}


class _StateAndLimits:
    """Outermost middleware: injects the service state, limits the body, counts requests.

    Bodies are limited both by a declared ``Content-Length`` (refused before a
    byte is read, and before authentication) and by what actually arrives. A
    chunked body (no ``Content-Length``) is read here up to the limit and
    handed on with its length declared: Connexion looks only at
    ``Content-Length`` and would otherwise treat it as missing.
    """

    def __init__(
        self, app: ASGIApp, *, state: object, max_body: int, requests: Counter, latency: Histogram
    ) -> None:
        self.app = app
        self.state = state
        self.max_body = max_body
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["service"] = self.state
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            try:
                scope, receive = await self._limit_body(scope, receive)
            except ProblemError as exc:
                await response_for(exc)(scope, receive, counting_send)
                return
            await self.app(scope, receive, counting_send)
        finally:
            self.requests.labels(scope["method"], str(status)).inc()
            self.latency.observe(time.perf_counter() - started)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request bodies are limited to {self.max_body} bytes")

    async def _limit_body(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        lengths = {value.strip() for name, value in headers if name == b"content-length"}
        if lengths:
            length = lengths.pop()
            if lengths or not length.isdigit():
                raise _BadBody("the Content-Length header is not a single non-negative integer")
            if int(length) > self.max_body:
                raise self._too_large()
            return scope, self._guarded(receive)
        if not any(name == b"transfer-encoding" for name, _ in headers):
            return scope, receive  # no body (HTTP/1.1 frames bodies one way or the other)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body
            body += message.get("body", b"")
            if len(body) > self.max_body:
                raise self._too_large()
            if not message.get("more_body", False):
                break
        declared = [(name, value) for name, value in headers if name != b"transfer-encoding"] + [
            (b"content-length", str(len(body)).encode())
        ]
        return {**scope, "headers": declared}, _replay(bytes(body), receive)

    def _guarded(self, receive: Receive) -> Receive:
        # The server enforces Content-Length; this guards against one that does not.
        seen = 0

        async def guarded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise self._too_large()
            return message

        return guarded_receive


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields ``body`` once, then defers to ``receive``."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _problem_handler(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, ProblemError)
    return ConnexionResponse(
        status_code=exc.status,
        body=orjson.dumps(exc.to_dict()),
        content_type=PROBLEM_MEDIA_TYPE,
        headers=exc.headers(),
    )


def _undecodable_body(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    # Connexion decodes JSON bodies as UTF-8 and lets the error escape (a 500).
    return _problem_handler(request, _BadBody("the request body is not valid UTF-8 JSON"))


def _recursion(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    # CPython's JSON decoder gives up on deep nesting with a RecursionError (a
    # 500 in Connexion). That is bad input; any other RecursionError is ours.
    if "decoding a JSON" in str(exc):
        return _problem_handler(request, _BadBody("the request body is nested too deeply"))
    return _problem_handler(request, ProblemError("the server could not complete the request"))


class _BadBody(ProblemError):
    status = 400
    title = "Bad Request"


def build_api_app(
    *,
    name: str,
    spec: Path,
    package: str,
    verifier: TokenVerifier,
    state: ServiceState,
    lifespan: Callable[[], AbstractAsyncContextManager[None]],
    max_body_bytes: int,
    validate_responses: bool,
) -> connexion.AsyncApp:
    """A Connexion app serving ``spec`` with handlers from ``package`` (e.g. ``sm_registry.api``)."""

    @asynccontextmanager
    async def app_lifespan(_app: Any) -> AsyncIterator[None]:
        async with lifespan():
            yield

    connexion_tuning.apply()
    response_types.apply()
    app = connexion.AsyncApp(
        name,
        lifespan=app_lifespan,
        security_map=_security_map(verifier),
        jsonifier=connexion_tuning.OrjsonJsonifier(),
    )
    app.add_api(
        load_document(spec),
        resolver=_Resolver(package),
        strict_validation=True,
        validate_responses=validate_responses,
        pythonic_params=False,
    )
    requests = Counter(
        "http_requests",
        "HTTP requests served, by method and status",
        ["method", "status"],
        registry=state.metrics,
    )
    latency = Histogram(
        "http_request_duration_seconds", "Time to serve a request", registry=state.metrics
    )
    app.add_middleware(
        _StateAndLimits,
        MiddlewarePosition.BEFORE_EXCEPTION,
        state=state,
        max_body=max_body_bytes,
        requests=requests,
        latency=latency,
    )
    app.add_error_handler(ProblemError, _problem_handler)
    app.add_error_handler(UnicodeDecodeError, _undecodable_body)
    app.add_error_handler(RecursionError, _recursion)
    return app


def create_service_app(
    *,
    service: str,
    settings: CoreSettings,
    database_url: str,
    extra: dict[str, Any] | None = None,
) -> connexion.AsyncApp:
    """The app of service ``service``: ``openapi/<service>.yaml`` served by ``sm_<service>.api``.

    ``request.state.service.extra`` holds ``resources`` (engine and Redis),
    ``settings`` and whatever ``extra`` adds.
    """
    resources = ServiceResources.open(database_url, settings.redis_url)
    state = ServiceState(
        name=service,
        readiness=resources.readiness(),
        metrics=CollectorRegistry(),
        extra={"resources": resources, "settings": settings, **(extra or {})},
    )
    package = f"sm_{service}"
    return build_api_app(
        name=package,
        spec=spec_path(package, f"{service}.yaml"),
        package=f"{package}.api",
        verifier=TokenVerifier(settings.data),
        state=state,
        lifespan=resources.lifespan,
        max_body_bytes=settings.max_body_bytes,
        validate_responses=settings.validate_responses,
    )
