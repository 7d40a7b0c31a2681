"""The ingest consumer: the ``metrics`` stream → the raw tier, in batches (its own process).

One consumer of the group ``metrics`` (``smctl serve metrics-ingest``). Each
round reads up to ``metrics_batch`` entries (``XREADGROUP ... BLOCK``),
decodes them, writes them in ONE transaction (raw rows ignoring duplicates,
each node's latest row, the touched minutes) and acknowledges them only
after the commit. A killed process loses nothing: on start it first re-reads
its own pending entries (id ``0``) and stores them again (a no-op for what
was committed). Entries another consumer read and never acknowledged are
claimed (``XAUTOCLAIM``) once idle for ``metrics_claim_idle``.

A malformed entry is logged, counted and acknowledged; a heartbeat older
than the raw tier's retention is counted and acknowledged unstored. While it
runs, the process keeps ``METRICS_INGEST_HEALTH_KEY`` alive in Redis and
trims the stream below what the group still needs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from redis import Redis
from redis.exceptions import ResponseError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from sm_metrics import backlog
from sm_metrics.counters import COUNTERS_KEY, Counts
from sm_metrics.rows import Heartbeat, Malformed, decode
from sm_metrics.schema import create_tables
from sm_metrics.settings import MetricsSettings
from sm_metrics.writes import write_batch
from sm_shared.database import create_database_engine
from sm_shared.streams import METRICS_GROUP, METRICS_INGEST_HEALTH_KEY, METRICS_STREAM

log = logging.getLogger("sm_metrics.ingest")

Entry = tuple[bytes, dict[bytes, bytes] | None]
# The health key lives this long; the loop refreshes it at least every HEALTH_EVERY seconds.
HEALTH_TTL: Final = 15
HEALTH_EVERY: Final = 2.0
TRIM_EVERY: Final = 1.0
# Pause after a failed write (the database locked or away) before the entries are retried.
RETRY_PAUSE: Final = 1.0


@dataclass
class Consumer:
    """One consumer of the ``metrics`` group, writing to ``engine``."""

    settings: MetricsSettings
    engine: Engine
    redis: Redis
    clock: Callable[[], float] = time.time
    totals: Counts = field(default_factory=Counts)
    # True until the consumer's own pending entries are all handled (start, after a failure).
    recovering: bool = True
    _next_claim: float = 0.0
    _next_trim: float = 0.0
    _next_health: float = 0.0

    @property
    def name(self) -> str:
        return self.settings.metrics_consumer

    def ensure_group(self) -> None:
        """Create the group (reading from the stream's start) unless it exists."""
        try:
            self.redis.xgroup_create(METRICS_STREAM, METRICS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def decode_all(self, entries: Sequence[Entry], counts: Counts) -> list[Heartbeat]:
        threshold = self.settings.metrics_skew_threshold.total_seconds()
        oldest = self.clock() - self.settings.metrics_retention_raw.total_seconds()
        heartbeats = []
        for entry_id, fields in entries:
            try:
                heartbeat = decode(fields, skew_threshold=threshold)
            except Malformed as exc:
                counts.malformed += 1
                log.warning("dropping malformed entry %s: %s", entry_id.decode(), exc)
                continue
            if heartbeat.ts < oldest:
                counts.too_old += 1
                continue
            counts.skewed += heartbeat.row["skewed"]
            heartbeats.append(heartbeat)
        return heartbeats

    def handle(self, entries: Sequence[Entry]) -> Counts:
        """Store ``entries`` (one transaction), then acknowledge them and add to the counters."""
        counts = Counts(entries=len(entries))
        if not entries:
            return counts
        heartbeats = self.decode_all(entries, counts)
        written = write_batch(self.engine, heartbeats)
        counts.stored = written.inserted
        counts.duplicates = len(heartbeats) - written.inserted
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(METRICS_STREAM, METRICS_GROUP, *[entry_id for entry_id, _ in entries])
        for name, value in counts.nonzero().items():
            pipe.hincrby(COUNTERS_KEY, name, value)
        pipe.execute()
        self.totals.add(counts)
        return counts

    def _read(self, start: str, block: int | None) -> list[Entry]:
        reply: Any = self.redis.xreadgroup(
            METRICS_GROUP,
            self.name,
            {METRICS_STREAM: start},
            count=self.settings.metrics_batch,
            block=block,
        )
        if not reply:
            return []
        # RESP2: [[stream, [(id, fields), ...]]]
        entries: list[Entry] = reply[0][1]
        return entries

    def recover(self) -> int:
        """Handle this consumer's own pending entries (read before a crash); returns how many."""
        handled = 0
        while True:
            entries = self._read("0", None)
            if not entries:
                self.recovering = False
                return handled
            self.handle(entries)
            handled += len(entries)

    def claim(self) -> int:
        """Take over entries other consumers left pending longer than the claim idle time."""
        idle = int(self.settings.metrics_claim_idle.total_seconds() * 1000)
        start = "0-0"
        handled = 0
        while True:
            reply: Any = self.redis.xautoclaim(
                METRICS_STREAM,
                METRICS_GROUP,
                self.name,
                min_idle_time=idle,
                start_id=start,
                count=self.settings.metrics_batch,
            )
            start_reply, entries = reply[0], reply[1]
            if entries:
                self.handle(entries)
                handled += len(entries)
            start = start_reply.decode() if isinstance(start_reply, bytes) else str(start_reply)
            if start == "0-0":
                return handled

    def housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_health:
            self._next_health = now + HEALTH_EVERY
            status = {"consumer": self.name, "at": self.clock(), **self.totals.nonzero()}
            self.redis.set(METRICS_INGEST_HEALTH_KEY, orjson.dumps(status), ex=HEALTH_TTL)
        if now >= self._next_claim:
            self._next_claim = now + self.settings.metrics_claim_idle.total_seconds() / 2
            claimed = self.claim()
            if claimed:
                log.info("took over %d entries other consumers left pending", claimed)
        if now >= self._next_trim:
            self._next_trim = now + TRIM_EVERY
            backlog.trim(self.redis)

    def step(self) -> int:
        """One round: own pending entries first when recovering, else new ones; returns entries handled."""
        self.housekeeping()
        recovered = self.recover() if self.recovering else 0
        entries = self._read(">", self.settings.metrics_block_ms)
        self.handle(entries)
        return recovered + len(entries)

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; a failed write is retried, never skipped."""
        self.ensure_group()
        while not stop.is_set():
            try:
                self.step()
            except OperationalError as exc:
                # Nothing was acknowledged: the entries stay pending and are read again.
                log.warning("writing a batch failed (%s); retrying", exc.orig)
                self.recovering = True
                stop.wait(RETRY_PAUSE)


def main(settings: MetricsSettings) -> None:
    """The process: consume until SIGTERM/SIGINT (``smctl serve metrics-ingest``)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    engine = create_database_engine(settings.database_url)
    client = Redis.from_url(settings.redis_url)
    try:
        create_tables(engine)
        consumer = Consumer(settings, engine, client)
        log.info("consuming %s as %s of group %s", METRICS_STREAM, consumer.name, METRICS_GROUP)
        consumer.run(stop)
        client.delete(METRICS_INGEST_HEALTH_KEY)
    finally:
        client.close()
        engine.dispose()
