"""One agent's connection, from hello to close.

hello (within the hello timeout) → version negotiated → claimed as the
node's connection here → presence and route set → welcome (with this
connection's share of the backlog budget) → established: an ``online`` entry
goes to the batcher (the commands service then sends the node's pending
executions) and deliveries start flowing → facts reported → each heartbeat
and each execution report validated and handed to the batcher, which writes
it and calls back ``acknowledge`` (heartbeats: a cumulative ``ack {upto}``)
or ``acknowledge_reports`` (a ``result_ack {execution_id, upto}``) once it is
durable → on close, presence and route released if still this connection's.

Everything the gateway sends after welcome goes through one writer task,
started when there is something to send and ended when there is nothing
left: acks first (coalesced: only the newest ``upto`` is sent), then
result acks (coalesced per execution), then deliveries (``execute`` and
``cancel`` frames from the inbox, in order, as written by the core). A
delivery never waits for a slow agent: :meth:`AgentSession.deliver` queues
it, or refuses it when ``outbox_max`` deliveries already wait.

A protocol violation closes this connection only, with the code the contract
assigns; Redis failing closes it with 1011 (``fail``), a revocation with 4003
(``revoke``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from sm_gateway.agent_messages import AGENT_MESSAGES, REPORTS, FactsChanged, Heartbeat, Hello
from sm_gateway.authenticator import NodeIdentity
from sm_gateway.batcher import Batcher, HeartbeatEntry, OnlineEntry, ReportEntry
from sm_gateway.facts_reporter import FactsReporter
from sm_gateway.instruments import Instruments
from sm_gateway.presence import Presence
from sm_gateway.protocol import CloseCode, Protocol, ProtocolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionParts:
    """What every session of a gateway shares."""

    protocol: Protocol
    presence: Presence
    batcher: Batcher
    facts: FactsReporter
    instruments: Instruments
    heartbeat_interval: float
    hello_timeout: float
    # Deliveries queued for one agent at most; beyond, they are refused (dropped).
    outbox_max: int
    # The welcome's backlog_rate for a new connection, given the connections held now.
    backlog_rate: Callable[[], float]


class AgentSession:
    def __init__(self, ws: ServerConnection, identity: NodeIdentity, parts: SessionParts) -> None:
        self.ws = ws
        self.identity = identity
        self._parts = parts
        self.version = 0
        self.connected_at: float | None = None
        self.replaced = False
        self.ended = False
        self.established = False  # welcome sent: the gateway may send anything now
        self._received = 0  # heartbeats received on this connection
        self._ack_wanted = 0
        self._ack_sent = 0
        self._report_acks: dict[str, int] = {}  # execution id → seq, not yet sent
        self._outbox: deque[str] = deque()  # deliveries, in order
        self._writer: asyncio.Task[None] | None = None
        self._failed = False
        self._newest_sent_at = float("-inf")
        self._closing: asyncio.Task[None] | None = None

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    @property
    def presence_since(self) -> float | None:
        """``connected_at`` while this connection owns the node's presence."""
        if self.replaced or self.ended or self._failed:
            return None
        return self.connected_at

    async def run(self, claim: Callable[[AgentSession], None]) -> None:
        """Serve the connection; ``claim`` registers it as the node's current one after hello."""
        parts = self._parts
        try:
            hello = await self._hello()
            self.version = parts.protocol.negotiate(hello)
            claim(self)
            self.connected_at = round(time.time(), 3)
            # Online before welcome: an agent that was welcomed is in the node list.
            await parts.presence.touch(self.node_id, self.connected_at)
            welcome = parts.protocol.welcome(
                self.version, self.node_id, parts.heartbeat_interval, parts.backlog_rate()
            )
            await self.ws.send(welcome)
            self.established = True
            self._kick()  # deliveries that arrived since the claim
            await parts.batcher.submit(OnlineEntry(self, self.connected_at))
            parts.facts.report(self.node_id, msgspec.to_builtins(hello.facts))
            log.info("node %s connected (protocol %d)", self.node_id, self.version)
            await self._serve()
        except ProtocolError as exc:
            log.info("node %s: closing with %d: %s", self.node_id, exc.code, exc.reason)
            await self._close(exc.code, exc.close_reason)
        except ConnectionClosed:
            pass
        finally:
            self.ended = True
            if self._closing is not None:
                await asyncio.shield(self._closing)
            if self.connected_at is not None and not self.replaced:
                await parts.presence.release(self.node_id, self.connected_at)
                log.info("node %s disconnected", self.node_id)

    async def _serve(self) -> None:
        parts = self._parts
        decode = parts.protocol.decode
        counted = {
            kind: parts.instruments.messages.labels(name) for name, kind in AGENT_MESSAGES.items()
        }
        async for raw in self.ws:
            message = decode(raw)
            if isinstance(message, REPORTS):
                counted[type(message)].inc()
                # The frame's bytes as received (and validated) go to the results stream.
                frame = raw.encode() if isinstance(raw, str) else raw
                await parts.batcher.submit(
                    ReportEntry(
                        self, frame, round(time.time(), 3), message.execution_id, message.seq
                    )
                )
            elif isinstance(message, Heartbeat):
                counted[Heartbeat].inc()
                self._received += 1
                sent_at = message.sent_at
                live = sent_at >= self._newest_sent_at
                if live:
                    self._newest_sent_at = sent_at
                # The frame's bytes as received (and validated) go to the metrics stream.
                frame = raw.encode() if isinstance(raw, str) else raw
                await parts.batcher.submit(
                    HeartbeatEntry(self, frame, round(time.time(), 3), self._received, live)
                )
            elif isinstance(message, FactsChanged):
                counted[FactsChanged].inc()
                parts.facts.report(self.node_id, msgspec.to_builtins(message.facts))
            else:
                raise ProtocolError(CloseCode.POLICY_VIOLATION, "hello after hello")

    async def _hello(self) -> Hello:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), self._parts.hello_timeout)
        except TimeoutError:
            raise ProtocolError(
                CloseCode.POLICY_VIOLATION, f"no hello within {self._parts.hello_timeout:g} s"
            ) from None
        message = self._parts.protocol.decode(raw)
        if not isinstance(message, Hello):
            raise ProtocolError(CloseCode.POLICY_VIOLATION, "the first message must be hello")
        self._parts.instruments.messages.labels("hello").inc()
        return message

    # ---- called by the batcher and the gateway ----

    def acknowledge(self, upto: int) -> None:
        """The first ``upto`` heartbeats are durable: tell the agent (coalesced, never blocks)."""
        if self._failed or upto <= self._ack_wanted:
            return
        self._ack_wanted = upto
        self._kick()

    def acknowledge_reports(self, execution_id: str, upto: int) -> None:
        """The reports of ``execution_id`` up to ``seq`` ``upto`` are durable: tell the agent
        (coalesced per execution, never blocks)."""
        if self._failed:
            return
        if upto >= self._report_acks.get(execution_id, 0):
            self._report_acks[execution_id] = upto
        self._kick()

    def deliver(self, frame: str) -> bool:
        """Queue an ``execute`` or ``cancel`` frame for the agent, never waiting; False
        (dropped) when the connection is ending or ``outbox_max`` deliveries already wait."""
        if self._failed or self.ended or self.replaced or self._closing is not None:
            return False
        if len(self._outbox) >= self._parts.outbox_max:
            return False
        self._outbox.append(frame)
        self._kick()
        return True

    def _kick(self) -> None:
        if self._writer is None and self.established and not self._failed:
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        """Send what waits (acks, result acks, deliveries) until nothing does."""
        protocol, instruments = self._parts.protocol, self._parts.instruments
        try:
            while not self._failed:
                if self._ack_sent < self._ack_wanted:
                    upto = self._ack_wanted
                    await self.ws.send(protocol.ack(self.version, upto))
                    self._ack_sent = upto
                    instruments.acks.inc()
                elif self._report_acks:
                    execution_id = next(iter(self._report_acks))
                    seq = self._report_acks.pop(execution_id)
                    await self.ws.send(protocol.result_ack(self.version, execution_id, seq))
                    instruments.result_acks.inc()
                elif self._outbox:
                    await self.ws.send(self._outbox.popleft())
                else:
                    break
        except ConnectionClosed:
            pass
        finally:
            self._writer = None

    def fail(self) -> None:
        """Redis did not take this connection's heartbeats or reports: nothing more is
        acknowledged; close 1011."""
        if self._failed:
            return
        self._failed = True
        self._start_close(CloseCode.INTERNAL_ERROR, "the core cannot store what was sent; retry")

    def revoke(self) -> None:
        """The node was deleted or replaced: close at once with 4003."""
        self._start_close(CloseCode.REVOKED, "the node's credential was revoked")

    async def replace(self) -> None:
        """A newer connection of the same node took over: it owns presence from now on."""
        self.replaced = True
        await self._close(CloseCode.REPLACED, "replaced by a newer connection")

    def _start_close(self, code: CloseCode, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: CloseCode, reason: str) -> None:
        self._parts.instruments.closes.labels(str(int(code))).inc()
        await self.ws.close(code, reason)
