"""The lock ``up`` holds on its data directory, so two cores never share one.

An advisory ``flock`` on ``<data>/up.lock``: the kernel releases it when the
process ends, however it ends, so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "up.lock"


class DataDirInUse(RuntimeError):
    """Another process holds the data directory."""


def lock_path(root: Path) -> Path:
    return root / LOCK_NAME


def claim(root: Path) -> IO[str]:
    """Hold the lock until the returned file is closed (or the process ends)."""
    fd = os.open(lock_path(root), os.O_RDWR | os.O_CREAT, 0o600)
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirInUse(f"{root} is in use by `smctl up` (pid {holder})") from exc
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def in_use(root: Path) -> bool:
    """True while a running ``up`` holds ``root``."""
    path = lock_path(root)
    if not path.exists():
        return False
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
