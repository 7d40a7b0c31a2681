"""TCP sockets in use, IPv4 and IPv6, from ``/proc/net/sockstat`` and ``sockstat6``.

Reading two small kernel files costs microseconds; ``psutil.net_connections()``
walks every process's descriptors (milliseconds, growing with the machine)
and is never used. Where neither file exists (not Linux) there is no figure.
"""

from __future__ import annotations

from pathlib import Path

SOCKSTAT_FILES = (Path("/proc/net/sockstat"), Path("/proc/net/sockstat6"))


def in_use(text: str) -> int | None:
    """``inuse`` of the ``TCP:`` or ``TCP6:`` line of a sockstat file."""
    for line in text.splitlines():
        label, _, rest = line.partition(":")
        if label not in ("TCP", "TCP6"):
            continue
        fields = rest.split()
        for name, value in zip(fields[::2], fields[1::2], strict=False):
            if name == "inuse" and value.isdigit():
                return int(value)
    return None


def sample(files: tuple[Path, ...] = SOCKSTAT_FILES) -> int | None:
    total: int | None = None
    for path in files:
        try:
            count = in_use(path.read_text())
        except OSError:
            continue
        if count is not None:
            total = (total or 0) + count
    return total
