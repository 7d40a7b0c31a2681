"""One consumer of a Redis stream's consumer group: the loop the commands process's consumers share.

A subclass (``results.ResultsConsumer``, ``audit_writer.AuditWriter``) says
which stream and group it reads (class attributes ``stream``, ``group``),
provides the instance attributes ``redis``, ``consumer`` (its name in the
group), ``batch`` (entries per read), ``block_ms`` (``XREADGROUP BLOCK``) and
``claim_idle`` (seconds), and implements ``handle(entries)``: act on them,
then acknowledge them. This class does the rest:

* ``ensure_group``: the group, reading from the stream's start (created with
  the stream when missing; an existing group is kept);
* ``recover``: this consumer's own pending entries (id ``0``), handled again
  until none is left: what a killed process read and never acknowledged;
* ``claim``: entries other consumers left pending ``claim_idle`` seconds,
  taken over (``XAUTOCLAIM`` from ``0-0`` round the whole pending list);
  entries deleted from the stream meanwhile come as ``(id, None)`` and
  ``handle`` acknowledges them as malformed;
* ``step``: one round: ``housekeeping`` (claiming every ``claim_idle / 2``;
  a subclass adds its own periodic work), own pending entries while
  ``recovering``, then new entries (``>``, blocking ``block_ms``);
* ``run``: rounds until ``stop`` is set. A round failing with one of
  ``retry_on`` acknowledged nothing: its entries stay pending, are recovered
  in the next round after ``RETRY_PAUSE``, never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.exc import DBAPIError, OperationalError

RETRY_PAUSE: Final = 1.0

# (stream id, fields); fields are None for an entry deleted from the stream while pending.
Entry = tuple[Any, Any]


def text(value: Any) -> str:
    """A stream id or name as ``str`` (replies are bytes unless responses are decoded)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class GroupConsumer(ABC):
    """Reads ``stream`` as ``consumer`` of ``group`` and hands the entries to ``handle``."""

    stream: ClassVar[str]
    group: ClassVar[str]
    # Where the loop logs, and what a failed round is called in that log.
    log: ClassVar[logging.Logger]
    what: ClassVar[str]
    # Failures after which a round is retried; any other ends ``run``.
    retry_on: ClassVar[tuple[type[Exception], ...]] = (OperationalError,)

    redis: Redis
    consumer: str
    batch: int
    block_ms: int
    claim_idle: float
    # True until this consumer's own pending entries are all handled (at start, after a failure).
    recovering: bool = True
    _next_claim: float = 0.0

    @abstractmethod
    async def handle(self, entries: Sequence[Entry]) -> object:
        """Act on ``entries`` (none is fine), then acknowledge them."""

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, start: str, block: int | None) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=self.batch, block=block
        )
        if not reply:
            return []
        # RESP2: [[stream, [(id, fields), ...]]]; RESP3: {stream: [[(id, fields), ...]]}
        if isinstance(reply, dict):
            entries: list[Entry] = next(iter(reply.values()))[0]
            return entries
        rest: list[Entry] = reply[0][1]
        return rest

    async def recover(self) -> int:
        """Handle this consumer's own pending entries (read before a crash); returns how many."""
        handled = 0
        while True:
            entries = await self._read("0", None)
            if not entries:
                self.recovering = False
                return handled
            await self.handle(entries)
            handled += len(entries)

    async def claim(self) -> int:
        """Take over entries other consumers left pending longer than ``claim_idle``."""
        start = "0-0"
        handled = 0
        while True:
            reply: Any = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.claim_idle * 1000),
                start_id=start,
                count=self.batch,
            )
            start_reply, entries = reply[0], reply[1]
            if entries:
                await self.handle(entries)
                handled += len(entries)
            start = text(start_reply)
            if start == "0-0":
                return handled

    async def trim(self) -> None:
        """``XTRIM MINID`` below the oldest entry the group still needs."""
        summary: Any = await self.redis.xpending(self.stream, self.group)
        if summary["pending"]:
            floor = summary["min"]
        else:
            groups: Any = await self.redis.xinfo_groups(self.stream)
            mine = [g for g in groups if text(g["name"]) == self.group]
            if not mine:
                return
            floor = mine[0]["last-delivered-id"]
        minid = text(floor)
        if minid in ("0-0", "0"):
            return
        await self.redis.xtrim(self.stream, minid=minid, approximate=False)

    async def housekeeping(self) -> int:
        """The periodic work of a round (here: claiming); returns the entries it handled."""
        now = time.monotonic()
        if now < self._next_claim:
            return 0
        self._next_claim = now + self.claim_idle / 2
        claimed = await self.claim()
        if claimed:
            self.log.info(
                "took over %d %s entries other consumers left pending", claimed, self.stream
            )
        return claimed

    async def step(self) -> int:
        """One round: own pending entries first when recovering, else new ones; returns how many."""
        handled = await self.housekeeping()
        if self.recovering:
            handled += await self.recover()
        entries = await self._read(">", self.block_ms)
        await self.handle(entries)
        return handled + len(entries)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set; a failed round is retried, never skipped."""
        await self.ensure_group()
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.step()
            except self.retry_on as exc:
                # Nothing of the round was acknowledged: its entries are read again.
                cause = exc.orig if isinstance(exc, DBAPIError) else exc  # not the SQL, its values
                self.log.warning("%s failed (%r); retrying", self.what, cause)
                self.recovering = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_PAUSE)
