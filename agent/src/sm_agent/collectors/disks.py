"""Usage of each real mounted file system, in bytes.

Pseudo and virtual file systems (proc, sysfs, tmpfs, overlay, squashfs,
cgroup, …) are left out, and each device is listed once (the shortest mount
point wins: ``/`` before a bind mount of part of it). A mount the agent may
not read (a sandbox hides it) is skipped. At most ``MAX_DISKS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import psutil

MAX_DISKS = 64
MAX_MOUNT = 256
MAX_FSTYPE = 32

PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fuse.gvfsd-fuse",
        "fuse.lxcfs",
        "fuse.portal",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nfsd",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
    }
)


class Mount(NamedTuple):
    device: str
    mountpoint: str
    fstype: str


def real_mounts(mounts: Iterable[Mount]) -> list[Mount]:
    """The mounts worth reporting: real file systems, one mount per device."""
    chosen: dict[str, Mount] = {}
    for mount in sorted(mounts, key=lambda m: (len(m.mountpoint), m.mountpoint)):
        fstype = mount.fstype
        if not fstype or fstype in PSEUDO_FILESYSTEMS or fstype.startswith("cgroup"):
            continue
        if len(mount.mountpoint) > MAX_MOUNT or len(fstype) > MAX_FSTYPE:
            continue
        # Network file systems have no local device: their source names them.
        chosen.setdefault(mount.device or mount.mountpoint, mount)
    return list(chosen.values())


def _partitions() -> list[Mount]:
    return [Mount(p.device, p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]


def sample(
    partitions: Callable[[], list[Mount]] = _partitions,
    usage: Callable[[str], Any] = psutil.disk_usage,
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for mount in real_mounts(partitions()):
        try:
            used = usage(mount.mountpoint)
        except OSError:
            continue
        found.append(
            {
                "mount": mount.mountpoint,
                "fstype": mount.fstype,
                "total": max(int(used.total), 0),
                "used": max(int(used.used), 0),
                "free": max(int(used.free), 0),
            }
        )
        if len(found) == MAX_DISKS:
            break
    return found
