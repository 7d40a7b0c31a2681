"""Reconnection delays: exponential backoff with full jitter.

The n-th consecutive failure waits a uniformly random time in
``[0, min(cap, base * 2**n)]``. Full jitter spreads thousands of agents that
lost the core at the same moment over the whole window instead of letting
them return in waves.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._failures = 0

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        # min() before the power would overflow after ~1000 failures.
        return min(self.cap, self.base * float(2 ** min(self._failures, 64)))

    def next_delay(self) -> float:
        delay = self._rng.uniform(0.0, self.ceiling())
        self._failures += 1
        return delay

    def reset(self) -> None:
        """After a connection that worked: the next failure starts small again."""
        self._failures = 0
