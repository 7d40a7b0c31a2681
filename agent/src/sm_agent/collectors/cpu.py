"""CPU busy percentage since the previous measurement: over all cores, and per core."""

from __future__ import annotations

from typing import Any

import psutil


def _clamp(value: float) -> float:
    return min(max(float(value), 0.0), 100.0)


class CpuCollector:
    """psutil measures CPU between two calls: the first call only starts the clock."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)

    def percent(self) -> float:
        return _clamp(psutil.cpu_percent(interval=None))

    def sample(self) -> dict[str, Any]:
        total = self.percent()
        per_core = [_clamp(v) for v in psutil.cpu_percent(interval=None, percpu=True)]
        return {"percent": total, "per_core": per_core[:4096]}
