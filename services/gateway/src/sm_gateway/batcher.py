"""What agents send, written to Redis streams in shared, pipelined batches.

A session hands each validated heartbeat (:class:`HeartbeatEntry`), each
execution report (:class:`ReportEntry`) and its own start
(:class:`OnlineEntry`) to :meth:`Batcher.submit`; one flusher task writes
them: a batch is flushed when ``batch_max`` entries are queued, or
``batch_delay`` seconds after the first one arrived. One pipeline per batch
holds

- one ``XADD metrics`` per heartbeat, fields ``n`` (node id), ``h`` (the
  frame's bytes as received and validated), ``r`` (receive time), never
  trimmed here (the metrics service trims below its oldest pending entry);
- one ``XADD results`` per report, fields ``n``, ``t`` = ``report``, ``m``
  (the report frame's bytes as received and validated), ``r``; and per
  connection established, ``n``, ``t`` = ``online``, ``r`` (the commands
  service sends that node's pending executions at once); never trimmed here;
- one script call refreshing the presence of every node with heartbeats in
  the batch once, and publishing each node's newest live heartbeat on
  ``live:{node}``.

Only when the pipeline succeeded are the entries acknowledged: each
connection gets its cumulative heartbeat ``ack``, and per execution a
``result_ack`` up to the highest ``seq`` written: nothing is acknowledged
that Redis does not hold. When Redis fails, the connections with entries in
that batch are closed with 1011 (their agents send what is unacknowledged
again on their next connection). Batches are written one at a time, so acks
only grow. When ``max_pending`` entries or ``max_pending_bytes`` bytes of
frames wait (output floods are larger than heartbeats), sessions stop
reading their sockets until the flusher catches up: memory stays bounded and
TCP slows the agents down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sm_gateway.instruments import Instruments
from sm_gateway.presence import Presence, Refresh
from sm_shared.streams import METRICS_STREAM, RESULTS_STREAM

log = logging.getLogger(__name__)

# Failures that mean "Redis did not take the batch".
REDIS_FAILURES: Final = (RedisError, OSError, asyncio.TimeoutError)
# What an entry without a frame counts for in the pending bytes.
ENTRY_OVERHEAD: Final = 64


class Source(Protocol):
    """What the batcher needs of a connection (``session.AgentSession``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def presence_since(self) -> float | None:
        """``connected_at`` while this connection owns the node's presence, else None."""

    def acknowledge(self, upto: int) -> None:
        """The connection's first ``upto`` heartbeats are written."""

    def acknowledge_reports(self, execution_id: str, upto: int) -> None:
        """The reports of ``execution_id`` up to ``seq`` ``upto`` are written."""

    def fail(self) -> None:
        """Redis did not take this connection's entries."""


@dataclass(slots=True)
class HeartbeatEntry:
    """One validated heartbeat waiting to be written."""

    source: Source
    frame: bytes
    received_at: float
    count: int  # heartbeats of its connection up to and including this one
    live: bool  # newer than anything its connection published: goes out on live:{node}

    @property
    def size(self) -> int:
        return len(self.frame) + ENTRY_OVERHEAD


@dataclass(slots=True)
class ReportEntry:
    """One validated execution report (refused, started, output, finished) waiting to be written."""

    source: Source
    frame: bytes
    received_at: float
    execution_id: str
    seq: int

    @property
    def size(self) -> int:
        return len(self.frame) + ENTRY_OVERHEAD


@dataclass(slots=True)
class OnlineEntry:
    """A connection was established (welcome sent): its node can get its executions now."""

    source: Source
    received_at: float

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD


Entry = HeartbeatEntry | ReportEntry | OnlineEntry


def live_message(node_id: str, received_at: float, frame: bytes) -> bytes:
    """The ``live:{node}`` message; the heartbeat's bytes are embedded, never parsed again."""
    return orjson.dumps(
        {
            "type": "metrics",
            "node_id": node_id,
            "received_at": received_at,
            "heartbeat": orjson.Fragment(frame),
        }
    )


class Batcher:
    def __init__(
        self,
        redis: Redis,
        presence: Presence,
        instruments: Instruments,
        *,
        batch_max: int,
        batch_delay: float,
        max_pending: int,
        max_pending_bytes: int,
    ) -> None:
        self._redis = redis
        self._presence = presence
        self._instruments = instruments
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._queue: deque[Entry] = deque()
        self._bytes = 0  # sizes of the queued entries
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        instruments.pending.set_function(lambda: len(self._queue))
        instruments.pending_bytes.set_function(lambda: self._bytes)

    def _full(self) -> bool:
        return len(self._queue) >= self._max_pending or self._bytes >= self._max_pending_bytes

    async def submit(self, entry: Entry) -> None:
        """Queue an entry; waits only while the queue is full (``max_pending``, ``max_pending_bytes``)."""
        while self._full():
            self._room.clear()
            await self._room.wait()
        self._queue.append(entry)
        self._bytes += entry.size
        self._arrived.set()

    async def run(self) -> None:
        """The flusher: runs until cancelled."""
        while True:
            await self._arrived.wait()
            if len(self._queue) < self._batch_max and self._batch_delay > 0:
                await asyncio.sleep(self._batch_delay)
            while self._queue:
                count = min(len(self._queue), self._batch_max)
                batch = [self._queue.popleft() for _ in range(count)]
                self._bytes -= sum(entry.size for entry in batch)
                if not self._full():
                    self._room.set()
                await self.flush(batch)
            self._arrived.clear()

    async def flush(self, batch: list[Entry]) -> bool:
        """Write one batch and acknowledge it; False (connections failed) if Redis did not take it."""
        started = time.perf_counter()
        now = round(time.time(), 3)
        newest: dict[str, HeartbeatEntry] = {}
        refresh_from: dict[str, Source] = {}
        heartbeats = reports = online = 0
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in batch:
                    source = entry.source
                    received = repr(entry.received_at)
                    if isinstance(entry, HeartbeatEntry):
                        heartbeats += 1
                        pipe.xadd(
                            METRICS_STREAM, {"n": source.node_id, "h": entry.frame, "r": received}
                        )
                        refresh_from[source.node_id] = source
                        if entry.live:
                            newest[source.node_id] = entry
                    elif isinstance(entry, ReportEntry):
                        reports += 1
                        pipe.xadd(
                            RESULTS_STREAM,
                            {"n": source.node_id, "t": "report", "m": entry.frame, "r": received},
                        )
                    else:
                        online += 1
                        pipe.xadd(
                            RESULTS_STREAM, {"n": source.node_id, "t": "online", "r": received}
                        )
                refreshes = [
                    Refresh(node_id, since, self._live(newest.get(node_id)))
                    for node_id, source in refresh_from.items()
                    if (since := source.presence_since) is not None
                ]
                if refreshes:
                    self._presence.stage(pipe, refreshes, now)
                results = await pipe.execute()
        except REDIS_FAILURES as exc:
            self._instruments.batch_failures.inc()
            log.warning("a batch of %d entries was not written: %r", len(batch), exc)
            for source in {entry.source for entry in batch}:
                source.fail()
            return False
        instruments = self._instruments
        instruments.flush_seconds.observe(time.perf_counter() - started)
        instruments.batch_size.observe(len(batch))
        if heartbeats:
            instruments.heartbeats_written.inc(heartbeats)
        if reports:
            instruments.results_written.labels("report").inc(reports)
        if online:
            instruments.results_written.labels("online").inc(online)
        self._acknowledge(batch)
        came_online = results[-1] if refreshes else []
        if came_online:
            try:
                await self._presence.announce_online(came_online, now)
            except REDIS_FAILURES as exc:  # the heartbeats are written: only the event is lost
                log.warning("online events not published: %r", exc)
        return True

    @staticmethod
    def _acknowledge(batch: list[Entry]) -> None:
        """Each connection's heartbeat count, and per execution the highest seq, written."""
        upto: dict[Source, int] = {}
        reported: dict[tuple[Source, str], int] = {}
        for entry in batch:
            if isinstance(entry, HeartbeatEntry):
                upto[entry.source] = entry.count
            elif isinstance(entry, ReportEntry):
                key = (entry.source, entry.execution_id)
                reported[key] = max(entry.seq, reported.get(key, 0))
        for source, count in upto.items():
            source.acknowledge(count)
        for (source, execution_id), seq in reported.items():
            source.acknowledge_reports(execution_id, seq)

    @staticmethod
    def _live(heartbeat: HeartbeatEntry | None) -> bytes | None:
        if heartbeat is None:
            return None
        return live_message(heartbeat.source.node_id, heartbeat.received_at, heartbeat.frame)
