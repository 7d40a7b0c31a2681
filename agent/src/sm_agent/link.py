"""The link: heartbeats taken every interval, kept on disk, delivered over one WebSocket.

Two things run side by side until the agent stops:

- the sampler takes a heartbeat every interval on a fixed schedule, connected
  or not, and appends it to the spool (the offline buffer);
- the connection loop holds one WebSocket to a gateway. Per connection
  (protocol in ``openapi/agent-protocol.json``): authenticate the handshake
  with the node credential, send ``hello`` (versions, facts), wait for
  ``welcome`` (version, heartbeat interval, backlog rate); then send each new
  heartbeat at once, the buffered ones oldest first at the backlog rate
  (:mod:`sm_agent.delivery`), and ``facts`` when they changed (checked at
  most once a minute). The gateway's cumulative ``ack`` releases heartbeats
  from the spool; whatever was not acknowledged is sent again on the next
  connection.

Remote control (:mod:`sm_agent.control`): ``execute``, ``cancel`` and
``result_ack`` from the gateway are checked as strictly as the rest (a
malformed one closes the connection with 1008); execution reports are sent
from their own task, those of earlier connections first (before any
heartbeat), then side by side with heartbeats so that output never holds a
heartbeat back.

When a connection fails or closes (1001 gateway going away, 1011 gateway
error, 4004 replaced, network trouble), the next configured gateway URL is
tried after an exponential backoff with full jitter; the backoff restarts
after each welcome. A refused credential (HTTP 401/403 at the handshake,
close code 4003) stops the agent: retrying cannot fix it, enrolling again
can. Stopping (SIGTERM) closes the connection with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from sm_agent import PROTOCOL_VERSIONS, __version__
from sm_agent.backoff import Backoff
from sm_agent.control import Control
from sm_agent.delivery import AckOutOfRange, Delivery
from sm_agent.heartbeat import Heartbeats
from sm_agent.orders import BadMessage, parse_cancel, parse_result_ack
from sm_agent.spool import Spool

WELCOME_TIMEOUT = 15.0
OPEN_TIMEOUT = 15.0
MAX_MESSAGE_BYTES = 1024 * 1024
MIN_INTERVAL = 1.0
DEFAULT_INTERVAL = 5.0
# A gateway that names no backlog rate (older ones) gets this many buffered heartbeats/s.
DEFAULT_BACKLOG_RATE = 5.0
MIN_BACKLOG_RATE, MAX_BACKLOG_RATE = 0.1, 1000.0
MAX_IN_FLIGHT = 256
FACTS_CHECK_EVERY = 60.0

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


def _number(message: dict[str, Any], key: str) -> float | None:
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolViolation(f"{message['type']} with a non-numeric {key}")
    return float(value)


def _welcome_terms(welcome: dict[str, Any]) -> tuple[int, float, float]:
    """Version, heartbeat interval and backlog rate from a welcome."""
    if welcome["type"] != "welcome" or welcome.get("v") not in PROTOCOL_VERSIONS:
        raise ProtocolViolation(f"expected welcome, got {welcome['type']!r}")
    interval = _number(welcome, "heartbeat_interval")
    if interval is None:
        raise ProtocolViolation("welcome without a heartbeat_interval")
    rate = _number(welcome, "backlog_rate")
    if rate is None:
        rate = DEFAULT_BACKLOG_RATE
    return (
        int(welcome["v"]),
        max(interval, MIN_INTERVAL),
        min(max(rate, MIN_BACKLOG_RATE), MAX_BACKLOG_RATE),
    )


class Link:
    def __init__(
        self,
        *,
        credential: str,
        ssl_context: ssl.SSLContext,
        facts: Callable[[], dict[str, Any]],
        heartbeats: Heartbeats,
        gateway_url: str | None = None,
        gateway_urls: Sequence[str] = (),
        backoff: Backoff | None = None,
        spool: Spool | None = None,
        interval: float = DEFAULT_INTERVAL,
        max_in_flight: int = MAX_IN_FLIGHT,
        facts_check_every: float = FACTS_CHECK_EVERY,
        control: Control | None = None,
    ) -> None:
        urls = [*gateway_urls, *([gateway_url] if gateway_url else [])]
        if not urls:
            raise UnusableGatewayUrl("no gateway URL")
        self._urls = list(dict.fromkeys(urls))
        self._url_index = 0
        self._credential = credential
        self._ssl = ssl_context
        self._facts = facts
        self._heartbeats = heartbeats
        self._backoff = backoff or Backoff()
        self._own_spool = spool is None
        self._spool = spool if spool is not None else Spool(None)
        self._interval = max(interval, MIN_INTERVAL)
        self._version = max(PROTOCOL_VERSIONS)
        self._max_in_flight = max_in_flight
        self._facts_check_every = facts_check_every
        self._facts_sent: dict[str, Any] | None = None
        self._facts_checked_at = 0.0
        # Set when a heartbeat was taken or acknowledged; the sender waits on it.
        self._changed = asyncio.Event()
        # Set when the welcome changed the interval; the sampler waits on it.
        self._rescheduled = asyncio.Event()
        self._control = control
        # Set when a report was kept (the report sender waits on it).
        self._reports_changed = asyncio.Event()
        if control is not None:
            control.reports.listener = self._reports_changed.set
        # Observable progress, for logs and tests.
        self.connections = 0
        self.heartbeats_taken = 0
        self.heartbeats_sent = 0
        self.heartbeats_acked = 0
        self.backlog_sent = 0
        self.reports_sent = 0

    @property
    def url(self) -> str:
        """The gateway URL in use (or tried next)."""
        return self._urls[self._url_index]

    @property
    def interval(self) -> float:
        return self._interval

    async def run(self, stop: asyncio.Event) -> None:
        """Sample and deliver until ``stop`` is set; raise CredentialRefused when refused."""
        sampling = asyncio.create_task(self._sample_forever())
        try:
            await self._connect_forever(stop)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            if self._own_spool:
                self._spool.close()

    # ------------------------------------------------------------ sampling

    def _take_heartbeat(self) -> None:
        message = self._heartbeats.next(self._version)
        if self._spool.dropped:
            message["dropped"] = self._spool.dropped
        self._spool.append(json.dumps(message, separators=(",", ":")).encode())
        self.heartbeats_taken += 1
        self._changed.set()

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            taken_at = loop.time()
            try:
                self._take_heartbeat()
            except OSError as exc:  # a full or failing disk must not stop the agent
                log.error("cannot keep a heartbeat in the offline buffer: %s", exc)
            # A fixed schedule, not sleep(interval): the times do not drift. After a
            # stall (suspend, overload) go on from now, never in a burst.
            while True:
                self._rescheduled.clear()
                delay = taken_at + self._interval - loop.time()
                if delay <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rescheduled.wait(), delay)

    # ------------------------------------------------------------ connecting

    async def _connect_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            url = self.url
            welcomed = False
            try:
                welcomed = await self._session(url, stop)
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
                log.warning("%s refused the connection: HTTP %d", url, status)
            except InvalidURI as exc:
                raise UnusableGatewayUrl(f"the gateway URL is unusable: {exc}") from exc
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                if code == CLOSE_REVOKED:
                    raise CredentialRefused(f"the core revoked this node: {reason}") from exc
                log.warning("connection to %s closed (code %s %s)", url, code, reason)
            except (OSError, TimeoutError, InvalidHandshake, ProtocolViolation) as exc:
                log.warning("connection to %s failed: %s", url, exc or type(exc).__name__)
            if stop.is_set():
                break
            if not welcomed:
                # Try the next configured gateway.
                self._url_index = (self._url_index + 1) % len(self._urls)
            delay = self._backoff.next_delay()
            log.info(
                "reconnecting to %s in %.1f s (%d heartbeats buffered)",
                self.url,
                delay,
                len(self._spool),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, url: str, stop: asyncio.Event) -> bool:
        """One connection; True when it got as far as welcome."""
        async with connect(
            url,
            ssl=self._ssl,
            additional_headers={"Authorization": f"Bearer {self._credential}"},
            user_agent_header=f"sm-agent/{__version__}",
            compression=None,
            open_timeout=OPEN_TIMEOUT,
            max_size=MAX_MESSAGE_BYTES,
        ) as ws:
            self.connections += 1
            version, interval, backlog_rate = await self._greet(ws)
            self._backoff.reset()
            self._version = version
            if self._control is not None:
                self._control.version = version
            if interval != self._interval:
                self._interval = interval
                self._rescheduled.set()
            delivery = Delivery(
                self._spool,
                backlog_rate=backlog_rate,
                max_in_flight=self._max_in_flight,
                now=asyncio.get_running_loop().time(),
            )
            log.info(
                "connected to %s (protocol %d, every %.1f s, %d buffered heartbeats to send)",
                url,
                version,
                interval,
                delivery.backlog_left(),
            )
            await self._deliver(ws, stop, delivery)
            return True

    async def _greet(self, ws: ClientConnection) -> tuple[int, float, float]:
        facts = self._facts()
        hello = {
            "v": max(PROTOCOL_VERSIONS),
            "type": "hello",
            "versions": list(PROTOCOL_VERSIONS),
            "agent_version": __version__,
            "facts": facts,
        }
        await ws.send(json.dumps(hello))
        self._facts_sent = facts
        self._facts_checked_at = asyncio.get_running_loop().time()
        try:
            return _welcome_terms(_decode(await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT)))
        except ProtocolViolation as exc:
            await ws.close(CLOSE_POLICY, str(exc)[:120])
            raise

    # ------------------------------------------------------------ delivering

    async def _deliver(self, ws: ClientConnection, stop: asyncio.Event, delivery: Delivery) -> None:
        # Reports not acknowledged go out before any heartbeat (then side by side).
        resent = asyncio.Event()
        stopping = asyncio.ensure_future(stop.wait())
        receiving = asyncio.ensure_future(self._receive(ws, delivery))
        reporting = asyncio.ensure_future(self._send_reports(ws, resent))
        sending = asyncio.ensure_future(self._send(ws, delivery, resent))
        tasks = (stopping, receiving, reporting, sending)
        try:
            done, _ = await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                await ws.close(CLOSE_NORMAL, "agent stopping")
                return
            ended: tuple[asyncio.Future[Any], ...] = (receiving, reporting, sending)
            for task in ended:
                if task in done:
                    task.result()  # raises ConnectionClosed / ProtocolViolation
            # Only a 1000/1001 close ends the receiver without an error.
            log.info(
                "the gateway closed the connection (%s %s)", ws.close_code, ws.close_reason or ""
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_reports(self, ws: ClientConnection, resent: asyncio.Event) -> None:
        """Execution reports in the order kept: first those of earlier connections."""
        control = self._control
        if control is None:
            resent.set()
            return await asyncio.Future()  # nothing to send, ever
        control.ephemeral.clear()  # informational refusals of an earlier connection
        backlog_end = control.reports.next_serial
        cursor = -1
        while True:
            while control.ephemeral:
                await ws.send(control.ephemeral.pop(0).decode())
            found = control.reports.next_after(cursor)
            if found is None or found[0] >= backlog_end:
                resent.set()
            if found is None:
                self._reports_changed.clear()
                await self._reports_changed.wait()
                continue
            cursor, raw = found
            await ws.send(raw.decode())
            self.reports_sent += 1

    async def _send(self, ws: ClientConnection, delivery: Delivery, resent: asyncio.Event) -> None:
        await resent.wait()
        loop = asyncio.get_running_loop()
        backlog_before = self.backlog_sent
        while True:
            serial, wait = delivery.next(loop.time())
            if serial is not None:
                raw = self._spool.read(serial)
                if raw is None:
                    continue
                delivery.mark_sent(serial)
                await ws.send(raw.decode())
                self.heartbeats_sent += 1
                self.backlog_sent = backlog_before + delivery.backlog_sent
                await self._send_changed_facts(ws)
                continue
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    async def _send_changed_facts(self, ws: ClientConnection) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._facts_checked_at < self._facts_check_every:
            return
        self._facts_checked_at = now
        facts = self._facts()
        if facts != self._facts_sent:
            await ws.send(json.dumps({"v": self._version, "type": "facts", "facts": facts}))
            self._facts_sent = facts
            log.info("facts changed: sent them")

    async def _receive(self, ws: ClientConnection, delivery: Delivery) -> None:
        """Read what the gateway sends after welcome: acks and remote control."""
        async for raw in ws:
            try:
                message = _decode(raw)
                kind = message["type"]
                if kind == "ack" and message.get("v") == self._version:
                    self._acknowledge(message, delivery)
                elif kind in ("execute", "cancel", "result_ack"):
                    self._control_message(kind, message)
                else:
                    raise ProtocolViolation(f"unexpected {kind!r} message")
            except ProtocolViolation as exc:
                await ws.close(CLOSE_POLICY, str(exc)[:120])
                raise

    def _acknowledge(self, message: dict[str, Any], delivery: Delivery) -> None:
        if message.keys() != {"v", "type", "upto"}:
            raise ProtocolViolation("ack with missing or unknown fields")
        upto = message.get("upto")
        if isinstance(upto, bool) or not isinstance(upto, int) or upto < 1:
            raise ProtocolViolation("ack without a positive integer upto")
        try:
            released = delivery.acknowledge(upto)
        except AckOutOfRange as exc:
            raise ProtocolViolation(str(exc)) from exc
        self.heartbeats_acked += released
        self._changed.set()

    def _control_message(self, kind: str, message: dict[str, Any]) -> None:
        control = self._control
        try:
            if kind == "execute":
                if control is None:
                    log.warning("an execute arrived but remote control is not set up: ignored")
                    return
                control.execute(message)
            elif kind == "cancel":
                execution_id = parse_cancel(message, self._version)
                if control is not None:
                    control.cancel(execution_id)
            else:
                execution_id, upto = parse_result_ack(message, self._version)
                if control is not None:
                    control.acknowledge(execution_id, upto)
        except BadMessage as exc:
            raise ProtocolViolation(str(exc)) from exc
