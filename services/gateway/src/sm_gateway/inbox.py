"""What reaches this gateway through Redis streams: its inbox and the revocations.

One task reads, with one blocking ``XREAD``, two streams:

- ``gateway:{id}:inbox``: deliveries for the agents this gateway holds, each
  with a ``kind`` that picks its handler (``revoke``: close the node's
  connection with 4003; ``execute`` and ``cancel``: queue ``frame`` to the
  node's connection, or drop it when the node is not held here). Handlers
  never wait for an agent. Handled entries are deleted; the stream itself is
  deleted on a clean shutdown (``delete``). Read from the start: whatever is
  in it is addressed to this process.
- ``revocations`` (the registry's, read from its end as of start): every
  gateway forgets the revoked node's credential, so no cached success lets
  it reconnect, and closes its connection if it holds one.

Redis failures are logged and the read retried after a pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sm_gateway.instruments import Instruments
from sm_shared.streams import REVOCATIONS_STREAM, gateway_inbox

BLOCK_MS: Final = 5_000
BATCH: Final = 1000  # a command to thousands of nodes arrives as thousands of entries
RETRY_PAUSE: Final = 1.0

# A delivery's fields (bytes, as Redis returns them) → done.
Handler = Callable[[dict[bytes, bytes]], Awaitable[None]]
# The id of a revoked node → done.
RevocationHandler = Callable[[str], Awaitable[None]]

log = logging.getLogger(__name__)


class Inbox:
    def __init__(
        self,
        redis: Redis,
        gateway_id: str,
        handlers: Mapping[str, Handler],
        on_revocation: RevocationHandler,
        instruments: Instruments,
    ) -> None:
        self._redis = redis
        self.stream = gateway_inbox(gateway_id)
        self._handlers = handlers
        self._on_revocation = on_revocation
        self._instruments = instruments
        # Stream name → the last id read (typed loosely, as redis-py's xread wants it).
        self._positions: dict[Any, Any] | None = None

    async def start(self) -> None:
        """Fix where reading begins (before connections are accepted)."""
        newest = await self._redis.xrevrange(REVOCATIONS_STREAM, count=1)
        revoked_from = newest[0][0].decode() if newest else "0-0"
        self._positions = {self.stream: "0-0", REVOCATIONS_STREAM: revoked_from}

    async def run(self) -> None:
        """Read and dispatch until cancelled."""
        while True:
            try:
                if self._positions is None:
                    await self.start()
                await self._read_once()
            except (RedisError, OSError) as exc:
                log.warning("reading the inbox and revocations failed: %r", exc)
                await asyncio.sleep(RETRY_PAUSE)

    async def _read_once(self) -> None:
        assert self._positions is not None
        found = await self._redis.xread(self._positions, count=BATCH, block=BLOCK_MS)
        for name, entries in found or []:
            stream = name.decode()
            if stream == self.stream:
                await self._deliver(entries)
            else:
                for _, fields in entries:
                    self._instruments.revocations.inc()
                    await self._on_revocation(fields.get(b"node_id", b"").decode())
            if entries:
                self._positions[stream] = entries[-1][0].decode()

    async def _deliver(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for _, fields in entries:
            kind = fields.get(b"kind", b"").decode()
            handler = self._handlers.get(kind)
            self._instruments.deliveries.labels(kind if handler else "unknown").inc()
            if handler is None:
                log.warning("inbox: no handler for kind %r; entry dropped", kind[:40])
                continue
            try:
                await handler(fields)
            except Exception:  # one bad delivery must not stop the others
                log.exception("inbox: a %s delivery failed", kind)
        await self._redis.xdel(self.stream, *[entry_id for entry_id, _ in entries])

    async def delete(self) -> None:
        """Clean shutdown: this process's inbox goes with it."""
        await self._redis.delete(self.stream)
