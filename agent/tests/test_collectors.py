"""Each collector alone, on this machine and on made-up inputs; the Sample against the protocol."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import psutil
import pytest

from sm_agent.collectors import Sampler, disks, processes, swap, tcp
from sm_agent.collectors.cpu import CpuCollector
from sm_agent.collectors.disk_io import DiskIoCollector
from sm_agent.collectors.disks import Mount
from sm_agent.collectors.net import NetCollector

Validate = Callable[[str, Any], None]


def test_the_sample_matches_the_protocol_twice(validate: Validate) -> None:
    sampler = Sampler()
    first = sampler.sample()
    validate("Sample", first)
    second = sampler.sample()
    validate("Sample", second)
    assert len(second["cpu"]["per_core"]) == psutil.cpu_count()
    assert second["net"]["rx_bytes"] >= first["net"]["rx_bytes"] or second["net"]["rx_bps"] is None
    assert "lo" not in {i["name"] for i in second["net"]["interfaces"]}
    if Path("/proc/net/sockstat").exists():
        assert second["tcp"] >= 0
    if psutil.disk_io_counters() is not None:
        assert second["disk_io"]["read_bytes"] >= 0


def test_the_schema_refuses_an_unknown_field_in_a_sample(validate: Validate) -> None:
    value = Sampler().sample()
    value["memory"]["cached"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate("Sample", value)


def test_cpu_total_and_per_core() -> None:
    cpu = CpuCollector()
    sum(i * i for i in range(200_000))
    value = cpu.sample()
    assert 0.0 <= value["percent"] <= 100.0
    assert len(value["per_core"]) == psutil.cpu_count()
    assert all(0.0 <= v <= 100.0 for v in value["per_core"])


def test_swap_and_processes() -> None:
    value = swap.sample()
    assert 0 <= value["used"] <= max(value["total"], value["used"])
    assert value["total"] == psutil.swap_memory().total
    count = processes.sample()
    in_proc = sum(name.isdigit() for name in os.listdir("/proc"))
    assert count >= 1
    assert abs(count - in_proc) < 20  # processes come and go between the two counts


def test_pseudo_file_systems_are_left_out_and_devices_listed_once() -> None:
    mounts = [
        Mount("proc", "/proc", "proc"),
        Mount("sysfs", "/sys", "sysfs"),
        Mount("tmpfs", "/run", "tmpfs"),
        Mount("udev", "/dev", "devtmpfs"),
        Mount("overlay", "/var/lib/docker/overlay2/x/merged", "overlay"),
        Mount("/dev/loop3", "/snap/core/1", "squashfs"),
        Mount("cgroup", "/sys/fs/cgroup/cpu", "cgroup"),
        Mount("cgroup2", "/sys/fs/cgroup", "cgroup2"),
        Mount("/dev/sda1", "/srv/bind", "ext4"),  # a bind mount of the root's device
        Mount("/dev/sda1", "/", "ext4"),
        Mount("/dev/sdb1", "/data", "xfs"),
        Mount("server:/export", "/mnt/nfs", "nfs4"),
    ]
    chosen = disks.real_mounts(mounts)
    assert [(m.device, m.mountpoint) for m in chosen] == [
        ("/dev/sda1", "/"),
        ("/dev/sdb1", "/data"),
        ("server:/export", "/mnt/nfs"),
    ]


def test_disks_skip_unreadable_mounts_and_are_bounded(validate: Validate) -> None:
    mounts = [Mount(f"/dev/vd{i}", f"/m{i:03d}", "ext4") for i in range(100)]

    def usage(path: str) -> Any:
        if path == "/m001":
            raise PermissionError(13, "hidden by the sandbox")
        return SimpleNamespace(total=100, used=40, free=60)

    found = disks.sample(partitions=lambda: mounts, usage=usage)
    assert len(found) == disks.MAX_DISKS
    assert "/m001" not in {d["mount"] for d in found}
    assert found[0] == {"mount": "/m000", "fstype": "ext4", "total": 100, "used": 40, "free": 60}
    for entry in found:
        validate("Sample", {**Sampler().sample(), "disks": [entry]})


def test_disks_on_this_machine() -> None:
    for entry in disks.sample():
        assert entry["fstype"] not in disks.PSEUDO_FILESYSTEMS
        assert entry["used"] <= entry["total"]


def test_disk_io_rates_and_totals() -> None:
    readings = iter(
        [
            SimpleNamespace(read_bytes=1000, write_bytes=5000),
            SimpleNamespace(read_bytes=3000, write_bytes=5000),
            SimpleNamespace(read_bytes=10, write_bytes=6000),  # reset
        ]
    )
    collector = DiskIoCollector(counters=lambda: next(readings))
    assert collector.sample(0.0) == {
        "read_bps": None,
        "write_bps": None,
        "read_bytes": 1000,
        "write_bytes": 5000,
    }
    assert collector.sample(2.0) == {
        "read_bps": 1000.0,
        "write_bps": 0.0,
        "read_bytes": 3000,
        "write_bytes": 5000,
    }
    third = collector.sample(3.0)
    assert third is not None
    assert (third["read_bps"], third["write_bps"]) == (None, 1000.0)


def test_disk_io_is_omitted_without_counters() -> None:
    assert DiskIoCollector(counters=lambda: None).sample(0.0) is None


def nic(rx: int, tx: int) -> Any:
    return SimpleNamespace(bytes_recv=rx, bytes_sent=tx)


def test_net_per_interface_and_sums_without_loopback(validate: Validate) -> None:
    readings = iter(
        [
            {"lo": nic(10**9, 10**9), "eth0": nic(1000, 100)},
            {"lo": nic(2 * 10**9, 2 * 10**9), "eth0": nic(3000, 300), "wg0": nic(50, 50)},
            {"lo": nic(0, 0), "wg0": nic(150, 60)},  # eth0 vanished
        ]
    )
    collector = NetCollector(counters=lambda: next(readings))
    first = collector.sample(0.0)
    assert first == {
        "rx_bps": None,
        "tx_bps": None,
        "rx_bytes": 1000,
        "tx_bytes": 100,
        "interfaces": [
            {"name": "eth0", "rx_bps": None, "tx_bps": None, "rx_bytes": 1000, "tx_bytes": 100}
        ],
    }
    second = collector.sample(1.0)
    # wg0 appeared: in the totals, not yet in the rates.
    assert (second["rx_bps"], second["tx_bps"]) == (2000.0, 200.0)
    assert (second["rx_bytes"], second["tx_bytes"]) == (3050, 350)
    assert [i["name"] for i in second["interfaces"]] == ["eth0", "wg0"]
    third = collector.sample(2.0)
    assert third["interfaces"] == [
        {"name": "wg0", "rx_bps": 100.0, "tx_bps": 10.0, "rx_bytes": 150, "tx_bytes": 60}
    ]
    assert (third["rx_bps"], third["rx_bytes"]) == (100.0, 150)
    for value in (first, second, third):
        validate("Sample", {**Sampler().sample(), "net": value})


def test_tcp_from_sockstat(tmp_path: Path) -> None:
    v4, v6 = tmp_path / "sockstat", tmp_path / "sockstat6"
    v4.write_text(
        "sockets: used 30\nTCP: inuse 11 orphan 0 tw 4 alloc 14 mem 87\nUDP: inuse 2 mem 0\n"
    )
    v6.write_text("TCP6: inuse 3\nUDP6: inuse 1\n")
    assert tcp.sample((v4, v6)) == 14
    assert tcp.sample((v4, tmp_path / "missing")) == 11
    assert tcp.sample((tmp_path / "missing",)) is None
    assert tcp.in_use("UDP: inuse 2\n") is None


def test_tcp_on_this_machine() -> None:
    if not Path("/proc/net/sockstat").exists():
        pytest.skip("no /proc/net/sockstat")
    count = tcp.sample()
    assert count is not None
    assert count >= 0
