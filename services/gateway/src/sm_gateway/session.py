"""One agent's connection, from hello to close.

hello (within the hello timeout) → version negotiated → welcome → presence
set → each heartbeat validated and presence refreshed → on close, presence
and route released if still this connection's. A protocol violation closes
this connection only, with the code the contract assigns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from sm_gateway.authenticator import NodeIdentity
from sm_gateway.instruments import Instruments
from sm_gateway.presence import Presence
from sm_gateway.protocol import CloseCode, Protocol, ProtocolError

log = logging.getLogger(__name__)


class AgentSession:
    def __init__(
        self,
        ws: ServerConnection,
        identity: NodeIdentity,
        *,
        protocol: Protocol,
        presence: Presence,
        instruments: Instruments,
        heartbeat_interval: float,
        hello_timeout: float,
    ) -> None:
        self.ws = ws
        self.identity = identity
        self._protocol = protocol
        self._presence = presence
        self._instruments = instruments
        self._interval = heartbeat_interval
        self._hello_timeout = hello_timeout
        self.connected_at: float | None = None
        self.replaced = False

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    async def run(self, claim: Callable[[AgentSession], None]) -> None:
        """Serve the connection; ``claim`` registers it as the node's current one after hello."""
        try:
            version = await self._hello()
            claim(self)
            self.connected_at = round(time.time(), 3)
            # Online before welcome: an agent that was welcomed is in the node list.
            await self._presence.touch(self.node_id, self.connected_at)
            await self.ws.send(self._protocol.welcome(version, self.node_id, self._interval))
            log.info("node %s connected (protocol %d)", self.node_id, version)
            async for raw in self.ws:
                message = self._protocol.decode(raw)
                self._instruments.messages.labels(message["type"]).inc()
                if message["type"] != "heartbeat":
                    raise ProtocolError(CloseCode.POLICY_VIOLATION, "hello after hello")
                await self._presence.touch(self.node_id, self.connected_at)
        except ProtocolError as exc:
            log.info("node %s: closing with %d: %s", self.node_id, exc.code, exc.reason)
            self._instruments.closes.labels(str(int(exc.code))).inc()
            await self.ws.close(exc.code, exc.close_reason)
        except ConnectionClosed:
            pass
        finally:
            if self.connected_at is not None and not self.replaced:
                await self._presence.release(self.node_id, self.connected_at)
                log.info("node %s disconnected", self.node_id)

    async def _hello(self) -> int:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), self._hello_timeout)
        except TimeoutError:
            raise ProtocolError(
                CloseCode.POLICY_VIOLATION, f"no hello within {self._hello_timeout:g} s"
            ) from None
        message = self._protocol.decode(raw)
        if message["type"] != "hello":
            raise ProtocolError(CloseCode.POLICY_VIOLATION, "the first message must be hello")
        self._instruments.messages.labels("hello").inc()
        return self._protocol.negotiate(message)

    async def replace(self) -> None:
        """A newer connection of the same node took over: it owns presence from now on."""
        self.replaced = True
        self._instruments.closes.labels(str(int(CloseCode.REPLACED))).inc()
        await self.ws.close(CloseCode.REPLACED, "replaced by a newer connection")
