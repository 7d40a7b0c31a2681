"""The link: one WebSocket to the gateway, kept open until the agent stops.

Per connection (protocol in ``openapi/agent-protocol.json``): authenticate
the handshake with the node credential, send ``hello`` (the versions this
agent speaks, the node's facts), wait for ``welcome`` (version chosen,
heartbeat interval), then send a ``heartbeat`` every interval. When the
connection fails or closes, reconnect after an exponential backoff with full
jitter; the backoff restarts after each welcome. A refused credential (HTTP
401/403 at the handshake, close code 4003) stops the agent: retrying cannot
fix it, enrolling again can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from sm_agent import PROTOCOL_VERSIONS, __version__
from sm_agent.backoff import Backoff
from sm_agent.heartbeat import Heartbeats

WELCOME_TIMEOUT = 15.0
OPEN_TIMEOUT = 15.0
MAX_MESSAGE_BYTES = 1024 * 1024
MIN_INTERVAL = 1.0

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_REVOKED = 4003

log = logging.getLogger(__name__)


class CredentialRefused(Exception):
    """The core refuses this node's credential; the node must be enrolled again."""


class UnusableGatewayUrl(Exception):
    """The configured gateway URL is not a WebSocket URL."""


class ProtocolViolation(Exception):
    """The gateway sent something the protocol does not allow."""


def _decode(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise ProtocolViolation("binary frame from the gateway")
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ProtocolViolation("the gateway sent invalid JSON") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolViolation("the gateway sent a message without a type")
    return message


def _interval(welcome: dict[str, Any]) -> float:
    value = welcome.get("heartbeat_interval")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolViolation("welcome without a numeric heartbeat_interval")
    return max(float(value), MIN_INTERVAL)


class Link:
    def __init__(
        self,
        *,
        gateway_url: str,
        credential: str,
        ssl_context: ssl.SSLContext,
        facts: Callable[[], dict[str, Any]],
        heartbeats: Heartbeats,
        backoff: Backoff | None = None,
    ) -> None:
        self._url = gateway_url
        self._credential = credential
        self._ssl = ssl_context
        self._facts = facts
        self._heartbeats = heartbeats
        self._backoff = backoff or Backoff()
        # Observable progress, for logs and tests.
        self.connections = 0
        self.heartbeats_sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the connection until ``stop`` is set; raise CredentialRefused when refused."""
        while not stop.is_set():
            try:
                await self._session(stop)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    body = (
                        exc.response.body.decode(errors="replace")[:300]
                        if exc.response.body
                        else ""
                    )
                    raise CredentialRefused(
                        f"the gateway refused this node's credential (HTTP {status}) {body}".strip()
                    ) from exc
                log.warning("gateway refused the connection: HTTP %d", status)
            except InvalidURI as exc:
                raise UnusableGatewayUrl(f"the gateway URL is unusable: {exc}") from exc
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                if code == CLOSE_REVOKED:
                    raise CredentialRefused(f"the core revoked this node: {reason}") from exc
                log.warning("connection closed (code %s %s)", code, reason)
            except (OSError, TimeoutError, InvalidHandshake, ProtocolViolation) as exc:
                log.warning("connection to %s failed: %s", self._url, exc or type(exc).__name__)
            if stop.is_set():
                break
            delay = self._backoff.next_delay()
            log.info("reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, stop: asyncio.Event) -> None:
        async with connect(
            self._url,
            ssl=self._ssl,
            additional_headers={"Authorization": f"Bearer {self._credential}"},
            user_agent_header=f"sm-agent/{__version__}",
            compression=None,
            open_timeout=OPEN_TIMEOUT,
            max_size=MAX_MESSAGE_BYTES,
        ) as ws:
            self.connections += 1
            version, interval = await self._greet(ws)
            self._backoff.reset()
            log.info("connected to %s (protocol %d, every %.1f s)", self._url, version, interval)
            await self._beat(ws, stop, version, interval)

    async def _greet(self, ws: ClientConnection) -> tuple[int, float]:
        hello = {
            "v": max(PROTOCOL_VERSIONS),
            "type": "hello",
            "versions": list(PROTOCOL_VERSIONS),
            "agent_version": __version__,
            "facts": self._facts(),
        }
        await ws.send(json.dumps(hello))
        try:
            welcome = _decode(await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT))
            if welcome["type"] != "welcome" or welcome.get("v") not in PROTOCOL_VERSIONS:
                raise ProtocolViolation(f"expected welcome, got {welcome['type']!r}")
            return int(welcome["v"]), _interval(welcome)
        except ProtocolViolation as exc:
            await ws.close(CLOSE_POLICY, str(exc)[:120])
            raise

    async def _beat(
        self, ws: ClientConnection, stop: asyncio.Event, version: int, interval: float
    ) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(stop.wait())
        receiving = asyncio.ensure_future(self._receive(ws))
        try:
            next_at = loop.time()
            while True:
                await ws.send(json.dumps(self._heartbeats.next(version)))
                self.heartbeats_sent += 1
                # A fixed schedule, not sleep(interval): the send time does not drift.
                # After a stall (suspend, overload) start again from now, never in a burst.
                next_at = max(next_at + interval, loop.time())
                done, _ = await asyncio.wait(
                    {stopping, receiving},
                    timeout=next_at - loop.time(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopping in done:
                    await ws.close(CLOSE_NORMAL, "agent stopping")
                    return
                if receiving in done:
                    receiving.result()  # raises ConnectionClosed / ProtocolViolation
                    # Only a 1000/1001 close ends the receiver without an error.
                    log.info(
                        "the gateway closed the connection (%s %s)",
                        ws.close_code,
                        ws.close_reason or "",
                    )
                    return
        finally:
            stopping.cancel()
            receiving.cancel()

    async def _receive(self, ws: ClientConnection) -> None:
        """Read what the gateway sends; this protocol version has no message after welcome."""
        async for raw in ws:
            try:
                message = _decode(raw)
                raise ProtocolViolation(f"unexpected {message['type']!r} message from the gateway")
            except ProtocolViolation as exc:
                await ws.close(CLOSE_POLICY, str(exc)[:120])
                raise
