"""Load averages over 1, 5 and 15 minutes."""

from __future__ import annotations

import psutil


def sample() -> list[float]:
    # On systems without load averages psutil emulates them from CPU use.
    return [max(float(value), 0.0) for value in psutil.getloadavg()]
