"""The ingest's counters, kept in Redis so that every process reads the same figures.

The ingest process adds to them with each batch (one ``HINCRBY`` per counter,
pipelined with the acknowledgement); the API's ``/metrics`` exposes them as
Prometheus counters. They survive restarts of either process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Final

COUNTERS_KEY: Final = "metrics-ingest:counters"


@dataclass
class Counts:
    """What batches did: entries read, samples stored, and what was not stored, by reason."""

    entries: int = 0
    stored: int = 0
    duplicates: int = 0
    too_old: int = 0
    malformed: int = 0
    skewed: int = 0

    def add(self, other: Counts) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def nonzero(self) -> dict[str, int]:
        return {name: value for name, value in asdict(self).items() if value}


COUNTER_HELP: Final[dict[str, str]] = {
    "entries": "Stream entries the ingest read and acknowledged",
    "stored": "Heartbeats stored in the raw tier",
    "duplicates": "Heartbeats already stored (re-sent or re-read after a restart), skipped",
    "too_old": "Heartbeats older than the raw tier's retention, dropped",
    "malformed": "Stream entries that were not a storable heartbeat, dropped (logged)",
    "skewed": "Heartbeats stamped after their receive time by more than the skew threshold",
}


def parse(raw: dict[bytes, bytes]) -> Counts:
    known = {item.name for item in fields(Counts)}
    values = {k.decode(): int(v) for k, v in raw.items() if k.decode() in known}
    return Counts(**values)
