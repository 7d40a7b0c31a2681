"""How many processes exist: the number of process ids (no walk of each process)."""

from __future__ import annotations

import psutil


def sample() -> int:
    return len(psutil.pids())
