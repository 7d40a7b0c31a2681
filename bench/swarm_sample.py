"""What a simulated agent says: facts for ``hello`` and a full, realistic ``Sample``.

Each simulated node is a 4-core Debian box with two real file systems, disk
counters and two network interfaces; values drift from one heartbeat to the
next like a lightly loaded server's. :func:`check_against_contract` validates
a hello and a heartbeat with ``jsonschema`` against ``openapi/agent-protocol.json``
so the swarm never measures a gateway refusing its messages.
"""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from sm_shared.contracts import spec_path

PROTOCOL = 1
AGENT_VERSION = "0.1.0-swarm"
CORES = 4
GIB = 1 << 30


def facts(index: int, boot_id: str) -> dict[str, Any]:
    return {
        "hostname": f"swarm-{index:05d}",
        "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.1.0-26-amd64",
        "arch": "x86_64",
        "cpu_model": "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
        "cpu_count": CORES,
        "memory_total": 8 * GIB,
        "addresses": [
            {
                "interface": "eth0",
                "family": "ipv4",
                "address": f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}",
            },
            {"interface": "eth0", "family": "ipv6", "address": f"fd00::{index:x}"},
        ],
        "agent_version": AGENT_VERSION,
        "boot_id": boot_id,
    }


def hello(index: int, boot_id: str) -> dict[str, Any]:
    return {
        "v": PROTOCOL,
        "type": "hello",
        "versions": [PROTOCOL],
        "agent_version": AGENT_VERSION,
        "facts": facts(index, boot_id),
    }


class SampleSource:
    """One node's samples: counters that only grow, gauges that wander."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._uptime = rng.uniform(3600, 90 * 86400)
        self._read = rng.randrange(1 << 30, 1 << 40)
        self._write = rng.randrange(1 << 30, 1 << 40)
        self._rx = [rng.randrange(1 << 30, 1 << 40) for _ in range(2)]
        self._tx = [rng.randrange(1 << 30, 1 << 40) for _ in range(2)]
        self._used = rng.randrange(1 * GIB, 6 * GIB)
        self._cpu = rng.uniform(1, 60)

    def sample(self, elapsed: float) -> dict[str, Any]:
        rng = self._rng
        self._uptime += elapsed
        self._cpu = min(max(self._cpu + rng.uniform(-5, 5), 0.0), 100.0)
        self._used = min(max(self._used + rng.randrange(-64 << 20, 64 << 20), GIB), 7 * GIB)
        per_core = [
            round(min(max(self._cpu + rng.uniform(-10, 10), 0.0), 100.0), 1) for _ in range(CORES)
        ]
        read_bps = rng.uniform(0, 4 << 20)
        write_bps = rng.uniform(0, 8 << 20)
        self._read += int(read_bps * elapsed)
        self._write += int(write_bps * elapsed)
        interfaces: list[dict[str, Any]] = []
        rx_sum = tx_sum = 0.0
        for i, name in enumerate(("eth0", "eth1")):
            rx_bps = rng.uniform(0, 2 << 20)
            tx_bps = rng.uniform(0, 1 << 20)
            rx_sum += round(rx_bps, 1)
            tx_sum += round(tx_bps, 1)
            self._rx[i] += int(rx_bps * elapsed)
            self._tx[i] += int(tx_bps * elapsed)
            interfaces.append(
                {
                    "name": name,
                    "rx_bps": round(rx_bps, 1),
                    "tx_bps": round(tx_bps, 1),
                    "rx_bytes": self._rx[i],
                    "tx_bytes": self._tx[i],
                }
            )
        load = round(self._cpu / 100 * CORES, 2)
        return {
            "cpu": {"percent": round(self._cpu, 1), "per_core": per_core},
            "memory": {"total": 8 * GIB, "used": self._used, "available": 8 * GIB - self._used},
            "swap": {"total": 2 * GIB, "used": rng.randrange(0, 64 << 20)},
            "load": [load, round(load * 0.9, 2), round(load * 0.8, 2)],
            "disks": [
                {
                    "mount": "/",
                    "fstype": "ext4",
                    "total": 40 * GIB,
                    "used": 12 * GIB,
                    "free": 28 * GIB,
                },
                {
                    "mount": "/var/lib/data",
                    "fstype": "xfs",
                    "total": 200 * GIB,
                    "used": 90 * GIB,
                    "free": 110 * GIB,
                },
            ],
            "disk_io": {
                "read_bps": round(read_bps, 1),
                "write_bps": round(write_bps, 1),
                "read_bytes": self._read,
                "write_bytes": self._write,
            },
            "net": {
                "rx_bps": round(rx_sum, 1),
                "tx_bps": round(tx_sum, 1),
                "rx_bytes": sum(self._rx),
                "tx_bytes": sum(self._tx),
                "interfaces": interfaces,
            },
            "processes": rng.randrange(120, 260),
            "tcp": rng.randrange(10, 400),
            "uptime": round(self._uptime, 1),
        }


def heartbeat(boot_id: str, seq: int, sent_at: float, sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": PROTOCOL,
        "type": "heartbeat",
        "boot_id": boot_id,
        "seq": seq,
        "sent_at": round(sent_at, 3),
        "sample": sample,
    }


def check_against_contract() -> int:
    """Validate a hello and a heartbeat against the protocol schema; the heartbeat's size."""
    document = json.loads(spec_path("sm_shared", "agent-protocol.json").read_text())
    boot_id = "swarm-check-0"
    message = heartbeat(boot_id, 0, 1.0, SampleSource(random.Random(0)).sample(5.0))
    for definition, instance in (("hello", hello(0, boot_id)), ("heartbeat", message)):
        schema = {"$ref": f"#/definitions/{definition}", "definitions": document["definitions"]}
        jsonschema.Draft7Validator(schema).validate(instance)
    return len(json.dumps(message, separators=(",", ":")))
