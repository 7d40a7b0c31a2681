"""Exponential backoff with full jitter."""

from __future__ import annotations

import random

import pytest

from sm_agent.backoff import Backoff


def test_ceilings_double_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(1))
    ceilings = []
    for _ in range(10):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_delays_are_jittered_over_the_whole_window() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(7))
    for _ in range(8):
        backoff.next_delay()
    delays = [backoff.next_delay() for _ in range(2000)]
    assert all(0.0 <= d <= 60.0 for d in delays)
    # Full jitter: spread over [0, cap], not bunched near it.
    assert min(delays) < 3.0
    assert max(delays) > 57.0
    assert 25.0 < sum(delays) / len(delays) < 35.0


def test_reset_starts_small_again() -> None:
    backoff = Backoff(base=0.5, cap=10.0, rng=random.Random(3))
    for _ in range(20):
        backoff.next_delay()
    assert backoff.ceiling() == 10.0
    backoff.reset()
    assert backoff.ceiling() == 0.5
    assert backoff.next_delay() <= 0.5


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(rng=random.Random(0))
    for _ in range(5000):
        assert backoff.next_delay() <= 60.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_bad_parameters(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base=base, cap=cap)
