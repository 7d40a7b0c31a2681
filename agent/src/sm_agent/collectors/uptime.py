"""Seconds since the machine booted."""

from __future__ import annotations

import time

import psutil


def sample() -> float:
    return max(time.time() - float(psutil.boot_time()), 0.0)
