"""Heartbeat messages and their sequence numbers.

A heartbeat is keyed by (node, boot id, sequence). The sequence increases by
one per heartbeat and restarts at 0 only when the machine boots again, also
across agent restarts: numbers are reserved in blocks recorded in the state
directory, so the file is written once per block rather than per heartbeat
(a restart skips the rest of its block; gaps are harmless, repeats are not).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sm_agent.collectors import Sampler
from sm_agent.state import write_private

SEQUENCE_BLOCK = 1000


class SequenceNumbers:
    def __init__(self, path: Path, boot_id: str, block: int = SEQUENCE_BLOCK) -> None:
        self._path = path
        self._boot_id = boot_id
        self._block = block
        self._next = self._reserved_until()
        self._limit = self._next

    def _reserved_until(self) -> int:
        try:
            recorded_boot, reserved = self._path.read_text().split()
            if recorded_boot == self._boot_id:
                return max(int(reserved), 0)
        except (OSError, ValueError):
            pass
        return 0

    def take(self) -> int:
        if self._next >= self._limit:
            self._limit = self._next + self._block
            write_private(self._path, f"{self._boot_id} {self._limit}\n".encode())
        value = self._next
        self._next += 1
        return value


class Heartbeats:
    """Builds protocol ``heartbeat`` messages (version ``v``)."""

    def __init__(
        self,
        boot_id: str,
        sequence: SequenceNumbers,
        sampler: Sampler,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._boot_id = boot_id
        self._sequence = sequence
        self._sampler = sampler
        self._clock = clock

    def next(self, version: int) -> dict[str, Any]:
        sample = self._sampler.sample()
        return {
            "v": version,
            "type": "heartbeat",
            "boot_id": self._boot_id,
            "seq": self._sequence.take(),
            "sent_at": round(self._clock(), 3),
            "sample": sample,
        }
