"""Swap space in bytes: total and used."""

from __future__ import annotations

import psutil


def sample() -> dict[str, int]:
    swap = psutil.swap_memory()
    return {"total": max(int(swap.total), 0), "used": max(int(swap.used), 0)}
