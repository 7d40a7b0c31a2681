"""Rates (per second) from monotonically increasing counters.

A rate needs two readings of the same counter. It is ``None`` instead of a
number whenever the two readings cannot honestly be compared: the first
reading of a counter (also one that appeared since the previous reading),
a counter that went down (wrapped around, or reset by a driver reload or an
interface recreated under the same name), no time or negative time between
the readings, or a rate above ``max_rate`` (a counter that jumped). Counters
missing from a reading are forgotten, so one that comes back starts afresh.
"""

from __future__ import annotations

from collections.abc import Mapping

# 1 TB/s: above any disk or network interface of a single machine today.
MAX_RATE = 1e12


class Rates:
    def __init__(self, max_rate: float = MAX_RATE) -> None:
        self._max_rate = max_rate
        self._last: dict[str, int] = {}
        self._last_at: float | None = None

    def update(self, now: float, counters: Mapping[str, int]) -> dict[str, float | None]:
        """The rate of each counter since the previous update (``now`` in seconds)."""
        elapsed = None if self._last_at is None else now - self._last_at
        rates: dict[str, float | None] = {}
        for key, value in counters.items():
            previous = self._last.get(key)
            rate: float | None = None
            if previous is not None and elapsed is not None and elapsed > 0 and value >= previous:
                rate = (value - previous) / elapsed
                if rate > self._max_rate:
                    rate = None
            rates[key] = rate
        self._last = dict(counters)
        self._last_at = now
        return rates
