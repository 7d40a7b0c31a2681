"""A ``metrics`` stream entry → the row it becomes (raw tier and ``latest``).

The gateway validated the heartbeat against the protocol schema before it
appended it; this still refuses anything of the wrong shape or type (an entry
written by something else, a gateway of another version), so one bad entry
is counted and skipped, never stored half-right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import orjson

from sm_metrics.schema import BOOT_ID_LENGTH, MINUTE, NODE_ID_LENGTH

# The JSON integer range the protocol allows for counters.
MAX_INT: Final = 9_223_372_036_854_775_807


class Malformed(ValueError):
    """The entry is not a heartbeat this service can store."""


@dataclass(frozen=True)
class Heartbeat:
    """One decoded entry: the raw-tier row and what ``latest`` needs besides it."""

    row: dict[str, Any]
    dropped: int

    @property
    def node_id(self) -> str:
        node_id: str = self.row["node_id"]
        return node_id

    @property
    def ts(self) -> float:
        ts: float = self.row["ts"]
        return ts

    @property
    def minute(self) -> int:
        return int(self.ts // MINUTE) * MINUTE


def _number(value: Any, *, nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise Malformed(f"expected a finite non-negative number, got {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise Malformed(f"expected a non-negative integer, got {value!r}")
    return value


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise Malformed(f"expected a string of 1-{limit} characters, got {value!r:.80}")
    return value


def _percent(part: int, whole: int) -> float | None:
    return round(part * 100.0 / whole, 3) if whole > 0 else None


def _detail(sample: dict[str, Any]) -> bytes:
    """The per-core, per-mount, per-interface values as compact JSON (arrays, not objects)."""
    disk_io = sample.get("disk_io")
    net = sample["net"]
    return orjson.dumps(
        {
            "cores": [_number(c) for c in sample["cpu"]["per_core"]],
            "disks": [
                [
                    _text(d["mount"], 256),
                    str(d["fstype"]),
                    _count(d["total"]),
                    _count(d["used"]),
                    _count(d["free"]),
                ]
                for d in sample["disks"]
            ],
            "interfaces": [
                [
                    _text(i["name"], 64),
                    _number(i["rx_bps"], nullable=True),
                    _number(i["tx_bps"], nullable=True),
                    _count(i["rx_bytes"]),
                    _count(i["tx_bytes"]),
                ]
                for i in net["interfaces"]
            ],
            "net": [_count(net["rx_bytes"]), _count(net["tx_bytes"])],
            "disk_io": None
            if disk_io is None
            else [_count(disk_io["read_bytes"]), _count(disk_io["write_bytes"])],
            "uptime": _number(sample["uptime"]),
        }
    )


def _values(sample: dict[str, Any]) -> dict[str, Any]:
    memory, swap, net = sample["memory"], sample["swap"], sample["net"]
    disks = sample["disks"]
    disk_io = sample.get("disk_io")
    load = sample["load"]
    if not isinstance(load, list) or len(load) != 3:
        raise Malformed("load must hold three numbers")
    mem_total, mem_used = _count(memory["total"]), _count(memory["used"])
    disk_total = sum(_count(d["total"]) for d in disks)
    disk_used = sum(_count(d["used"]) for d in disks)
    tcp = sample.get("tcp")
    return {
        "cpu": _number(sample["cpu"]["percent"]),
        "mem_percent": _percent(mem_used, mem_total),
        "mem_used": mem_used,
        "mem_total": mem_total,
        "mem_available": _count(memory["available"]),
        "swap_used": _count(swap["used"]),
        "swap_total": _count(swap["total"]),
        "disk_percent": _percent(disk_used, disk_total),
        "disk_used": disk_used if disks else None,
        "disk_total": disk_total if disks else None,
        "disk_read_bps": None if disk_io is None else _number(disk_io["read_bps"], nullable=True),
        "disk_write_bps": None if disk_io is None else _number(disk_io["write_bps"], nullable=True),
        "net_rx_bps": _number(net["rx_bps"], nullable=True),
        "net_tx_bps": _number(net["tx_bps"], nullable=True),
        "load1": _number(load[0]),
        "load5": _number(load[1]),
        "load15": _number(load[2]),
        "processes": _count(sample["processes"]),
        "tcp": None if tcp is None else _count(tcp),
    }


def decode(fields: dict[bytes, bytes] | None, *, skew_threshold: float) -> Heartbeat:
    """The heartbeat of one stream entry (fields ``n``, ``h``, ``r``); Malformed if it is not one.

    ``skewed``: the agent stamped the heartbeat more than ``skew_threshold``
    seconds after the gateway received it, i.e. its clock runs ahead. A
    heartbeat stamped long BEFORE its receipt is not flagged: buffered
    heartbeats arrive late by design and cannot be told from a slow clock.
    """
    if not fields:
        raise Malformed("the entry has no fields (deleted from the stream?)")
    try:
        node_id = _text(fields[b"n"].decode(), NODE_ID_LENGTH)
        received_at = _number(float(fields[b"r"]))
        message = orjson.loads(fields[b"h"])
        if not isinstance(message, dict) or message.get("type") != "heartbeat":
            raise Malformed("not a heartbeat message")
        sample = message["sample"]
        sent_at = _number(message["sent_at"])
        assert received_at is not None
        assert sent_at is not None
        row = {
            "node_id": node_id,
            "boot_id": _text(message["boot_id"], BOOT_ID_LENGTH),
            "seq": _count(message["seq"]),
            "ts": sent_at,
            "received_at": received_at,
            "skewed": sent_at - received_at > skew_threshold,
            **_values(sample),
            "detail": _detail(sample),
        }
        dropped = _count(message.get("dropped", 0))
    except Malformed:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise Malformed(f"{type(exc).__name__}: {exc}") from exc
    return Heartbeat(row, dropped)


def detail_object(detail: bytes) -> dict[str, Any]:
    """The stored compact detail as the API shows it (named members)."""
    raw = orjson.loads(detail)
    disk_io = raw.get("disk_io")
    return {
        "cores": raw["cores"],
        "disks": [
            {"mount": m, "fstype": f, "total": t, "used": u, "free": fr}
            for m, f, t, u, fr in raw["disks"]
        ],
        "interfaces": [
            {"name": n, "rx_bps": rb, "tx_bps": tb, "rx_bytes": rx, "tx_bytes": tx}
            for n, rb, tb, rx, tx in raw["interfaces"]
        ],
        "net": {"rx_bytes": raw["net"][0], "tx_bytes": raw["net"][1]},
        "disk_io": None
        if disk_io is None
        else {"read_bytes": disk_io[0], "write_bytes": disk_io[1]},
        "uptime": raw["uptime"],
    }
