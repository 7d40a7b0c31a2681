"""Collectors: each takes one measurement of the node with psutil and holds no connection.

``cpu``, ``memory``, ``load``, ``uptime``; :class:`Sampler` puts their values
together as the protocol's ``Sample``.
"""

from __future__ import annotations

from typing import Any

from sm_agent.collectors import load, memory, uptime
from sm_agent.collectors.cpu import CpuCollector

__all__ = ["Sampler"]


class Sampler:
    """One ``Sample`` per call; CPU is measured over the time since the previous call."""

    def __init__(self) -> None:
        self._cpu = CpuCollector()

    def sample(self) -> dict[str, Any]:
        return {
            "cpu": {"percent": self._cpu.percent()},
            "memory": memory.sample(),
            "load": load.sample(),
            "uptime": uptime.sample(),
        }
