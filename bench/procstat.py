"""A process's CPU time and memory, read from ``/proc`` (no sampling process of our own)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> int:
    """Lift the soft open-file limit to the hard one (20,000 here); the new limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (``/proc/<pid>/stat``)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def rss_bytes(pid: int) -> int:
    return _status_kb(pid, "VmRSS") * 1024


def uss_bytes(pid: int) -> int:
    """Memory only this process holds (private pages, ``/proc/<pid>/smaps_rollup``)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


@dataclass
class CpuWindow:
    """CPU share of one process between ``start`` and ``stop`` (1.0 = one core)."""

    pid: int
    began_cpu: float = 0.0
    began_wall: float = 0.0
    share: float = 0.0

    def start(self) -> None:
        self.began_cpu = cpu_seconds(self.pid)
        self.began_wall = time.monotonic()

    def stop(self) -> float:
        self.share = (cpu_seconds(self.pid) - self.began_cpu) / (time.monotonic() - self.began_wall)
        return self.share
