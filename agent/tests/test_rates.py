"""Rates from counters: never negative, never absurd, None when readings cannot be compared."""

from __future__ import annotations

from sm_agent.collectors.rates import Rates


def test_the_first_reading_has_no_rate_then_bytes_per_second() -> None:
    rates = Rates()
    assert rates.update(100.0, {"a": 1000}) == {"a": None}
    assert rates.update(102.0, {"a": 3000}) == {"a": 1000.0}
    assert rates.update(103.0, {"a": 3000}) == {"a": 0.0}


def test_a_counter_that_went_down_has_no_rate_then_counts_from_there() -> None:
    rates = Rates()
    rates.update(0.0, {"a": 2**32 - 10})
    assert rates.update(1.0, {"a": 5}) == {"a": None}  # wrapped around (or reset)
    assert rates.update(2.0, {"a": 105}) == {"a": 100.0}


def test_no_rate_without_elapsed_time_or_when_the_clock_went_back() -> None:
    rates = Rates()
    rates.update(10.0, {"a": 0})
    assert rates.update(10.0, {"a": 50}) == {"a": None}
    assert rates.update(9.0, {"a": 60}) == {"a": None}
    assert rates.update(10.0, {"a": 70}) == {"a": 10.0}


def test_an_absurd_jump_has_no_rate() -> None:
    rates = Rates(max_rate=1e6)
    rates.update(0.0, {"a": 0})
    assert rates.update(1.0, {"a": 10**9}) == {"a": None}
    assert rates.update(2.0, {"a": 10**9 + 10}) == {"a": 10.0}


def test_a_counter_that_vanished_and_came_back_starts_afresh() -> None:
    rates = Rates()
    rates.update(0.0, {"a": 0, "b": 0})
    assert rates.update(1.0, {"a": 10}) == {"a": 10.0}
    assert rates.update(2.0, {"a": 20, "b": 500}) == {"a": 10.0, "b": None}
    assert rates.update(3.0, {"a": 30, "b": 600}) == {"a": 10.0, "b": 100.0}
