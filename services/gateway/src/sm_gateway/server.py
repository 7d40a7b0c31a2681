"""The gateway process: a websockets server with TLS from the data directory.

``serve(settings)`` runs until cancelled. Plain HTTP (probes, metrics) and
the agents' handshake authentication are answered in ``process_request``,
before any WebSocket exists: a refused credential never gets a connection.
Per-message compression is off (it costs about 4 times the memory per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections.abc import AsyncIterator
from typing import Final

import httpx
from redis.asyncio import Redis
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request, Response

from sm_gateway import probes
from sm_gateway.authenticator import Authenticator, NodeIdentity, NodeRefused
from sm_gateway.instruments import Instruments
from sm_gateway.presence import Presence
from sm_gateway.protocol import CloseCode, Protocol
from sm_gateway.service_token import RegistryUnavailable, ServiceToken
from sm_gateway.session import AgentSession
from sm_gateway.settings import GatewaySettings

AGENT_PATH: Final = "/agent/ws"
REGISTRY_TIMEOUT: Final = 10.0
RETRY_AFTER: Final = "5"
KNOWN_PATHS: Final = ("/healthz", "/readyz", "/metrics", AGENT_PATH)

log = logging.getLogger(__name__)


def server_tls(settings: GatewaySettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.data.server_cert, settings.data.server_key)
    return context


def registry_tls(settings: GatewaySettings) -> ssl.SSLContext:
    """Verify the registry with the core CA of the data directory, host name checked."""
    return ssl.create_default_context(cafile=str(settings.data.ca_cert))


def _bearer(request: Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, credential = value.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


class Gateway:
    """The state of one gateway process: its connections and the clients it uses."""

    def __init__(
        self,
        settings: GatewaySettings,
        redis: Redis,
        registry: httpx.AsyncClient,
        protocol: Protocol | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.protocol = protocol or Protocol.load()
        self.instruments = Instruments()
        self.authenticator = Authenticator(
            registry,
            ServiceToken(registry, settings.data.service_secret),
            cache_seconds=settings.auth_cache_seconds,
        )
        self.presence = Presence(redis, settings.gateway_id, settings.heartbeat_interval)
        self.sessions: dict[str, AgentSession] = {}
        # Identities authenticated in process_request, until the handler takes them.
        self._pending: weakref.WeakKeyDictionary[ServerConnection, NodeIdentity] = (
            weakref.WeakKeyDictionary()
        )
        self._closing: set[asyncio.Task[None]] = set()

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = request.path.partition("?")[0]
        response = await self._answer(connection, request, path)
        if response is not None:  # handshakes are counted in gateway_agent_handshakes
            label = path if path in KNOWN_PATHS else "other"
            self.instruments.http_requests.labels(label, str(response.status_code)).inc()
        return response

    async def _answer(
        self, connection: ServerConnection, request: Request, path: str
    ) -> Response | None:
        if path == "/healthz":
            return probes.healthz()
        if path == "/readyz":
            return await probes.readyz(self.redis)
        if path == "/metrics":
            return probes.metrics(self.instruments.registry)
        if path != AGENT_PATH:
            return probes.problem(404, f"nothing is served at {path[:100]}")
        return await self._authenticate(connection, request)

    async def _authenticate(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        credential = _bearer(request)
        challenge = {"WWW-Authenticate": 'Bearer realm="agent"'}
        if credential is None:
            self.instruments.handshakes.labels("unauthorized").inc()
            return probes.problem(
                401, "a node credential is required (Authorization: Bearer)", challenge
            )
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None  # not a handshake: websockets answers 400/426 without asking the registry
        try:
            identity = await self.authenticator.authenticate(credential)
        except NodeRefused as exc:
            outcome = "forbidden" if exc.status == 403 else "unauthorized"
            self.instruments.handshakes.labels(outcome).inc()
            return probes.problem(exc.status, exc.detail, challenge if exc.status == 401 else None)
        except RegistryUnavailable as exc:
            log.warning("cannot authenticate an agent: %s", exc)
            self.instruments.handshakes.labels("unavailable").inc()
            return probes.problem(
                503, "node authentication is unavailable; retry later", {"Retry-After": RETRY_AFTER}
            )
        self.instruments.handshakes.labels("accepted").inc()
        self._pending[connection] = identity
        return None

    async def handler(self, connection: ServerConnection) -> None:
        identity = self._pending.pop(connection, None)
        if identity is None:  # cannot happen: process_request answers every other request
            await connection.close(CloseCode.INTERNAL_ERROR, "unauthenticated")
            return
        session = AgentSession(
            connection,
            identity,
            protocol=self.protocol,
            presence=self.presence,
            instruments=self.instruments,
            heartbeat_interval=self.settings.heartbeat_interval,
            hello_timeout=self.settings.hello_timeout,
        )
        self.instruments.connections.inc()
        try:
            await session.run(self._claim)
        finally:
            self.instruments.connections.dec()
            if self.sessions.get(session.node_id) is session:
                del self.sessions[session.node_id]

    def _claim(self, session: AgentSession) -> None:
        """``session`` is now the node's connection here; an older one is closed (4004)."""
        older = self.sessions.get(session.node_id)
        self.sessions[session.node_id] = session
        if older is not None and older is not session:
            older.replaced = True  # before any await: the older one must not release presence
            task = asyncio.create_task(older.replace())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


@contextlib.asynccontextmanager
async def gateway_resources(settings: GatewaySettings) -> AsyncIterator[Gateway]:
    redis = Redis.from_url(settings.redis_url)
    registry = httpx.AsyncClient(
        base_url=settings.registry_url,
        verify=registry_tls(settings),
        timeout=REGISTRY_TIMEOUT,
        trust_env=False,  # the registry is ours: never through an environment proxy
    )
    try:
        yield Gateway(settings, redis, registry)
    finally:
        await registry.aclose()
        await redis.aclose()


def _quiet_websockets_logger() -> logging.Logger:
    logger = logging.getLogger("websockets.server")
    if logger.level == logging.NOTSET:  # an operator's explicit level wins
        logger.setLevel(logging.WARNING)
    return logger


async def serve(settings: GatewaySettings) -> None:
    """Run the gateway until cancelled; connections are closed with 1001 on the way out."""
    async with (
        gateway_resources(settings) as gateway,
        ws_serve(
            gateway.handler,
            settings.host,
            settings.port,
            ssl=server_tls(settings),
            process_request=gateway.process_request,
            compression=None,
            max_size=settings.agent_max_message_bytes,
            server_header=None,
            # websockets logs every handshake and HTTP answer at INFO: thousands
            # of agents would flood the log. Ours logs what matters.
            logger=_quiet_websockets_logger(),
        ) as server,
    ):
        log.info(
            "gateway %s listening on wss://%s:%d%s",
            settings.gateway_id,
            settings.host,
            settings.port,
            AGENT_PATH,
        )
        await server.serve_forever()
