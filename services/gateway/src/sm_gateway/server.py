"""The gateway process: a websockets server with TLS from the data directory.

``serve(settings)`` runs until cancelled. Plain HTTP (probes, metrics) and
the handshake authentication of both WebSockets are answered in
``process_request``, before any WebSocket exists: a refused credential or
token never gets a connection. ``/agent/ws`` serves agents (``session``),
``/events/ws`` clients (``event_client``). Background tasks: the batcher
(heartbeats → ``metrics``, execution reports and connections → ``results``),
the inbox and revocations reader (``execute`` and ``cancel`` deliveries are
queued to the node's session if this gateway holds it, else dropped), the
facts reporter and the event hub. Per-message compression is off (it costs about 4 times the memory
per connection).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import ssl
import weakref
from collections.abc import AsyncIterator
from typing import Final

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request, Response

from sm_gateway import probes
from sm_gateway.authenticator import Authenticator, NodeIdentity, NodeRefused
from sm_gateway.batcher import Batcher
from sm_gateway.event_client import ClientParts, EventClient
from sm_gateway.event_hub import EventHub
from sm_gateway.event_protocol import STREAM_SCOPES, EventProtocol
from sm_gateway.facts_reporter import FactsReporter
from sm_gateway.inbox import Inbox
from sm_gateway.instruments import Instruments
from sm_gateway.presence import Presence
from sm_gateway.protocol import DELIVERY_KINDS, CloseCode, Protocol, backlog_rate
from sm_gateway.session import AgentSession, SessionParts
from sm_gateway.settings import GatewaySettings
from sm_shared.service_token import RegistryUnavailable, ServiceToken
from sm_shared.tokens import Claims, InvalidToken, TokenVerifier

AGENT_PATH: Final = "/agent/ws"
EVENTS_PATH: Final = "/events/ws"
REGISTRY_TIMEOUT: Final = 10.0
RETRY_AFTER: Final = "5"
KNOWN_PATHS: Final = ("/healthz", "/readyz", "/metrics", AGENT_PATH, EVENTS_PATH)

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
        service_token = ServiceToken(registry, settings.data.service_secret)
        self.authenticator = Authenticator(
            registry, service_token, cache_seconds=settings.auth_cache_seconds
        )
        self.presence = Presence(redis, settings.gateway_id, settings.heartbeat_interval)
        self.batcher = Batcher(
            redis,
            self.presence,
            self.instruments,
            batch_max=settings.batch_max,
            batch_delay=settings.batch_delay,
            max_pending=settings.batch_max_pending,
            max_pending_bytes=settings.batch_max_pending_bytes,
        )
        self.facts = FactsReporter(redis, registry, service_token, self.instruments)
        self.inbox = Inbox(
            redis,
            settings.gateway_id,
            {
                "revoke": self._revoke_delivery,
                **{kind: self._forward_delivery for kind in DELIVERY_KINDS},
            },
            self._revoked,
            self.instruments,
        )
        self.hub = EventHub(redis)
        self.tokens = TokenVerifier(settings.data)
        self.session_parts = SessionParts(
            protocol=self.protocol,
            presence=self.presence,
            batcher=self.batcher,
            facts=self.facts,
            instruments=self.instruments,
            heartbeat_interval=settings.heartbeat_interval,
            hello_timeout=settings.hello_timeout,
            outbox_max=settings.agent_outbox_max,
            backlog_rate=lambda: backlog_rate(settings.backlog_budget, len(self.sessions) or 1),
        )
        self.client_parts = ClientParts(
            protocol=EventProtocol(),
            hub=self.hub,
            instruments=self.instruments,
            max_node_topics=settings.events_max_topics,
            max_command_topics=settings.events_max_command_topics,
            queue_size=settings.events_queue,
            queue_bytes=settings.events_queue_bytes,
        )
        self.sessions: dict[str, AgentSession] = {}
        # Identities authenticated in process_request, until the handler takes them.
        self._pending: weakref.WeakKeyDictionary[ServerConnection, NodeIdentity | Claims] = (
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
        if path == AGENT_PATH:
            return await self._authenticate(connection, request)
        if path == EVENTS_PATH:
            return self._authorize_client(connection, request)
        return probes.problem(404, f"nothing is served at {path[:100]}")

    def _authorize_client(self, connection: ServerConnection, request: Request) -> Response | None:
        """An access token (verified locally) with nodes:read, metrics:read or commands:read
        opens the stream."""
        token = _bearer(request)
        if token is None:
            return probes.problem(
                401,
                "an access token is required (Authorization: Bearer)",
                {"WWW-Authenticate": 'Bearer realm="events"'},
            )
        try:
            claims = self.tokens.verify(token)
        except InvalidToken as exc:
            return probes.problem(
                401,
                f"the access token is not valid: {str(exc)[:200]}",
                {"WWW-Authenticate": 'Bearer realm="events", error="invalid_token"'},
            )
        if not claims.scopes & STREAM_SCOPES:
            return probes.problem(
                403, "the token needs scope nodes:read, metrics:read or commands:read"
            )
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None  # not a handshake: websockets answers 400/426
        self._pending[connection] = claims
        return None

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
        who = self._pending.pop(connection, None)
        if isinstance(who, NodeIdentity):
            await self._serve_agent(connection, who)
        elif isinstance(who, Claims):
            await self._serve_client(connection, who)
        else:  # cannot happen: process_request answers every other request
            await connection.close(CloseCode.INTERNAL_ERROR, "unauthenticated")

    async def _serve_agent(self, connection: ServerConnection, identity: NodeIdentity) -> None:
        session = AgentSession(connection, identity, self.session_parts)
        self.instruments.connections.inc()
        try:
            await session.run(self._claim)
        finally:
            self.instruments.connections.dec()
            if self.sessions.get(session.node_id) is session:
                del self.sessions[session.node_id]

    async def _serve_client(self, connection: ServerConnection, claims: Claims) -> None:
        client = EventClient(connection, claims, self.client_parts)
        self.instruments.event_clients.inc()
        try:
            await client.run()
        finally:
            self.instruments.event_clients.dec()

    def _claim(self, session: AgentSession) -> None:
        """``session`` is now the node's connection here; an older one is closed (4004)."""
        older = self.sessions.get(session.node_id)
        self.sessions[session.node_id] = session
        if older is not None and older is not session:
            older.replaced = True  # before any await: the older one must not release presence
            task = asyncio.create_task(older.replace())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # ---- deliveries ----

    async def _forward_delivery(self, fields: dict[bytes, bytes]) -> None:
        """Inbox ``execute``/``cancel``: queue the frame, as written, to the node's session
        here; dropped (and counted) when the node is not held here or the frame is not
        a valid message of its kind. Never waits for the agent."""
        kind = fields.get(b"kind", b"").decode()
        session = self.sessions.get(fields.get(b"node_id", b"").decode(errors="replace"))
        if session is None:
            self.instruments.inbox_drops.labels(kind, "not_held").inc()
            return
        frame = self.protocol.delivery(kind, fields.get(b"frame", b""))
        if frame is None:
            self.instruments.inbox_drops.labels(kind, "invalid").inc()
            log.warning("inbox: an invalid %s frame for node %s dropped", kind, session.node_id)
            return
        if not session.deliver(frame):
            self.instruments.inbox_drops.labels(kind, "full").inc()

    # ---- revocations ----

    async def _revoke_delivery(self, fields: dict[bytes, bytes]) -> None:
        """Inbox ``revoke``: the node this gateway holds was deleted or replaced."""
        await self._revoked(fields.get(b"node_id", b"").decode())

    async def _revoked(self, node_id: str) -> None:
        """Forget the node's credential; close its connection here (4003) if there is one."""
        self.authenticator.forget_node(node_id)
        self.facts.forget(node_id)
        session = self.sessions.get(node_id)
        if session is not None:
            session.revoke()

    # ---- background work ----

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """The background tasks run while inside; on a clean exit the inbox is deleted."""
        try:  # a gateway starts without Redis too (it is not ready until Redis answers)
            await self.inbox.start()
            redis_up = True
        except (RedisError, OSError) as exc:
            log.warning("Redis is unreachable at start: %r", exc)
            redis_up = False
        tasks = [
            asyncio.create_task(self.batcher.run(), name="heartbeat-batcher"),
            asyncio.create_task(self.inbox.run(), name="inbox"),
            asyncio.create_task(self.facts.run(), name="facts-reporter"),
            asyncio.create_task(self.hub.run(), name="event-hub"),
        ]
        try:
            if redis_up:  # clients may subscribe as soon as the gateway answers
                await asyncio.wait_for(self.hub.wait_ready(), REGISTRY_TIMEOUT)
            yield self
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.inbox.delete()


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
        async with Gateway(settings, redis, registry).running() as gateway:
            yield gateway
    finally:
        await registry.aclose()
        await redis.aclose()


# asyncio gives every TLS connection a read buffer of SSLProtocol.max_size
# (256 KiB): 80 % of a gateway's memory per agent. Agents send frames of about
# 1 KB (128 KiB at most), which a 16 KiB buffer reads in one or a few calls;
# with it a held connection costs about 61 KiB instead of 302 (bench/RESULTS.md).
TLS_READ_BUFFER: Final = 16 * 1024


def shrink_tls_read_buffers() -> None:
    """Every TLS connection this process accepts from now on reads through a small buffer."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def _quiet_loggers() -> logging.Logger:
    """websockets and httpx log every handshake and registry call at INFO: thousands
    of agents would flood the log. Ours logs what matters; an operator's explicit
    level wins. Returns the websockets server's logger."""
    for name in ("websockets.server", "httpx"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    return logging.getLogger("websockets.server")


async def serve(settings: GatewaySettings) -> None:
    """Run the gateway until cancelled; connections are closed with 1001 on the way out."""
    shrink_tls_read_buffers()
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
            logger=_quiet_loggers(),
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
