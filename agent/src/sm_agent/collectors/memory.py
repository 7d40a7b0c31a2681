"""Physical memory in bytes: total, used, available."""

from __future__ import annotations

import psutil


def sample() -> dict[str, int]:
    memory = psutil.virtual_memory()
    return {
        "total": int(memory.total),
        "used": max(int(memory.used), 0),
        "available": max(int(memory.available), 0),
    }
