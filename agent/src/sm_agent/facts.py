"""What the node is: sent at enrollment and in every hello (``Facts`` in the protocol)."""

from __future__ import annotations

import ipaddress
import platform
import socket
import uuid
from pathlib import Path
from typing import Any

import psutil

from sm_agent import __version__

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
CPUINFO_FILE = Path("/proc/cpuinfo")
MAX_ADDRESSES = 256


def _read_first(paths: tuple[Path, ...]) -> str | None:
    for path in paths:
        try:
            value = path.read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return None


def boot_id() -> str:
    """The kernel's boot id; elsewhere a stand-in derived from the boot time."""
    return _read_first((BOOT_ID_FILE,)) or f"boot-{int(psutil.boot_time())}"


def machine_id() -> str:
    """The systemd machine id; elsewhere one derived from the hardware address."""
    return _read_first(MACHINE_ID_FILES) or f"mac-{uuid.getnode():012x}"


def os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return f"{platform.system()} {platform.release()}".strip()
    return release.get("PRETTY_NAME") or release.get("NAME") or platform.system()


def cpu_model() -> str:
    try:
        text = CPUINFO_FILE.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def addresses() -> list[dict[str, str]]:
    """Every non-loopback, non-link-local address, per interface."""
    found: list[dict[str, str]] = []
    families = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
    for interface, entries in sorted(psutil.net_if_addrs().items()):
        for entry in entries:
            family = families.get(entry.family)
            if family is None:
                continue
            text = entry.address.split("%", 1)[0]
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if address.is_loopback or address.is_link_local:
                continue
            found.append({"interface": interface[:64], "family": family, "address": text})
    return found[:MAX_ADDRESSES]


def gather_facts() -> dict[str, Any]:
    """The facts of this node, shaped as the protocol's ``Facts``."""
    return {
        "hostname": socket.gethostname() or "localhost",
        "os": os_name()[:200],
        "kernel": platform.release()[:200],
        "arch": platform.machine()[:64],
        "cpu_model": cpu_model()[:200],
        "cpu_count": psutil.cpu_count(logical=True) or 1,
        "memory_total": int(psutil.virtual_memory().total),
        "addresses": addresses(),
        "agent_version": __version__,
        "boot_id": boot_id()[:64],
    }
