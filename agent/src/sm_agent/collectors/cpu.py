"""CPU busy percentage, over all cores, since the previous measurement."""

from __future__ import annotations

import psutil


class CpuCollector:
    """psutil measures CPU between two calls: the first call only starts the clock."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)

    def percent(self) -> float:
        value = float(psutil.cpu_percent(interval=None))
        return min(max(value, 0.0), 100.0)
