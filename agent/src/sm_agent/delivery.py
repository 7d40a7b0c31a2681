"""What to send next on one connection, and what the gateway's acks release.

Heartbeats are numbered by the spool (serials). At welcome, every serial below
``live_from`` still in the spool is backlog (buffered while disconnected, or
sent on an earlier connection and never acknowledged); serials from
``live_from`` on are live. Live heartbeats go out at once. Backlog goes out
oldest first, paced at the welcome's ``backlog_rate``, and only while fewer
than ``max_in_flight`` heartbeats wait for an ack, so a slow gateway sets
the pace.

The gateway's ``ack {upto}`` counts the heartbeats sent on this connection
in the order sent: the first ``upto`` of them are durable and leave the
spool. An ack for more than was sent is a protocol violation; an older
(smaller) ack than one already seen changes nothing.
"""

from __future__ import annotations

from collections import deque

from sm_agent.spool import Spool


class AckOutOfRange(ValueError):
    """The gateway acknowledged more heartbeats than were sent on the connection."""


class Delivery:
    def __init__(
        self,
        spool: Spool,
        *,
        backlog_rate: float,
        max_in_flight: int,
        now: float,
    ) -> None:
        if backlog_rate <= 0 or max_in_flight < 1:
            raise ValueError("a delivery needs a positive backlog rate and in-flight bound")
        self._spool = spool
        self._live_from = spool.next_serial
        self._next_live = self._live_from
        self._backlog_after = -1
        self._spacing = 1.0 / backlog_rate
        self._next_backlog_at = now
        self._max_in_flight = max_in_flight
        self._in_flight: deque[int] = deque()
        self.sent = 0
        self.acked = 0
        self.backlog_sent = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def backlog_left(self) -> int:
        """Buffered heartbeats of the backlog not sent yet on this connection."""
        return len(self._spool.serials(self._backlog_after + 1, self._live_from))

    def next(self, now: float) -> tuple[int | None, float | None]:
        """``(serial, None)`` to send now, or ``(None, wait)``: check again after ``wait``
        seconds, or (``wait`` None) when something changes (a new heartbeat, an ack)."""
        while self._next_live < self._spool.next_serial:
            serial = self._next_live
            self._next_live += 1
            if serial in self._spool:  # not dropped meanwhile
                return serial, None
        if len(self._in_flight) >= self._max_in_flight:
            return None, None
        candidate = self._spool.next_buffered(self._backlog_after, self._live_from)
        if candidate is None:
            return None, None
        if now < self._next_backlog_at:
            return None, self._next_backlog_at - now
        self._backlog_after = candidate
        self._next_backlog_at = max(self._next_backlog_at, now - self._spacing) + self._spacing
        self.backlog_sent += 1
        return candidate, None

    def mark_sent(self, serial: int) -> None:
        """``serial`` is being sent now (call in the order frames go out)."""
        self._in_flight.append(serial)
        self.sent += 1

    def acknowledge(self, upto: int) -> int:
        """The gateway's cumulative ack; how many heartbeats left the spool."""
        if upto > self.sent:
            raise AckOutOfRange(f"ack for {upto} heartbeats, {self.sent} sent")
        if upto <= self.acked:
            return 0
        released = [self._in_flight.popleft() for _ in range(upto - self.acked)]
        self.acked = upto
        return self._spool.acknowledge(released)
