"""One connection's sending order, backlog pacing, in-flight bound and cumulative acks."""

from __future__ import annotations

import pytest

from sm_agent.delivery import AckOutOfRange, Delivery
from sm_agent.spool import Spool


def filled(count: int) -> Spool:
    spool = Spool(None)
    for i in range(count):
        spool.append(b'{"seq":%d}' % i)
    return spool


def drain(delivery: Delivery, now: float) -> list[int]:
    """Everything sendable at ``now``, marked sent."""
    sent: list[int] = []
    while True:
        serial, _ = delivery.next(now)
        if serial is None:
            return sent
        delivery.mark_sent(serial)
        sent.append(serial)


def test_backlog_oldest_first_at_the_backlog_rate_live_at_once() -> None:
    spool = filled(5)  # buffered while disconnected
    delivery = Delivery(spool, backlog_rate=2.0, max_in_flight=100, now=0.0)
    assert delivery.backlog_left() == 5
    assert drain(delivery, 0.0) == [0]
    serial, wait = delivery.next(0.1)
    assert serial is None
    assert wait == pytest.approx(0.4)
    assert drain(delivery, 0.5) == [1]
    spool.append(b'{"seq":5}')  # a live heartbeat does not wait for the pace
    assert drain(delivery, 0.6) == [5]
    assert drain(delivery, 1.0) == [2]
    # After a pause (waiting on acks, say) at most one extra slot is caught up.
    assert drain(delivery, 10.0) == [3, 4]
    assert delivery.backlog_left() == 0
    assert delivery.backlog_sent == 5
    assert drain(delivery, 20.0) == []


def test_acks_count_in_send_order_and_release_from_the_spool() -> None:
    spool = filled(3)
    delivery = Delivery(spool, backlog_rate=1000.0, max_in_flight=100, now=0.0)
    spool.append(b'{"seq":3}')
    order = drain(delivery, 0.0) + drain(delivery, 1.0) + drain(delivery, 2.0)
    assert order == [3, 0, 1, 2]  # the live one first, then the backlog
    assert delivery.acknowledge(2) == 2  # the live one and serial 0
    assert spool.serials() == [1, 2]
    assert delivery.acknowledge(1) == 0  # an older ack changes nothing
    assert delivery.acknowledge(4) == 2
    assert len(spool) == 0
    with pytest.raises(AckOutOfRange):
        delivery.acknowledge(5)


def test_backlog_waits_while_too_many_are_in_flight() -> None:
    spool = filled(10)
    delivery = Delivery(spool, backlog_rate=1000.0, max_in_flight=3, now=0.0)
    assert drain(delivery, 0.0) + drain(delivery, 0.01) + drain(delivery, 0.02) == [0, 1, 2]
    assert delivery.next(5.0) == (None, None)  # wait for an ack
    spool.append(b'{"seq":10}')
    assert drain(delivery, 5.0) == [10]  # live heartbeats are never held back
    delivery.acknowledge(2)
    assert drain(delivery, 5.0) == [3]
    assert delivery.in_flight == 3


def test_heartbeats_dropped_or_acknowledged_meanwhile_are_skipped() -> None:
    spool = filled(4)
    delivery = Delivery(spool, backlog_rate=1000.0, max_in_flight=100, now=0.0)
    spool.acknowledge([1])  # e.g. acknowledged late on the previous connection
    sent = [s for t in range(10) for s in drain(delivery, t / 100)]
    assert sent == [0, 2, 3]
