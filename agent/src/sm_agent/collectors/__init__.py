"""Collectors: each takes one measurement of the node and holds no connection.

``cpu``, ``load``, ``memory``, ``swap``, ``disks``, ``disk_io``, ``net``,
``processes``, ``tcp``, ``uptime`` (``rates`` turns counters into rates);
:class:`Sampler` puts their values together as the protocol's ``Sample``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sm_agent.collectors import disks, load, memory, processes, swap, tcp, uptime
from sm_agent.collectors.cpu import CpuCollector
from sm_agent.collectors.disk_io import DiskIoCollector
from sm_agent.collectors.net import NetCollector

__all__ = ["Sampler"]


class Sampler:
    """One ``Sample`` per call; CPU and rates cover the time since the previous call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cpu = CpuCollector()
        self._disk_io = DiskIoCollector()
        self._net = NetCollector()

    def sample(self) -> dict[str, Any]:
        now = self._clock()
        value: dict[str, Any] = {
            "cpu": self._cpu.sample(),
            "memory": memory.sample(),
            "swap": swap.sample(),
            "load": load.sample(),
            "disks": disks.sample(),
            "net": self._net.sample(now),
            "processes": processes.sample(),
            "uptime": uptime.sample(),
        }
        disk_io = self._disk_io.sample(now)
        if disk_io is not None:
            value["disk_io"] = disk_io
        connections = tcp.sample()
        if connections is not None:
            value["tcp"] = connections
        return value
