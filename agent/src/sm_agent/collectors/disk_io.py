"""Disk reads and writes over all disks: bytes per second and totals since boot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from sm_agent.collectors.rates import Rates


def _counters() -> Any:
    return psutil.disk_io_counters(perdisk=False)


class DiskIoCollector:
    def __init__(self, counters: Callable[[], Any] = _counters) -> None:
        self._counters = counters
        self._rates = Rates()

    def sample(self, now: float) -> dict[str, Any] | None:
        """None where the OS gives no disk counters (some containers, some platforms)."""
        try:
            counters = self._counters()
        except (OSError, RuntimeError):
            counters = None
        if counters is None:
            return None
        totals = {
            "read": max(int(counters.read_bytes), 0),
            "write": max(int(counters.write_bytes), 0),
        }
        rates = self._rates.update(now, totals)
        return {
            "read_bps": rates["read"],
            "write_bps": rates["write"],
            "read_bytes": totals["read"],
            "write_bytes": totals["write"],
        }
