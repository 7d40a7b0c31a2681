"""Heartbeats of every connection written to Redis in shared, pipelined batches.

A session hands each validated heartbeat to :meth:`HeartbeatBatcher.submit`;
one flusher task writes them: a batch is flushed when ``batch_max``
heartbeats are queued, or ``batch_delay`` seconds after the first one
arrived. One pipeline per batch holds

- one ``XADD metrics`` per heartbeat, fields ``n`` (node id), ``h`` (the
  frame's bytes as received and validated), ``r`` (receive time), never
  trimmed here (the metrics service trims below its oldest pending entry);
- one script call refreshing the presence of every node in the batch once,
  and publishing each node's newest live heartbeat on ``live:{node}``.

Only when the pipeline succeeded does each connection get its cumulative
ack: nothing is acknowledged that Redis does not hold. When Redis fails, the
connections with heartbeats in that batch are closed with 1011 (their agents
send the unacknowledged heartbeats again on their next connection). Batches
are written one at a time, so acks only grow. When ``max_pending``
heartbeats wait, sessions stop reading their sockets until the flusher
catches up: memory stays bounded and TCP slows the agents down.
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
from sm_shared.streams import METRICS_STREAM

log = logging.getLogger(__name__)

# Failures that mean "Redis did not take the batch".
REDIS_FAILURES: Final = (RedisError, OSError, asyncio.TimeoutError)


class HeartbeatSource(Protocol):
    """What the batcher needs of a connection (``session.AgentSession``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def presence_since(self) -> float | None:
        """``connected_at`` while this connection owns the node's presence, else None."""

    def acknowledge(self, upto: int) -> None: ...

    def fail(self) -> None: ...


@dataclass(slots=True)
class Received:
    """One validated heartbeat waiting to be written."""

    source: HeartbeatSource
    frame: bytes
    received_at: float
    count: int  # heartbeats of its connection up to and including this one
    live: bool  # newer than anything its connection published: goes out on live:{node}


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


class HeartbeatBatcher:
    def __init__(
        self,
        redis: Redis,
        presence: Presence,
        instruments: Instruments,
        *,
        batch_max: int,
        batch_delay: float,
        max_pending: int,
    ) -> None:
        self._redis = redis
        self._presence = presence
        self._instruments = instruments
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._max_pending = max_pending
        self._queue: deque[Received] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        instruments.pending.set_function(lambda: len(self._queue))

    async def submit(self, heartbeat: Received) -> None:
        """Queue a heartbeat; waits only while ``max_pending`` heartbeats are queued."""
        while len(self._queue) >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        self._queue.append(heartbeat)
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
                if len(self._queue) < self._max_pending:
                    self._room.set()
                await self.flush(batch)
            self._arrived.clear()

    async def flush(self, batch: list[Received]) -> bool:
        """Write one batch and acknowledge it; False (connections failed) if Redis did not take it."""
        started = time.perf_counter()
        now = round(time.time(), 3)
        newest: dict[str, Received] = {}
        refresh_from: dict[str, HeartbeatSource] = {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for heartbeat in batch:
                    source = heartbeat.source
                    pipe.xadd(
                        METRICS_STREAM,
                        {
                            "n": source.node_id,
                            "h": heartbeat.frame,
                            "r": repr(heartbeat.received_at),
                        },
                    )
                    refresh_from[source.node_id] = source
                    if heartbeat.live:
                        newest[source.node_id] = heartbeat
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
            log.warning("a batch of %d heartbeats was not written: %r", len(batch), exc)
            for source in {heartbeat.source for heartbeat in batch}:
                source.fail()
            return False
        self._instruments.flush_seconds.observe(time.perf_counter() - started)
        self._instruments.batch_size.observe(len(batch))
        self._instruments.heartbeats_written.inc(len(batch))
        upto: dict[HeartbeatSource, int] = {}
        for heartbeat in batch:
            upto[heartbeat.source] = heartbeat.count
        for source, count in upto.items():
            source.acknowledge(count)
        came_online = results[-1] if refreshes else []
        if came_online:
            try:
                await self._presence.announce_online(came_online, now)
            except REDIS_FAILURES as exc:  # the heartbeats are written: only the event is lost
                log.warning("online events not published: %r", exc)
        return True

    @staticmethod
    def _live(heartbeat: Received | None) -> bytes | None:
        if heartbeat is None:
            return None
        return live_message(heartbeat.source.node_id, heartbeat.received_at, heartbeat.frame)
