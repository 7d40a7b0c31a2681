"""Latest values, the fleet summary and history series (openapi/metrics.yaml), typed.

Times are Unix seconds (floats). Percentages are 0-100; ``*_bps`` bytes per
second; a value is None where the node does not report it. No Flet here.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypedDict, cast
from urllib.parse import quote

from sm_client.api.core import CoreApi

MetricName = Literal[
    "cpu",
    "mem_percent",
    "mem_used",
    "mem_total",
    "mem_available",
    "swap_used",
    "swap_total",
    "disk_percent",
    "disk_used",
    "disk_total",
    "disk_read_bps",
    "disk_write_bps",
    "net_rx_bps",
    "net_tx_bps",
    "load1",
    "load5",
    "load15",
    "processes",
    "tcp",
]
# The most node ids one ``latest`` request names (the API's maxItems).
MAX_NODE_IDS: Final = 1000


class MetricValues(TypedDict):
    cpu: float | None
    mem_percent: float | None
    mem_used: float | None
    mem_total: float | None
    mem_available: float | None
    swap_used: float | None
    swap_total: float | None
    disk_percent: float | None
    disk_used: float | None
    disk_total: float | None
    disk_read_bps: float | None
    disk_write_bps: float | None
    net_rx_bps: float | None
    net_tx_bps: float | None
    load1: float | None
    load5: float | None
    load15: float | None
    processes: float | None
    tcp: float | None


class DiskUsage(TypedDict):
    mount: str
    fstype: str
    total: int
    used: int
    free: int


class InterfaceRates(TypedDict):
    name: str
    rx_bps: float | None
    tx_bps: float | None
    rx_bytes: int
    tx_bytes: int


class NetCounters(TypedDict):
    rx_bytes: int
    tx_bytes: int


class DiskIo(TypedDict):
    read_bytes: int
    write_bytes: int


class Detail(TypedDict):
    cores: list[float]
    disks: list[DiskUsage]
    interfaces: list[InterfaceRates]
    net: NetCounters
    disk_io: DiskIo | None
    uptime: float


class Latest(TypedDict):
    node_id: str
    boot_id: str
    seq: int
    ts: float
    received_at: float
    skewed: bool
    dropped: int
    values: MetricValues
    detail: Detail


class LatestPage(TypedDict):
    items: list[Latest]
    next_after: str | None


class Aggregates(TypedDict):
    avg: list[float | None]
    min: list[float | None]
    max: list[float | None]


# ``from`` is a keyword: the functional form keeps the wire names.
Series = TypedDict(
    "Series",
    {
        "node_id": str,
        "tier": Literal["raw", "1m", "1h"],
        "step": int,
        "from": int,
        "to": float,
        "timestamps": list[int],
        "count": list[int],
        "series": dict[str, Aggregates],
    },
)


class TopNode(TypedDict):
    node_id: str
    cpu: float | None
    mem_percent: float | None
    ts: float


class NodeCounts(TypedDict):
    total: int
    online: int
    offline: int


class Averages(TypedDict):
    cpu: float | None
    mem_percent: float | None
    disk_percent: float | None


class Summary(TypedDict):
    at: float
    nodes: NodeCounts
    averages: Averages
    top_cpu: list[TopNode]
    top_memory: list[TopNode]


class MetricsApi:
    """``/api/v1/metrics``."""

    def __init__(self, core: CoreApi) -> None:
        self.core = core

    async def latest(
        self, node_ids: list[str] | None = None, *, limit: int = 1000, after: str | None = None
    ) -> LatestPage:
        """The latest values of ``node_ids`` (every node's, a page at a time, when None).

        Nodes that never sent a heartbeat have no item. An empty ``node_ids``
        asks for nothing and returns an empty page without a request.
        """
        if node_ids is not None and not node_ids:
            return LatestPage(items=[], next_after=None)
        params: dict[str, object] = {"limit": limit, "after": after}
        if node_ids is not None:
            params["node_id"] = list(node_ids)
        return cast(
            LatestPage, await self.core.call("GET", "/api/v1/metrics/latest", params=params)
        )

    async def summary(self, top: int = 5) -> Summary:
        return cast(
            Summary, await self.core.call("GET", "/api/v1/metrics/summary", params={"top": top})
        )

    async def series(
        self,
        node_id: str,
        *,
        metrics: list[str] | None = None,
        start: float | None = None,
        end: float | None = None,
        max_points: int = 300,
    ) -> Series:
        """At most ``max_points`` buckets over [``start``, ``end``) (default: the last hour)."""
        params: dict[str, object] = {
            "metrics": ",".join(metrics) if metrics else None,
            "from": start,
            "to": end,
            "max_points": max_points,
        }
        return cast(
            Series,
            await self.core.call(
                "GET", f"/api/v1/metrics/nodes/{quote(node_id, safe='')}/series", params=params
            ),
        )


def _percent(used: float, total: float) -> float | None:
    return used * 100 / total if total else None


def values_from_sample(sample: dict[str, Any]) -> MetricValues:
    """The ``MetricValues`` of a live heartbeat's ``sample`` (as the ingest computes them).

    Live ``metrics`` messages on ``node:<id>`` carry the agent's raw sample;
    this gives the same numbers ``latest`` returns, so a view shows one shape.
    """
    memory, swap, net = sample["memory"], sample["swap"], sample["net"]
    disks = sample.get("disks") or []
    disk_io = sample.get("disk_io")
    load = sample.get("load") or [None, None, None]
    disk_total = float(sum(d["total"] for d in disks))
    disk_used = float(sum(d["used"] for d in disks))
    tcp = sample.get("tcp")
    return MetricValues(
        cpu=float(sample["cpu"]["percent"]),
        mem_percent=_percent(memory["used"], memory["total"]),
        mem_used=float(memory["used"]),
        mem_total=float(memory["total"]),
        mem_available=float(memory["available"]),
        swap_used=float(swap["used"]),
        swap_total=float(swap["total"]),
        disk_percent=_percent(disk_used, disk_total),
        disk_used=disk_used if disks else None,
        disk_total=disk_total if disks else None,
        disk_read_bps=None if disk_io is None else disk_io.get("read_bps"),
        disk_write_bps=None if disk_io is None else disk_io.get("write_bps"),
        net_rx_bps=net.get("rx_bps"),
        net_tx_bps=net.get("tx_bps"),
        load1=load[0],
        load5=load[1],
        load15=load[2],
        processes=float(sample["processes"]),
        tcp=None if tcp is None else float(tcp),
    )
