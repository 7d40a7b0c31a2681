"""Network traffic per interface and in sum (loopback left out): bytes per second and totals.

The sums add the totals of the interfaces present now, and the rates of
those whose rate is known: an interface that just appeared counts in the
total but not yet in the rate (its rate is ``None`` until its second reading).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from sm_agent.collectors.rates import Rates

LOOPBACK = frozenset({"lo", "lo0"})
MAX_INTERFACES = 256
MAX_NAME = 64


def _counters() -> dict[str, Any]:
    counters: dict[str, Any] = psutil.net_io_counters(pernic=True)
    return counters


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


class NetCollector:
    def __init__(self, counters: Callable[[], dict[str, Any]] = _counters) -> None:
        self._counters = counters
        self._rates = Rates()

    def sample(self, now: float) -> dict[str, Any]:
        try:
            counters = self._counters()
        except OSError:
            counters = {}
        names = sorted(
            name for name in counters if name not in LOOPBACK and 0 < len(name) <= MAX_NAME
        )[:MAX_INTERFACES]
        totals: dict[str, int] = {}
        for name in names:
            totals[f"rx {name}"] = max(int(counters[name].bytes_recv), 0)
            totals[f"tx {name}"] = max(int(counters[name].bytes_sent), 0)
        rates = self._rates.update(now, totals)
        interfaces: list[dict[str, Any]] = [
            {
                "name": name,
                "rx_bps": rates[f"rx {name}"],
                "tx_bps": rates[f"tx {name}"],
                "rx_bytes": totals[f"rx {name}"],
                "tx_bytes": totals[f"tx {name}"],
            }
            for name in names
        ]
        return {
            "rx_bps": _sum([i["rx_bps"] for i in interfaces]),
            "tx_bps": _sum([i["tx_bps"] for i in interfaces]),
            "rx_bytes": sum(i["rx_bytes"] for i in interfaces),
            "tx_bytes": sum(i["tx_bytes"] for i in interfaces),
            "interfaces": interfaces,
        }
